"""Live sources and sinks for the command line: cameras, network streams, files played at their own pace.

A `LiveSource` is opened, and its first frame decoded, at start-up, so a source that is missing,
refuses or sends nothing costs one line before any model loads. It then yields upright RGB frames
as they arrive, every one at the first frame's size: a source that changes resolution mid-stream is
scaled back to it, so the outputs keep one size. Nothing waits for the dreamer (the engine keeps
only the newest frame). What happens on the way (a stall, a new resolution) is told to `notify`; a
source that ends ends the frames, one that is lost (silent past the timeout, a read error) raises
a StreamdreamError with exit status 1.

Sinks share one small interface, so an output of another kind is one more class: `target` and
`frames` (written so far), `open(width, height)` at start-up, `write(image)` for each result as it
comes (never blocking for long), and a context manager that finishes the output. `FileSink` writes
a video file atomically, never clobbering; `StreamSink` sends MPEG-TS or FLV to a network address;
`streamdream.io.virtual_camera.VirtualCamera` is a camera that other programs pick.
Both stamp each frame with the wall time since their first, so the output plays back at the speed
it was made. A network sink connects at start-up, sends from its own thread (newest frame first)
so a slow or dropped network never costs the files beside it a frame, and reopens a dropped
connection with backoff. Everything is plain PyAV: one `av.open` for a V4L2 device, a URL or a
file, one per output.
"""

from __future__ import annotations

import contextlib
import errno
import fractions
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import av
import numpy as np
from PIL import Image

from ..errors import StreamdreamError
from ..settings import LIVE_RECONNECT_S, LIVE_SINK_CLOSE_S, LIVE_STALL_NOTICE_S, LIVE_TIMEOUT_S
from .images import resize_max_side
from .paths import check_distinct_outputs, check_input_file
from .video import VideoInfo, VideoWriter, check_video_output, upright

# Network outputs by URL scheme: MPEG-TS for datagram-style transports, FLV for RTMP servers.
_NETWORK_FORMATS = {"udp": "mpegts", "srt": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts", "rtmp": "flv", "rtmps": "flv"}
_DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443}  # the schemes whose URL may leave the port out
# A live stream starts at its first frame: no waiting for 20 frames to guess a rate (a live source
# has none to guess), each frame out of the decoder as soon as it is whole, and a UDP source that
# overflows while the model loads drops its oldest packets instead of failing.
_STREAM_OPTIONS = {"fpsprobesize": "0", "flags": "low_delay", "overrun_nonfatal": "1"}
_TIME_BASE = fractions.Fraction(1, 1000)  # live timestamps: milliseconds of wall time
_NOMINAL_FPS = 30.0  # what a live file's header announces; the pts carry the real timing
LIVE_CRF = 23  # x264's own default: a live stream trades the last bit of quality for bandwidth

Notify = Callable[[str], None]
T = TypeVar("T")


def is_url(spec: str) -> bool:
    return "://" in spec


def _scheme(spec: str) -> str:
    return spec.split("://", 1)[0].lower()


# --- sources ------------------------------------------------------------------------------------


