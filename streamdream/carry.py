"""The temporal carry, in one place: the frame-mode contract, the warm start and the effect hold.

A video or webcam stream is processed frame by frame. The first frame (and every scene cut, and
every frame with `independent=True`) starts fresh: the mode's full still treatment, or for the live
presets the cheap per-frame settings with nothing carried. Every later frame is warm-started: what
the mode changed in the previous frame (a dream's residual, a style's strokes: `carried`) is laid
over the new frame along the backward optical flow (`Motion.carry`; where the consistency check
failed, inpainted from the trusted neighbours), trusted in the share `settings.carry`, scaled by the
stream's `EffectHold` so a long clip neither burns in nor fades, and the mode then spends a few cheap
steps of the one optimizer from there (`warm_work`).

`Carry` decides fresh against warm start for one stream (cuts included) and plans the frame's model
work without running it, so the live engine can run the frames of many streams as batches
(`streamdream.scheduler`). `streamdream.session.StreamSession` holds a stream's state and flows and
asks its `Carry` for each frame's work.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import numpy as np
import torch

from .convert import to_rgb, to_tensor
from .cuda_graphs import GraphCache
from .optimize import make_generator
from .scheduler import Deferred, Work
from .settings import TemporalSettings
from .temporal import FramePairFlows, Motion, motion_from_flows, no_motion


class FrameMode(ABC):
    """What a mode (dream, style, a test's own) provides to run on a stream.

    A mode makes a stream's first frame from the picture alone (`first_frame`) and every later frame
    from the previous frame's input and output and the motion between them (`next_frame`). A mode
    whose work can share a batch with other streams' says so by planning it (`plan_first_frame`,
    `plan_next_frame`, returning an `OptimizeCall`); by default the work is `Deferred` and runs alone.
    """

    device: torch.device

    @abstractmethod
    def first_frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A stream's first frame (and every cut): 1 x 3 x H x W in [0, 1] in and out."""

    @abstractmethod
    def next_frame(self, image: torch.Tensor, previous_input: torch.Tensor, previous_output: torch.Tensor, motion: Motion,
                   settings: TemporalSettings, generator: torch.Generator) -> torch.Tensor:
        """A frame after the first, from the previous frame's input and output carried along `motion`."""

    def plan_first_frame(self, image: torch.Tensor, generator: torch.Generator) -> Work:
        """`first_frame` as work to run."""
        return Deferred(functools.partial(self.first_frame, image, generator))

    def plan_next_frame(self, image: torch.Tensor, previous_input: torch.Tensor, previous_output: torch.Tensor, motion: Motion,
                        settings: TemporalSettings, generator: torch.Generator) -> Work:
        """`next_frame` as work to run."""
        return Deferred(functools.partial(self.next_frame, image, previous_input, previous_output, motion, settings, generator))

    def still_effect(self, image: torch.Tensor) -> float | None:
        """The effect (mean |result - picture|) of this mode's still of a picture like `image`, which a
        stream grown from nothing is held at (`EffectHold`); None: not known (the stream is not held)."""
        return None

    def knows_still_effect(self, image: torch.Tensor) -> bool:
        """Whether `still_effect(image)` has its answer already, without running the model: the live
        engine then lets the round ask it instead of measuring it on a thread of its own."""
        return False

    def still(self, rgb: np.ndarray, seed: int | None = 0) -> np.ndarray:
        """The mode's still of a picture (H x W x 3 uint8 in and out): what a stream's first frame gets."""
        return to_rgb(self.first_frame(to_tensor(rgb, self.device), make_generator(seed)))


class WarmStartMode(FrameMode):
    """Base of the modes that carry their change along the flow: the warm start, written once.

    The mode says what is carried (`carried`) and what a warm frame's steps are (`warm_work`).
    """

    graphs: GraphCache | None  # this mode's captured steps (CUDA); None: every step eager

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):  # typed in FrameMode
        return self.plan_next_frame(image, previous_input, previous_output, motion, settings, generator).run()

    def plan_next_frame(self, image, previous_input, previous_output, motion, settings, generator) -> Work:
        """Warm start: `carried` laid over the new frame along the flow, trusted in the share `settings.carry`."""
        carried = motion.carry(self.carried(previous_input, previous_output))
        return self.warm_work(image, carried, motion.mask * settings.carry, settings, generator)

    @abstractmethod
    def carried(self, previous_input: torch.Tensor, previous_output: torch.Tensor) -> torch.Tensor:
        """What of the previous frame is laid over the new one (in the previous frame's geometry)."""

    @abstractmethod
    def warm_work(self, image: torch.Tensor, carried: torch.Tensor, trust: torch.Tensor, settings: TemporalSettings,
                  generator: torch.Generator) -> Work:
        """The new frame's work from `carried` (now in its geometry) and `trust` (1 x 1 x H x W in [0, 1])."""


@dataclass(frozen=True)
class Previous:
    """The frame a stream carries from: its serial number, its input and its output on the working device."""

    serial: int
    input: torch.Tensor
    output: torch.Tensor


