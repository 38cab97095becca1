"""Web UI round trips through `gradio_client`: the app on a free loopback port, real HTTP calls."""

from __future__ import annotations

import base64
import functools
import io
import json
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

from PIL import Image  # noqa: E402

from streamdream.io.video import probe_video  # noqa: E402

from .conftest import until  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from streamdream.apps.ui import build_app, launch
    from streamdream.engine import LiveEngine

    work = tmp_path_factory.mktemp("ui")
    with pytest.MonkeyPatch.context() as patch, LiveEngine() as engine:
        patch.setenv("GRADIO_TEMP_DIR", str(work / "gradio"))  # as `streamdream ui` sets it: Gradio's cache in the app's folder
        demo = build_app(work, max_video_seconds=5, max_live=2, engine=engine)
        launch("127.0.0.1", free_port(), demo=demo, prevent_thread_lock=True, quiet=True)
        yield demo
        demo.close()


def inline(picture: Path) -> dict:
    """A picture as a data URL, no file: how a browser sends a camera frame."""
    return {"path": None, "url": "data:image/png;base64," + base64.b64encode(picture.read_bytes()).decode(), "meta": {"_type": "gradio.FileData"}}


class Page:
    """A Live tab as a browser runs it: one stream event for its camera, a frame posted to it at a time
    (inline, as the browser does), each answer read from the event stream."""

    def __init__(self, server) -> None:
        self.url = server.local_url + "gradio_api/"
        self.session_hash = uuid.uuid4().hex
        self.fn_index = next(index for index, fn in server.fns.items() if fn.api_name == "live_frame")
        self.event_id = None
        self.messages = None

    def send(self, frame: dict) -> list:
        """The page's outputs for `frame`: [dream, state, readout]."""
        body = {"data": [frame, "efficientnet_lite0", "", 1.0, 0, 0.9, "fast", None, "dream", None, "builtin:19"], "fn_index": self.fn_index,
                "session_hash": self.session_hash}
        if self.event_id is None:
            self.event_id = httpx.post(self.url + "queue/join", json=body, timeout=30).json()["event_id"]
            self._stream = httpx.stream("GET", self.url + f"queue/data?session_hash={self.session_hash}", timeout=120)
            self.messages = (json.loads(line[6:]) for line in self._stream.__enter__().iter_lines() if line.startswith("data: "))
        else:
            httpx.post(self.url + f"stream/{self.event_id}", json={**body, "event_id": self.event_id}, timeout=30).raise_for_status()
        for message in self.messages:
            if message.get("msg") in ("process_streaming", "process_completed"):
                return message["output"]["data"]
        raise AssertionError("the event stream ended")

    def close(self) -> None:
        httpx.post(self.url + f"stream/{self.event_id}/close", timeout=30)
        self._stream.__exit__(None, None, None)


def files_under(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if path.is_file()}


def test_a_live_dream_reaches_the_page_inline_and_leaves_no_file(server, tmp_path):
    """The Live tab's dream comes back inside the stream's message, a JPEG data URL at the camera
    frame's size, and a stream of frames leaves no file behind: not in Gradio's cache (the app's
    folder, as `streamdream ui` sets it), not in the app's outputs."""
    from streamdream.samples.make import camera_frames

    frames, _ = camera_frames("pan", (96, 64), 3)
    sent = []
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{i}.png")
        sent.append(inline(tmp_path / f"{i}.png"))
    work = server.streamdream_app.workdir
    before = files_under(work)
    page = Page(server)
    try:
        answers = [page.send(frame) for frame in sent]
    finally:
        page.close()
    for dream, _, readout in answers:
        assert readout.startswith("fps "), readout
        assert dream["path"] is None and dream["url"].startswith("data:image/jpeg;base64,")
        shown = Image.open(io.BytesIO(base64.b64decode(dream["url"].partition(",")[2])))
        assert shown.format == "JPEG" and shown.size == (96, 64)
    assert files_under(work) == before


def first_frame(path) -> np.ndarray:
    from streamdream.io.video import read_frames

    return next(read_frames(path)).image.astype(int)


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.local_url, verbose=False)


