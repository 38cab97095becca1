"""What a live visitor sees, as a few picklable fields (`Look`), and the modes built from them.

A mode (a `Dreamer`, a style network) holds a model: megabytes of weights that must be built once
per process and never travel. A `Look` is what a visitor chose (mode, model, objective, strength,
style) in a handful of strings and numbers, so a process that serves visitors for another one (a
Ray replica behind the web app, `streamdream.distributed.live_replicas`) receives the look with
each frame and builds, and caches, the mode itself (`Look.mode`). The web app builds its modes
here too, so a look means the same mode wherever it is built.

* Live: a dream keeps the still defaults: they make the first frame under the GPU preset, and under
  the CPU preset (which grows the dream from the frame) the effect the stream is held at
  (`Dreamer.still_effect`). A style is painted by the style network (`NetStylizer`), the only
  painter fast enough for a camera: tens of milliseconds a frame where the optimizer takes seconds.
* Modes are cached by everything that shapes them (`frame_mode`): every visitor with the same look
  shares one model, as the live engine's batches want.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from .admission import Probe, probe_capacity
from .carry import FrameMode
from .dream import Dreamer
from .engine import LiveEngine
from .errors import StreamdreamError
from .runtime import resolve_device
from .settings import (
    DEFAULT_MODEL,
    LIVE_MAX_SEATS,
    LIVE_MAX_SIDE,
    LIVE_SEAT_FPS,
    STRENGTH,
    STYLE_METHOD,
    DreamSettings,
    StyleSettings,
    live_preset,
    preset,
)
from .style import Stylizer
from .style_net import NetStylizer, create_stylizer

Recipe = Callable[[], FrameMode]
"""A mode as a picklable call that builds it (a `functools.partial` of `frame_mode`): the web app's Still
and Video tabs hand it to where their work runs, this process or a Ray replica, which builds it there."""


@functools.lru_cache(maxsize=16)
def _dreamer(model: str, objective: str, strength: float, octaves: int, iterations: int) -> Dreamer:
    return Dreamer(model, objective or None, octaves=octaves, iterations=iterations, strength=strength, device="auto")


@functools.lru_cache(maxsize=8)
def _stylizer(method: str, style: str, strength: float, model: str | None = None, octaves: int | None = None,
              iterations: int | None = None) -> NetStylizer | Stylizer:
    """The style `method` paints `style` with (a painting's file or a built-in style's name); the
    network reads no model, octaves or iterations, so it is cached by style and strength alone."""
    return create_stylizer(method, style, model=model, octaves=octaves, iterations=iterations, strength=strength, device="auto")


def frame_mode(kind: str, model: str, objective: str, strength: float, style: str | None, octaves: int, iterations: int,
               method: str = STYLE_METHOD) -> FrameMode:
    """A `Dreamer`, or the style `method` painting `style`, at `strength`. Raises `StreamdreamError`
    with a one-line message (a bad objective or painting, a built-in style for the optimizer)."""
    strength = round(float(strength), 3)
    if kind != "style":
        return _dreamer(model or DEFAULT_MODEL, (objective or "").strip(), strength, int(octaves), int(iterations))
    if not style:
        raise StreamdreamError("style mode needs a painting or a built-in style")
    if method == "net":
        return _stylizer(method, style, strength)
    return _stylizer(method, style, strength, model or DEFAULT_MODEL, int(octaves), int(iterations))


def still_defaults(kind: str) -> tuple[int, int]:
    """The (octaves, iterations) of a still of this kind by default: what the CLI gives a video's first frame."""
    defaults = StyleSettings() if kind == "style" else DreamSettings()
    return defaults.octaves, defaults.iterations


def live_mode(kind: str, model: str, objective: str, strength: float, style: str | None) -> FrameMode:
    """A live stream's dream, or its style painted by the network."""
    return frame_mode(kind, model, objective, strength, style, *still_defaults(kind), method=STYLE_METHOD)


@dataclass(frozen=True)
class Look:
    """A live visitor's choice: `kind` ("dream" or "style"), the `model` and `objective` of a dream,
    the `style` painted (a built-in style's name, or a painting's file: a path every process that
    builds the look must be able to read) and the `strength`."""

    kind: str = "dream"
    model: str = DEFAULT_MODEL
    objective: str = ""
    strength: float = STRENGTH
    style: str | None = None

    def mode(self) -> FrameMode:
        """The live mode of this look, built once per process (`live_mode`'s caches)."""
        return live_mode(self.kind, self.model, self.objective, self.strength, self.style)

    @property
    def stream(self) -> tuple:
        """What starts a visitor's stream afresh when it changes (`LiveRoom.session`'s `look`): all but the strength."""
        return self.kind, self.model, self.objective, self.style


def default_capacity(engine: LiveEngine) -> Probe:
    """How many live visitors this process serves at a moving frame rate: the default live dream at the
    live working size (a 4:3 camera), `LIVE_SEAT_FPS` frames per second each (`probe_capacity`)."""
    device = resolve_device("auto")
    side = LIVE_MAX_SIDE.on(device)
    with engine.exclusive():
        return probe_capacity(Look().mode(), preset(live_preset(device)), (side * 3 // 4, side), min_fps=LIVE_SEAT_FPS.on(device),
                              most=LIVE_MAX_SEATS)