class Carry:
    """One stream's carry rule: fresh or warm start, the cut test, hole filling and the effect hold."""

    def __init__(self) -> None:
        self.cuts = 0  # frames started afresh because the flow said they were cuts
        self._hold = EffectHold()

    def plan(self, mode: FrameMode, image: torch.Tensor, serial: int, settings: TemporalSettings, previous: Previous | None,
             flows: FramePairFlows | None, generator: torch.Generator) -> Work:
        """The model work of frame `serial` (`image` on the working device).

        `previous`: the frame it is carried from (None: it starts afresh); `flows`: the CPU optical
        flows from that frame (None: carry in place, `flow="none"`). A frame whose flow is trusted on
        less than `settings.scene_cut` of its pixels is a cut (or a flash, or a jump): it starts
        afresh, like a first frame, and is counted in `cuts`.
        """
        motion = self._motion(mode, image, settings, previous, flows) if previous is not None else None
        if motion is not None:
            return mode.plan_next_frame(image, previous.input, previous.output, motion, settings, generator)
        if settings.fresh_start == "frame" and not settings.independent:  # per-frame settings, nothing carried
            self._hold.grown()
            nothing = no_motion(*image.shape[-2:], image.device, trusted=False)
            return mode.plan_next_frame(image, image, image, nothing, settings, generator)
        self._hold.still(mode, serial)
        return mode.plan_first_frame(image, generator)

    def asks_still_effect(self, mode: FrameMode, settings: TemporalSettings, previous: Previous | None) -> bool:
        """Whether a frame carried from `previous` through `mode` will ask it for its still effect
        (`FrameMode.still_effect`, in `EffectHold`): a stream that grew its dream from the frame, or
        whose mode changed, on its next carried frame (unless the flow says it is a cut)."""
        return previous is not None and not settings.independent and self._hold.wants_mark(mode, settings, previous.serial)

    def _motion(self, mode: FrameMode, image: torch.Tensor, settings: TemporalSettings, previous: Previous,
                flows: FramePairFlows | None) -> Motion | None:
        """The motion to carry `previous` along, or None when the frame is a cut (counted).

        The cut is judged on the flow's own certainty; the pixels it rejects are then filled from
        their trusted neighbours in the share `settings.fill` (`Motion.filled`), and the whole carry
        is held to the effect of a still (`EffectHold`).
        """
        if flows is None:
            motion = no_motion(*image.shape[-2:], image.device)
        else:
            motion = motion_from_flows(flows, image.device)
            if float(motion.mask.mean()) < settings.scene_cut:
                self.cuts += 1
                return None
            if settings.fill > 0:
                motion = motion.filled(settings.fill)
        return self._hold(motion, mode, previous, settings)


class EffectHold:
    """Keeps a carried stream from burning in: its effect (mean |output - input|) is held at
    `settings.hold` times a mark, the effect of a still.

    Each warm frame adds a few dream steps to what it carries; with the whole result carried those
    steps would pile up and a long clip would drift into saturated noise. Above the mark the carried
    share is scaled down just enough to bring it back, so the effect settles at the still's instead
    of wherever the balance of steps and leak happens to fall. Below it (new content entering a shot
    carries no dream yet, and real footage faded to 0.7x of a still dream's effect) the carry grows
    back by at most `settings.lift` per frame; that is also how a dream grown from nothing reaches it.

    The mark is the effect of a still of the mode in use. A stream that starts with a still
    (`fresh_start="still"`) is held at that still's own effect, measured on the next frame. One that
    grows its dream from nothing (`fresh_start="frame"`), or whose mode changes mid-stream (a live
    strength slider makes a new `Dreamer`), is held at the effect the mode says its still has
    (`FrameMode.still_effect`: `Dreamer.still_effect` dreams a thumbnail once). A mode that cannot
    say leaves the stream unheld, to the carry's leak alone.
    """

    def __init__(self) -> None:
        self.mark: float | None = None
        self._mode: FrameMode | None = None  # the mode whose still the mark is the effect of
        self._still: int | None = None  # the serial of a still start whose effect becomes the mark

    def still(self, mode: FrameMode, serial: int) -> None:
        """Frame `serial` starts with a still of `mode`: hold the stream at the effect of its result."""
        self.mark, self._mode, self._still = None, mode, serial

    def grown(self) -> None:
        """The stream grows a dream from nothing: hold it at its mode's still effect."""
        self.mark, self._mode, self._still = None, None, None

    def wants_mark(self, mode: FrameMode, settings: TemporalSettings, previous_serial: int) -> bool:
        """Whether a frame carried from frame `previous_serial` through `mode` asks `mode` for the mark."""
        return bool(settings.hold) and previous_serial != self._still and mode is not self._mode

    def __call__(self, motion: Motion, mode: FrameMode, previous: Previous, settings: TemporalSettings) -> Motion:
        """`motion` (carrying `previous`, made by `mode`) with its trust scaled toward the mark."""
        if not settings.hold:
            return motion
        effect = float((previous.output - previous.input).abs().mean())
        if previous.serial == self._still:
            self.mark, self._still = effect, None
        elif self.wants_mark(mode, settings, previous.serial):
            self.mark, self._mode = mode.still_effect(previous.input), mode
        if self.mark is None or effect == 0.0:
            return motion
        scale = min(settings.hold * self.mark / effect, settings.lift)
        return motion if scale == 1.0 else replace(motion, mask=motion.mask * scale)