def test_endpoints_are_named(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/dream_still", "/dream_video", "/live_frame"} <= names


def test_dream_still_round_trip(client, tmp_path, coffee_odd):
    src = tmp_path / "in.png"
    Image.fromarray(coffee_odd).save(src)
    pair, download, note = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.3", 1.0, 2, 2, 64, 0, api_name="/dream_still"
    )
    before = np.asarray(Image.open(pair[0]).convert("RGB"))
    after = np.asarray(Image.open(download).convert("RGB"))
    assert before.shape == after.shape and before.shape[1] == 64  # 101x67 downscaled to max side 64, with a notice
    assert "downscaled" in note
    assert np.abs(before.astype(int) - after.astype(int)).mean() > 1.0


def test_dream_video_round_trip_keeps_audio(client, server, tmp_path):
    from streamdream.samples.make import make_clip

    src = make_clip("pan", tmp_path / "pan.mp4", size=(96, 64), fps=10, seconds=1)
    video, download, note = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.3", 1.0, 0.9, 1, "fast", 64,
        api_name="/dream_video",
    )
    out = Path(video["video"] if isinstance(video, dict) else video)
    info = probe_video(out)
    assert (info.width, info.height) == (64, 42)  # 96x64 shrunk to max side 64, even sizes
    assert info.frame_count == 10 and info.has_audio
    assert note.startswith("downscaled from 96x64 to 64x42") and "10 frames in" in note
    assert Path(download).name == "dream.mp4" and any(server.streamdream_app.outputs.rglob("dream.mp4"))  # written under the app's folder
    camera = np.asarray(Image.fromarray(first_frame(src).astype(np.uint8)).resize((64, 42), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(first_frame(out) - camera).mean() > 3  # it really dreamed


def test_video_tab_gives_the_first_frame_the_cli_still_treatment(client, tmp_path):
    """Same clip, same settings: the UI's first frame is the CLI's (full still quality), not a cheap one."""
    from streamdream.apps.cli import main
    from streamdream.samples.make import make_clip

    src = make_clip("pan", tmp_path / "pan.mp4", size=(96, 64), fps=10, seconds=0.3, audio=False)
    video, _, _ = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.3", 1.0, 0.9, 1, "balanced", 64, api_name="/dream_video",
    )
    ui_first = first_frame(Path(video["video"] if isinstance(video, dict) else video))
    same_as_tab = ["--objective", "blocks.3", "--max-side", "64", "--carry", "0.9", "--frame-iterations", "1", "--preset", "veryfast", "-q"]
    cli, cheap = tmp_path / "cli.mp4", tmp_path / "cheap.mp4"
    assert main(["dream", str(src), "-o", str(cli), *same_as_tab]) == 0
    assert main(["dream", str(src), "-o", str(cheap), *same_as_tab, "--octaves", "1", "--iterations", "1"]) == 0  # the tab before
    same, cheaper = np.abs(ui_first - first_frame(cli)).mean(), np.abs(ui_first - first_frame(cheap)).mean()
    print(f"\nfirst frame, UI vs CLI: {same:.2f}; UI vs 1 octave x 1 iteration: {cheaper:.2f}")
    assert same < 1.0 and cheaper > 5.0


def test_video_duration_limit(client, tmp_path):
    from streamdream.samples.make import make_clip

    src = make_clip("pan", tmp_path / "long.mp4", size=(64, 48), fps=5, seconds=6, audio=False)
    with pytest.raises(Exception, match="limit"):
        client.predict(gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.3", 1.0, 0.9, 1, "fast", 64,
                       api_name="/dream_video")


def test_bad_objective_is_a_clear_error(client, tmp_path, astronaut_96):
    src = tmp_path / "a.png"
    Image.fromarray(astronaut_96).save(src)
    with pytest.raises(Exception, match="blocks.99|layer|unknown"):
        client.predict(gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.99", 1.0, 1, 1, 96, 0, api_name="/dream_still")


def striped_painting(path: Path) -> Path:
    """A loud green "painting" with dark stripes (the coffee photo is brown): something to paint with."""
    stripes = np.full((64, 64, 3), (30, 200, 60), np.uint8)
    stripes[:, ::8] = 0
    Image.fromarray(stripes).save(path)
    return path


def greenness(rgb: np.ndarray) -> float:
    return float((rgb[..., 1].astype(int) - rgb[..., 0]).mean())


def test_style_still_round_trip_by_the_optimizer(client, tmp_path, coffee_odd):
    src = tmp_path / "in.png"
    Image.fromarray(coffee_odd).save(src)
    painting = striped_painting(tmp_path / "painting.png")
    pair, download, note = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "", 1.0, 1, 40, 64, 0, "style", gradio_client.handle_file(str(painting)), 1,
        "optimize", api_name="/dream_still",
    )
    before = np.asarray(Image.open(pair[0]).convert("RGB")).astype(int)
    after = np.asarray(Image.open(download).convert("RGB")).astype(int)
    assert Path(download).name == "style.png" and before.shape == after.shape
    assert greenness(after) > greenness(before) + 10  # greener, like the painting

    with pytest.raises(Exception, match="needs a painting"):  # the optimizer cannot paint a built-in style
        client.predict(gradio_client.handle_file(str(src)), "efficientnet_lite0", "", 1.0, 1, 2, 64, 0, "style", None, 1, "optimize",
                       api_name="/dream_still")


def test_style_still_round_trip_by_the_network(client, tmp_path, coffee_odd):
    """The default method paints a built-in style with no upload; a painting, when given, wins."""
    from streamdream.settings import STYLE_METHOD

    src = tmp_path / "in.png"
    Image.fromarray(coffee_odd).save(src)
    painting = striped_painting(tmp_path / "painting.png")
    assert STYLE_METHOD == "net"

    def paint(painting_file, builtin: str, strength: float = 1.0) -> np.ndarray:
        pair, download, note = client.predict(gradio_client.handle_file(str(src)), "efficientnet_lite0", "", strength, 1, 1, 64, 0, "style",
                                              painting_file, 1, "net", builtin, api_name="/dream_still")
        return np.asarray(Image.open(download).convert("RGB")).astype(int)

    before = np.asarray(Image.fromarray(coffee_odd).resize((64, 42), Image.Resampling.LANCZOS)).astype(int)
    starry, mosaic = paint(None, "builtin:19"), paint(None, "builtin:3")
    assert starry.shape == before.shape
    assert np.abs(starry - before).mean() > 20 and np.abs(mosaic - starry).mean() > 20  # painted, each in its own style
    assert np.abs(paint(None, "builtin:19", 0.25) - before).mean() < np.abs(starry - before).mean() / 2  # a quarter of the strength
    own = paint(gradio_client.handle_file(str(painting)), "builtin:19")
    assert greenness(own) > greenness(before) + 10 and np.abs(own - starry).mean() > 20  # the painting wins over the built-in style

    with pytest.raises(Exception, match="strength"):  # the network paints at most at strength 1
        paint(None, "builtin:19", 2.0)


def test_style_video_round_trip_by_the_network(client, tmp_path):
    from streamdream.samples.make import make_clip

    src = make_clip("pan", tmp_path / "pan.mp4", size=(96, 64), fps=10, seconds=0.5, audio=False)
    video, download, note = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "", 1.0, 0.9, 1, "fast", 64, "style", None, "net", "builtin:19",
        api_name="/dream_video",
    )
    out = Path(video["video"] if isinstance(video, dict) else video)
    assert out.name == "style.mp4" and probe_video(out).frame_count == 5 and "5 frames in" in note
    camera = np.asarray(Image.fromarray(first_frame(src).astype(np.uint8)).resize((64, 42), Image.Resampling.LANCZOS)).astype(int)
    assert np.abs(first_frame(out) - camera).mean() > 20  # painted


