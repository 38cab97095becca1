"""A virtual camera as a live sink: the dreamed stream as a camera that OBS, Zoom, Meet or Discord can pick.

`pyvirtualcam` writes frames to a v4l2loopback device on Linux and to OBS's Virtual Camera on Windows
and macOS. A video call expects a camera at a steady rate, while results come when the dreamer has
them; so the camera is fed by a pacer of its own at the source's frame rate, and each tick sends
the newest result, repeating it while dreaming is slower than the source. A frame older than the
newest result is never sent.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable

import numpy as np

from ..errors import StreamdreamError

CAMERA_NAME = "streamdream"  # the label the README's v4l2loopback set-up gives the device


def setup_hint(system: str | None = None) -> str:
    """How to get a virtual camera device on this operating system, in one clause."""
    system = system or platform.system()
    if system == "Linux":
        return (
            "load v4l2loopback first: sudo apt install v4l2loopback-dkms && "
            f"sudo modprobe v4l2loopback devices=1 video_nr=10 card_label={CAMERA_NAME} exclusive_caps=1"
        )
    return "install OBS Studio (28 or newer) and start its Virtual Camera once, then stop it"


class VirtualCamera:
    """Frames to a virtual camera at `fps`, the newest one each tick (a `LiveSink`-like sink).

    Nothing is opened until `open` (the live command opens its sinks once it knows the output's size,
    before the model loads, so a missing or busy device costs nothing). `backend` picks one of
    pyvirtualcam's registered backends (None: the first that opens). `clock` and `wait` pace the
    ticks; tests pass their own.
    """

    def __init__(self, device: str | None = None, *, fps: float, backend: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = f"virtual camera {device}" if device else "virtual camera"
        self.device = device
        self.fps = fps
        self.backend = backend
        self.frames = 0  # ticks sent (results repeated while dreaming is slower count each time)
        self.results = 0  # results handed in
        self._clock = clock
        self._camera = None
        self._newest: np.ndarray | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def open(self, width: int, height: int) -> None:
        """Open the device for `width` x `height` RGB frames and start the pacer; one line if it cannot."""
        try:
            import pyvirtualcam
        except ImportError as e:
            raise StreamdreamError(f"--virtual-camera needs pyvirtualcam: pip install pyvirtualcam ({e})") from None
        try:
            self._camera = pyvirtualcam.Camera(width, height, self.fps, fmt=pyvirtualcam.PixelFormat.RGB,
                                               device=self.device, backend=self.backend)
        except Exception as e:  # noqa: BLE001 - pyvirtualcam reports every failure as one RuntimeError per backend
            raise StreamdreamError(self._why(str(e), width, height)) from None
        self.target = f"virtual camera {self._camera.device}"
        self._thread = threading.Thread(target=self._pace, name="streamdream-virtual-camera", daemon=True)
        self._thread.start()

    def _why(self, message: str, width: int, height: int) -> str:
        """pyvirtualcam's error (one line per backend tried) as one line a user can act on."""
        lines = [line.split(": ", 1)[-1] for line in message.splitlines() if line.strip()] or ["no backend"]
        text = " ".join(lines).lower()
        if "no v4l2 loopback device" in text or "not installed" in text or "not found" in text or "does not exist" in text:
            where = f"no virtual camera at {self.device}" if self.device else "no virtual camera found"
            return f"{where}; {setup_hint()}"
        if "busy" in text or "in use" in text:
            return f"the {self.target} is busy in another program; close it there or pick another device"
        return f"the {self.target} refused {width}x{height} RGB at {self.fps:g} fps: {lines[0]}"

    def write(self, image: np.ndarray) -> None:
        """Hand in the newest result (H x W x 3 uint8 at the opened size); the pacer sends it from the next tick."""
        with self._cond:
            if self._error is not None:
                raise StreamdreamError(f"the {self.target} stopped: {self._error}", exit_code=1)
            self._newest = image
            self.results += 1
            self._cond.notify_all()

    def _pace(self) -> None:
        """Send the newest result once per 1/fps; after a stall, go on from now instead of catching up in a burst."""
        period = 1.0 / self.fps
        with self._cond:
            self._cond.wait_for(lambda: self._newest is not None or self._stop)
        due = self._clock()
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._stop, timeout=max(0.0, due - self._clock()))
                    if self._stop:
                        return
                    frame = self._newest
                self._camera.send(frame)
                self.frames += 1
                due = max(due + period, self._clock())
        except Exception as error:  # noqa: BLE001 - the device went away: said by the next `write`
            with self._cond:
                self._error = error

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._camera is not None:
            self._camera.close()
            self._camera = None

    def __enter__(self) -> VirtualCamera:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
