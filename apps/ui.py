"""`streamdream ui`: the Gradio web app (Live webcam, Video, Still).

A thin front end over the library. Design points:

* Live goes through the live engine (`streamdream.engine.LiveEngine`, the one `benchmarks/live.py`
  measures through `pipeline.LiveStream`): each browser session's webcam is a session on the app's
  engine, which keeps the newest frame, serves every open stream in turn and owns the compute lock.
  The Still and Video tabs run their model work under that same lock (`engine.run(fn)`, on a thread
  of its own so that no request thread keeps an OpenMP team beside the engine's, and
  `engine.serialized(mode)`), frame by frame, so a long render cannot starve a live stream for more
  than one frame. No lock lives in the front end.
* Live seats (`streamdream.admission.LiveRoom`): the engine batches every seated visitor's frames, so
  each extra visitor slows all of them; the app seats as many as keep each at a moving frame rate
  (measured at start-up by `probe_capacity`, or `--max-live`). A visitor past capacity sees their
  place in the queue in the Live tab and is seated, in arrival order, when a seat frees: a seat
  whose camera sent nothing for `settings.LIVE_SEAT_IDLE_S` (a stopped camera, a closed tab) is
  freed and its live session closed. Closing the tab (Gradio's unload event) also cancels the
  visitor's video render. Live frames are therefore not limited by Gradio's queue (a stream held
  there would see no frame and no message); renders still are, and Gradio shows their position.
* Live visitors past one machine (`streamdream ui --ray`): the room's engine is a router over live
  engine replicas on Ray (`streamdream.distributed.live_replicas`); the seats and the queue stay
  here, global, each visitor's frames go to the replica holding its warm state, and a visitor
  whose replica died starts afresh on another with one line in the readout saying so. The Still
  and Video tabs' model work goes to the replica with the most free seats too (the mode as a
  recipe, `ui_modes.still_recipe` / `video_recipe`, the picture or the video's bytes by value, the
  result back into this app's output folder; the status line names the replica). The image tools
  (saliency, fooling, class visualization, inversion) stay on the app's engine.
* Per-session state. Every browser session gets its own live session (warm state of its stream),
  the room's for its seat and held in a `gr.State` too, which closes it when the browser session
  ends or its stream sits idle (`UI_LIVE_IDLE_S`) even if nobody comes to free its seat; outputs are
  written into a fresh folder per request under the app's own work folder. Nothing is shared
  between users except the read-only models.
* Controls follow the mode (`ui_modes.mode_view`): a dream shows its objective, style mode its
  method (Video, Still), the built-in styles' gallery and a painting upload (`ui_styles`) and a
  "style strength"; buttons and labels say "Dream" or "Paint". Every tab starts at strength 1, the
  look of a still dream; the Live tab shows it as large as the camera preview. The Live tab paints
  with the style network, a built-in style selected from the start, so style needs no upload.
* A live frame never raises a library error (`live_frame`): a bad painting, objective or frame is
  one line in the readout and the stream goes on (with the built-in style, or the camera as it is).
  The Still and Video tabs show an error once per click (`shown_as_error`).
* Limits, one readable message each, for an app that may be reachable from a network
  (`streamdream ui --host/--share`): Gradio refuses an upload over `--max-upload-mb` before storing
  it; a picture (photo, painting, camera frame) is measured from its header and refused over
  `--max-megapixels` before anything decodes it (`ui_styles.Picture`, `ui_styles.Camera`); a video
  over `--max-video-seconds` is refused before its render is queued, and a render stops there when
  the file hid its length. The Still and Video tabs check their uploads in Gradio's validator
  (`validator`), which runs when a request arrives, so a bad upload never waits in the queue. A
  visitor renders one video at a time: a second while the first runs is refused (`App.rendering`).
  A visitor's live frames past `UI_LIVE_MAX_FPS` are dropped before any work (`FrameRate`). Inputs
  bigger than a tab's working size are downscaled with a notice.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import streamdream  # noqa: F401  (first: sets OpenMP's spin count before torch loads)

import gradio as gr
import numpy as np

from streamdream.admission import LiveRoom, Opener, Queued, QueueFull
from streamdream.engine import LiveEngine, LiveSession, shared_engine
from streamdream.errors import StreamdreamError
from streamdream.io.images import load_image, resize_max_side, save_image
from streamdream.looks import Look, default_capacity
from streamdream.models import create_model
from streamdream.settings import (
    DEFAULT_MODEL,
    DEFAULT_PRESET,
    LIVE_MAX_SIDE,
    DEFAULT_BUILTIN_STYLE,
    PRESETS,
    STYLE_METHOD,
    UI_LIVE_IDLE_S,
    UI_LIVE_MAX_FPS,
    UI_LIVE_RATE_WINDOW_S,
    UI_LIVE_TIME_LIMIT,
    UI_MAX_PIXELS,
    UI_MAX_STILL_SIDE,
    UI_MAX_UPLOAD_MB,
    UI_MAX_VIDEO_SECONDS,
    UI_RENDERS,
    UI_STILL_SIDE,
    UI_VIDEO_SIDE,
    DreamSettings,
    live_preset,
    preset,
)

from .ui_modes import (
    MODES,
    TOOLS,
    available_models,
    device,
    layers,
    mode_view,
    still_recipe,
    stream_settings,
    strength_slider,
    video_recipe,
)
from .ui_styles import (
    CSS as STYLES_CSS,
    Camera,
    InlinePicture,
    Picture,
    StyleControls,
    chosen_style,
    live_style,
    named,
    picture_problem,
    style_controls,
    style_method,
    thumbnails,
    uploaded,
)

if TYPE_CHECKING:
    from streamdream.distributed.live_replicas import LiveReplicas

LIVE_VIEW_HEIGHT = 360  # px: the camera preview and the live dream are shown at this same height
# A live frame is small (240 px on a CPU); stretch the dream over its whole box, like the camera's preview.
CSS = "#live-output img { width: 100%; height: 100%; object-fit: contain; }\n" + STYLES_CSS


# ---------------------------------------------------------------- per-session state


@dataclass
class LiveState:
    """One browser session's live stream: its session on the live engine (the `LiveRoom`'s), for `close_live`."""

    session: LiveSession | None = None


def close_live(state: LiveState | None) -> None:
    """`gr.State`'s delete callback: the browser session ended or its stream went idle."""
    if isinstance(state, LiveState) and state.session is not None:
        state.session.close()


