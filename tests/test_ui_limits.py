"""The web app on a network: bad uploads, oversized pictures and videos, a second render, a flood of
live frames, and paths that try to leave the app's folder, all over HTTP (`gradio_client`, `httpx`).

One app for the module, launched as `streamdream ui` launches it (Gradio's uploads under the app's
own folder) with small limits, so every case is cheap: 1 MiB uploads, 1-megapixel pictures, 2 s
videos, 2 live frames a second.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")
httpx = pytest.importorskip("httpx")

from PIL import Image, ImageFile

from .conftest import until
from .test_ui import Page, free_port, inline

MAX_PIXELS = 1_000_000
MAX_UPLOAD_MB = 1
MAX_VIDEO_SECONDS = 2
LIVE_FPS = 2  # and a window of `UI_LIVE_RATE_WINDOW_S` (1 s): a burst of 2 frames


def png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG, its rows deflated as they are made: 20000x20000 is 50 MB of rows in 48 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    deflate = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte, then 8 pixels a byte
    rows = [deflate.compress(row * min(1000, height - top)) for top in range(0, height, 1000)]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grey, deflate, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(rows) + deflate.flush()) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from streamdream.apps.ui import build_app, launch
    from streamdream.engine import LiveEngine

    work = tmp_path_factory.mktemp("ui-limits")
    with pytest.MonkeyPatch.context() as patch, LiveEngine() as engine:
        patch.setenv("GRADIO_TEMP_DIR", str(work / "gradio"))  # as `streamdream ui` sets it: uploads stay in the app's folder
        demo = build_app(work, max_video_seconds=MAX_VIDEO_SECONDS, max_pixels=MAX_PIXELS, live_fps=LIVE_FPS, max_live=2, engine=engine)
        launch("127.0.0.1", free_port(), demo=demo, prevent_thread_lock=True, quiet=True, max_upload_mb=MAX_UPLOAD_MB)
        yield demo
        demo.close()


@pytest.fixture(scope="module")
def client(server):
    return gradio_client.Client(server.local_url, verbose=False)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The bad inputs, made once: each is what its name says."""
    from streamdream.samples.make import make_clip

    folder = tmp_path_factory.mktemp("bad-inputs")
    contents = {
        "bomb.png": png(20_000, 20_000),  # 400 Mpx: past the library's own 250 Mpx as well
        "big.png": png(1200, 1000),  # 1.2 Mpx: past this app's 1 Mpx only
        "empty.png": b"",
        "notes.png": b"shopping: milk, eggs\n",
        "notes.mp4": b"not a video at all\n",
        "empty.mp4": b"",
        "huge.png": bytes(MAX_UPLOAD_MB * 1024 * 1024 + 1),
    }
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    photo = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(photo).save(folder / "ok.png")
    make_clip("pan", folder / "long.mp4", size=(64, 48), fps=5, seconds=3, audio=False)
    make_clip("pan", folder / "short.mp4", size=(64, 48), fps=5, seconds=0.6, audio=False)
    return {path.name: path for path in folder.iterdir()}


@pytest.fixture
def decoded(monkeypatch) -> list[tuple[int, int]]:
    """The sizes of the pictures Pillow decodes meanwhile, anywhere in this process (the app's threads too)."""
    sizes = []
    load = ImageFile.ImageFile.load

    def spy(self):
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return sizes


# ---------------------------------------------------------------- how a case is sent


def still(client, photo: Path, painting: Path | None = None):
    """The Still tab: a dream of `photo`, or a painting of it with `painting`."""
    upload = gradio_client.handle_file
    kind = "style" if painting else "dream"
    return client.predict(upload(str(photo)), "efficientnet_lite0", "blocks.3", 1.0, 1, 1, 64, 0, kind, painting and upload(str(painting)), 1,
                          "optimize", api_name="/dream_still")