def test_cli_has_ui_command():
    from streamdream.apps.cli import build_parser

    args = build_parser().parse_args(["ui", "--port", "7999"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7999, False)


def test_cancel_stops_a_render(server, tmp_path):
    from streamdream.samples.make import make_clip

    src = make_clip("pan", tmp_path / "cancel.mp4", size=(96, 64), fps=15, seconds=4, audio=False)
    client = gradio_client.Client(server.local_url, verbose=False)  # its own session
    outputs = server.streamdream_app.outputs
    before = set(outputs.iterdir())
    job = client.submit(gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.4", 1.0, 0.9, 3, "balanced", 96,
                        api_name="/dream_video")
    deadline = time.monotonic() + 60
    while not (set(outputs.iterdir()) - before) and time.monotonic() < deadline:  # the render has started
        time.sleep(0.05)
    assert set(outputs.iterdir()) - before, "the render never started"
    client.predict(api_name="/cancel_video")
    deadline = time.monotonic() + 30
    while set(outputs.iterdir()) - before and time.monotonic() < deadline:  # the partial output is removed
        time.sleep(0.1)
    assert not set(outputs.iterdir()) - before, "the cancelled render kept running"
    assert not job.status().success


def test_streamdream_ui_serves_on_loopback_within_a_minute(tmp_path):
    import signal
    import subprocess
    import sys
    import urllib.request

    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "streamdream.apps.cli", "ui", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=tmp_path)
    try:
        while time.monotonic() - started < 60:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    assert response.status == 200 and b"<html" in response.read(2000).lower()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode(errors="replace")
                time.sleep(0.25)
        else:
            pytest.fail("streamdream ui did not answer within 60 s")
        print(f"\nstreamdream ui answered after {time.monotonic() - started:.1f} s")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = proc.stdout.read().decode(errors="replace")
    assert "live seats: " in output and "measured streams sharing the model: 1 at" in output, output  # the start-up probe said its capacity