class Cancelled(Exception):
    pass


def visitor_of(request: gr.Request | None) -> str:
    """Who a request comes from: its browser session (requests made without one share "anonymous")."""
    return getattr(request, "session_hash", None) or "anonymous"


def queue_message(place: int, capacity: int) -> str:
    seats = "the live seat is" if capacity == 1 else f"all {capacity} live seats are"
    return f"{seats} taken: you are number {place} in the queue. Keep this tab open: your dream starts as soon as a seat frees."


class FrameRate:
    """At most `fps` live frames a second from each visitor, measured over `window_s` (a token bucket
    each: a burst of `fps * window_s` frames passes, then one per 1/`fps` s).

    A browser sends 10 frames a second; a script could send thousands, and every frame costs a seat
    check and a turn at the engine's queue although the engine keeps only the newest. `allow` says no
    to the excess before any of that, without a message: the page just keeps its last picture.
    `clock`: seconds, monotonic (tests pass their own).
    """

    def __init__(self, fps: float, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.fps, self.burst, self.window_s, self.clock = fps, fps * window_s, window_s, clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # visitor -> (frames they may still send, when counted)
        self._swept = clock()

    def allow(self, visitor: str) -> bool:
        with self._lock:
            now = self.clock()
            self._sweep(now)
            tokens, then = self._buckets.get(visitor, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.fps)
            allowed = tokens >= 1
            self._buckets[visitor] = (tokens - 1 if allowed else tokens, now)
            return allowed

    def _sweep(self, now: float) -> None:  # under the lock
        """Forget, once a window, the visitors silent for a whole window: their buckets are full again,
        as good as none, so the table holds only the visitors streaming now."""
        if now - self._swept >= self.window_s:
            self._buckets = {visitor: (tokens, then) for visitor, (tokens, then) in self._buckets.items() if now - then < self.window_s}
            self._swept = now


RENDER_BUSY = "your other video is still rendering: wait for it, or cancel it, before you start another"


class App:
    """The app's folders and limits (one per `build_app`), and its live room: seats in front of the app's
    engine, or in front of engine replicas on Ray (`replicas`, `streamdream.distributed.live_replicas`),
    which then serve the Live tab and make the Still and Video tabs' dreams and paintings (the image
    tools stay on the app's engine)."""

    def __init__(self, workdir: str | os.PathLike | None = None, *, max_video_seconds: float = UI_MAX_VIDEO_SECONDS,
                 max_pixels: int = UI_MAX_PIXELS, live_fps: float = UI_LIVE_MAX_FPS, live_time_limit: int = UI_LIVE_TIME_LIMIT,
                 max_live: int | None = None, engine: LiveEngine | None = None, replicas: LiveReplicas | None = None) -> None:
        if workdir is None:
            workdir = tempfile.mkdtemp(prefix="streamdream-ui-")
            atexit.register(shutil.rmtree, workdir, ignore_errors=True)
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.outputs = self.workdir / "outputs"
        self.outputs.mkdir(exist_ok=True)
        self.max_video_seconds = max_video_seconds
        self.max_pixels = max_pixels
        self.live_time_limit = live_time_limit
        self.engine = engine or shared_engine()  # every tab's model work runs on it
        self._cancels: dict[str, threading.Event] = {}  # session hash -> "stop my render"
        self._rendering: set[str] = set()  # session hashes whose video renders now
        self._rendering_lock = threading.Lock()
        self.frame_rate = FrameRate(live_fps, UI_LIVE_RATE_WINDOW_S)
        self.replicas = replicas
        # Live seats and each seated visitor's session on the engine (or a replica), by session hash;
        # a visitor's look becomes its mode here, or on the replica that serves it (`mode_of`).
        if replicas is None:
            self.probe = default_capacity(self.engine) if max_live is None else None
            self.room = LiveRoom(self.engine, max_live if max_live is not None else self.probe.capacity)
            self.mode_of: Callable[[Look], object] = Look.mode
        else:
            self.probe = None  # each replica measured its own (or took `--max-live`)
            self.room = replicas.room()
            self.mode_of = _as_is

    def live(self, frame, state: LiveState | None, request: gr.Request | None, serve: Callable[[Opener], tuple]):
        """A Live tab frame of one visitor: `serve(open)` (`live_frame`, `open` giving their session) if
        seated, else their place in the queue; nothing changes on their page for a frame past their
        frame rate (`FrameRate`)."""
        visitor = visitor_of(request)
        if not self.frame_rate.allow(visitor):
            return gr.skip(), gr.skip(), gr.skip()
        if frame is None:
            return None, state, "waiting for the camera"
        try:
            served = self.room.serve(visitor, serve)
        except QueueFull as exc:
            return None, state, str(exc)
        if isinstance(served, Queued):
            return None, state, queue_message(served.place, self.room.capacity)
        return served

    def leave(self, request: gr.Request = None) -> None:  # annotated exactly so: Gradio passes the request
        """The visitor closed the tab: free their seat, close their live stream, cancel their render."""
        visitor = visitor_of(request)
        self.room.leave(visitor)
        cancel = self._cancels.pop(visitor, None)  # a running render holds its own reference
        if cancel is not None:
            cancel.set()

    @contextlib.contextmanager
    def rendering(self, request: gr.Request | None) -> Iterator[None]:
        """The visitor's one video render, held while it runs: a second one of theirs meanwhile is
        refused (`RENDER_BUSY`) rather than queued behind the first, a turn the others would wait through."""
        visitor = visitor_of(request)
        with self._rendering_lock:
            if visitor in self._rendering:
                raise gr.Error(RENDER_BUSY)
            self._rendering.add(visitor)
        try:
            yield
        finally:
            with self._rendering_lock:
                self._rendering.discard(visitor)

    def render_problem(self, request: gr.Request | None) -> str:
        """`RENDER_BUSY` while the visitor's video renders, else "": the validator's early word on `rendering`."""
        return RENDER_BUSY if visitor_of(request) in self._rendering else ""

    def cancel_event(self, request: gr.Request | None) -> threading.Event:
        return self._cancels.setdefault(visitor_of(request), threading.Event())  # atomic: no lock needed

    def output_folder(self) -> Path:
        folder = self.outputs / uuid.uuid4().hex
        folder.mkdir()
        return folder

    # ---- examples, generated on demand (the repository's samples/ may be empty)

    def example_stills(self) -> list[str]:
        import skimage.data
        from PIL import Image

        paths = []
        for name in ("astronaut", "coffee"):
            path = self.workdir / "examples" / f"{name}.png"
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                image = Image.fromarray(getattr(skimage.data, name)())
                image.thumbnail((384, 384))
                image.save(path)
            paths.append(str(path))
        return paths

    def example_videos(self) -> list[str]:
        from streamdream.samples.make import make_clip

        path = self.workdir / "examples" / "pan.mp4"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            make_clip("pan", path, size=(320, 240), fps=15, seconds=2)
        return [str(path)]


def _as_is(look: Look) -> Look:
    """A look as a replica's session takes it: the replica builds its mode."""
    return look


# ---------------------------------------------------------------- live


def live_frame(frame, model, objective, strength, iterations, carry, preset_name, state: LiveState | None,
               kind: str = "dream", painting: str | None = None, builtin: str = DEFAULT_BUILTIN_STYLE, *, session: Opener,
               max_pixels: int = UI_MAX_PIXELS, mode_of: Callable[[Look], object] = Look.mode):
    """One webcam frame in, its dream or painting out, plus the fps/latency readout. Called per
    streamed frame of a seated visitor (never without one: `App.live` answers those).

    The frame goes to this visitor's stream on the live engine, which `session(mode, settings, look)`
    gives (`LiveRoom.session`), and the call returns with its result, or with a newer frame's if one
    replaced it. The controls apply to the running stream from this frame on: a new strength keeps
    its warm state, a new mode, model, objective or style starts it afresh. The controls are the
    visitor's `Look`, which `mode_of` turns into what `session` takes: its mode (`Look.mode`), or
    the look itself for a replica to build (`App.mode_of`). Style mode paints
    with the uploaded `painting`, or the `builtin` style while there is none or it cannot be painted
    with, one over `max_pixels` included (`ui_styles.live_style`).

    A frame never raises a library error: called ten times a second, it would show a toast each time
    and freeze the picture. What went wrong is one line in the readout, with what is shown instead:
    the built-in style for a bad painting, the camera as it is for a mode that cannot be built or run.
    """
    state = state if isinstance(state, LiveState) else LiveState()
    frame = np.ascontiguousarray(frame[..., :3])
    side = LIVE_MAX_SIDE.on(device())
    if max(frame.shape[:2]) > side:  # shrink big camera frames; never blow small ones up
        frame = resize_max_side(frame, side)
    style, note = live_style(painting, builtin, max_pixels) if kind == "style" else (None, "")
    try:
        look = Look(kind, model, objective, strength, style)
        live = state.session = session(mode_of(look), stream_settings(preset_name, carry, iterations), look.stream)
        result = live.wait(live.submit(frame))
    except StreamdreamError as exc:
        return frame, state, f"{exc} · showing the camera as it is"
    t = live.stream.timings
    # Why the picture changed, if it did: memory ran out (smaller from now on), or the session moved (`RemoteSession.notice`).
    why = f"working at {live.working_side} px since memory ran out" if live.working_side else live.notice
    readout = (
        f"fps {live.fps():.1f} · latency {result.latency_ms:.0f} ms (flow {t.flow_ms:.0f}, {kind} {t.optimize_ms:.0f})"
        f" · {frame.shape[1]}x{frame.shape[0]} · frame {live.processed}" + (f" · {live.dropped} dropped" if live.dropped else "")
        + (f" · {why}" if why else "")
    )
    return result.image, state, f"{note} · {readout}" if note else readout


def preset_values(preset_name: str):
    p = preset(preset_name)
    return gr.update(value=p.frame_iterations), gr.update(value=p.carry)


# ---------------------------------------------------------------- still


@contextlib.contextmanager
def shown_as_error(*uploads: str | None) -> Iterator[None]:
    """A library error as Gradio's error message: one toast for the click that caused it (Still, Video),
    naming `uploads` by their file names, not their paths in the app's folder (`ui_styles.named`)."""
    try:
        yield
    except StreamdreamError as exc:
        raise gr.Error(named(str(exc), *uploads)) from None


def image_tool(kind: str, rgb: np.ndarray | None, model: str, objective: str, class_index: int, seed: int) -> tuple[np.ndarray, str]:
    """The image-gradient tools of the Still tab: (picture to show, one line about it)."""
    from streamdream import gradients
    from streamdream.models import imagenet_labels

    model = model or DEFAULT_MODEL
    index = int(class_index)
    with shown_as_error():
        if kind == "classviz":
            label = imagenet_labels()[index] if 0 <= index < 1000 else "?"
            return gradients.class_visualization(index, seed=seed, model=model), f"class {index} ({label}) grown from noise"
        if kind == "saliency":
            top = gradients.classify(rgb, model, top=3)
            overlay = gradients.saliency_overlay(rgb, gradients.saliency(rgb, model=model))
            return overlay, "saliency of the top class; top 3: " + ", ".join(f"{p.label} {p.prob:.2f}" for p in top)
        if kind == "fool":
            result = gradients.fool(rgb, index, model=model)
            if not result.success:
                raise gr.Error(f"not fooled into class {index} within {result.iterations} steps")
            return result.image, f"now seen as class {index} ({imagenet_labels()[index]}) after {result.iterations} steps, L-inf {255 * result.linf:.0f}/255"
        layer = objective or "stem"
        return gradients.invert(rgb, layer, model=model, seed=seed), f"reconstructed from the features of {layer}"


def dream_still(path, model, objective, strength, octaves, iterations, max_side, seed, app: App,
                kind: str = "dream", style_path: str | None = None, class_index: int = 1, method: str = STYLE_METHOD,
                builtin: str = DEFAULT_BUILTIN_STYLE):
    rgb, note = None, "from noise"
    if path:
        with shown_as_error(path):
            rgb = load_image(path).rgb
        side = min(int(max_side), UI_MAX_STILL_SIDE)
        h, w = rgb.shape[:2]
        note = f"{w}x{h}"
        if max(h, w) > side:
            rgb = resize_max_side(rgb, side)
            note = f"downscaled from {w}x{h} to {rgb.shape[1]}x{rgb.shape[0]} (max side {side})"
            gr.Info(note)
    elif kind != "classviz":
        raise gr.Error("upload a picture first")
    started, where = time.perf_counter(), None
    if kind in TOOLS:
        out, about = app.engine.run(image_tool, kind, rgb, model, objective, class_index, int(seed))
        note = f"{note} · {about}"
    else:
        with shown_as_error(style_path):
            recipe = still_recipe(kind, model, objective, strength, chosen_style(style_path, builtin), octaves, iterations, method)
            if app.replicas is None:
                out = app.engine.run(recipe().still, rgb, int(seed))
            else:  # built and made on a replica, whose errors come back here
                out, where = app.replicas.still(recipe, rgb, int(seed))
    rgb = out if rgb is None else rgb
    folder = app.output_folder()
    before, after = folder / "before.png", folder / f"{kind}.png"
    save_image(before, rgb)
    save_image(after, out)
    return (str(before), str(after)), str(after), f"{note} · {time.perf_counter() - started:.1f} s" + (f" on {where}" if where else "")


# ---------------------------------------------------------------- video


def too_long(name: str, limit: float, seconds: float | None = None) -> str:
    """The one message for a video over `limit` seconds (`seconds` long, where its header says)."""
    length = f"is {seconds:.1f} s long" if seconds else f"is longer than {limit:g} s"
    return f"the video {name} {length}; the limit here is {limit:g} s"


def video_problem(path: str | None, limit: float) -> str:
    """Why an uploaded video is refused before its render is queued: not a video, or over `limit`
    seconds by its header. One line naming the file; "" when it is fine or there is none."""
    from streamdream.io.video import probe_video

    if not path:
        return ""
    try:
        info = probe_video(path)
    except StreamdreamError as exc:
        return named(str(exc), path)
    return too_long(Path(path).name, limit, info.duration) if info.duration and info.duration > limit else ""


def dream_video(path, model, objective, strength, carry, iterations, preset_name, max_side, app: App,
                request: gr.Request = None, progress=gr.Progress(), kind: str = "dream", style_path: str | None = None,
                method: str = STYLE_METHOD, builtin: str = DEFAULT_BUILTIN_STYLE):
    """Render the video at `path`. Its length was checked from its header before the request was
    queued (`video_problem`); a file that hid its length, or understated it, stops at the limit all the same."""
    from streamdream.io.video import probe_video
    from streamdream.video import RenderOptions, RenderReport, fit_max_side, process_video

    if not path:
        raise gr.Error("upload a video first")
    with shown_as_error(path):
        info = probe_video(path)
    notes = []
    fitted = fit_max_side(info, int(max_side))
    if (fitted.width, fitted.height) != (info.width, info.height):
        notes.append(f"downscaled from {info.width}x{info.height} to {fitted.width}x{fitted.height}")
        gr.Info(notes[-1])
    with shown_as_error(style_path):
        recipe = video_recipe(kind, model, objective, strength, chosen_style(style_path, builtin), method)  # first frame: as the CLI
        if app.replicas is None:  # built here, its frames taking turns with the live ones; else built on the replica that renders it
            mode = app.engine.serialized(recipe())

            def render(dst: Path, options: RenderOptions, on_frame: Callable) -> tuple[RenderReport, str | None]:
                return process_video(path, dst, mode, options, on_frame=on_frame), None
        else:
            render = functools.partial(app.replicas.render, recipe, path)
        settings = stream_settings(preset_name, carry, iterations)
    cancel = app.cancel_event(request)
    cancel.clear()
    most = app.max_video_seconds * info.fps + 1  # frames in the longest video taken (one more: a rounded length)
    dst = app.output_folder() / f"{kind}.mp4"
    progress((0, info.frame_count), desc="rendering", unit="frames")

    def on_frame(done: int, total: int | None) -> None:
        if cancel.is_set():
            raise Cancelled
        if done > most:
            raise StreamdreamError(too_long(Path(path).name, app.max_video_seconds))
        progress((done, total) if total else None, desc="rendering", unit="frames")

    try:
        report, where = render(dst, RenderOptions(settings, max_side=int(max_side), preset="veryfast"), on_frame)
    except Cancelled:
        shutil.rmtree(dst.parent, ignore_errors=True)
        raise gr.Error("render cancelled", print_exception=False) from None
    except StreamdreamError as exc:
        shutil.rmtree(dst.parent, ignore_errors=True)
        raise gr.Error(named(str(exc), path, style_path)) from None
    notes.append(f"{report.frames} frames in {report.seconds:.1f} s ({report.fps:.1f} fps)" + (f" on {where}" if where else ""))
    return str(dst), str(dst), " · ".join(notes)


def cancel_video(request: gr.Request, app: App):
    app.cancel_event(request).set()
    return "cancelling…"


# ---------------------------------------------------------------- layout


def _mode_controls(tab: str, pictures: tuple, modes: tuple[str, ...] = MODES, *, methods: bool = True):
    """Dream or style (or a tool), and the style controls shown in style mode (`ui_styles.style_controls`),
    the built-in styles' gallery showing `pictures`. Without `methods` (Live) a style is the network's."""
    with gr.Row():
        kind = gr.Radio(list(modes), value="dream", label="mode", elem_id=f"{tab}-mode")
        method = style_method(tab) if methods else None
    return kind, style_controls(tab, pictures, method)


def _follow_mode(kind: gr.Radio, style: StyleControls, **controls: gr.components.Component) -> None:
    """Show, hide, relabel and re-range a tab's style controls and `controls` when its mode or style
    method changes (`ui_modes.mode_view`)."""
    controls = {**style.parts(), **controls}
    parts = tuple(controls)
    inputs = [kind] if style.method is None else [kind, style.method]
    gr.on([control.change for control in inputs], lambda k, m=STYLE_METHOD: mode_view(k, parts, m), inputs, list(controls.values()),
          queue=False, api_visibility="private")


def _strength(tab: str) -> gr.Slider:
    """A tab's strength slider, as for a dream (the mode re-ranges it: `ui_modes.strength_slider`)."""
    return gr.Slider(**strength_slider("dream"), label="strength", elem_id=f"{tab}-strength")


def _model_controls(default_objective: str, tab: str):
    models = available_models()
    with gr.Row():
        model = gr.Dropdown(models, value=models[0], label="model", elem_id=f"{tab}-model")
        objective = gr.Dropdown(list(layers(models[0])), value=default_objective, allow_custom_value=True, elem_id=f"{tab}-objective",
                                label="objective / layer", info='a layer, "blocks.4:39", "logit:285", "blocks.4 + 0.5*blocks.5"')
    model.change(lambda m: gr.update(choices=list(layers(m)), value=create_model(m, device="cpu").defaults.dream), model, objective,
                 queue=False, api_visibility="private")
    return model, objective


Check = Callable[[dict, gr.Request], str]  # (every input's value by its component, the request) -> what is wrong, "" if nothing


def validator(inputs: list[gr.components.Component], checks: dict[gr.components.Component, Check]):
    """Gradio's `validator=` for an event on `inputs`: it runs when a request arrives, before the
    request is queued, so a bad upload is refused at once instead of after a wait in the queue.
    `checks` maps an input to what is wrong with it; Gradio shows that message on the input."""

    def validate(request: gr.Request, *values):  # the request first: Gradio passes it by this annotation
        given = dict(zip(inputs, values))
        problems = [checks[control](given, request) if control in checks else "" for control in inputs]
        return [gr.validate(not problem, problem) for problem in problems]

    return validate


def build_app(workdir: str | os.PathLike | None = None, *, max_video_seconds: float = UI_MAX_VIDEO_SECONDS, max_pixels: int = UI_MAX_PIXELS,
              live_fps: float = UI_LIVE_MAX_FPS, live_time_limit: int = UI_LIVE_TIME_LIMIT, max_live: int | None = None,
              engine: LiveEngine | None = None, replicas: LiveReplicas | None = None) -> gr.Blocks:
    """The app; its tabs run on `engine` (default: the process's shared live engine), or on
    `replicas` when given (live engine replicas on Ray, with their own seats; the Still tab's image
    tools stay on `engine`). `max_live`: live seats (default: as many as this machine serves at a
    moving frame rate, measured now). The limits
    (`App`): videos up to `max_video_seconds`, pictures up to `max_pixels`, `live_fps` live frames a
    second from each visitor."""
    app = App(workdir, max_video_seconds=max_video_seconds, max_pixels=max_pixels, live_fps=live_fps, live_time_limit=live_time_limit,
              max_live=max_live, engine=engine, replicas=replicas)

    def picture_check(picture: gr.components.Component, kind: gr.Radio | None = None) -> Check:
        """`picture`'s upload checked (`picture_problem`); with `kind`, in style mode only (a painting is hidden, and unused, in the others)."""
        return lambda given, request: picture_problem(given[picture], app.max_pixels) if kind is None or given[kind] == "style" else ""

    def video_check(video: gr.Video) -> Check:
        """No second render of the visitor's while one runs (`App.rendering`), and `video`'s upload checked (`video_problem`)."""
        return lambda given, request: app.render_problem(request) or video_problem(given[video], app.max_video_seconds)

    default_objective = create_model(DEFAULT_MODEL, device="cpu").defaults.dream
    live = live_preset(device())
    pictures = app.engine.run(thumbnails, device())

    def live_endpoint(frame, model, objective, strength, iterations, carry, preset_name, state, kind="dream", painting=None,
                      builtin=DEFAULT_BUILTIN_STYLE, request: gr.Request = None):
        def serve(session: Opener):
            return live_frame(frame, model, objective, strength, iterations, carry, preset_name, state, kind, painting, builtin, session=session,
                              max_pixels=app.max_pixels, mode_of=app.mode_of)

        return app.live(frame, state, request, serve)

    def still_endpoint(path, model, objective, strength, octaves, iterations, max_side, seed, kind="dream", style_path=None, class_index=1,
                       method=STYLE_METHOD, builtin=DEFAULT_BUILTIN_STYLE):
        return dream_still(path, model, objective, strength, octaves, iterations, max_side, seed, app, kind, style_path, class_index, method, builtin)

    def video_endpoint(path, model, objective, strength, carry, iterations, preset_name, max_side, kind="dream", style_path=None,
                       method=STYLE_METHOD, builtin=DEFAULT_BUILTIN_STYLE, request: gr.Request = None, progress=gr.Progress()):
        with app.rendering(request):  # one render per visitor at a time
            return dream_video(path, model, objective, strength, carry, iterations, preset_name, max_side, app, request, progress,
                               kind, style_path, method, builtin)

    def cancel_endpoint(request: gr.Request):
        return cancel_video(request, app)

    with gr.Blocks(title="streamdream") as demo:
        gr.Markdown("# streamdream\nDeepDream and neural style on your webcam, videos and photos.")
        with gr.Tabs():
            with gr.Tab("Live", id="live"):
                live_state = gr.State(None, time_to_live=UI_LIVE_IDLE_S, delete_callback=close_live)
                with gr.Row():
                    cam = Camera(sources=["webcam"], streaming=True, type="numpy", label="webcam", height=LIVE_VIEW_HEIGHT, elem_id="live-input")
                    cam.max_pixels = app.max_pixels
                    live_out = InlinePicture(label="dream", type="numpy", format="jpeg", interactive=False, height=LIVE_VIEW_HEIGHT,
                                             elem_id="live-output", buttons=["download", "fullscreen"])
                readout = gr.Textbox(label="fps / latency", value="start the webcam", interactive=False, elem_id="live-readout")
                l_kind, l_style = _mode_controls("live", pictures, methods=False)
                l_painting = gr.State(None)  # the uploaded painting's path, taken unopened (`ui_styles.uploaded`)
                l_style.painting.change(uploaded, l_style.painting, l_painting, preprocess=False, queue=False, api_visibility="private")
                l_model, l_objective = _model_controls(default_objective, "live")
                with gr.Row():
                    l_strength = _strength("live")
                    l_iters = gr.Slider(0, 5, value=PRESETS[live].frame_iterations, step=1, label="iterations per frame", elem_id="live-iterations")
                    l_carry = gr.Slider(0, 1, value=PRESETS[live].carry, step=0.05, label="temporal carry", elem_id="live-carry")
                    l_preset = gr.Dropdown(list(PRESETS), value=live, label="preset")
                l_preset.change(preset_values, l_preset, [l_iters, l_carry], queue=False, api_visibility="private")
                _follow_mode(l_kind, l_style, model=l_model, objective=l_objective, strength=l_strength, frame_iterations=l_iters, output=live_out)
                cam.stream(
                    live_endpoint,
                    [cam, l_model, l_objective, l_strength, l_iters, l_carry, l_preset, live_state, l_kind, l_painting, l_style.builtin],
                    [live_out, live_state, readout],
                    api_name="live_frame",
                    stream_every=0.1,
                    time_limit=app.live_time_limit,
                    concurrency_limit=None,  # admission is the seats' (queued visitors must hear their place)
                    show_progress="hidden",
                )

            with gr.Tab("Video", id="video"):
                with gr.Row():
                    v_in = gr.Video(sources=["upload"], label="video", elem_id="video-input")
                    v_out = gr.Video(label="dream", interactive=False, elem_id="video-output")
                v_kind, v_style = _mode_controls("video", pictures)
                v_model, v_objective = _model_controls(default_objective, "video")
                with gr.Row():
                    v_strength = _strength("video")
                    v_iters = gr.Slider(0, 10, value=PRESETS[DEFAULT_PRESET].frame_iterations, step=1, label="iterations per frame", elem_id="video-iterations")
                    v_carry = gr.Slider(0, 1, value=PRESETS[DEFAULT_PRESET].carry, step=0.05, label="temporal carry")
                    v_preset = gr.Dropdown(list(PRESETS), value=DEFAULT_PRESET, label="preset")
                    v_side = gr.Slider(64, 1920, value=UI_VIDEO_SIDE.on(device()), step=16, label="max side (px)")
                v_preset.change(preset_values, v_preset, [v_iters, v_carry], queue=False, api_visibility="private")
                with gr.Row():
                    v_go = gr.Button("Dream", variant="primary", elem_id="video-go")
                    v_stop = gr.Button("Cancel", variant="stop")
                    v_file = gr.DownloadButton("Download", elem_id="video-download")
                _follow_mode(v_kind, v_style, model=v_model, objective=v_objective, strength=v_strength, frame_iterations=v_iters, button=v_go, output=v_out)
                v_note = gr.Textbox(label="status", interactive=False)
                gr.Examples([[p] for p in app.example_videos()], inputs=[v_in], label="sample clips")
                v_inputs = [v_in, v_model, v_objective, v_strength, v_carry, v_iters, v_preset, v_side, v_kind, v_style.painting, v_style.method,
                            v_style.builtin]
                render = v_go.click(
                    video_endpoint,
                    v_inputs,
                    [v_out, v_file, v_note],
                    api_name="dream_video",
                    validator=validator(v_inputs, {v_in: video_check(v_in), v_style.painting: picture_check(v_style.painting, v_kind)}),
                    concurrency_limit=UI_RENDERS,
                    concurrency_id="render",
                )
                v_stop.click(cancel_endpoint, None, v_note, cancels=[render], queue=False, api_name="cancel_video")

            with gr.Tab("Still", id="still"):
                with gr.Row():
                    s_in = Picture(sources=["upload", "clipboard"], type="filepath", label="picture", elem_id="still-input")
                    s_out = gr.ImageSlider(label="before / after", interactive=False, elem_id="still-output")
                s_kind, s_style = _mode_controls("still", pictures, MODES + TOOLS)
                s_model, s_objective = _model_controls(default_objective, "still")
                with gr.Row():
                    s_strength = _strength("still")
                    s_octaves = gr.Slider(1, 8, value=DreamSettings.default("octaves"), step=1, label="octaves", elem_id="still-octaves")
                    s_iters = gr.Slider(1, 50, value=DreamSettings.default("iterations"), step=1, label="iterations per octave", elem_id="still-iterations")
                    s_side = gr.Slider(64, UI_MAX_STILL_SIDE, value=UI_STILL_SIDE.on(device()), step=16, label="max side (px)")
                    s_seed = gr.Number(0, precision=0, label="seed")
                    s_class = gr.Number(1, precision=0, label="ImageNet class", visible=False, elem_id="still-class")
                with gr.Row():
                    s_go = gr.Button("Dream", variant="primary", elem_id="still-go")
                    s_file = gr.DownloadButton("Download", elem_id="still-download")
                _follow_mode(s_kind, s_style, model=s_model, objective=s_objective, strength=s_strength, octaves=s_octaves, iterations=s_iters,
                             class_index=s_class, button=s_go)
                s_note = gr.Textbox(label="status", interactive=False)
                gr.Examples([[p] for p in app.example_stills()], inputs=[s_in], label="sample photos")
                s_inputs = [s_in, s_model, s_objective, s_strength, s_octaves, s_iters, s_side, s_seed, s_kind, s_style.painting, s_class,
                            s_style.method, s_style.builtin]
                s_go.click(
                    still_endpoint,
                    s_inputs,
                    [s_out, s_file, s_note],
                    api_name="dream_still",
                    validator=validator(s_inputs, {s_in: picture_check(s_in), s_style.painting: picture_check(s_style.painting, s_kind)}),
                    concurrency_limit=UI_RENDERS,
                    concurrency_id="render",
                )
        demo.unload(app.leave)
    demo.streamdream_app = app  # for launch() and tests
    return demo


def launch(host: str = "127.0.0.1", port: int = 7860, share: bool = False, *, prevent_thread_lock: bool = False,
           demo: gr.Blocks | None = None, workdir: str | os.PathLike | None = None, max_live: int | None = None,
           auth: tuple[str, str] | None = None, max_upload_mb: int = UI_MAX_UPLOAD_MB, **kwargs):
    """Serve the app (`demo`, or one built with `workdir` and `max_live`), behind Gradio's login when
    `auth` (user, password) is given, refusing uploads over `max_upload_mb` MiB; returns when the
    server stops (or at once with `prevent_thread_lock`)."""
    demo = demo or build_app(workdir, max_live=max_live)
    app: App = demo.streamdream_app
    if app.probe is not None:
        tried = ", ".join(f"{count} at {fps:.1f} fps" for count, fps in app.probe.fps.items())
        print(f"live seats: {app.room.capacity} (measured streams sharing the model: {tried}; --max-live sets it)", file=sys.stderr)
    if app.replicas is not None:
        each = ", ".join(f"{replica.name}: {replica.capacity}" for replica in app.replicas.replicas)
        print(f"live seats: {app.room.capacity} on {len(app.replicas.replicas)} Ray replicas ({each}; --max-live sets each)", file=sys.stderr)
    demo.queue(default_concurrency_limit=UI_RENDERS, max_size=64)
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        max_file_size=f"{max_upload_mb}mb",
        allowed_paths=[str(app.workdir)],
        show_error=True,
        auth=auth,
        prevent_thread_lock=prevent_thread_lock,
        **{"css": CSS, **kwargs},
    )
