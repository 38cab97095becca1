"""One stream's state: the previous frame in and out, its optical flow estimator, where the time went.

A video or webcam stream is processed frame by frame; this module keeps what one stream carries
from frame to frame and computes the optical flow between its frames. How a frame starts (fresh or
warm, a cut, the hold) is the carry rule's (`streamdream.carry.Carry`); what a frame's work is, the
mode's (`streamdream.carry.FrameMode`). Pipelines and engines only move frames between `prepare` and
`process` (or its halves, `begin` and `finish`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .carry import Carry, FrameMode, Previous
from .convert import to_rgb, to_tensor
from .optimize import make_generator
from .scheduler import Work
from .settings import TemporalSettings
from .temporal import FlowEstimator, FramePairFlows, frame_flows

__all__ = ["FrameTimings", "PreparedFrame", "StartedFrame", "StreamSession"]


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


class StreamSession:
    """One stream's warm state and its one flow estimator. Feed frames in order; `reset` forgets the past.

    Each frame goes through two steps, which may run on two threads (one thread each at a time):

    * `prepare(rgb)` notes which frame it may be carried from and computes the optical flow from
      that frame, on the CPU. It needs only the input frames, so a file
      reader can run it ahead of the optimizer (`streamdream.pipeline.run_file`).
    * `process(prepared)` has the stream's `Carry` plan the frame's work on the working device
      (warm or fresh start, the cut test, the hold), runs it and keeps the result to carry into the
      next frame. It is `begin` (plan the mode's work), running the work,
      and `finish` (keep the result): the live engine runs the planned work of many streams as
      batches between the two (`streamdream.scheduler`).

    `process(rgb)` does both. `settings` may be replaced between frames (a UI slider, a preset
    switch) without losing the warm state. Scene cuts are counted in `cuts`.
    """

    def __init__(self, mode: FrameMode, settings: TemporalSettings | None = None, *, seed: int | None = 0) -> None:
        self.mode = mode
        self.generator = make_generator(seed)
        self.frames = 0
        self.timings = FrameTimings()
        self.flow: FlowEstimator | None = None
        self._serial = 0  # frames prepared so far
        self._last_input: tuple[int, np.ndarray] | None = None  # the last prepared frame (prepare's side)
        self._previous: Previous | None = None  # the last processed frame (process's side)
        self._carry = Carry()  # process's side (`begin`)
        self.settings = settings or TemporalSettings()

    @property
    def settings(self) -> TemporalSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: TemporalSettings) -> None:
        self._settings = settings
        if self.flow is None or (self.flow.preset, self.flow.scale) != (settings.flow_preset, settings.flow_scale):
            self.flow = FlowEstimator(settings.flow_preset, settings.flow_scale)

    @property
    def cuts(self) -> int:
        """Frames started afresh because their flow said they were scene cuts."""
        return self._carry.cuts

    def asks_still_effect(self) -> bool:
        """Whether the stream's next carried frame will ask its mode for the effect of its still
        (`carry.EffectHold`), which a `Dreamer` measures by dreaming a thumbnail: the live engine has it
        measured beside its rounds, so that nobody else's frame waits for it (`LiveEngine`)."""
        return self._carry.asks_still_effect(self.mode, self.settings, self._previous)

    def reset(self) -> None:
        """The next frame starts afresh, like a first frame."""
        self._last_input = None
        self._previous = None

    def prepare(self, rgb: np.ndarray, *, at_once: bool = False) -> PreparedFrame:
        """Decide how `rgb` (the frame after the last one prepared) starts; compute its flow if it is carried.

        `at_once`: the two flows of the pair on two threads (`FlowEstimator.both_ways`), for a caller
        whose other cores are idle meanwhile (the live engine's tick with few streams); not beside
        model work, whose OpenMP threads slow down when a thread of theirs has to wait for a core.
        """
        settings, flow = self.settings, self.flow
        serial, last = self._serial, self._last_input
        self._serial += 1
        self._last_input = (serial, rgb)
        if last is None or last[1].shape != rgb.shape or settings.independent:
            return PreparedFrame(rgb, serial, settings)
        if settings.flow == "none":
            return PreparedFrame(rgb, serial, settings, after=last[0])
        started = time.perf_counter()
        flows = frame_flows(flow, last[1], rgb, check=settings.check, at_once=at_once)
        return PreparedFrame(rgb, serial, settings, after=last[0], flows=flows, flow_ms=1000 * (time.perf_counter() - started))

    def process(self, frame: np.ndarray | PreparedFrame) -> np.ndarray:
        """The frame's result, H x W x 3 uint8 in and out; `frame` prepared with `prepare`, or raw."""
        started = self.begin(frame if isinstance(frame, PreparedFrame) else self.prepare(frame))
        return self.finish(started, started.work.run())

    def begin(self, prepared: PreparedFrame) -> StartedFrame:
        """Plan the frame's model work: its tensor on the working device, and the carry's plan
        (`Carry.plan`: the mode's call is made but not run).

        Run `work` (alone, or batched with other streams' by `streamdream.scheduler`), then `finish`.
        """
        started = time.perf_counter()
        image = to_tensor(prepared.rgb, self.mode.device)
        converted = time.perf_counter()
        previous = self._previous if self._previous is not None and self._previous.serial == prepared.after else None
        work = self._carry.plan(self.mode, image, prepared.serial, prepared.settings, previous, prepared.flows, self.generator)
        return StartedFrame(prepared, image, work, (started, converted, time.perf_counter()))

    def finish(self, frame: StartedFrame, out: torch.Tensor) -> np.ndarray:
        """Keep the result of `frame`'s work to carry into the next frame; return it as uint8."""
        if out.device.type == "cuda":
            torch.cuda.synchronize(out.device)
        started, converted, planned = frame.stamps
        optimized = time.perf_counter()
        result = to_rgb(out)
        self._previous = Previous(frame.prepared.serial, frame.image, out)
        self.frames += 1
        finished = time.perf_counter()
        self.timings = FrameTimings(
            flow_ms=frame.prepared.flow_ms + 1000 * (planned - converted),
            optimize_ms=1000 * (optimized - planned),
            io_ms=1000 * (converted - started + finished - optimized),
        )
        return result
