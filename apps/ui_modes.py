"""What each tab of the web UI runs: models and modes (built once, cached) and stream settings.

* Live: a stream's frames are cheap. A dream keeps the still defaults anyway: they make the first
  frame under the GPU preset, and under the CPU preset (which grows the dream from the frame) the
  effect the stream is held at (`Dreamer.still_effect`). A style stream's first frame is cut
  short (`settings.LIVE_STYLE_FIRST`).
* Video: the first frame (and every cut) gets the full still treatment the CLI gives it, the mode's
  default octaves and iterations (`streamdream dream` / `streamdream style` on a video).
* Still: the tab's own octave and iteration sliders.

Strength is the modes' own (`Dreamer(strength=...)` scales the dream step, `Stylizer(strength=...)` the
style weight); 1 is the library's default, in the Live tab too: a live dream is held at its still's
effect, so live, video and still look alike.

The controls follow the mode (`mode_view`): a dream shows its objective, a style its painting and a
"style weight", and the buttons and labels say "Dream" or "Paint".
"""

from __future__ import annotations

import functools

import gradio as gr
import torch

from streamdream.dream import Dreamer
from streamdream.errors import StreamdreamError
from streamdream.models import create_model, list_models
from streamdream.runtime import resolve_device
from streamdream.settings import DEFAULT_MODEL, LIVE_STYLE_FIRST, DreamSettings, StyleSettings, TemporalSettings, live_preset, preset
from streamdream.style import Stylizer

MODES = ("dream", "style")
TOOLS = ("saliency", "fool", "classviz", "invert")  # Still tab only: the image-gradient tools


def available_models() -> list[str]:
    names = [entry.name for entry in list_models() if entry.weights_path() is not None]
    return names or [DEFAULT_MODEL]


@functools.lru_cache(maxsize=4)
def layers(model: str) -> tuple[str, ...]:
    return tuple(create_model(model, device="cpu").public_layers())


def device() -> torch.device:
    """Where the app's model work runs: the GPU when there is one."""
    return resolve_device("auto")


@functools.lru_cache(maxsize=16)
def _dreamer(model: str, objective: str, strength: float, octaves: int, iterations: int) -> Dreamer:
    return Dreamer(model, objective or None, octaves=octaves, iterations=iterations, strength=strength, device="auto")


@functools.lru_cache(maxsize=8)
def _stylizer(model: str, style_path: str, strength: float, octaves: int, iterations: int) -> Stylizer:
    return Stylizer([style_path], model=model, octaves=octaves, iterations=iterations, strength=strength, device="auto")


def frame_mode(kind: str, model: str, objective: str, strength: float, style_path: str | None, octaves: int, iterations: int):
    """A `Dreamer`, or a `Stylizer` of the uploaded painting, at `strength`."""
    try:
        if kind != "style":
            return _dreamer(model or DEFAULT_MODEL, (objective or "").strip(), round(float(strength), 3), int(octaves), int(iterations))
        if not style_path:
            raise gr.Error("style mode needs a style painting: upload one")
        return _stylizer(model or DEFAULT_MODEL, str(style_path), round(float(strength), 3), int(octaves), int(iterations))
    except StreamdreamError as exc:
        raise gr.Error(str(exc)) from None


def still_defaults(kind: str) -> tuple[int, int]:
    """The (octaves, iterations) of a still of this kind by default: what the CLI gives a video's first frame."""
    defaults = StyleSettings() if kind == "style" else DreamSettings()
    return defaults.octaves, defaults.iterations


def live_mode(kind: str, model: str, objective: str, strength: float, style_path: str | None):
    return frame_mode(kind, model, objective, strength, style_path, *(LIVE_STYLE_FIRST if kind == "style" else still_defaults(kind)))


def video_mode(kind: str, model: str, objective: str, strength: float, style_path: str | None):
    return frame_mode(kind, model, objective, strength, style_path, *still_defaults(kind))


def stream_settings(preset_name: str, carry: float, iterations: int) -> TemporalSettings:
    """A temporal preset (as `--temporal-preset`) with the tab's carry and iterations per frame."""
    try:
        return preset(preset_name or live_preset(device())).with_(carry=float(carry), frame_iterations=int(iterations))
    except StreamdreamError as exc:
        raise gr.Error(str(exc)) from None


# What each mode calls things: (verb on buttons, strength's label, the result's label).
_WORDS = {"dream": ("Dream", "strength", "dream"), "style": ("Paint", "style weight", "painting")}
VIEW_PARTS = ("objective", "painting", "strength", "class_index", "button", "output")


def mode_view(kind: str, parts: tuple[str, ...] = VIEW_PARTS) -> tuple:
    """The `gr.update`s of a tab's controls when its mode becomes `kind`, in the order of `parts`.

    objective: dreams (and feature inversion's layer) only; painting: style only; strength: dream and
    style, labelled "style weight" in style mode; class_index: fooling and class visualization;
    button and output: "Dream" / "Paint" (a tool: its name).
    """
    verb, strength, result = _WORDS.get(kind, (kind.capitalize(), "strength", kind))
    views = {
        "objective": gr.update(visible=kind in ("dream", "invert")),
        "painting": gr.update(visible=kind == "style"),
        "strength": gr.update(visible=kind in MODES, label=strength),
        "class_index": gr.update(visible=kind in ("fool", "classviz")),
        "button": gr.update(value=verb),
        "output": gr.update(label=result),
    }
    return tuple(views[part] for part in parts)