class LiveSource:
    """A camera device (`/dev/video0`), a network stream (`udp://...`) or a file, opened with its first frame.

    Frames are shrunk so the longer side is at most `max_side`; that first size is the stream's for
    good. A read that waits `timeout` seconds for data gives up (PyAV's interrupt callback: FFmpeg's
    own message for it, "Immediate exit requested", says nothing). With `realtime` a file is played
    at its own frame rate (its pts against the wall clock), as a camera would deliver it; without,
    it is read as fast as it decodes. Use as a context manager; once `frames` runs, the thread
    reading it owns the container and closes it (a read may still be blocked when the run ends).
    """

    def __init__(self, spec: str, *, max_side: int, timeout: float = LIVE_TIMEOUT_S, realtime: bool = False) -> None:
        self.spec, self.timeout, self.realtime = spec, timeout, realtime
        self._reading = False
        first = _interruptibly(self._open)
        self._first_at = _seconds(first, self._stream)
        rgb = upright(first)
        self._input_size = _size_of(rgb)
        self._first = resize_max_side(rgb, max_side) if max(rgb.shape[:2]) > max_side else rgb
        self.size = _size_of(self._first)

    @property
    def fps(self) -> float:
        """The frame rate the source announces (what a camera fed from it offers); `_NOMINAL_FPS` when it says none."""
        rate = self._stream.average_rate or self._stream.guessed_rate
        return float(rate) if rate else _NOMINAL_FPS

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._reading:
            self._container.close()

    def _open(self) -> av.VideoFrame:
        """Open the source and decode its first frame; closed again when that fails."""
        self._container = _open_source(self.spec, self.timeout)
        try:
            self._stream = self._container.streams.video[0]
            self._decoded = self._container.decode(self._stream)
            if (first := self._read(started=False)) is None:
                raise StreamdreamError(f"{self.spec} ended before its first frame")
            return first
        except BaseException:
            self._container.close()
            raise

    def frames(self, stop: threading.Event, notify: Notify) -> Iterator[np.ndarray]:
        """Every frame from the first, at `size`, until the source ends or `stop` is set."""
        self._reading = True
        try:
            yield self._first
            started = time.perf_counter() - (self._first_at or 0.0)
            seen = self._input_size
            while not stop.is_set():
                asked = time.monotonic()
                frame = self._read(started=True)
                if frame is None:
                    return
                # A read cut off at the timeout still hands out what the demuxer held, then fails: a loss, told by `_read`.
                if LIVE_STALL_NOTICE_S <= (waited := time.monotonic() - asked) < self.timeout:
                    notify(f"{self.spec} sent nothing for {waited:.1f} s")
                at = _seconds(frame, self._stream)
                if self.realtime and at is not None and stop.wait(max(0.0, started + at - time.perf_counter())):
                    return
                rgb = upright(frame)
                if (size := _size_of(rgb)) != seen:
                    notify(f"{self.spec} changed resolution {_wxh(seen)} → {_wxh(size)}; scaled to {_wxh(self.size)}")
                    seen = size
                yield rgb if size == self.size else _scaled(rgb, self.size)
        finally:
            self._container.close()

    def _read(self, *, started: bool) -> av.VideoFrame | None:
        """The next frame, or None at the end; a source that fails at start-up is bad input (2), later it is lost (1)."""
        try:
            return next(self._decoded, None)
        except av.ExitError:  # PyAV's timeout interrupted the read
            if started:
                raise StreamdreamError(f"lost {self.spec}: no data for {self.timeout:g} s", exit_code=1) from None
            raise StreamdreamError(f"no data from {self.spec} in {self.timeout:g} s") from None
        except av.FFmpegError as e:
            if started:
                raise StreamdreamError(f"lost {self.spec}: {_why(e, self.spec)}", exit_code=1) from None
            raise StreamdreamError(f"cannot read {self.spec}: {_why(e, self.spec)}") from None


def _interruptibly(work: Callable[[], T]) -> T:
    """`work()` on a thread of its own, waited for here, so that Ctrl-C stops a run whose source is slow
    to answer: an FFmpeg call blocked on the main thread would hold the signal until its timeout. An
    interrupted `work` is left to finish (or time out) on its thread, and cleans up after itself."""
    outcome: list[tuple[bool, object]] = []

    def attempt() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as error:  # noqa: BLE001 - raised again on the waiting thread
            outcome.append((False, error))

    thread = threading.Thread(target=attempt, name="streamdream-live-open", daemon=True)
    thread.start()
    thread.join()
    done, value = outcome[0]
    if not done:
        raise value
    return value


def _open_source(spec: str, timeout: float) -> av.container.InputContainer:
    if spec.startswith("/dev/video"):
        source, fmt, options = spec, "v4l2", {}
    elif is_url(spec):
        source, fmt, options = spec, None, _STREAM_OPTIONS
    else:
        source, fmt, options = str(check_input_file(spec, "video")), None, {}
    try:
        container = av.open(source, format=fmt, options=options, timeout=timeout)
    except av.ExitError:
        raise StreamdreamError(f"no data from {spec} in {timeout:g} s") from None
    except av.FFmpegError as e:
        raise StreamdreamError(f"cannot open {spec}: {_why(e, spec)}") from None
    if not container.streams.video:
        container.close()
        raise StreamdreamError(f"{spec} has no video stream")
    return container


def _seconds(frame: av.VideoFrame, stream: av.VideoStream) -> float | None:
    return None if frame.pts is None else float(frame.pts * stream.time_base)


