"""The virtual camera sink, through a pyvirtualcam backend registered here: what a video call would receive.

A recording backend stands in for v4l2loopback / OBS (registered under its own name, so a machine
with a real device is not touched); where this machine has a v4l2loopback device, one test also
sends to it. Frames carry their result number as their pixel value.
"""

from __future__ import annotations

import glob
import threading
import time

import numpy as np
import pytest

from streamdream.errors import StreamdreamError
from streamdream.io.virtual_camera import VirtualCamera, setup_hint

from .conftest import until

pyvirtualcam = pytest.importorskip("pyvirtualcam")

SIZE = (48, 32)  # width, height


class Recorder:
    """A pyvirtualcam backend that keeps what it is sent (value of the first pixel, time) and can refuse."""

    sent: list[tuple[int, float]] = []
    opened: dict = {}
    refuse: str | None = None

    def __init__(self, *, width, height, fps, fourcc, device, **kw) -> None:
        if Recorder.refuse:
            raise RuntimeError(Recorder.refuse)
        Recorder.opened = {"width": width, "height": height, "fps": fps, "device": device}
        self._lock = threading.Lock()

    def send(self, frame: np.ndarray) -> None:
        assert frame.size == SIZE[0] * SIZE[1] * 3
        Recorder.sent.append((int(frame[0]), time.monotonic()))

    def close(self) -> None:
        Recorder.opened["closed"] = True

    def device(self) -> str:
        return Recorder.opened["device"] or "/dev/video-test"

    def native_fourcc(self):
        return None


@pytest.fixture
def recorder():
    pyvirtualcam.register_backend("streamdream-test", Recorder)
    Recorder.sent, Recorder.opened, Recorder.refuse = [], {}, None
    yield Recorder
    pyvirtualcam.camera.BACKENDS.pop("streamdream-test", None)


def result(number: int) -> np.ndarray:
    return np.full((SIZE[1], SIZE[0], 3), number, np.uint8)


def test_the_newest_result_is_repeated_at_the_camera_rate_and_never_an_older_one(recorder):
    with VirtualCamera(fps=100, backend="streamdream-test") as camera:
        camera.open(*SIZE)
        assert recorder.opened == {"width": 48, "height": 32, "fps": 100, "device": None}
        camera.write(result(1))
        until(lambda: len(recorder.sent) >= 3)  # dreaming is slower than the source: result 1 again and again
        for number in (2, 3, 4):
            camera.write(result(number))
            until(lambda: recorder.sent[-1][0] == number)
    values = [value for value, _ in recorder.sent]
    assert values[:3] == [1, 1, 1] and values == sorted(values)  # in order: nothing older once a newer one went out
    assert set(values) == {1, 2, 3, 4} and camera.frames == len(values) and camera.results == 4
    assert recorder.opened["closed"]


def test_the_camera_is_never_sent_frames_faster_than_its_rate(recorder):
    fps = 40
    with VirtualCamera(fps=fps, backend="streamdream-test") as camera:
        camera.open(*SIZE)
        started = time.monotonic()
        for number in range(60):  # results come much faster than the camera's rate
            camera.write(result(number))
            time.sleep(0.005)
        until(lambda: len(recorder.sent) >= 5)
        elapsed = time.monotonic() - started
    assert len(recorder.sent) <= elapsed * fps + 2  # the call sees the source's rate, never a burst
    assert recorder.sent[-1][0] <= 59


@pytest.mark.parametrize(
    ("refusal", "device", "message"),
    [
        ("No v4l2 loopback device found at /dev/video[0-99]. Did you run 'modprobe v4l2loopback'?", None, "no virtual camera found; load v4l2loopback first"),
        ("Device /dev/video9 does not exist.", "/dev/video9", "no virtual camera at /dev/video9"),
        ("Device /dev/video10 is busy", "/dev/video10", "is busy in another program"),
        ("virtual camera output could not be started: resolution not supported", None, "refused 48x32 RGB at 30 fps: virtual camera output could not be started"),
    ],
)
def test_a_camera_that_cannot_open_is_one_line(recorder, refusal, device, message):
    recorder.refuse = refusal
    camera = VirtualCamera(device, fps=30, backend="streamdream-test")
    with pytest.raises(StreamdreamError, match=message) as caught:
        camera.open(*SIZE)
    assert "\n" not in str(caught.value)
    camera.close()  # nothing was started: closing is harmless