def test_live_visitors_past_capacity_see_their_place_and_are_seated_when_a_seat_frees(tmp_path):
    from types import SimpleNamespace

    from streamdream.apps.ui import App, live_frame
    from streamdream.engine import LiveEngine
    from streamdream.samples.make import camera_frames

    frames, _ = camera_frames("pan", (96, 64), 2)
    visitors = [SimpleNamespace(session_hash=name) for name in ("ann", "bob", "cyd")]
    with LiveEngine() as engine:
        app = App(tmp_path, max_live=2, engine=engine)
        states: dict[str, object] = {}

        def frame(visitor, image):
            def serve(session):
                return live_frame(image, "efficientnet_lite0", "", 1.0, 1, 0.9, "fast", states.get(visitor.session_hash), session=session)

            out, states[visitor.session_hash], readout = app.live(image, states.get(visitor.session_hash), visitor, serve)
            return out, readout

        results = [frame(v, frames[0]) for v in visitors]
        assert [out is not None for out, _ in results] == [True, True, False]
        assert results[2][1] == "all 2 live seats are taken: you are number 1 in the queue. Keep this tab open: your dream starts as soon as a seat frees."
        assert len(engine.sessions) == 2

        cancel = app.cancel_event(visitors[0])
        app.leave(visitors[0])  # ann closes her tab: her seat, her live stream and her render go
        assert cancel.is_set() and states["ann"].session.closed and len(engine.sessions) == 1
        out, readout = frame(visitors[2], frames[1])
        assert out.shape == frames[1].shape and readout.startswith("fps ")
        assert app.room.seats.seated() == ["bob", "cyd"]


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b).mean())


def seated(engine, visitor: str = "ann"):
    """`visitor`'s session opener in a room of their own on `engine`, as `App.live` hands `live_frame` one."""
    from streamdream.admission import LiveRoom

    return functools.partial(LiveRoom(engine, 1).session, visitor)