def _size_of(rgb: np.ndarray) -> tuple[int, int]:
    return rgb.shape[1], rgb.shape[0]


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _scaled(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`rgb` at exactly `size` (width, height): the stream's first size, whatever the source sends now."""
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


# --- sinks --------------------------------------------------------------------------------------


class Sink(Protocol):
    """What a live run asks of an output (see the module's docstring)."""

    target: str
    frames: int

    def open(self, width: int, height: int) -> None: ...

    def write(self, image: np.ndarray) -> None: ...

    def __enter__(self) -> Sink: ...

    def __exit__(self, exc_type, exc, tb) -> None: ...


def make_sinks(targets: Iterable[str], *, overwrite: bool = False, inputs: tuple[str, ...] = (), timeout: float = LIVE_TIMEOUT_S,
               reconnect: bool = True, notify: Notify, on_lost: Callable[[StreamdreamError], None]) -> list[Sink]:
    """One sink per `-o`: a file or a network stream, each checked now (before anything opens or loads)."""
    targets = list(targets)
    check_distinct_outputs(t for t in targets if not is_url(t))
    urls = [t for t in targets if is_url(t)]
    for i, url in enumerate(urls):
        if url in urls[:i]:
            raise StreamdreamError(f"two outputs name the same stream: {url}")
    return [
        StreamSink(t, timeout=timeout, reconnect=reconnect, notify=notify, on_lost=on_lost) if is_url(t) else FileSink(t, overwrite=overwrite, inputs=inputs)
        for t in targets
    ]


class FileSink:
    """A video file, written beside its name and published when the run ends (`VideoWriter`).

    Leaving the block normally, or by Ctrl-C (which is how a live run ends), finishes the file; an
    error keeps the frames done as a partial file and says where, as `VideoWriter` does.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False, inputs: tuple[str, ...] = (), crf: int = LIVE_CRF) -> None:
        self.target = str(path)
        self.frames = 0
        self._overwrite, self._inputs, self._crf = overwrite, inputs, crf
        self._writer: VideoWriter | None = None
        self._clock = _Clock()
        check_video_output(self.target, overwrite=overwrite, inputs=inputs)

    def __enter__(self) -> FileSink:
        return self

    def open(self, width: int, height: int) -> None:
        info = VideoInfo(width, height, None, _NOMINAL_FPS, None, _TIME_BASE, 0, False)
        writer = VideoWriter(self.target, info, crf=self._crf, preset="veryfast", overwrite=self._overwrite, inputs=self._inputs)
        self._writer = writer.__enter__()

    def write(self, image: np.ndarray) -> None:
        self._writer.write(image, self._clock.pts(time.perf_counter()))
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._writer is None:
            return
        if exc_type is KeyboardInterrupt and self.frames:  # the way a live run ends: the file is complete, not partial
            exc_type = exc = tb = None
        self._writer.__exit__(exc_type, exc, tb)


class StreamSink:
    """A network output (`udp://`, `tcp://`, `rtp://`, `srt://` as MPEG-TS, `rtmp://` as FLV), sent from its own thread.

    `open` connects (an output that refuses, or gives no answer in `timeout` seconds, is a one-line
    error before the model loads). `write` only hands the newest frame to the thread, so the results
    loop never waits on the network. When the connection drops, `reconnect` reopens it after a pause
    that doubles up to a cap, skipping the frames meanwhile, and `notify` hears of the loss and of the
    reconnection once each; without `reconnect`, `on_lost` gets the error that ends the run.
    """

    def __init__(self, url: str, *, timeout: float = LIVE_TIMEOUT_S, reconnect: bool = True, notify: Notify,
                 on_lost: Callable[[StreamdreamError], None], crf: int = LIVE_CRF) -> None:
        self.target = url
        self.frames = 0
        self._format = _check_stream_url(url)
        self._timeout, self._reconnect, self._notify, self._on_lost, self._crf = timeout, reconnect, notify, on_lost, crf
        self._cond = threading.Condition()
        self._pending: tuple[np.ndarray, float] | None = None  # the newest result, and when it came
        self._closing = False
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StreamSink:
        return self

    def open(self, width: int, height: int) -> None:
        self._size = (width - width % 2, height - height % 2)  # 4:2:0 chroma: network streams must play in every player
        try:
            connection = self._connect()
        except (av.FFmpegError, OSError) as e:
            raise StreamdreamError(f"cannot stream to {self.target}: {_why(e, self.target)}") from None
        self._thread = threading.Thread(target=self._send_all, args=(connection,), name=f"streamdream-live-{self.target}", daemon=True)
        self._thread.start()

    def write(self, image: np.ndarray) -> None:
        with self._cond:
            self._pending = (image, time.perf_counter())
            self._cond.notify_all()

    def __exit__(self, *exc_info: object) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(LIVE_SINK_CLOSE_S)  # a peer that stopped reading must not hold the files up

    def _connect(self) -> _Connection:
        return _Connection(self.target, self._format, self._size, self._crf, self._timeout)

    def _send_all(self, connection: _Connection) -> None:
        while (item := self._take()) is not None:
            try:
                connection.send(*item)
                self.frames += 1
            except (av.FFmpegError, OSError) as e:
                connection.abandon()
                if not self._reconnect:
                    self._on_lost(StreamdreamError(f"lost {self.target}: {_why(e, self.target)}", exit_code=1))
                    return
                self._notify(f"lost {self.target}: {_why(e, self.target)}; reconnecting")
                if (connection := self._reopen()) is None:
                    return
                self._notify(f"reconnected to {self.target}")
        connection.finish()

    def _take(self) -> tuple[np.ndarray, float] | None:
        """The newest frame (older ones were skipped), or None once closing with nothing left to send."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending is not None or self._closing)
            item, self._pending = self._pending, None
            return item

    def _reopen(self) -> _Connection | None:
        """A new connection, tried after a pause that doubles up to a cap; None when the run ends first."""
        pause, longest = LIVE_RECONNECT_S
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._closing, pause):
                    return None
            try:
                return self._connect()
            except (av.FFmpegError, OSError):
                pause = min(2 * pause, longest)


