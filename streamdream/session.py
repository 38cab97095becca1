"""One stream's warm state: the previous frame in and out, the motion between frames, the carry rule.

A video or webcam stream is processed frame by frame. The first frame (and every scene cut, and
every frame with `independent=True`) starts fresh: the mode's full still treatment, or for live
presets the cheap per-frame settings with nothing carried. Every later frame is warm-started: the
previous result is carried along the backward optical flow, kept only where the forward-backward
check trusts the flow, and the mode then spends a few cheap iterations on it. Which tensor is
carried (a dream residual, a stylized frame) is the mode's business; this module owns the state
and is the one place that decides warm start against fresh start, with the stream's one flow
estimator. Pipelines and engines only move frames between `prepare` and `process` (or its halves,
`begin` and `finish`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from .convert import to_rgb, to_tensor
from .optimize import Deferred, Work, make_generator
from .settings import PRESETS, TemporalSettings, preset  # defined once there; importable from here too
from .temporal import FlowEstimator, FramePairFlows, Motion, frame_flows, motion_from_flows, no_motion

__all__ = ["PRESETS", "FrameMode", "FrameTimings", "PreparedFrame", "StartedFrame", "StreamSession", "TemporalSettings", "preset"]


class FrameMode(Protocol):
    """What a mode (dream, style) provides to run on a stream."""

    device: torch.device

    def first_frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...

    def next_frame(
        self,
        image: torch.Tensor,
        previous_input: torch.Tensor,
        previous_output: torch.Tensor,
        motion: Motion,
        settings: TemporalSettings,
        generator: torch.Generator,
    ) -> torch.Tensor: ...


@dataclass
class FrameTimings:
    """Where the last frame's time went, in milliseconds (CUDA work is waited for before timing)."""

    flow_ms: float = 0.0
    optimize_ms: float = 0.0
    io_ms: float = 0.0


@dataclass(frozen=True)
class PreparedFrame:
    """A frame with its start decided: `StreamSession.prepare`'s answer, for `StreamSession.process`.

    `after` is the serial of the frame it is carried from (None: it starts afresh); `flows` are the
    CPU optical flows from that frame (None with `flow="none"`: carry in place).
    """

    rgb: np.ndarray
    serial: int
    settings: TemporalSettings
    after: int | None = None
    flows: FramePairFlows | None = None
    flow_ms: float = 0.0


@dataclass(frozen=True)
class StartedFrame:
    """A frame whose model work is planned (`StreamSession.begin`): run `work`, then `StreamSession.finish`."""

    prepared: PreparedFrame
    image: torch.Tensor  # the frame on the working device
    work: Work
    stamps: tuple[float, float, float]  # began, converted to a tensor, planned (perf_counter)


def plan(mode: FrameMode, name: str, *args) -> Work:
    """`mode.plan_<name>(*args)` when the mode plans its work (`streamdream.modes`), else `mode.<name>` deferred."""
    planner = getattr(mode, f"plan_{name}", None)
    if planner is not None:
        return planner(*args)
    return Deferred(functools.partial(getattr(mode, name), *args))