def video(client, clip: Path, painting: Path | None = None):
    """The Video tab: `clip` dreamed, or painted with `painting`."""
    upload = gradio_client.handle_file
    kind = "style" if painting else "dream"
    return client.predict(upload(str(clip)), "efficientnet_lite0", "blocks.3", 1.0, 0.9, 0, "fast", 64, kind, painting and upload(str(painting)),
                          "optimize", api_name="/dream_video")


def frame(client, picture: Path):
    """A Live tab frame sent as a file."""
    return client.predict(gradio_client.handle_file(str(picture)), "efficientnet_lite0", "", 1.0, 0, 0.9, "fast", "dream", "builtin:19",
                          api_name="/live_frame")


def inline_frame(client, picture: Path):
    """A Live tab frame sent inline, as a browser streams its camera (`inline`)."""
    return client.predict(inline(picture), "efficientnet_lite0", "", 1.0, 0, 0.9, "fast", "dream", "builtin:19", api_name="/live_frame")


def upload(server, name: str, data: bytes) -> httpx.Response:
    """Gradio's upload route, as a page or a script posts to it, with any file name."""
    return httpx.post(server.local_url + "gradio_api/upload", files=[("files", (name, data))], timeout=60)


# ---------------------------------------------------------------- bad inputs, one readable message each


CASES = [  # (case, the tab it is sent to, the files it sends, what the message says)
    ("a 20000x20000 photo", still, ["bomb.png"], "bomb.png is 20000x20000 pixels (400 megapixels), larger than the 1-megapixel limit"),
    ("a photo over the app's limit", still, ["big.png"], "big.png is 1200x1000 pixels (1.2 megapixels), larger than the 1-megapixel limit"),
    ("a 0-byte photo", still, ["empty.png"], "empty.png is empty (0 bytes)"),
    ("a .png that is text", still, ["notes.png"], "notes.png is not a readable PNG, JPEG, WebP, BMP or TIFF image"),
    ("a 20000x20000 painting", still, ["ok.png", "bomb.png"], "bomb.png is 20000x20000 pixels"),
    ("a .png painting that is text", video, ["short.mp4", "notes.png"], "notes.png is not a readable PNG"),
    ("a 0-byte video", video, ["empty.mp4"], "empty.mp4 is empty (0 bytes)"),
    ("a .mp4 that is text", video, ["notes.mp4"], "cannot read notes.mp4: not a video file FFmpeg understands"),
    ("a video over the length limit", video, ["long.mp4"], "the video long.mp4 is 3.0 s long; the limit here is 2 s"),
    ("a 20000x20000 live frame", frame, ["bomb.png"], "bomb.png is 20000x20000 pixels"),
    ("a 20000x20000 inline live frame", inline_frame, ["bomb.png"], "the picture is 20000x20000 pixels"),
    ("a text file as a live frame", frame, ["notes.png"], "notes.png is not a readable PNG"),
    ("an inline live frame over the app's limit", inline_frame, ["big.png"], "the picture is 1200x1000 pixels"),
]


