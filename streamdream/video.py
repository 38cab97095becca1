"""Offline video: decode -> stream session (warm-started mode) -> encode, timing and audio kept.

The frames flow through `pipeline.run_file` (decode and flow, optimize, encode on three threads);
each frame keeps its own presentation timestamp, so the
output has the input's frame count and timing (variable frame rate included), and the audio
packets are copied across untouched by the writer. An interruption still leaves a playable file
of the frames done (see `VideoWriter`).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .carry import FrameMode
from .dream import Dreamer
from .io.video import Frame, VideoInfo, VideoWriter, probe_video, read_frames
from .pipeline import run_file
from .session import StreamSession
from .settings import OutputSettings, TemporalSettings

FrameCallback = Callable[[int, int | None], None]  # (frames done, frame count if known)


@dataclass(frozen=True)
class RenderOptions:
    """How `process_video` renders and encodes a clip, whatever the mode: one value that the command
    line, the web UI and every Ray worker hand along instead of each spelling out the keywords, and
    that a resumed Ray render compares with the run it continues."""

    settings: TemporalSettings = field(default_factory=TemporalSettings)
    seed: int | None = 0
    max_side: int | None = None
    crf: int = OutputSettings.default("crf")
    preset: str = OutputSettings.default("preset")
    allow_partial_input: bool = False
    audio: bool = True


@dataclass(frozen=True)
class Span:
    """A part of a clip rendered on its own: one segment of a distributed render (`streamdream.distributed`).

    Decoding starts at the frame with pts `start_pts`; the first `warmup` frames are rendered only
    to build the warm state (the carried dream, the flow) that a serial render would have there,
    and are not written; the next `frames` frames are written with their own timestamps, and those
    whose pts are in `keyframes` start a closed GOP, so the file can be cut there without re-encoding.
    """

    start_pts: int
    warmup: int
    frames: int
    keyframes: tuple[int, ...] = ()


class Throughput:
    """The frame rate of a report of `frames` written in `seconds`, one formula for every report of a
    render (here and in `streamdream.distributed`); each report declares the two as its own fields."""

    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class RenderReport(Throughput):
    path: Path
    frames: int
    seconds: float


def fit_max_side(info: VideoInfo, max_side: int | None) -> VideoInfo:
    """The output geometry when frames are shrunk so the longer side is at most `max_side` (even sizes)."""
    if not max_side or max(info.width, info.height) <= max_side:
        return info
    scale = max_side / max(info.width, info.height)
    even = lambda v: max(2, 2 * round(v * scale / 2))  # noqa: E731 - yuv420p wants even sizes
    return replace(info, width=even(info.width), height=even(info.height))


def _resized(image: np.ndarray, info: VideoInfo) -> np.ndarray:
    if image.shape[1] == info.width and image.shape[0] == info.height:
        return image
    return cv2.resize(image, (info.width, info.height), interpolation=cv2.INTER_AREA)


def process_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    mode: FrameMode | None = None,
    options: RenderOptions = RenderOptions(),
    *,
    overwrite: bool = False,
    on_frame: FrameCallback | None = None,
    span: Span | None = None,
) -> RenderReport:
    """Render every frame of `src` through `mode` (a `Dreamer`, a `Stylizer`; default: `Dreamer()`) into `dst`.

    Frames after the first are warm-started along the optical flow per `options.settings`; with
    `settings.independent` every frame is processed from scratch. Never drops a frame. An input
    that ends early fails after the frames that decode (kept in a playable partial output), unless
    `options.allow_partial_input`, which renders those frames as the whole result. With `span`, only
    that part is rendered (its warm-up frames processed, not written), through the same session and pipeline.
    """
    info = fit_max_side(probe_video(src), options.max_side)
    mode = mode or Dreamer()
    session = StreamSession(mode, options.settings, seed=options.seed)
    started = time.perf_counter()
    decoded = read_frames(src, allow_partial=options.allow_partial_input, start_pts=span.start_pts if span is not None else None)
    if span is not None:
        decoded = itertools.islice(decoded, span.warmup + span.frames)
    frames = (replace(frame, image=_resized(frame.image, info)) for frame in decoded)
    total = info.frame_count if span is None else span.warmup + span.frames
    warmup = span.warmup if span is not None else 0
    progress = (lambda done: on_frame(done, total)) if on_frame is not None else None
    keyframes = frozenset(span.keyframes) if span is not None else frozenset()
    with VideoWriter(dst, info, audio_source=src if options.audio and info.has_audio else None, crf=options.crf, preset=options.preset, overwrite=overwrite, inputs=(src,), keyframes=keyframes) as writer:

        def write(image: np.ndarray, frame: Frame) -> None:
            if frame.index >= warmup:
                writer.write(image, frame.pts)

        run_file(frames, session, write, on_frame=progress)
    return RenderReport(Path(dst), writer.frames_written, time.perf_counter() - started)
