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
  file that cannot be painted with (not an image, too large, too small, one flat colour) becomes one
  line in the readout, and the stream paints with the built-in style meanwhile (`live_style`). An
  error per frame would bury the page in toasts and freeze the picture.
* Uploaded pictures (paintings here, the Still tab's photo) reach the app unopened (`Picture`) and
  are measured from their header before anything decodes them (`picture_problem`), as the Live
  tab's camera frames are (`Camera`): a picture with more pixels than the app takes, or a file that
  is no picture, is refused in one line that names it as the visitor did (`named`), not by its
  path in the app's folder.
* The Live tab's dream goes back to the page inside the stream's message (`InlinePicture`), not as
  a file in Gradio's cache for the page to fetch.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from gradio.data_classes import ImageData
from PIL import Image

from streamdream.errors import StreamdreamError
from streamdream.io.images import image_size, load_image, resize_max_side
from streamdream.models.stylenets import BUILTIN_STYLES
from streamdream.settings import BUILTIN_STYLE, DEFAULT_BUILTIN_STYLE, LIVE_MAX_SIDE, STYLE_METHOD, STYLE_METHODS, UI_LIVE_PICTURE_QUALITY, UI_MAX_PIXELS
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


@contextlib.contextmanager
def no_stub_file() -> Iterator[None]:
    """Define Gradio components here without Gradio writing a type stub beside this module.

    Gradio's component metaclass writes `<module>.pyi` (a copy of the module's source plus the
    class's events) next to the module of every component class defined: into the source tree,
    where it would shadow the module for type checkers and go stale.
    """
    from gradio import component_meta

    write = component_meta.create_or_modify_pyi
    component_meta.create_or_modify_pyi = lambda *args: None
    try:
        yield
    finally:
        component_meta.create_or_modify_pyi = write


with no_stub_file():

    class Picture(gr.Image):
        """An image upload handed to the app as its path, unopened (type "filepath").

        `gr.Image` opens every upload first and decodes and re-encodes one that is not RGB: a
        decompression bomb would be decoded before the app sees it, and a file that is no picture
        would fail with Pillow's words and the server's path. The app reads the header itself
        (`picture_problem`) and decodes only what passes. An inline picture (a data URL, which no
        upload in the browser sends) counts as none. The page draws it as a `gr.Image` (a Gradio template).
        """

        is_template = True

        def preprocess(self, payload) -> str | None:
            return payload.path if payload is not None else None

    class Camera(gr.Image):
        """The Live tab's webcam (a numpy frame for `live_frame`), each frame measured from its
        header (`image_size`) before Gradio decodes it.

        A browser sends its camera's frames inline, as JPEG data URLs of the camera's size; a script
        can send anything in their place, and a decompression bomb of a few kilobytes would be
        decoded into gigabytes. A frame over `max_pixels` (the app sets its own), or one that is no
        picture, is refused with one message. The page draws it as a `gr.Image` (a Gradio template,
        so no constructor of its own: Gradio describes a component to the page by its constructor's
        parameters).
        """

        is_template = True
        max_pixels = UI_MAX_PIXELS

        def preprocess(self, payload):
            if payload is not None:
                inline = payload.url and payload.url.startswith("data:")
                try:
                    image_size(base64.b64decode(payload.url.partition(",")[2]) if inline else payload.path, self.max_pixels)
                except StreamdreamError as exc:
                    raise gr.Error(named(str(exc), payload.path)) from None
            return super().preprocess(payload)

    class InlinePicture(gr.Image):
        """The Live tab's dream (an array from `live_frame`), sent to the page inside the stream's
        message as a data URL of its `format` rather than as a file in Gradio's cache.

        A file costs the page a second request per frame, and every frame would stay in the cache
        until the server stops: ten a second for each visitor. Inline, Gradio passes the data URL on
        untouched (it moves only payloads with a path) and the page shows it at once. On the 2-core
        Xeon (`benchmarks/browser_latency.py --visitors 1 --inline no yes`, provisional: the machine
        was loaded) the page's download stage fell from 98-162 to 31-67 ms and the median latency by
        about 60-80 ms; in a later run at load 3.4-4.2, from 31-38 to 14 ms and by about 25 ms.
        JPEG at `UI_LIVE_PICTURE_QUALITY`: a 240x180 frame in about 10 KB and 0.2 ms, where WebP
        takes 4-5 ms for a file a fifth smaller. The page draws it as a `gr.Image` (a Gradio template).
        """

        is_template = True

        def postprocess(self, value: np.ndarray | None) -> ImageData | None:
            if value is None:
                return None
            with io.BytesIO() as encoded:
                Image.fromarray(value).save(encoded, self.format, quality=UI_LIVE_PICTURE_QUALITY)
                data = base64.b64encode(encoded.getvalue()).decode()
            return ImageData(url=f"data:image/{self.format};base64,{data}", orig_name=f"dream.{self.format}")


def named(message: str, *uploads: str | None) -> str:
    """`message` with each upload's path in the app's folder replaced by its file name: what the visitor
    uploaded, not where the app keeps it."""
    for path in filter(None, uploads):
        message = message.replace(path, Path(path).name)
    return message


def picture_problem(path: str | None, max_pixels: int) -> str:
    """Why an uploaded picture is refused, read from its header alone (`image_size`): not a picture,
    or more than `max_pixels` pixels. One line naming the file; "" when it is fine or there is none."""
    if not path:
        return ""
    try:
        image_size(path, max_pixels)
    except StreamdreamError as exc:
        return named(str(exc), path)
    return ""


@dataclass
class StyleControls:
    """A tab's style choice (shown in style mode only): how it is painted (Video and Still; Live
    always uses the network), the built-in styles and the selected one's name, and a painting."""

    method: gr.Radio | None
    gallery: gr.Gallery
    builtin: gr.Dropdown
    painting: Picture

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
        painting = Picture(sources=["upload"], type="filepath", label="your painting (wins while it is here)", height=120, visible=False,
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
def painting_problem(path: str, max_pixels: int) -> str:
    """Why a painting cannot be painted with, in one line naming its file; "" when it can. Its header
    is checked (`picture_problem`) before it is decoded."""
    problem = picture_problem(path, max_pixels)
    if problem:
        return problem
    try:
        check_painting(load_image(path).rgb, f"the painting {Path(path).name}")
    except StreamdreamError as exc:
        return named(str(exc), path)
    return ""


def live_style(painting: str | None, builtin: str, max_pixels: int) -> tuple[str, str]:
    """The style a live frame paints with, and a note when that is not the visitor's painting."""
    problem = painting_problem(painting, max_pixels) if painting else ""
    if problem:
        return builtin, f"{problem} · painting with {builtin} instead"
    return chosen_style(painting, builtin), ""