class StreamSession:
    """One stream's warm state and its one flow estimator. Feed frames in order; `reset` forgets the past.

    Each frame goes through two steps, which may run on two threads (one thread each at a time):

    * `prepare(rgb)` decides how the frame starts, warm or fresh, and computes the optical flow
      from the frame prepared before it, on the CPU. It needs only the input frames, so a file
      reader can run it ahead of the optimizer (`streamdream.pipeline.run_file`).
    * `process(prepared)` makes the flow's certainty mask on the working device (where the carry
      uses it), drops the carry if the mask says the frame is a cut, runs the mode and keeps the
      result to carry into the next frame. It is `begin` (plan the mode's work), running the work,
      and `finish` (keep the result): the live engine runs the planned work of many streams as
      batches between the two (`streamdream.scheduler`).

    `process(rgb)` does both. `settings` may be replaced between frames (a UI slider, a preset
    switch) without losing the warm state. A frame whose flow is trusted on less than
    `settings.scene_cut` of its pixels is a cut (or a flash, or a jump): it is processed afresh,
    like a first frame, and counted in `cuts`.
    """

    def __init__(self, mode: FrameMode, settings: TemporalSettings | None = None, *, seed: int | None = 0) -> None:
        self.mode = mode
        self.generator = make_generator(seed)
        self.frames = 0
        self.cuts = 0
        self.timings = FrameTimings()
        self.flow: FlowEstimator | None = None
        self._serial = 0  # frames prepared so far
        self._last_input: tuple[int, np.ndarray] | None = None  # the last prepared frame (prepare's side)
        self._previous: tuple[int, torch.Tensor, torch.Tensor] | None = None  # serial, input, output (process's side)
        self._hold = StrengthHold()  # process's side (`begin` and `_motion`)
        self.settings = settings or TemporalSettings()

    @property
    def settings(self) -> TemporalSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: TemporalSettings) -> None:
        self._settings = settings
        if self.flow is None or (self.flow.preset, self.flow.scale) != (settings.flow_preset, settings.flow_scale):
            self.flow = FlowEstimator(settings.flow_preset, settings.flow_scale)

    def reset(self) -> None:
        """The next frame starts afresh, like a first frame."""
        self._last_input = None
        self._previous = None

    def prepare(self, rgb: np.ndarray) -> PreparedFrame:
        """Decide how `rgb` (the frame after the last one prepared) starts; compute its flow if it is carried."""
        settings, flow = self.settings, self.flow
        serial, last = self._serial, self._last_input
        self._serial += 1
        self._last_input = (serial, rgb)
        if last is None or last[1].shape != rgb.shape or settings.independent:
            return PreparedFrame(rgb, serial, settings)
        if settings.flow == "none":
            return PreparedFrame(rgb, serial, settings, after=last[0])
        started = time.perf_counter()
        flows = frame_flows(flow, last[1], rgb, check=settings.check)
        return PreparedFrame(rgb, serial, settings, after=last[0], flows=flows, flow_ms=1000 * (time.perf_counter() - started))

    def process(self, frame: np.ndarray | PreparedFrame) -> np.ndarray:
        """The frame's result, H x W x 3 uint8 in and out; `frame` prepared with `prepare`, or raw."""
        started = self.begin(frame if isinstance(frame, PreparedFrame) else self.prepare(frame))
        return self.finish(started, started.work.run())

    def begin(self, prepared: PreparedFrame) -> StartedFrame:
        """Plan the frame's model work: on the working device, its tensor, the flow's certainty mask
        (a cut drops the carry) and the carried result; the mode's call is made but not run.

        Run `work` (alone, or batched with other streams' by `streamdream.scheduler`), then `finish`.
        """
        started = time.perf_counter()
        rgb, settings, device = prepared.rgb, prepared.settings, self.mode.device
        image = to_tensor(rgb, device)
        converted = time.perf_counter()
        previous = self._previous
        motion = self._motion(prepared) if previous is not None and previous[0] == prepared.after else None
        if motion is not None:
            work = plan(self.mode, "next_frame", image, previous[1], previous[2], motion, settings, self.generator)
        elif settings.fresh_start == "frame" and not settings.independent:  # per-frame settings, nothing carried
            self._hold.grown()
            nothing = no_motion(*rgb.shape[:2], device, trusted=False)
            work = plan(self.mode, "next_frame", image, image, image, nothing, settings, self.generator)
        else:
            self._hold.still(self.mode, prepared.serial)
            work = plan(self.mode, "first_frame", image, self.generator)
        return StartedFrame(prepared, image, work, (started, converted, time.perf_counter()))

    def finish(self, frame: StartedFrame, out: torch.Tensor) -> np.ndarray:
        """Keep the result of `frame`'s work to carry into the next frame; return it as uint8."""
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        started, converted, planned = frame.stamps
        optimized = time.perf_counter()
        result = to_rgb(out)
        self._previous = (frame.prepared.serial, frame.image, out)
        self.frames += 1
        finished = time.perf_counter()
        self.timings = FrameTimings(
            flow_ms=frame.prepared.flow_ms + 1000 * (planned - converted),
            optimize_ms=1000 * (optimized - planned),
            io_ms=1000 * (converted - started + finished - optimized),
        )
        return result

    def _motion(self, prepared: PreparedFrame) -> Motion | None:
        """The motion to carry the previous result along, or None when the frame is a cut (counted).

        The cut is judged on the flow's own certainty; the pixels it rejects are then filled from
        their trusted neighbours in the share `settings.fill` (`Motion.filled`), and the whole carry
        is held to the strength of the last fresh start (`StrengthHold`).
        """
        height, width = prepared.rgb.shape[:2]
        if prepared.flows is None:
            motion = no_motion(height, width, self.mode.device)
        else:
            motion = motion_from_flows(prepared.flows, self.mode.device)
            if float(motion.mask.mean()) < prepared.settings.scene_cut:
                self.cuts += 1
                return None
            if prepared.settings.fill > 0:
                motion = motion.filled(prepared.settings.fill)
        serial, previous_input, previous_output = self._previous
        return self._hold(motion, self.mode, serial, previous_input, previous_output, prepared)


