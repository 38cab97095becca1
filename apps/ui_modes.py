"""What each tab of the web UI runs: models and modes (built once, cached) and stream settings.

* Live: the visitor's `streamdream.looks.Look`, built into a mode where it is served (in this
  process, or on a Ray replica): a dream at the still defaults, a style painted by the network.
  The modes themselves are built in `streamdream.looks` (`frame_mode`), for every tab.
* Video: the first frame (and every cut) gets the full still treatment the CLI gives it, the mode's
  default octaves and iterations (`streamdream dream` / `streamdream style` on a video).
* Video and Still hand their mode along as a recipe (`video_recipe`, `still_recipe`: a picklable call
  that builds it), built where the work runs: in this process, or on a Ray replica (`ui --ray`).
* Still: the tab's own octave and iteration sliders (the optimizer's pyramid: dreams and the
  "optimize" style method).
* Video and Still paint a style by the method the tab says (`settings.STYLE_METHODS`, through
  `create_stylizer`).

Strength is the modes' own (`Dreamer(strength=...)` scales the dream step, a style's how strongly it
paints); 1 is the library's default, in the Live tab too: a live dream is held at its still's
effect, so live, video and still look alike. The style network takes at most 1
(`settings.NET_STRENGTH_RANGE`), so the slider's range follows the painter (`strength_slider`).

The controls follow the mode and the style method (`mode_view`): a dream shows its objective, a
style its method, the built-in styles (the network's only), its painting and a "style strength";
the buttons and labels say "Dream" or "Paint".
"""

from __future__ import annotations

import functools

import gradio as gr
import torch

from streamdream.looks import Recipe, frame_mode, still_defaults
from streamdream.models import create_model, list_models
from streamdream.runtime import resolve_device
from streamdream.settings import (
    DEFAULT_MODEL,
    NET_STRENGTH_RANGE,
    STRENGTH,
    STRENGTH_RANGE,
    STYLE_METHOD,
    StyleSettings,
    TemporalSettings,
    live_preset,
    preset,
)

MODES = ("dream", "style")
TOOLS = ("saliency", "fool", "classviz", "invert")  # Still tab only: the image-gradient tools
STRENGTH_STEP = 0.25  # the strength slider's step for dreams and the optimizer (0.25 to 4)
NET_STRENGTH_STEP = 0.05  # and for the style network (0.05 to 1)


def available_models() -> list[str]:
    names = [entry.name for entry in list_models() if entry.weights_path() is not None]
    return names or [DEFAULT_MODEL]


@functools.lru_cache(maxsize=4)
def layers(model: str) -> tuple[str, ...]:
    return tuple(create_model(model, device="cpu").public_layers())


def device() -> torch.device:
    """Where the app's model work runs: the GPU when there is one."""
    return resolve_device("auto")


def video_recipe(kind: str, model: str, objective: str, strength: float, style: str | None, method: str = STYLE_METHOD) -> Recipe:
    """The Video tab's mode as a picklable call that builds it (`functools.partial` of `frame_mode`), so
    it is built where the render runs: in this process, or on a Ray replica (`LiveReplicas.render`)."""
    return functools.partial(frame_mode, kind, model, objective, strength, style, *still_defaults(kind), method=method)


def still_recipe(kind: str, model: str, objective: str, strength: float, style: str | None, octaves: int, iterations: int,
                 method: str = STYLE_METHOD) -> Recipe:
    """The Still tab's mode, as `video_recipe` gives the Video tab's (`LiveReplicas.still`)."""
    return functools.partial(frame_mode, kind, model, objective, strength, style, int(octaves), int(iterations), method=method)


def stream_settings(preset_name: str, carry: float, iterations: int) -> TemporalSettings:
    """A temporal preset (as `--temporal-preset`) with the tab's carry and iterations per frame."""
    return preset(preset_name or live_preset(device())).with_(carry=float(carry), frame_iterations=int(iterations))


def strength_slider(kind: str, method: str = STYLE_METHOD) -> dict:
    """The strength slider's bounds, step and value for a dream, or a style painted by `method`.

    Every strength is "above 0", so the lowest stop is one step; the network's highest is 1.
    """
    if kind != "style":
        bounds, step = STRENGTH_RANGE, STRENGTH_STEP
    elif method == "net":
        bounds, step = NET_STRENGTH_RANGE, NET_STRENGTH_STEP
    else:
        bounds, step = StyleSettings.bounds("strength"), STRENGTH_STEP
    return {"minimum": step, "maximum": bounds.high, "step": step, "value": STRENGTH}


# What each mode calls things: (verb on buttons, strength's label, the result's label).
_WORDS = {"dream": ("Dream", "strength", "dream"), "style": ("Paint", "style strength", "painting")}
VIEW_PARTS = ("model", "objective", "method", "styles", "builtin", "painting", "strength", "frame_iterations", "octaves", "iterations",
              "class_index", "button", "output")


def mode_view(kind: str, parts: tuple[str, ...] = VIEW_PARTS, method: str = STYLE_METHOD) -> tuple:
    """The `gr.update`s of a tab's controls when its mode becomes `kind` (or its style method
    `method`), in the order of `parts`.

    model: everything but the style network, which has its own; objective: dreams (and feature
    inversion's layer) only; method and painting: style only; styles (the built-in styles' gallery)
    and builtin (the selected one): the network only, the optimizer needs a painting; strength:
    dream and style, labelled "style strength" in style mode, over the painter's range
    (`strength_slider`); frame_iterations: every stream but the network's, which paints each frame
    in one pass; octaves and iterations: the optimizer's pyramid, dreams' and the "optimize"
    method's; class_index: fooling and class visualization; button and output: "Dream" / "Paint" (a
    tool: its name).
    """
    verb, strength, result = _WORDS.get(kind, (kind.capitalize(), "strength", kind))
    style = kind == "style"
    network = style and method == "net"
    pyramid = not style or method == "optimize"
    views = {
        "model": gr.update(visible=not network),
        "objective": gr.update(visible=kind in ("dream", "invert")),
        "method": gr.update(visible=style),
        "styles": gr.update(visible=network),
        "builtin": gr.update(visible=network),
        "painting": gr.update(visible=style),
        "strength": gr.update(visible=kind in MODES, label=strength, **strength_slider(kind, method)),
        "frame_iterations": gr.update(visible=not network),
        "octaves": gr.update(visible=pyramid),
        "iterations": gr.update(visible=pyramid),
        "class_index": gr.update(visible=kind in ("fool", "classviz")),
        "button": gr.update(value=verb),
        "output": gr.update(label=result),
    }
    return tuple(views[part] for part in parts)
