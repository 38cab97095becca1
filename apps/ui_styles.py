"""What a style tab paints with: the style network's 26 built-in styles as a gallery, and a painting.

* The built-in styles need no upload, so a visitor who switches the Live tab to style sees painted
  frames at once; one is selected from the start (`DEFAULT_BUILTIN_STYLE`). A click in the gallery selects
  its style in the "built-in style" dropdown beside it, which is what the tab's handlers read (a
  name, not the gallery's 26 pictures on every frame) and what the API takes.
* A thumbnail is the sample photo painted at the live working size, then shrunk: painted at
  thumbnail size the strokes come out as large as the cat, and the gallery would not show what the
  camera will look like. The 26 are painted once per process and device, when the app is built.
* An uploaded painting wins while it is there; clearing it returns to the selected built-in style.
  The Live tab reads it unopened (`uploaded`) and checks it once per upload (`painting_problem`): a
  file that cannot be painted with (not an image, too small, one flat colour) becomes one line in
  the readout, and the stream paints with the built-in style meanwhile (`live_style`). An error per
  frame would bury the page in toasts and freeze the picture.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from streamdream.errors import StreamdreamError
from streamdream.io.images import load_image, resize_max_side
from streamdream.models.stylenets import BUILTIN_STYLES
from streamdream.settings import BUILTIN_STYLE, DEFAULT_BUILTIN_STYLE, LIVE_MAX_SIDE, STYLE_METHOD, STYLE_METHODS
from streamdream.style import check_painting
from streamdream.style_net import NetStylizer, builtin_index

THUMBNAIL_SIDE = 96  # px, the longer side of a gallery thumbnail
GALLERY_HEIGHT = 2 * THUMBNAIL_SIDE + 40  # px: two rows on a laptop's screen, then it scrolls
# As many columns of thumbnails as fit, at about their own size (Gradio's gallery has a fixed count of
# columns at least 100 px wide each, and leaves a tall empty box under two rows).
CSS = (f".style-gallery .grid-wrap .grid-container {{ grid-template-columns: repeat(auto-fill, minmax({THUMBNAIL_SIDE - 16}px, 1fr));"
       f" grid-template-rows: none; grid-auto-rows: {THUMBNAIL_SIDE - 16}px; }}")


def builtin_names() -> list[str]:
    return [f"{BUILTIN_STYLE}{index}" for index in range(BUILTIN_STYLES)]


@functools.lru_cache(maxsize=2)
def thumbnails(device: torch.device) -> tuple[tuple[np.ndarray, str], ...]:
    """(thumbnail, name) of every built-in style: scikit-image's cat painted as a live frame is."""
    import skimage.data

    photo = resize_max_side(skimage.data.chelsea(), LIVE_MAX_SIDE.on(device))
    return tuple((resize_max_side(NetStylizer(name, device=device).stylize(photo), THUMBNAIL_SIDE), name) for name in builtin_names())


@dataclass
class StyleControls:
    """A tab's style choice (shown in style mode only): how it is painted (Video and Still; Live
    always uses the network), the built-in styles and the selected one's name, and a painting."""

    method: gr.Radio | None
    gallery: gr.Gallery
    builtin: gr.Dropdown
    painting: gr.Image

    def parts(self) -> dict[str, gr.components.Component]:
        """These controls by their part in `ui_modes.mode_view`."""
        parts = {"method": self.method, "styles": self.gallery, "builtin": self.builtin, "painting": self.painting}
        return {part: control for part, control in parts.items() if control is not None}


def style_method(tab: str) -> gr.Radio:
    """How the Video and Still tabs paint (`settings.STYLE_METHODS`); the Live tab always uses the network."""
    return gr.Radio(list(STYLE_METHODS), value=STYLE_METHOD, label="style method", visible=False, elem_id=f"{tab}-method",
                    info="net: a network in one pass; refine: a few optimizer steps from its painting; optimize: the optimizer alone (slow)")


def style_controls(tab: str, pictures: tuple[tuple[np.ndarray, str], ...], method: gr.Radio | None = None) -> StyleControls:
    """The style controls of `tab`, the gallery showing `pictures` (`thumbnails`) and kept in step with the dropdown."""
    gallery = gr.Gallery(list(pictures), label="built-in styles", height=GALLERY_HEIGHT, allow_preview=False, interactive=False,
                         selected_index=builtin_index(DEFAULT_BUILTIN_STYLE), visible=False, elem_id=f"{tab}-styles",
                         elem_classes="style-gallery")
    with gr.Row():
        builtin = gr.Dropdown(builtin_names(), value=DEFAULT_BUILTIN_STYLE, label="built-in style", visible=False, elem_id=f"{tab}-builtin")
        painting = gr.Image(sources=["upload"], type="filepath", label="your painting (wins while it is here)", height=120, visible=False,
                            elem_id=f"{tab}-style")
    gallery.select(picked, None, builtin, queue=False, api_visibility="private")
    builtin.input(lambda name: gr.update(selected_index=builtin_index(name)), builtin, gallery, queue=False, api_visibility="private")
    return StyleControls(method, gallery, builtin, painting)


def picked(selection: gr.SelectData) -> str:
    """The name of the built-in style clicked in the gallery."""
    return builtin_names()[selection.index]


def chosen_style(painting: str | None, builtin: str) -> str:
    """What a style paints with: the uploaded painting while there is one, else the selected built-in style."""
    return painting or builtin


def uploaded(payload: dict | None) -> str | None:
    """The server path of an uploaded painting, from its unprocessed payload (`preprocess=False`):
    Gradio's own preprocessing opens the file and raises on one that is not an image."""
    return payload["path"] if payload else None


@functools.lru_cache(maxsize=64)
def painting_problem(path: str) -> str:
    """Why a painting cannot be painted with, in one line naming its file; "" when it can."""
    name = Path(path).name
    try:
        check_painting(load_image(path).rgb, f"the painting {name}")
    except StreamdreamError as exc:
        return str(exc).replace(path, name)
    return ""


def live_style(painting: str | None, builtin: str) -> tuple[str, str]:
    """The style a live frame paints with, and a note when that is not the visitor's painting."""
    problem = painting_problem(painting) if painting else ""
    if problem:
        return builtin, f"{problem} · painting with {builtin} instead"
    return chosen_style(painting, builtin), ""