class _Connection:
    """One connection of a network output: an H.264 encoder whose clock starts at its first frame.

    PyAV connects its own outputs holding the GIL and without a timeout, so a server that does not
    answer would freeze every thread of the run, the files' included. A TCP stream therefore goes
    through a Python socket (`_TcpStream`), and an RTMP server is asked first, by a Python socket
    that gives up after `timeout`, whether it answers at all; UDP and RTP have nothing to wait for.
    """

    def __init__(self, url: str, fmt: str, size: tuple[int, int], crf: int, timeout: float) -> None:
        self._tcp = _TcpStream(url, timeout) if _scheme(url) == "tcp" else None
        if _scheme(url) in _DEFAULT_PORTS:
            _ask_rtmp_server(url, timeout)
        self._container = av.open(url if self._tcp is None else self._tcp, "w", format=fmt)
        try:
            # The encoder counts in milliseconds too: at its default 1/rate, two results close together would share a pts.
            stream = self._container.add_stream("libx264", rate=int(_NOMINAL_FPS), time_base=_TIME_BASE)
            stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
            # A viewer must decode each frame as it arrives: no B-frames or look-ahead, a key frame every second.
            stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": str(crf), "g": str(int(_NOMINAL_FPS))}
            self._stream = stream
            self._container.start_encoding()  # PyAV connects here (but to tcp://), and writes the header
        except BaseException:
            self.abandon()
            raise
        self._clock = _Clock()

    def send(self, image: np.ndarray, at: float) -> None:
        """Encode and send `image`, a result that came at `at` (`time.perf_counter()`)."""
        frame = av.VideoFrame.from_ndarray(image[: self._stream.height, : self._stream.width], format="rgb24")
        frame.pts, frame.time_base = self._clock.pts(at), _TIME_BASE
        self._container.mux(self._stream.encode(frame))

    def finish(self) -> None:
        """Send what the encoder holds and close; a peer gone by now changes nothing for the run."""
        with contextlib.suppress(av.FFmpegError, OSError):
            self._container.mux(self._stream.encode(None))
        self.abandon()

    def abandon(self) -> None:
        with contextlib.suppress(av.FFmpegError, OSError):
            self._container.close()
        if self._tcp is not None:  # PyAV leaves a file it was given open
            self._tcp.close()