def test_live_style_paints_a_builtin_style_until_a_painting_wins(tmp_path):
    """No upload needed: the selected built-in style paints; an uploaded painting wins while it is there."""
    from streamdream.apps.ui import live_frame
    from streamdream.settings import DEFAULT_BUILTIN_STYLE
    from streamdream.engine import LiveEngine
    from streamdream.samples.make import camera_frames

    painting = str(striped_painting(tmp_path / "painting.png"))
    frames, _ = camera_frames("pan", (96, 64), 4)
    with LiveEngine() as engine:
        ann, bob = seated(engine, "ann"), seated(engine, "bob")

        def frame(index: int, painting: str | None, builtin: str = DEFAULT_BUILTIN_STYLE, state=None, session=ann):
            return live_frame(frames[index], "efficientnet_lite0", "", 1.0, 1, 0.9, "fast", state, "style", painting, builtin, session=session)

        out, state, readout = frame(0, None)
        assert out.shape == frames[0].shape and readout.startswith("fps ") and distance(out, frames[0]) > 20
        live = state.session
        other, _, _ = frame(0, None, "builtin:3", session=bob)
        assert distance(other, out) > 20  # each built-in style its own
        own, state, readout = frame(1, painting, state=state)
        assert readout.startswith("fps ") and greenness(own) > greenness(frames[1]) + 10
        back, state, readout = frame(2, None, state=state)  # the painting cleared: the built-in style again
        assert greenness(back) < greenness(own) - 10 and distance(back, frames[2]) > 20
    assert state.session is live and live.processed == 3  # a new style starts the stream afresh, on the same session


@pytest.mark.parametrize("bad", ["text", "grey", "dot"])
def test_a_bad_live_painting_is_one_readout_line_and_the_stream_goes_on(tmp_path, bad):
    """A painting that cannot be painted with: the built-in style paints, and the readout says why."""
    from streamdream.apps.ui import live_frame
    from streamdream.settings import DEFAULT_BUILTIN_STYLE
    from streamdream.engine import LiveEngine
    from streamdream.samples.make import camera_frames

    path = tmp_path / f"{bad}.png"
    if bad == "text":
        path.write_text("not a picture")
    else:
        Image.fromarray(np.full((64, 64, 3) if bad == "grey" else (1, 1, 3), 128, np.uint8)).save(path)
    why = {"text": "text.png is not a readable PNG", "grey": "the painting grey.png is one flat colour", "dot": "the painting dot.png is 1x1 pixels"}[bad]
    frames, _ = camera_frames("pan", (96, 64), 3)
    state = None
    with LiveEngine() as engine:
        session = seated(engine)
        for frame in frames:
            out, state, readout = live_frame(frame, "efficientnet_lite0", "", 1.0, 1, 0.9, "fast", state, "style", str(path), session=session)
            assert readout.startswith(why) and f"painting with {DEFAULT_BUILTIN_STYLE} instead · fps " in readout and "\n" not in readout
            assert str(tmp_path) not in readout  # the file's name, not the server's path
            assert distance(out, frame) > 20  # painted by the built-in style
    assert state.session.processed == 3 and "frame 3" in readout


def test_a_live_frame_out_of_memory_is_one_readout_line_and_the_stream_goes_on_smaller(monkeypatch):
    """The machine runs out of memory on frames over 100 px a side (injected into the style network's
    pass): the camera is shown for that frame with the reason, then the stream goes on at 96 px,
    shown at the camera's size, and the readout keeps saying so."""
    from streamdream.apps.ui import live_frame
    from streamdream.engine import LiveEngine
    from streamdream.samples.make import camera_frames
    from streamdream.style_net import PaintCall

    run_batch = PaintCall.run_batch

    def limited(calls):
        if max(calls[0].image.shape[-2:]) > 100:
            raise MemoryError
        return run_batch(calls)

    monkeypatch.setattr(PaintCall, "run_batch", staticmethod(limited))
    frames, _ = camera_frames("pan", (128, 96), 3)
    state = None
    with LiveEngine() as engine:
        session, readouts = seated(engine), []
        for frame in frames:
            out, state, readout = live_frame(frame, "efficientnet_lite0", "", 1.0, 1, 0.9, "fast", state, "style", None, session=session)
            assert out.shape == frame.shape and "\n" not in readout
            readouts.append(readout)
    assert readouts[0] == "out of memory at 128 px: working at 96 px from now on · showing the camera as it is"
    assert all(r.startswith("fps ") and r.endswith("working at 96 px since memory ran out") for r in readouts[1:])
    assert distance(out, frames[-1]) > 20 and state.session.lost == 1  # painted, at the smaller size


