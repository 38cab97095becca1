"""Web UI round trips through `gradio_client`: the app on a free loopback port, real HTTP calls."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from PIL import Image  # noqa: E402

from streamdream.io.video import probe_video  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from apps.ui import build_app, launch

    work = tmp_path_factory.mktemp("ui")
    demo = build_app(work, max_video_seconds=5)
    launch("127.0.0.1", free_port(), demo=demo, prevent_thread_lock=True, quiet=True)
    yield demo
    demo.close()


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
    from samples.make import make_clip

    src = make_clip("pan", tmp_path / "pan.mp4", size=(96, 64), fps=10, seconds=1)
    video, download, note = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.3", 1.0, 0.9, 1, "fast", 64,
        api_name="/dream_video",
    )
    out = Path(video["video"] if isinstance(video, dict) else video)
    info = probe_video(out)
    assert (info.width, info.height) == (64, 42) or max(info.width, info.height) == 64
    assert info.frame_count == 10 and info.has_audio
    assert "frames" in note
    # the file was written under the app's own output folder
    assert any(server.streamdream_app.outputs.rglob("dream.mp4"))


def test_video_duration_limit(client, tmp_path):
    from samples.make import make_clip

    src = make_clip("pan", tmp_path / "long.mp4", size=(64, 48), fps=5, seconds=6, audio=False)
    with pytest.raises(Exception, match="limit"):
        client.predict(gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.3", 1.0, 0.9, 1, "fast", 64,
                       api_name="/dream_video")


def test_bad_objective_is_a_clear_error(client, tmp_path, astronaut_96):
    src = tmp_path / "a.png"
    Image.fromarray(astronaut_96).save(src)
    with pytest.raises(Exception, match="blocks.99|layer|unknown"):
        client.predict(gradio_client.handle_file(str(src)), "efficientnet_lite0", "blocks.99", 1.0, 1, 1, 96, 0, api_name="/dream_still")


def test_style_still_round_trip(client, tmp_path, coffee_odd, astronaut_96):
    src, painting = tmp_path / "in.png", tmp_path / "painting.png"
    Image.fromarray(coffee_odd).save(src)
    stripes = np.full((64, 64, 3), (30, 200, 60), np.uint8)
    stripes[:, ::8] = 0  # a loud green "painting" with dark stripes; the coffee photo is brown
    Image.fromarray(stripes).save(painting)
    pair, download, note = client.predict(
        gradio_client.handle_file(str(src)), "efficientnet_lite0", "", 1.0, 1, 40, 64, 0, "style", gradio_client.handle_file(str(painting)),
        api_name="/dream_still",
    )
    before = np.asarray(Image.open(pair[0]).convert("RGB")).astype(int)
    after = np.asarray(Image.open(download).convert("RGB")).astype(int)
    assert Path(download).name == "style.png" and before.shape == after.shape
    assert (after[..., 1] - after[..., 0]).mean() > (before[..., 1] - before[..., 0]).mean() + 10  # greener, like the painting

    with pytest.raises(Exception, match="style painting"):
        client.predict(gradio_client.handle_file(str(src)), "efficientnet_lite0", "", 1.0, 1, 2, 64, 0, "style", None,
                       api_name="/dream_still")


def test_cli_has_ui_command():
    from apps.cli import build_parser

    args = build_parser().parse_args(["ui", "--port", "7999"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7999, False)


def test_cancel_stops_a_render(server, tmp_path):
    from samples.make import make_clip

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
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "ui", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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


def test_live_frames_in_style_mode(tmp_path):
    from apps.ui import live_frame
    from samples.make import camera_frames

    painting = tmp_path / "painting.png"
    Image.fromarray(np.full((48, 48, 3), (30, 200, 60), np.uint8)).save(painting)
    frames, _ = camera_frames("pan", (96, 64), 2)
    state = None
    for frame in frames:
        out, state, readout = live_frame(frame, "efficientnet_lite0", "", 1.0, 1, 0.9, "fast", state, "style", str(painting))
        assert out.shape == frame.shape
    assert state.session.frames == 2 and "fps" in readout
    assert (out[..., 1].astype(int) - out[..., 0]).mean() > (frames[1][..., 1].astype(int) - frames[1][..., 0]).mean()


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
