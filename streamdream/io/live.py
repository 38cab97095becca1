"""Live sources and sinks for the command line: cameras, network streams, files played at their own pace.

A live source yields upright RGB frames as they arrive; nothing waits for the dreamer (the engine
keeps only the newest frame). A live sink encodes results as they come, each stamped with the wall
time since the first one, so a file output plays back at the speed it was made and a network
output is watchable in VLC or OBS while it runs. Everything is plain PyAV: one `av.open` for a
V4L2 device, a URL or a file, one for a file or an MPEG-TS/FLV network stream.
"""

from __future__ import annotations

import fractions
import os
import threading
import time
from collections.abc import Iterator

import av
import numpy as np

from ..errors import StreamdreamError
from .paths import check_input_file
from .video import VideoInfo, VideoWriter, check_video_output, upright

# Network outputs by URL scheme: MPEG-TS for datagram-style transports, FLV for RTMP servers.
_NETWORK_FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts", "rtmp": "flv", "rtmps": "flv"}
_TIME_BASE = fractions.Fraction(1, 1000)  # live timestamps: milliseconds of wall time
_NOMINAL_FPS = 30.0  # what a live file's header announces; the pts carry the real timing
LIVE_CRF = 23  # x264's own default: a live stream trades the last bit of quality for bandwidth


def is_url(spec: str) -> bool:
    return "://" in spec


def _scheme(spec: str) -> str:
    return spec.split("://", 1)[0].lower()


def live_frames(spec: str, *, realtime: bool = False, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
    """Frames of a camera device (`/dev/video0`), a network stream (`udp://...`) or a file, as they come.

    With `realtime` a file is played at its own frame rate (its pts against the wall clock), as a
    camera would deliver it; without, it is read as fast as it decodes. Ends when the source ends
    or `stop` is set.
    """
    if spec.startswith("/dev/video"):
        source, fmt, options = spec, "v4l2", {}
    elif is_url(spec):
        source, fmt, options = spec, None, {"fflags": "nobuffer", "flags": "low_delay"}
    else:
        source, fmt, options = str(check_input_file(spec, "video")), None, {}
    try:
        container = av.open(source, format=fmt, options=options, timeout=10.0)
    except av.FFmpegError as e:
        raise StreamdreamError(f"cannot open {spec}: {e.strerror}") from None
    with container:
        if not container.streams.video:
            raise StreamdreamError(f"{spec} has no video stream")
        stream = container.streams.video[0]
        started: float | None = None
        try:
            for frame in container.decode(stream):
                if stop is not None and stop.is_set():
                    return
                if realtime and frame.pts is not None:
                    at = float(frame.pts * stream.time_base)
                    started = time.perf_counter() - at if started is None else started
                    time.sleep(max(0.0, started + at - time.perf_counter()))
                yield upright(frame)
        except av.FFmpegError as e:
            raise StreamdreamError(f"reading {spec} failed: {e.strerror}") from None


class LiveSink:
    """Encode live results into a file (atomically, never clobbering) or a network stream.

    The encoder opens on the first frame, whose size it takes; every frame is stamped with the
    milliseconds since that first one. Use as a context manager: leaving the block normally (also
    after Ctrl-C, which is how a live run ends) finishes the file; an error keeps the frames done
    as a partial file, as `VideoWriter` does.
    """

    def __init__(self, target: str | os.PathLike, *, overwrite: bool = False, inputs: tuple[str, ...] = (), crf: int = LIVE_CRF) -> None:
        self.target = str(target)
        self.frames = 0
        self._overwrite = overwrite
        self._crf = crf
        self._start: float | None = None
        self._last_pts = -1
        self._file: VideoWriter | None = None
        self._net: av.container.OutputContainer | None = None
        self._net_stream: av.VideoStream | None = None
        if is_url(self.target):
            if _scheme(self.target) not in _NETWORK_FORMATS:
                raise StreamdreamError(f"cannot stream to {self.target}: use one of {', '.join(s + '://' for s in _NETWORK_FORMATS)}")
        else:
            check_video_output(self.target, overwrite=overwrite, inputs=inputs)

    def __enter__(self) -> LiveSink:
        return self

    def write(self, image: np.ndarray) -> None:
        """Encode one H x W x 3 uint8 RGB result at the current wall time."""
        now = time.perf_counter()
        if self._start is None:
            self._start = now
            self._open(image.shape[1], image.shape[0])
        pts = max(self._last_pts + 1, round(1000 * (now - self._start)))  # strictly increasing
        self._last_pts = pts
        if self._file is not None:
            self._file.write(image, pts)
        else:
            frame = av.VideoFrame.from_ndarray(_even(image), format="rgb24")
            frame.pts, frame.time_base = pts, _TIME_BASE
            self._net.mux(self._net_stream.encode(frame))
        self.frames += 1

    def _open(self, width: int, height: int) -> None:
        if not is_url(self.target):
            info = VideoInfo(width, height, None, _NOMINAL_FPS, None, _TIME_BASE, 0, False)
            self._file = VideoWriter(self.target, info, crf=self._crf, preset="veryfast", overwrite=self._overwrite).__enter__()
            return
        try:
            self._net = av.open(self.target, "w", format=_NETWORK_FORMATS[_scheme(self.target)])
        except av.FFmpegError as e:
            raise StreamdreamError(f"cannot stream to {self.target}: {e.strerror}") from None
        # The encoder counts in milliseconds too: at its default 1/rate, two results close together would share a pts.
        stream = self._net.add_stream("libx264", rate=int(_NOMINAL_FPS), time_base=_TIME_BASE)
        stream.width, stream.height, stream.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        # A viewer must decode each frame as it arrives: no B-frames or look-ahead, a key frame every second.
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": str(self._crf), "g": str(int(_NOMINAL_FPS))}
        self._net_stream = stream

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._file is not None:
            if exc_type is KeyboardInterrupt:  # the way a live run ends: the file is complete, not partial
                exc_type = exc = tb = None
            self._file.__exit__(exc_type, exc, tb)
        elif self._net is not None:
            try:
                self._net.mux(self._net_stream.encode(None))
            finally:
                self._net.close()


def _even(image: np.ndarray) -> np.ndarray:
    """Crop a row or column so 4:2:0 chroma fits (network streams must play in every player)."""
    height, width = image.shape[:2]
    return image[: height - height % 2, : width - width % 2]