def test_a_live_dream_that_cannot_run_shows_the_camera_and_says_why():
    from streamdream.apps.ui import live_frame
    from streamdream.engine import LiveEngine
    from streamdream.samples.make import camera_frames

    frames, _ = camera_frames("pan", (96, 64), 3)
    with LiveEngine() as engine:
        session = seated(engine)
        out, state, readout = live_frame(frames[0], "efficientnet_lite0", "blocks.3", 4.0, 2, 0.9, "fast", None, session=session)
        assert readout.startswith("fps ") and distance(out, frames[0]) > 3.0
        for frame in frames[1:]:  # a typo in the objective: every frame says so, none raises
            out, state, readout = live_frame(frame, "efficientnet_lite0", "blocks.99", 4.0, 2, 0.9, "fast", state, session=session)
            assert readout.endswith(" · showing the camera as it is") and "blocks.99" in readout
            assert np.array_equal(out, frame)
        out, state, readout = live_frame(frames[2], "efficientnet_lite0", "blocks.3", 4.0, 2, 0.9, "fast", state, session=session)
        assert readout.startswith("fps ") and distance(out, frames[2]) > 3.0  # fixed: dreaming again, on the same stream
        assert state.session.processed == 2


def test_live_tab_runs_on_the_live_engine_and_its_controls_apply_to_the_running_stream():
    from streamdream.apps.ui import live_frame
    from streamdream.samples.make import camera_frames
    from streamdream.engine import LiveEngine

    frames, _ = camera_frames("pan", (96, 64), 4)
    controls = ["efficientnet_lite0", "blocks.3"]

    def diff(a, b) -> float:
        return float(np.abs(a.astype(int) - b).mean())

    with LiveEngine() as engine:
        session = seated(engine)
        out, state, _ = live_frame(frames[0], *controls, 1.0, 0, 0.9, "fast", None, session=session)  # 0 iterations: no dream
        assert engine.sessions == (state.session,)
        assert diff(out, frames[0]) < 1.0
        live = state.session
        out, state, _ = live_frame(frames[1], *controls, 4.0, 2, 0.9, "fast", state, session=session)  # stronger, 2 iterations
        assert state.session is live and diff(out, frames[1]) > 3.0
        out, state, _ = live_frame(frames[2], *controls, 4.0, 0, 0.0, "fast", state, session=session)  # no steps, nothing carried
        assert state.session is live and diff(out, frames[2]) < 1.0
        assert live.stream.settings.frame_iterations == 0 and live.stream.settings.carry == 0.0 and live.processed == 3

        # the model work of a live frame waits while the engine is busy with a still or a render
        with engine.exclusive():
            handler = threading.Thread(target=live_frame, args=(frames[3], *controls, 1.0, 1, 0.9, "fast", state), kwargs={"session": session})
            handler.start()
            until(lambda: engine.waiting == 1, timeout=60)
            assert handler.is_alive() and live.processed == 3
        handler.join(timeout=60)
        assert not handler.is_alive() and live.processed == 4
    assert live.closed  # closing the engine closed the session


def test_a_still_waits_for_the_engine(client, server, tmp_path, astronaut_96):
    src = tmp_path / "a.png"
    Image.fromarray(astronaut_96).save(src)
    engine = server.streamdream_app.engine
    with engine.exclusive():  # a live frame or a render holds the model
        job = client.submit(gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.3", 1.0, 1, 1, 64, 0, api_name="/dream_still")
        until(lambda: engine.waiting == 1, timeout=60)
        assert not job.done()
    pair, download, note = job.result(timeout=120)
    assert Path(download).name == "dream.png"


def test_still_tab_runs_the_image_gradient_tools(client, tmp_path):
    import skimage.data

    from streamdream.gradients import classify

    src = tmp_path / "cat.png"
    Image.fromarray(skimage.data.chelsea()).save(src)
    pair, download, note = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "", 1.0, 1, 1, 224, 0, "saliency", None, 1, api_name="/dream_still"
    )
    assert "Egyptian cat" in note and Path(download).name == "saliency.png"
    pair, download, note = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "", 1.0, 1, 1, 224, 0, "fool", None, 1, api_name="/dream_still"
    )
    assert "goldfish" in note
    assert classify(np.asarray(Image.open(download).convert("RGB")), top=1)[0].index == 1