class _TcpStream:
    """A TCP connection as the file PyAV muxes into; connecting and sending give up after `timeout`."""

    def __init__(self, url: str, timeout: float) -> None:
        self._timeout = timeout
        self._socket = _connect(url, None, timeout)

    def write(self, data: bytes) -> int:
        try:
            self._socket.sendall(data)
        except TimeoutError:
            raise TimeoutError(f"the other end took nothing for {self._timeout:g} s") from None
        return len(data)

    def close(self) -> None:
        self._socket.close()


def _ask_rtmp_server(url: str, timeout: float) -> None:
    """Raise unless the server of `url` answers: for rtmp://, the first byte of its handshake; for rtmps://, the connection."""
    with _connect(url, _DEFAULT_PORTS[_scheme(url)], timeout) as probe:
        if _scheme(url) == "rtmp":
            probe.sendall(b"\x03" + bytes(1536))  # C0 and C1: version 3, a zero time, zeros for the random part
            try:
                answer = probe.recv(1)
            except TimeoutError:
                raise TimeoutError(f"no answer in {timeout:g} s") from None
            if not answer:
                raise ConnectionResetError(errno.ECONNRESET, "the server closed the connection")


def _connect(url: str, default_port: int | None, timeout: float) -> socket.socket:
    parts = urlsplit(url)
    try:
        return socket.create_connection((parts.hostname, parts.port or default_port), timeout)
    except TimeoutError:
        raise TimeoutError(f"no answer in {timeout:g} s") from None


def _check_stream_url(url: str) -> str:
    """The muxer for network output `url`, after refusing what FFmpeg would take and then fail on (no port: port 0)."""
    scheme = _scheme(url)
    if scheme not in _NETWORK_FORMATS:
        raise StreamdreamError(f"cannot stream to {url}: use one of {', '.join(s + '://' for s in _NETWORK_FORMATS)}")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise StreamdreamError(f"cannot stream to {url}: the port must be a number from 0 to 65535") from None
    if not parts.hostname or (port is None and scheme not in _DEFAULT_PORTS):
        raise StreamdreamError(f"cannot stream to {url}: give a host and a port, e.g. {scheme}://127.0.0.1:5000")
    return _NETWORK_FORMATS[scheme]


def _why(error: av.FFmpegError | OSError, url: str) -> str:
    """The reason (FFmpeg's, or a socket's), worded to follow a colon: "connection refused", "unknown host 256.1.1.1"."""
    if isinstance(error, av.ProtocolNotFoundError):
        return f"this FFmpeg build has no {_scheme(url)}:// protocol"
    # A name that does not resolve is "Input/output error" to FFmpeg.
    if (isinstance(error, socket.gaierror) or error.errno == errno.EIO) and (host := _unknown_host(url)):
        return f"unknown host {host}"
    reason = error.strerror or str(error)
    return reason[:1].lower() + reason[1:]


def _unknown_host(url: str) -> str | None:
    """The host of `url` when it does not resolve (a name no DNS knows, or 256.1.1.1)."""
    host = urlsplit(url).hostname if is_url(url) else None
    if not host:
        return None
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror:
        return host
    return None


class _Clock:
    """Live timestamps: the milliseconds since the first frame, strictly increasing (two results may come within one)."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._last = -1

    def pts(self, now: float) -> int:
        self._start = now if self._start is None else self._start
        self._last = max(self._last + 1, round(1000 * (now - self._start)))
        return self._last


class Outputs:
    """The sinks of a run, fed the same results."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)
        self.results = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Outputs:
        for sink in self.sinks:
            self._stack.enter_context(sink)
        return self

    def __exit__(self, *exc_info) -> bool | None:
        return self._stack.__exit__(*exc_info)

    def open(self, width: int, height: int) -> None:
        """Files last: an output that refuses leaves no file behind to clean up."""
        for sink in sorted(self.sinks, key=lambda s: isinstance(s, FileSink)):
            sink.open(width, height)

    def write(self, image: np.ndarray) -> None:
        for sink in self.sinks:
            sink.write(image)
        self.results += 1

    def summary(self) -> str:
        """E.g. "live.mp4 57 frames, udp://127.0.0.1:5000 40 frames"."""
        return ", ".join(f"{sink.target} {sink.frames} frames" for sink in self.sinks)
