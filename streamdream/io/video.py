"""Video files in and out: upright RGB frames with their original timestamps, audio carried along.

The frame pipeline only ever sees H x W x 3 uint8 RGB arrays plus the presentation timestamp
each came with. Keeping the input's time base and pts all the way to the encoder is what lets a
variable-frame-rate phone clip come out with the same timing (and in sync with its audio),
instead of being resampled to a nominal rate. Audio is remuxed packet for packet so it is
bit-identical to the source; it is re-encoded only when the output container cannot hold it.

Everything the user can get wrong (missing or broken input, unsupported output extension,
unwritable destination) surfaces as a one-line StreamdreamError, and a render that dies half way
still leaves a playable file of the frames that were finished.
"""

from __future__ import annotations

import contextlib
import fractions
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import av
import numpy as np
from PIL import Image

from ..errors import StreamdreamError
from ..settings import OutputSettings
from .paths import PendingOutput, atomic_output, check_input_file, check_output_path, disk_full_error, is_disk_full

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline and the writer need to know about an input clip."""

    width: int  # displayed size, i.e. after applying `rotation`
    height: int
    frame_count: int | None  # from the stream header; None when the container does not say
    fps: float  # average frame rate
    duration: float | None  # seconds
    time_base: fractions.Fraction  # video stream time base; Frame.pts is in these units
    rotation: int  # counter-clockwise degrees the stored picture is turned for display (0/90/180/270)
    has_audio: bool


@dataclass(frozen=True, eq=False)  # eq=False: comparing frames would compare arrays element-wise
class Frame:
    """One decoded picture, already turned upright, with the timestamp it must be written back at."""

    image: np.ndarray  # H x W x 3 uint8 RGB
    pts: int  # presentation timestamp in `time_base` units
    time_base: fractions.Fraction
    index: int  # 0-based position among the frames yielded


@dataclass(frozen=True)
class Encoding:
    """How one output extension is written: by `VideoWriter`, and by the stream-copy join of `streamdream.distributed`."""

    muxer: str
    video_codec: str
    audio_codec: str | None  # used only when the source audio cannot be copied; None drops audio
    container_options: tuple[tuple[str, str], ...] = ()

    def open(self, path: str | os.PathLike) -> av.container.OutputContainer:
        """An empty container at `path` in this muxer with its options; the caller adds the streams."""
        return av.open(str(path), "w", format=self.muxer, container_options=dict(self.container_options))


# faststart moves the index to the front so the file starts playing before it has fully loaded.
_MOV_OPTIONS = (("movflags", "+faststart"),)
# Matroska would otherwise shift the whole timeline so that AAC's priming packet (pts < 0) starts
# at zero, changing every video pts; its blocks can hold small negative times, so keep them as is.
_MATROSKA_OPTIONS = (("avoid_negative_ts", "disabled"),)
_ENCODINGS = {
    ".mp4": Encoding("mp4", "libx264", "aac", _MOV_OPTIONS),
    ".m4v": Encoding("mp4", "libx264", "aac", _MOV_OPTIONS),
    ".mov": Encoding("mov", "libx264", "aac", _MOV_OPTIONS),
    ".mkv": Encoding("matroska", "libx264", "aac", _MATROSKA_OPTIONS),
    ".webm": Encoding("webm", "libvpx-vp9", "libopus", _MATROSKA_OPTIONS),
    ".gif": Encoding("gif", "gif", None),
}


def encoding_of(path: str | os.PathLike) -> Encoding:
    """How a video named `path` is written, by its extension; for any other extension, one line listing those there are."""
    try:
        return _ENCODINGS[Path(path).suffix.lower()]
    except KeyError:
        raise StreamdreamError(f"cannot write {Path(path).name}: unsupported extension for a video; use one of {', '.join(_ENCODINGS)}") from None


@contextlib.contextmanager
def _open_video(path: str | os.PathLike) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open `path` for decoding its first video stream, turning FFmpeg failures into StreamdreamError."""
    p = check_input_file(path, "video")
    try:
        container = av.open(str(p))
    except av.FFmpegError as e:
        raise StreamdreamError(f"cannot read {p}: not a video file FFmpeg understands ({e.strerror})") from None
    with container:
        if not container.streams.video:
            raise StreamdreamError(f"{p} has no video stream")
        yield container, container.streams.video[0]


def upright(frame: av.VideoFrame) -> np.ndarray:
    """Return the frame as RGB, turned the way its display matrix says it should be shown."""
    image = frame.to_ndarray(format="rgb24")
    quarter_turns = _normal_rotation(frame.rotation) // 90
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image