def mode_handler(demo, tab: str):
    """The handler the app registered on a tab's mode radio (and style method), and the elem_ids of the controls it updates."""
    [fn] = [f for f in demo.fns.values() if [c.elem_id for c in f.inputs][:1] == [f"{tab}-mode"] and {t[1] for t in f.targets} == {"change"}]
    return fn.fn, [c.elem_id for c in fn.outputs]


def test_controls_follow_the_mode(server):
    from streamdream.settings import NET_STRENGTH_RANGE, STRENGTH, STRENGTH_RANGE, StyleSettings

    handler, ids = mode_handler(server, "live")
    assert ids == ["live-styles", "live-builtin", "live-style", "live-model", "live-objective", "live-strength", "live-iterations", "live-output"]
    styles, builtin, painting, model, objective, strength, iterations, output = handler("style")  # the network: Live has no other
    assert model["visible"] is False and objective["visible"] is False and iterations["visible"] is False
    assert styles["visible"] is True and builtin["visible"] is True and painting["visible"] is True
    assert strength["label"] == "style strength" and strength["visible"] is True and output["label"] == "painting"
    assert (strength["minimum"], strength["maximum"], strength["value"]) == (0.05, NET_STRENGTH_RANGE.high, STRENGTH) == (0.05, 1.0, 1.0)
    styles, builtin, painting, model, objective, strength, iterations, output = handler("dream")
    assert model["visible"] is True and objective["visible"] is True and iterations["visible"] is True
    assert styles["visible"] is False and builtin["visible"] is False and painting["visible"] is False
    assert strength["label"] == "strength" and output["label"] == "dream" and strength["maximum"] == STRENGTH_RANGE.high
    live = {c.elem_id: c for c in server.blocks.values() if c.elem_id}
    assert live["live-strength"].value == STRENGTH == 1.0
    assert live["live-style"].visible is False and live["live-styles"].visible is False  # dream mode first: the objective shown
    assert live["live-output"].height >= live["live-input"].height  # the dream is shown at least as large as the camera

    handler, ids = mode_handler(server, "video")
    assert ids == ["video-method", "video-styles", "video-builtin", "video-style", "video-model", "video-objective", "video-strength",
                   "video-iterations", "video-go", "video-output"]
    assert handler("style", "net")[8]["value"] == "Paint" and handler("dream", "net")[8]["value"] == "Dream"
    net, optimize = handler("style", "net"), handler("style", "optimize")
    assert [u["visible"] for u in net[:8]] == [True, True, True, True, False, False, True, False]  # no iterations per frame: one pass
    assert [u["visible"] for u in optimize[:8]] == [True, False, False, True, True, False, True, True]  # a painting, no built-in styles
    assert net[6]["maximum"] == 1.0 and optimize[6]["maximum"] == StyleSettings.bounds("strength").high

    handler, ids = mode_handler(server, "still")
    assert ids == ["still-method", "still-styles", "still-builtin", "still-style", "still-model", "still-objective", "still-strength",
                   "still-octaves", "still-iterations", "still-class", "still-go"]
    octaves_iterations = {method: [u["visible"] for u in handler("style", method)[7:9]] for method in ("net", "refine", "optimize")}
    assert octaves_iterations == {"net": [False, False], "refine": [False, False], "optimize": [True, True]}  # the optimizer's pyramid only
    method, styles, builtin, painting, model, objective, strength, octaves, iterations, class_index, button = handler("style", "net")
    assert (objective["visible"], method["visible"], painting["visible"], strength["label"], class_index["visible"], button["value"]) == (
        False, True, True, "style strength", False, "Paint")
    method, styles, builtin, painting, model, objective, strength, octaves, iterations, class_index, button = handler("fool", "net")
    assert (objective["visible"], method["visible"], painting["visible"], strength["visible"], class_index["visible"]) == (False, False, False, False, True)
    assert octaves["visible"] is True and styles["visible"] is False
    method, styles, builtin, painting, model, objective, strength, octaves, iterations, class_index, button = handler("invert", "net")
    assert objective["visible"] is True and strength["visible"] is False and button["value"] == "Invert"