@pytest.mark.parametrize("send, names, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_input_is_refused_with_one_readable_message(server, client, files, decoded, send, names, expected):
    app = server.streamdream_app
    before = set(app.outputs.iterdir())
    with pytest.raises(Exception) as refused:
        send(client, *(files[name] for name in names))
    message = str(refused.value)
    assert expected in message, message
    assert "Traceback" not in message and str(app.workdir) not in message  # the file by its name, not where the app keeps it
    assert not [size for size in decoded if size[0] * size[1] > MAX_PIXELS]  # refused from the header: nothing big was decoded
    assert set(app.outputs.iterdir()) == before  # nothing left behind
    assert httpx.get(server.local_url + "gradio_api/info", timeout=30).status_code == 200  # still serving


def test_a_painting_is_checked_in_style_mode_only(client, files):
    """A painting left from style mode is hidden in dream mode, and unused: it does not stop a dream."""
    upload = gradio_client.handle_file
    _, download, _ = client.predict(upload(str(files["ok.png"])), "efficientnet_lite0", "blocks.3", 1.0, 1, 1, 64, 0, "dream",
                                    upload(str(files["notes.png"])), 1, "optimize", api_name="/dream_still")
    assert Path(download).name == "dream.png"


def test_the_page_draws_the_checked_uploads_as_images(server):
    """`Picture` and `Camera` are Gradio templates of `gr.Image`: the page shows them as it shows an
    image, and Gradio wrote no type stub beside their module (`ui_styles.no_stub_file`)."""
    from streamdream.apps import ui_styles

    assert not list(Path(ui_styles.__file__).parent.glob("*.pyi"))
    config = httpx.get(server.local_url + "config", timeout=30).json()
    drawn = {c["props"].get("elem_id"): c for c in config["components"]}
    assert {drawn[name]["type"] for name in ("live-input", "still-input", "still-style", "video-style", "live-style")} == {"image"}
    camera, photo = drawn["live-input"]["props"], drawn["still-input"]["props"]
    assert (camera["sources"], camera["streaming"], camera["label"]) == (["webcam"], True, "webcam")  # all of gr.Image's properties
    assert (photo["sources"], photo["label"]) == (["upload", "clipboard"], "picture")


def test_an_upload_over_the_size_limit_is_refused_before_it_is_stored(server, files):
    stored = server.streamdream_app.workdir / "gradio"
    before = set(stored.rglob("*")) if stored.exists() else set()
    response = upload(server, "huge.png", files["huge.png"].read_bytes())
    assert response.status_code == 413
    assert response.text == f"File size exceeded maximum allowed size of {MAX_UPLOAD_MB * 1024 * 1024} bytes."
    assert {path for path in stored.rglob("*") if path.is_file()} <= before  # nothing kept
    assert upload(server, "ok.png", files["ok.png"].read_bytes()).status_code == 200  # and the next upload is taken


@pytest.mark.parametrize("name", ["../../escape.png", "/tmp/escape.png", "..\\..\\escape.png", "sub/../../escape.png"])
def test_a_path_in_a_file_name_stays_in_the_apps_folder(server, name):
    uploads = (server.streamdream_app.workdir / "gradio").resolve()
    outside = server.streamdream_app.workdir.parent
    around = set(outside.iterdir())
    response = upload(server, name, b"shopping: milk, eggs\n")
    assert response.status_code == 200, response.text
    [stored] = [Path(path).resolve() for path in response.json()]
    assert stored.is_relative_to(uploads) and stored.name.endswith("escape.png") and "/" not in stored.name
    assert set(outside.iterdir()) == around and not Path("/tmp/escape.png").exists()


def test_the_app_serves_only_its_own_files(server, client, files, tmp_path):
    """Gradio's file route, asked for files outside the app's folder: refused; the app's own outputs: served."""
    app = server.streamdream_app
    secret = app.workdir.parent / "secret.txt"
    secret.write_text("not for visitors")
    stray = tmp_path / "stray.txt"  # in the system's temp folder, as the app's folder is
    stray.write_text("not for visitors")
    base = server.local_url + "gradio_api/file="
    for path in ["/etc/passwd", str(secret), str(stray), f"{app.workdir}/../{secret.name}", f"{app.workdir}/gradio/../../{secret.name}",
                 f"{app.workdir}/%2e%2e/{secret.name}", "../../../../etc/passwd"]:
        response = httpx.get(base + path, timeout=30)
        assert response.status_code in (403, 404), path
        assert "not for visitors" not in response.text and "root:" not in response.text, path
    own = app.outputs / "mine" / "result.txt"
    own.parent.mkdir()
    own.write_text("the app's own")
    try:
        assert httpx.get(base + str(own), timeout=30).text == "the app's own"
    finally:
        own.unlink()
        own.parent.rmdir()


def test_a_file_the_visitor_did_not_upload_is_not_read(server):
    """A request naming a server path (not an upload) as its picture: Gradio refuses it, nothing is read."""
    payload = {"path": "/etc/passwd", "orig_name": "passwd.png", "meta": {"_type": "gradio.FileData"}}
    data = [payload, "efficientnet_lite0", "blocks.3", 1.0, 1, 1, 64, 0, "dream", None, 1, "optimize", "builtin:19"]
    response = httpx.post(server.local_url + "gradio_api/call/dream_still", json={"data": data}, timeout=30)
    assert response.status_code == 400 and response.json() == {"detail": "Cannot move /etc/passwd to the gradio cache dir because it was not uploaded by a user."}


# ---------------------------------------------------------------- one render at a time, a limited live frame rate


def test_a_video_that_hides_its_length_stops_at_the_limit(server, files):
    """The length check before the queue reads the header; a file whose header understates its length
    (here: no check before, as if it had) is stopped by the render itself, its partial output removed."""
    from streamdream.apps.ui import dream_video

    app = server.streamdream_app
    before = set(app.outputs.iterdir())
    with pytest.raises(gr.Error, match="the video long.mp4 is longer than 2 s; the limit here is 2 s"):
        dream_video(str(files["long.mp4"]), "efficientnet_lite0", "blocks.3", 1.0, 0.9, 0, "fast", 64, app, progress=lambda *a, **k: None)
    assert set(app.outputs.iterdir()) == before


def test_a_second_render_while_one_runs_is_refused_and_other_visitors_are_not(server, client, files):
    app = server.streamdream_app
    engine = app.engine
    before = set(app.outputs.iterdir())
    other = gradio_client.Client(server.local_url, verbose=False)
    clip = gradio_client.handle_file(str(files["short.mp4"]))
    controls = ("efficientnet_lite0", "blocks.3", 1.0, 0.9, 0, "fast", 64)
    with engine.exclusive():  # a live frame or a still holds the model: the first render waits in its first frame
        first = client.submit(clip, *controls, api_name="/dream_video")
        until(lambda: engine.waiting == 1, timeout=120)
        with pytest.raises(Exception, match="your other video is still rendering: wait for it, or cancel it"):
            client.predict(clip, *controls, api_name="/dream_video")
        theirs = other.submit(clip, *controls, api_name="/dream_video")  # another visitor's render queues as ever
        assert not first.done()
    assert Path(first.result(timeout=300)[1]).name == "dream.mp4"
    assert Path(theirs.result(timeout=300)[1]).name == "dream.mp4"
    assert len(set(app.outputs.iterdir()) - before) == 2  # the refused one wrote nothing


def test_live_frames_past_the_rate_are_dropped_before_any_work(server, files, monkeypatch):
    from streamdream.apps import ui

    now = [time.monotonic()]
    monkeypatch.setattr(server.streamdream_app.frame_rate, "clock", lambda: now[0])  # the clock stands still until the test moves it
    made = []  # the live frames that reached the model work (`live_frame`)
    real = ui.live_frame

    def counted(frame, *args, **kwargs):
        made.append(frame.shape)
        return real(frame, *args, **kwargs)

    monkeypatch.setattr(ui, "live_frame", counted)
    page, other, frame = Page(server), Page(server), inline(files["ok.png"])
    skipped = [{"__type__": "update"}, None, {"__type__": "update"}]  # nothing changes on the page
    try:
        for _ in range(LIVE_FPS):  # the burst a window allows
            assert page.send(frame)[2].startswith("fps ")
        for _ in range(5):  # a flood this second: dropped, no work done, no message
            assert page.send(frame) == skipped
        assert len(made) == LIVE_FPS
        assert other.send(frame)[2].startswith("fps ")  # another visitor is served meanwhile
        now[0] += 1 / LIVE_FPS  # half a second later: one more frame is due
        assert page.send(frame)[2].startswith("fps ") and len(made) == LIVE_FPS + 2
        assert page.send(frame) == skipped and len(made) == LIVE_FPS + 2
    finally:
        page.close()
        other.close()