class StrengthHold:
    """Keeps a carried stream from burning in: its strength (mean |output - input|) is held at
    `settings.hold` times a mark, the strength of a still dream.

    Each warm frame adds a few dream steps to what it carries; with the whole result carried those
    steps would pile up and a long clip would drift into saturated noise. Above the mark the carried
    share is scaled down just enough to bring it back, so the strength settles at the still's instead
    of wherever the balance of steps and leak happens to fall. Below it (new content entering a shot
    carries no dream yet, and real footage faded to 0.7x of a still dream's strength) the carry grows
    back by at most `settings.lift` per frame; that is also how a dream grown from nothing reaches it.

    The mark is the strength of a still of the mode in use. A stream that starts with a still
    (`fresh_start="still"`) is held at that still's own strength, measured on the next frame. One
    that grows its dream from nothing (`fresh_start="frame"`), or whose mode changes mid-stream (a
    live strength slider makes a new `Dreamer`), is held at the strength the mode says its still
    has (`still_strength`, optional: `Dreamer.still_strength` dreams a thumbnail once). A mode that
    cannot say leaves the stream unheld, to the carry's leak alone.
    """

    def __init__(self) -> None:
        self.mark: float | None = None
        self._mode: object = None  # the mode whose still the mark is the strength of
        self._still: int | None = None  # the serial of a still start whose strength becomes the mark

    def still(self, mode: FrameMode, serial: int) -> None:
        """Frame `serial` starts with a still of `mode`: hold the stream at the strength of its result."""
        self.mark, self._mode, self._still = None, mode, serial

    def grown(self) -> None:
        """The stream grows a dream from nothing: hold it at its mode's still strength."""
        self.mark, self._mode, self._still = None, None, None

    def __call__(self, motion: Motion, mode: FrameMode, serial: int, previous_input: torch.Tensor, previous_output: torch.Tensor,
                 prepared: PreparedFrame) -> Motion:
        """`motion` (carrying from frame `serial`, made by `mode`) with its trust scaled toward the mark."""
        settings = prepared.settings
        if not settings.hold:
            return motion
        strength = float((previous_output - previous_input).abs().mean())
        if serial == self._still:
            self.mark, self._still = strength, None
        elif mode is not self._mode:
            measure = getattr(mode, "still_strength", None)
            self.mark, self._mode = (None if measure is None else measure(previous_input)), mode
        if self.mark is None or strength == 0.0:
            return motion
        scale = min(settings.hold * self.mark / strength, settings.lift)
        return motion if scale == 1.0 else replace(motion, mask=motion.mask * scale)