def _normal_rotation(degrees: float) -> int:
    """Snap a display-matrix angle (which may come back as 89 or -90) to 0, 90, 180 or 270."""
    return round(degrees / 90) % 4 * 90


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read the stream header and decode the first frame.

    Decoding one frame is what proves the file is usable (a header can parse while the data is
    garbage, and a stream can hold zero frames) and is the only reliable place to read the
    rotation, which FFmpeg attaches to decoded frames from the container's display matrix.
    """
    with _open_video(path) as (container, stream):
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as e:
            raise StreamdreamError(f"cannot decode {path}: {e.strerror}") from None
        if first is None:
            raise StreamdreamError(f"{path} has a video stream but no frames")
        rotation = _normal_rotation(first.rotation)
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise StreamdreamError(f"cannot tell the frame rate of {path}")
        if stream.duration is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = None
        return VideoInfo(
            width=width,
            height=height,
            frame_count=stream.frames or None,
            fps=float(rate),
            duration=duration,
            time_base=stream.time_base,
            rotation=rotation,
            has_audio=bool(container.streams.audio),
        )


def read_frames(path: str | os.PathLike, *, allow_partial: bool = False, start_pts: int | None = None) -> Iterator[Frame]:
    """Yield every frame of the first video stream, upright, with its own pts.

    `start_pts` starts at the frame with that pts instead: the decoder seeks to the key frame at or
    before it and drops the frames in between, so one segment of a long video (a distributed
    render, `streamdream.distributed`) costs at most a GOP of extra decoding, not the whole start of
    the file. `index` then counts from that frame, and the file's frame count is not checked (the
    caller asked for a part and checks what it got).

    A file that ends early (truncated, or with packets FFmpeg cannot decode) is never passed off
    as complete: after the frames that could be decoded, this raises a StreamdreamError that says
    how many of how many came through, or, with `allow_partial`, logs that once and stops.

    Threading ("AUTO": frame and slice threads) decodes several frames in parallel, which keeps
    high-resolution decoding from becoming the bottleneck; the few frames of extra latency it
    adds do not matter when reading a file.
    """
    with _open_video(path) as (container, stream):
        stream.thread_type = "AUTO"
        expected = _expected_frames(container, stream) if start_pts is None else None
        if start_pts is not None:
            container.seek(start_pts, stream=stream, backward=True)
        index = 0
        problem = None
        try:
            for frame in container.decode(stream):
                if start_pts is not None and frame.pts is not None and frame.pts < start_pts:
                    continue
                if index == 0 and _is_transparent(frame):
                    log.warning("%s has transparency; the frames are rendered without it (video outputs hold none)", path)
                yield Frame(image=upright(frame), pts=frame.pts, time_base=stream.time_base, index=index)
                index += 1
        except av.FFmpegError as e:
            problem = f"decoding failed after {index} frames ({e.strerror})"
        if index == 0:
            raise StreamdreamError(f"{path} has a video stream but no frames{f': {problem}' if problem else ''}")
        if problem is None and expected is not None and index < expected:
            problem = f"decoded {index} of {expected} frames: the file ends early"
        if problem is not None:
            if not allow_partial:
                raise StreamdreamError(f"{path}: {problem} (pass --allow-partial-input to accept the frames that decode)")
            log.warning("%s: %s; going on with those", path, problem)


def _is_transparent(frame: av.VideoFrame) -> bool:
    """True when the frame has an alpha channel (GIF, PNG, WebM with alpha) that is not fully opaque."""
    if not any(component.is_alpha for component in frame.format.components):
        return False
    return bool((frame.to_ndarray(format="rgba")[..., 3] < 255).any())


def _expected_frames(container: av.container.InputContainer, stream: av.VideoStream) -> int | None:
    """The frame count the file claims: the stream header's, or else duration x rate, less a margin.

    Without a frame count in the header (Matroska, WebM), the duration x rate estimate is lowered
    by 10% and a frame, so variable-frame-rate files are not mistaken for truncated ones.
    """
    if stream.frames:
        return stream.frames
    rate = stream.average_rate or stream.guessed_rate
    if container.duration is None or not rate:
        return None
    return max(0, int(0.9 * container.duration / av.time_base * float(rate)) - 1) or None


class AudioTrack:
    """The first audio stream of an open source file, fed into an output container as video progresses
    (by `VideoWriter`, and by the join of `streamdream.distributed`, which muxes the audio in once).

    Packets are copied untouched when the output format accepts the codec; otherwise they are
    decoded and re-encoded with `fallback_codec`. They are pulled lazily, up to the time of the
    video frame being written, so the muxer's interleaving queue stays short and an interrupted
    render can stop the audio where the video stops.
    """

    def __init__(
        self,
        source: av.container.InputContainer,
        output: av.container.OutputContainer,
        fallback_codec: str,
    ) -> None:
        self._in = source.streams.audio[0]
        self._output = output
        try:
            self._out = output.add_stream_from_template(self._in)
            self._copy = True
        except ValueError:  # PyAV's way of saying "this format does not support that codec"
            # libopus takes only 8-48 kHz in fixed steps, so use 48 kHz; AAC keeps the source rate.
            rate = 48000 if fallback_codec == "libopus" else self._in.rate
            self._out = output.add_stream(fallback_codec, rate=rate)
            self._out.layout = "stereo" if self._in.channels >= 2 else "mono"
            self._copy = False
            log.info(
                "re-encoding %s audio as %s: %s cannot hold it",
                self._in.codec_context.name,
                fallback_codec,
                output.format.name,
            )
        self._packets = source.demux(self._in)
        self._pending: av.Packet | None = None

    def mux_until(self, until: fractions.Fraction | None) -> None:
        """Mux every packet that starts before `until` seconds (all remaining ones for None)."""
        while True:
            packet = next(self._packets, None) if self._pending is None else self._pending
            self._pending = None
            if packet is None:
                return
            if packet.size == 0:  # demux ends each stream with an empty packet that only flushes a decoder
                continue
            # A real packet may come without a dts (PTS-only containers); its pts orders it as well,
            # and one with neither belongs right after the packet before it.
            stamp = packet.dts if packet.dts is not None else packet.pts
            if until is not None and stamp is not None and stamp * packet.time_base >= until:
                self._pending = packet
                return
            if self._copy:
                packet.stream = self._out
                self._output.mux(packet)
            else:
                for frame in self._in.decode(packet):
                    self._output.mux(self._out.encode(frame))

    def finish(self, until: fractions.Fraction | None) -> None:
        """Write the audio up to `until` (or all of it) and drain the re-encoder."""
        self.mux_until(until)
        if not self._copy:
            for frame in self._in.decode(None):
                self._output.mux(self._out.encode(frame))
            self._output.mux(self._out.encode(None))


def check_video_output(path: str | os.PathLike, *, overwrite: bool = False, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Fail before any work if `path` cannot take a video: unsupported extension, or refused by `check_output_path`."""
    encoding_of(path)
    return check_output_path(Path(path), overwrite=overwrite, inputs=inputs)