def test_the_builtin_styles_gallery_selects_a_style(server):
    """26 thumbnails named builtin:N, one selected from the start; a click selects its name, and the name its thumbnail."""
    from types import SimpleNamespace

    from streamdream.settings import DEFAULT_BUILTIN_STYLE

    blocks = {c.elem_id: c for c in server.blocks.values() if c.elem_id}
    for tab in ("live", "video", "still"):
        gallery, builtin = blocks[f"{tab}-styles"], blocks[f"{tab}-builtin"]
        captions = [item["caption"] for item in gallery.value]
        assert captions == [f"builtin:{i}" for i in range(26)] and builtin.value == DEFAULT_BUILTIN_STYLE == captions[gallery.selected_index]
        [select] = [f for f in server.fns.values() if [t[1] for t in f.targets] == ["select"] and f.inputs == [] and f.outputs == [builtin]]
        assert select.fn(SimpleNamespace(index=3)) == "builtin:3"
        [follow] = [f for f in server.fns.values() if [t[1] for t in f.targets] == ["input"] and f.inputs == [builtin] and f.outputs == [gallery]]
        assert follow.fn("builtin:7")["selected_index"] == 7
    thumbnail = Image.open(blocks["live-styles"].value[0]["image"]["path"])
    assert max(thumbnail.size) == 96


def test_the_live_painting_is_taken_unopened(server):
    """Gradio would open the upload on every frame and raise on a file that is not a picture: the Live
    tab keeps its path (no preprocessing) for `live_frame` to check once."""
    blocks = {c.elem_id: c for c in server.blocks.values() if c.elem_id}
    [keep] = [f for f in server.fns.values() if f.inputs == [blocks["live-style"]] and [t[1] for t in f.targets] == ["change"]]
    assert keep.preprocess is False and isinstance(keep.outputs[0], gr.State)
    assert keep.fn({"path": "/tmp/gradio/x/bad.png", "orig_name": "bad.png"}) == "/tmp/gradio/x/bad.png" and keep.fn(None) is None
    stream = next(f for f in server.fns.values() if f.api_name == "live_frame")
    assert keep.outputs[0] in stream.inputs and blocks["live-style"] not in stream.inputs


def test_a_login_keeps_strangers_out(tmp_path):
    """`streamdream ui --auth USER:PASS`: without the login neither the page's API nor a client gets in."""
    import urllib.error
    import urllib.request

    from streamdream.apps.ui import build_app, launch
    from streamdream.engine import LiveEngine

    with LiveEngine() as engine:
        demo = build_app(tmp_path, max_live=1, engine=engine)
        launch("127.0.0.1", free_port(), demo=demo, prevent_thread_lock=True, quiet=True, auth=("ann", "s3cret:x"))
        try:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(demo.local_url + "config", timeout=10)
            assert refused.value.code == 401
            with pytest.raises(Exception, match="credentials"):
                gradio_client.Client(demo.local_url, verbose=False)
            client = gradio_client.Client(demo.local_url, auth=("ann", "s3cret:x"), verbose=False)
            assert "/dream_still" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        finally:
            demo.close()


@pytest.mark.parametrize(
    "host, share, auth, said",
    [
        ("127.0.0.1", False, None, None),
        ("0.0.0.0", False, None, "reachable on 0.0.0.0 from other machines; anyone who reaches it can use it (--auth USER:PASS"),
        ("0.0.0.0", False, ("ann", "x"), "reachable on 0.0.0.0 from other machines, behind --auth's login"),
        ("127.0.0.1", True, None, "reachable through a public gradio.live link; anyone"),
    ],
)
def test_an_app_reachable_from_other_machines_says_so(host, share, auth, said):
    from streamdream.apps.commands.ui import exposure_warning

    warning = exposure_warning(host, share, auth)
    assert warning is None if said is None else (warning.startswith("streamdream: warning: ") and said in warning and "\n" not in warning)


@pytest.mark.parametrize("auth", ["ann", ":x", "ann:"])
def test_a_bad_login_is_one_line_and_exit_2(auth, capsys):
    from streamdream.apps.cli import main

    assert main(["ui", "--auth", auth]) == 2
    err = capsys.readouterr().err.strip()
    assert "--auth" in err and "USER:PASS" in err and "\n" not in err