def test_the_setup_hint_names_the_commands_for_each_system():
    assert "exclusive_caps=1" in setup_hint("Linux") and "modprobe v4l2loopback" in setup_hint("Linux")
    assert "OBS" in setup_hint("Windows") and "OBS" in setup_hint("Darwin")


def test_a_camera_that_goes_away_is_said_at_the_next_result(recorder, monkeypatch):
    def broken(self, frame):
        raise OSError("No such device")

    with VirtualCamera(fps=100, backend="streamdream-test") as camera:
        camera.open(*SIZE)
        monkeypatch.setattr(Recorder, "send", broken)
        camera.write(result(1))
        until(lambda: camera._error is not None)
        with pytest.raises(StreamdreamError, match="stopped: No such device") as caught:
            camera.write(result(2))
    assert caught.value.exit_code == 1  # lost mid-run, like a network output


@pytest.mark.skipif(not glob.glob("/dev/video*"), reason="no v4l2loopback device on this machine (sudo modprobe v4l2loopback exclusive_caps=1)")
def test_a_real_v4l2loopback_device_takes_frames():
    try:
        camera = VirtualCamera(fps=30, backend="v4l2loopback")
        camera.open(*SIZE)
    except StreamdreamError as e:
        pytest.skip(str(e))
    with camera:
        camera.write(result(7))
        until(lambda: camera.frames >= 3)


def test_streamdream_live_feeds_the_virtual_camera_and_the_file_beside_it(recorder, monkeypatch, tmp_path, capsys):
    """`--virtual-camera` with `-o`: the camera opens at the output's size and the source's frame rate
    (the only backend is the recorder, so a real device on this machine is left alone)."""
    from streamdream.apps.cli import main
    from streamdream.io.video import probe_video
    from streamdream.samples.make import make_clip

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"streamdream-test": Recorder})
    clip = make_clip("pan", tmp_path / "clip.mp4", size=SIZE, fps=12, seconds=1.0, audio=False)
    out = tmp_path / "call.mp4"
    assert main(["live", str(clip), "--realtime", "--virtual-camera", "-o", str(out), "-s", "builtin:19", "--device", "cpu"]) == 0
    assert {k: recorder.opened[k] for k in ("width", "height", "fps", "closed")} == {"width": 48, "height": 32, "fps": 12.0, "closed": True}
    info = probe_video(out)
    assert (info.width, info.height) == SIZE and info.frame_count >= 1 and len(recorder.sent) >= 1
    assert "virtual camera /dev/video-test" in capsys.readouterr().err


def test_no_virtual_camera_device_is_one_line_before_anything_is_written(monkeypatch, tmp_path, capsys):
    from streamdream.apps.cli import main
    from streamdream.samples.make import make_clip

    def missing(**kwargs):
        raise RuntimeError("No v4l2 loopback device found at /dev/video[0-99]. Did you run 'modprobe v4l2loopback'?")

    monkeypatch.setattr(pyvirtualcam.camera, "BACKENDS", {"v4l2loopback": missing})
    clip = make_clip("pan", tmp_path / "clip.mp4", size=SIZE, fps=12, seconds=0.5, audio=False)
    before = sorted(tmp_path.iterdir())
    assert main(["live", str(clip), "--virtual-camera", "-o", str(tmp_path / "call.mp4"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no virtual camera found; load v4l2loopback first" in err and "exclusive_caps=1" in err
    assert sorted(tmp_path.iterdir()) == before