class VideoWriter:
    """Encode RGB frames at given timestamps into a video file, optionally with the source's audio.

    Use as a context manager. The file is written beside `path` and moved onto it when the block
    ends. If the block raises after some frames were written (Ctrl-C during a long render, a
    truncated input, any crash), the encoder is still drained and the file finalized, so the user
    keeps a playable clip of the finished part: under `path` when that name was free, else under a
    fresh `.partial` name, never over an existing file. The exception then propagates with a note
    naming that file. With zero frames written, or when the disk filled up, nothing is left behind.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        info: VideoInfo,
        *,
        audio_source: str | os.PathLike | None = None,
        crf: int = OutputSettings.default("crf"),
        preset: str = OutputSettings.default("preset"),
        overwrite: bool = False,
        inputs: tuple[str | os.PathLike, ...] = (),
        keyframes: frozenset[int] = frozenset(),
    ) -> None:
        """`keyframes`: pts of frames that must start a closed GOP (an IDR frame), so the file can be
        cut there by stream copy (`streamdream.distributed` joins pieces of segments)."""
        # Checked here, before the caller starts a render that might take minutes.
        self._inputs = (*inputs, *([audio_source] if audio_source is not None else []))
        self.path = check_video_output(path, overwrite=overwrite, inputs=self._inputs)
        self.info = info
        self.frames_written = 0
        self._encoding = encoding_of(self.path)
        self._audio_source = audio_source
        self._crf = crf
        self._preset = preset
        self._keyframes = keyframes
        self._overwrite = overwrite
        self._files = contextlib.ExitStack()
        self._pending: PendingOutput | None = None
        self._output: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio: AudioTrack | None = None
        self._end: fractions.Fraction = fractions.Fraction(0)  # end time of the last frame written, seconds

    def __enter__(self) -> VideoWriter:
        self._pending = self._files.enter_context(atomic_output(self.path, overwrite=self._overwrite, inputs=self._inputs))
        try:
            self._output = self._encoding.open(self._pending.tmp)
            self._video = self._add_video_stream()
            source = self._open_audio_source()
            if source is not None:
                self._audio = AudioTrack(source, self._output, self._encoding.audio_codec)
            # Open the encoders and write the header now, so bad settings fail before any rendering.
            self._output.start_encoding()
        except BaseException as e:
            self._abandon(e)
            if isinstance(e, av.FFmpegError) and not is_disk_full(e):
                raise StreamdreamError(f"cannot write {self.path}: {e.strerror}") from None
            raise
        return self

    def _add_video_stream(self) -> av.VideoStream:
        """Add the video stream in the input's time base, so every pts is written as given."""
        info = self.info
        rate = fractions.Fraction(info.fps).limit_denominator(1001)
        stream = self._output.add_stream(self._encoding.video_codec, rate=rate, time_base=info.time_base)
        stream.width, stream.height = info.width, info.height
        if self._encoding.video_codec == "libx264":
            stream.options = {"crf": str(self._crf), "preset": self._preset, **({"forced-idr": "1"} if self._keyframes else {})}
            if info.width % 2 or info.height % 2:
                # 4:2:0 needs even sizes, and H.264 can only crop in 2-pixel steps in 4:2:0, so
                # padding + crop cannot restore an odd size. 4:4:4 keeps every pixel exactly.
                stream.pix_fmt = "yuv444p"
                log.info(
                    "odd frame size %dx%d: encoding H.264 4:4:4, which some players (browsers, QuickTime) "
                    "cannot show; use an even size for the widest compatibility",
                    info.width,
                    info.height,
                )
        elif self._encoding.video_codec == "libvpx-vp9":
            # VP9 handles odd sizes in 4:2:0 natively. b=0 makes crf a constant-quality target.
            stream.options = {"crf": str(self._crf), "b": "0", "row-mt": "1"}
        else:
            stream.pix_fmt = "pal8"
        return stream

    def _open_audio_source(self) -> av.container.InputContainer | None:
        """Open `audio_source` when the output keeps audio and the source has some; else None."""
        if self._audio_source is None or self._encoding.audio_codec is None:
            return None
        p = Path(self._audio_source)
        if not p.is_file():
            raise StreamdreamError(f"audio source {p} does not exist")
        try:
            source = av.open(str(p))
        except av.FFmpegError as e:
            raise StreamdreamError(f"cannot read audio from {p}: {e.strerror}") from None
        self._files.callback(source.close)
        return source if source.streams.audio else None

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one H x W x 3 uint8 RGB frame at `pts` (in `info.time_base` units)."""
        if self._output is None:
            raise RuntimeError("VideoWriter.write() called outside its `with` block")
        expected = (self.info.height, self.info.width, 3)
        if image.shape != expected or image.dtype != np.uint8:
            raise ValueError(f"expected a {expected} uint8 image, got {image.shape} {image.dtype}")
        frame = self._to_frame(image)
        frame.pts = pts
        frame.time_base = self.info.time_base
        if pts in self._keyframes:
            frame.pict_type = av.video.frame.PictureType.I
        start = pts * self.info.time_base
        if self._audio is not None:
            self._audio.mux_until(start)
        self._output.mux(self._video.encode(frame))
        self.frames_written += 1
        self._end = start + 1 / fractions.Fraction(self.info.fps)

    def _to_frame(self, image: np.ndarray) -> av.VideoFrame:
        """Wrap an RGB array for the encoder; GIF frames get their own 256-colour palette.

        The encoder would otherwise convert to FFmpeg's fixed 3-3-2 palette, which bands badly.
        """
        if self._encoding.video_codec != "gif":
            return av.VideoFrame.from_ndarray(image, format="rgb24")
        indexed = Image.fromarray(image).quantize(256)
        palette = np.zeros((256, 4), np.uint8)
        rgb = np.asarray(indexed.getpalette(), np.uint8).reshape(-1, 3)[:256]
        palette[: len(rgb), 1:] = rgb
        palette[:, 0] = 255  # rows are big-endian ARGB
        return av.VideoFrame.from_ndarray((np.asarray(indexed), palette), format="pal8")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None and self.frames_written == 0:
            exc = StreamdreamError(f"no frames were written, so {self.path} was not created")
            self._abandon(exc)
            raise exc
        if exc is not None and (self.frames_written == 0 or is_disk_full(exc)):
            self._abandon(exc)
            return
        try:
            self._output.mux(self._video.encode(None))
            if self._audio is not None:
                # A finished render takes all the audio; a broken one stops where its video stops.
                self._audio.finish(None if exc is None else self._end)
            self._output.close()
        except BaseException as error:
            self._abandon(error)
            raise
        if exc is None:
            self._files.__exit__(None, None, None)  # moves the finished file onto `path`
            return
        kept = self._pending.keep_partial()
        exc.add_note(f"kept the {self.frames_written} frames done in {kept}")
        self._files.__exit__(exc_type, exc, tb)

    def _abandon(self, error: BaseException) -> None:
        """Close without finishing and remove the temporary file; a full disk becomes a one-line error."""
        if self._output is not None:
            with contextlib.suppress(Exception):  # the container may be half-written; it is deleted anyway
                self._output.close()
        self._files.__exit__(type(error), error, error.__traceback__)
        if is_disk_full(error):
            raise disk_full_error(self.path) from None
