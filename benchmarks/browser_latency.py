"""Camera-to-screen latency of the web app's Live tab in a real browser (issue #27).

Headless Chromium's fake webcam plays a generated clip (the `pan` sample at `--resolution`, forth and
back, looped at `--camera-fps`) whose every frame carries its number in a band of black and white
blocks near its bottom: 10 bits, each a column of a block over its complement (`stamp`). Large,
high-contrast blocks, inset from the frame's edges, survive JPEG and the dream; the number is
scrambled (`code`) so that no block stays for more than 2 frames, as one that stayed would gather the
dream through the temporal carry until it could no longer be read.

In every page a probe (`PROBE_JS`, run before the app's scripts) notes, in wall-clock milliseconds:
when the camera preview presents each frame number (requestVideoFrameCallback); each frame Gradio's
webcam captures (its canvas' `toDataURL`) and when its POST to /stream/ is answered; and each new
dreamed picture: when its URL arrived, when it was downloaded and decoded, when the browser frame that
paints it began (requestAnimationFrame), and the number it shows. Latency = that paint time minus
the time the camera presented that number. In the server (the app, built in this process) a
`ServerProbe` times each frame's JPEG decode, the live function (flow, dream and tensor conversion
from the session's timings; the rest is the wait for the engine's turn) and the output's encode;
each shown picture is joined to its server frame (by its file, or its data URL) and that to the
page's capture (by the data URL sent), so its time splits into `STAGES`, which add up to its latency.

Figures: latency p50/p95 over all pictures shown, displayed fps (new pictures painted per second and
visitor), dropped frames (sent by a page, never shown to it), the share of pictures whose number was
read (`decode_rate`; `misread`: read, but not the number of the frame sent), and each stage's mean
and median. Variants of the app (`--stream-every`, `--format`, `--inline`: Gradio's capture period,
the output picture's format, the picture inside the server's message, as the app sends it, or as a
file in Gradio's cache for the page to download, as `gr.Image` does) are each served by their own copy of the app on one live engine and measured in turn, `--rounds`
times, so that a comparison alternates under the same machine load.

The browser runs on the server's machine and shares its CPU: on a 2-core machine its JPEG encoding,
decoding and painting compete with the dream (a real visitor's browser runs elsewhere), three
visitors' pages three times as much. The fake camera has no sensor or exposure time: "camera" here
is the moment the page could first see the frame.

Progress on stderr; one JSON object on stdout (`--out` also writes it, indented, with the machine).

    python benchmarks/browser_latency.py                                  # 1 and 3 visitors, 20 s each, 240x180
    python benchmarks/browser_latency.py --out docs/browser_latency.json  # the same, kept with the machine and date
    python benchmarks/browser_latency.py --smoke                          # CI: one visitor, a few seconds (~30 s)
    python benchmarks/browser_latency.py --visitors 1 --inline no yes --rounds 3          # A/B: the output as a file, inline
    python benchmarks/browser_latency.py --visitors 1 --stream-every 0.1 0.05 0.2 --rounds 3   # the capture period
    python benchmarks/browser_latency.py --visitors 1 --format jpeg png webp --rounds 2   # the output picture's format
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.browser import chromium, free_port, open_live, start_webcam  # noqa: E402

BITS = 10  # of the frame number, one column of the code band each
SCRAMBLE = 683  # the code is the number times this, modulo 2**BITS: every bit flips every frame or two (`code`)
BAND = 0.25  # the code band's share of the frame's height, at its bottom
INSET = 0.05  # of the frame's width: the band keeps this far from its sides and bottom, where the dream is strongest
MARGIN = 40  # least brightness difference (0-255) between a column's two blocks for a readable code
KEY_CHARS = 48  # a data URL (a captured frame, an inline picture) is known by its length and this many last characters
CLIP_S = 16.0  # the camera clip's length: numbers repeat after it, so a latency must stay well under it
STAGES = {  # where a shown frame's time went, in order: each from the end of the one before
    "capture": "camera presents the frame -> the page's capture tick grabs it and encodes a JPEG data URL",
    "upload": "-> its POST to /stream/ is answered (the server holds it)",
    "queue": "-> the server starts decoding it (waits for the visitor's previous frame to be served)",
    "decode": "-> JPEG decoded, the live function starts",
    "engine": "-> waiting for the live engine's turn, and the live function's own work",
    "tensors": "-> the frame to and from tensors (the session's io_ms)",
    "flow": "-> optical flow for the temporal carry (flow_ms)",
    "dream": "-> the dream steps (optimize_ms); the live function returns",
    "encode": "-> Gradio encodes the output picture into its cache, or inline (postprocess)",
    "deliver": "-> its URL (or data URL) reaches the page (server-sent event) and the page sets the <img>",
    "download": "-> the picture is downloaded (a file) and decoded",
    "display": "-> the browser frame that paints it begins (requestAnimationFrame)",
}
TARGETS = {"visitors": 1, "latency_p50_ms": 250, "latency_p95_ms": 400}

PROBE_JS = r"""(() => {
  const T = () => performance.timeOrigin + performance.now();
  const probe = window.latencyProbe = {camera: [], captures: [], shown: []};
  const bandBox = (width, height) => {  // as `band_box` in Python
    const inset = Math.round(width * LAYOUT.inset);
    return [inset, Math.round(height * (1 - LAYOUT.band)), width - inset, height - inset];
  };
  const keyOf = url => `${url.length}:${url.slice(-LAYOUT.key_chars)}`;  // a data URL, known without keeping it
  // a picture shown: its file in Gradio's cache, or its data URL's key when inline
  const pictureKey = src => src.startsWith("data:") ? keyOf(src) : decodeURIComponent(src.split("file=").pop());
  const scratch = document.createElement("canvas");
  const context = scratch.getContext("2d", {willReadFrequently: true});

  // The frame number in the code band of `source` (width x height), or -1 where unreadable: per column
  // the top block's mean brightness (its inner half) minus the bottom one's, every column at least
  // LAYOUT.margin apart, most significant bit first (last in a mirrored frame), unscrambled (`code`).
  function readCode(source, width, height, mirrored) {
    const [left, top, right, bottom] = bandBox(width, height), w = scratch.width = right - left, h = scratch.height = bottom - top;
    context.drawImage(source, left, top, w, h, 0, 0, w, h);
    const px = context.getImageData(0, 0, w, h).data, cellW = w / LAYOUT.bits, cellH = h / 2;
    const mean = (col, row) => {
      let sum = 0, n = 0;
      for (let y = Math.round((row + 0.25) * cellH); y < Math.round((row + 0.75) * cellH); y++)
        for (let x = Math.round((col + 0.25) * cellW), i = 4 * (y * w + x); x < Math.round((col + 0.75) * cellW); x++, i += 4, n += 3)
          sum += px[i] + px[i + 1] + px[i + 2];
      return sum / n;
    };
    const diffs = Array.from({length: LAYOUT.bits}, (_, col) => mean(col, 0) - mean(col, 1));
    if (mirrored) diffs.reverse();
    if (Math.min(...diffs.map(Math.abs)) < LAYOUT.margin) return -1;
    const n = diffs.reduce((bits, d) => (bits << 1) | (d > 0), 0) * LAYOUT.unscramble % 2 ** LAYOUT.bits;
    return n < LAYOUT.period ? n : -1;
  }

  // Capture: Gradio's webcam draws its <video> into a canvas every `stream_every` s and sends a JPEG data URL.
  const toDataURL = HTMLCanvasElement.prototype.toDataURL;
  HTMLCanvasElement.prototype.toDataURL = function (...args) {
    const t0 = T(), url = toDataURL.apply(this, args), t1 = T();
    if (args[0] === "image/jpeg" && this.width)
      probe.captures.push({t0, t1, key: keyOf(url), tail: url.slice(-LAYOUT.key_chars), code: readCode(this, this.width, this.height, LAYOUT.mirrored)});
    return url;
  };

  // Upload: every frame after the first is POSTed to /stream/<event id>; the answer: the server holds it.
  const fetch = window.fetch;
  window.fetch = async function (input, init) {
    const body = init && init.body;
    if (typeof body !== "string" || !/\/stream\/[^/]+$/.test(String((input && input.url) || input))) return fetch.apply(this, arguments);
    const t0 = T(), response = await fetch.apply(this, arguments), t1 = T();
    const capture = probe.captures.findLast(c => c.post0 === undefined && body.includes(c.tail));
    if (capture) Object.assign(capture, {post0: t0, post1: t1});
    return response;
  };

  // The camera: the number of every frame the page's preview <video> presents, and when (the camera's
  // own capture time where Chromium gives one).
  probe.watchCamera = video => {
    const onFrame = (now, meta) => {
      probe.camera.push([T(), meta.captureTime ? performance.timeOrigin + meta.captureTime : null, readCode(video, video.videoWidth, video.videoHeight, false)]);
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };

  // Display: each new output picture: its URL's arrival, downloaded and decoded, painted, its number.
  probe.watchOutput = root => {
    let last = null;
    const check = () => {
      const img = root.querySelector("img"), src = img && img.src;
      if (!src || src === last) return;
      const shown = {key: pictureKey(last = src), t_src: T()};
      probe.shown.push(shown);
      img.decode().then(() => {
        shown.t_decoded = T();
        requestAnimationFrame(() => {
          if (img.src !== src) return;  // replaced before it was painted
          shown.t_paint = T();
          shown.code = readCode(img, img.naturalWidth, img.naturalHeight, LAYOUT.mirrored);
        });
      }, () => {});
    };
    new MutationObserver(check).observe(root, {subtree: true, childList: true, attributes: true, attributeFilter: ["src"]});
  };
})();"""
WARM_FRAMES = 4  # frames served to a page before its warm-up time starts: the first ones pay one-time costs (a still dream, the flow's start-up)
WARM_JS = "least => Number((document.querySelector('#live-readout textarea').value.match(/ frame (\\d+)/) || [])[1] || 0) >= least"
PAINTED_JS = "([since, least]) => latencyProbe.shown.filter(shown => shown.t_paint >= since).length >= least"
WATCH_JS = """() => { latencyProbe.watchCamera(document.querySelector('#live-input video'));
                      latencyProbe.watchOutput(document.querySelector('#live-output')); }"""


# ---------------------------------------------------------------- the camera clip


def code(number: int) -> int:
    """The bits shown for frame `number`: scrambled so that no block of the band stays black or white for
    more than 2 frames. A block that stays gathers the dream (the temporal carry lays each frame's change
    over the next), until its black and its white are two colours of one brightness."""
    return number * SCRAMBLE % 2**BITS


def band_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The code band's left, top, right and bottom in a frame of `width` x `height` (`PROBE_JS`'s `bandBox`)."""
    inset = round(width * INSET)
    return inset, round(height * (1 - BAND)), width - inset, height - inset


def stamp(frame: np.ndarray, number: int) -> np.ndarray:
    """`frame` with `number` in its code band (see `PROBE_JS`'s `readCode`, which reads it back)."""
    frame = frame.copy()
    left, top, right, bottom = band_box(frame.shape[1], frame.shape[0])
    middle, width = (top + bottom) // 2, right - left
    for col in range(BITS):
        bit = code(number) >> (BITS - 1 - col) & 1
        x0, x1 = left + round(col * width / BITS), left + round((col + 1) * width / BITS)
        frame[top:middle, x0:x1] = 255 * bit
        frame[middle:bottom, x0:x1] = 255 * (1 - bit)
    return frame


def code_clip(folder: Path, size: tuple[int, int], fps: int) -> tuple[Path, int]:
    """The fake camera's clip: the `pan` sample forth and back (the loop never jumps), each frame
    stamped with its number; (path, frames)."""
    from streamdream.samples.make import _write_y4m, camera_frames

    count = round(fps * CLIP_S / 2) * 2
    if count > 2**BITS:
        raise ValueError(f"{count} frames do not fit {BITS} bits: lower --camera-fps")
    frames, _ = camera_frames("pan", size, count // 2)
    path = folder / "camera.y4m"
    _write_y4m([stamp(frame, i) for i, frame in enumerate(frames + frames[::-1])], path, fps)
    return path, count


# ---------------------------------------------------------------- the server's side


def block(demo, elem_id: str):
    """The app's component with this `elem_id` (the Live tab's: live-input, live-output)."""
    return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def live_function(demo):
    """The Live tab's stream event (Gradio's BlockFunction of `live_frame`)."""
    return next(fn for fn in demo.fns.values() if fn.api_name == "live_frame")


def url_key(url: str) -> str:
    """A data URL's key, as `PROBE_JS`'s `keyOf` makes it."""
    return f"{len(url)}:{url[-KEY_CHARS:]}"


class ServerProbe:
    """Wall-clock times of each Live frame the app serves, one dict per frame shown (`frames`).

    The webcam's `preprocess` (JPEG data URL to array), the live function and the output's
    `postprocess` (array to a JPEG/PNG/WebP file in Gradio's cache) are wrapped on this app's
    components; a frame is followed from one to the next by the identity of the array passed on.
    """

    def __init__(self, demo) -> None:
        self.frames: list[dict] = []
        self._decoded: dict[int, tuple[np.ndarray, dict]] = {}  # id(input array) -> (it, its times so far)
        self._served: dict[int, tuple[np.ndarray, dict]] = {}  # id(output array) -> (it, its times so far)
        camera, output, fn = block(demo, "live-input"), block(demo, "live-output"), live_function(demo)
        camera.preprocess = self._preprocess(camera.preprocess)
        output.postprocess = self._postprocess(output.postprocess)
        fn.fn = self._function(fn.fn)

    def _preprocess(self, preprocess):
        def timed(payload):
            started = time.time()
            frame = preprocess(payload)
            if frame is not None and getattr(payload, "url", None):
                self._decoded[id(frame)] = frame, {"key": url_key(payload.url), "pre0": started}
            return frame
        return timed

    def _function(self, fn):
        @functools.wraps(fn)  # Gradio reads the signature (the request parameter) through __wrapped__
        def timed(frame, *args, **kwargs):
            started = time.time()
            out = fn(frame, *args, **kwargs)
            held = self._decoded.pop(id(frame), None)
            image, state = out[0], out[1]
            if held and isinstance(image, np.ndarray) and getattr(state, "session", None) is not None:
                t = state.session.stream.timings
                self._served[id(image)] = image, {**held[1], "fn0": started, "fn1": time.time(), "flow_ms": t.flow_ms,
                                                  "dream_ms": t.optimize_ms, "tensors_ms": t.io_ms}
            return out
        return timed

    def _postprocess(self, postprocess):
        def timed(value):
            data = postprocess(value)
            held = self._served.pop(id(value), None) if value is not None else None
            if held and data is not None:
                shown = str(data.path) if data.path else url_key(data.url)  # as `PROBE_JS`'s `pictureKey`
                self.frames.append({**held[1], "post1": time.time(), "shown": shown})
            return data
        return timed


@dataclass(frozen=True)
class Variant:
    """A change to the app as built (None: as built): Gradio's webcam capture period (s), the output
    picture's format, and `inline`: the picture sent inside the server's message as a data URL
    (`ui_styles.InlinePicture`, the app's way) or written to Gradio's cache for the page to download
    (`gr.Image`'s)."""

    stream_every: float | None = None
    format: str | None = None
    inline: bool | None = None

    def apply(self, demo) -> dict:
        """Make `demo` this variant (before it is launched); returns its settings as they now are."""
        import gradio as gr
        from streamdream.apps.ui_styles import InlinePicture

        fn, output = live_function(demo), block(demo, "live-output")
        if self.stream_every is not None:
            fn.stream_every = self.stream_every
        if self.format is not None:
            output.format = self.format
        if self.inline is not None:
            output.postprocess = functools.partial((InlinePicture if self.inline else gr.Image).postprocess, output)
        inline = self.inline if self.inline is not None else isinstance(output, InlinePicture)
        return {"stream_every": fn.stream_every, "format": output.format, "inline": inline}


@dataclass
class Served:
    """One variant's copy of the app, launched: its Blocks, its server probe, its settings as measured."""

    demo: object
    probe: ServerProbe
    settings: dict


@contextlib.contextmanager
def served(variants: list[Variant], seats: int) -> Iterator[dict[Variant, Served]]:
    """Each variant's copy of the app, launched on a free port, all on one live engine (one model, one lock)."""
    from streamdream.apps.ui import build_app, launch
    from streamdream.engine import LiveEngine

    with LiveEngine() as engine, tempfile.TemporaryDirectory(prefix="browser-latency-") as folder:
        apps = {}
        try:
            for i, variant in enumerate(variants):
                demo = build_app(Path(folder) / str(i), max_live=seats, engine=engine)
                settings = variant.apply(demo)
                apps[variant] = Served(demo, ServerProbe(demo), settings)
                launch("127.0.0.1", free_port(), demo=demo, prevent_thread_lock=True, quiet=True)
            yield apps
        finally:
            for app in apps.values():
                app.demo.close()


# ---------------------------------------------------------------- measuring


def clock_offset_ms(page) -> float:
    """The page's clock minus this process's (ms), from the quickest of a few round trips."""
    samples = []
    for _ in range(5):
        before = time.time()
        page_ms = page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time()
        samples.append((after - before, page_ms - 500 * (before + after)))
    return min(samples)[1]


@dataclass
class Visit:
    """One page's records (`PROBE_JS`) and its clock offset to the server's."""

    probe: dict
    offset_ms: float


def measure(browser, app: Served, visitors: int, seconds: float, warmup: float, period: int,
            least: int = 0) -> tuple[list[Visit], tuple[float, float]]:
    """`visitors` pages on the app's Live tab, all streaming, recorded over `seconds` (longer, until each page
    painted `least` pictures), from `warmup` s after every page was served `WARM_FRAMES` frames; returns
    their records and the window (page ms)."""
    mirrored = block(app.demo, "live-input").webcam_options.mirror  # Gradio's webcam sends (and so gets back) mirrored frames
    script = f"const LAYOUT = {json.dumps(layout(period, mirrored))};\n{PROBE_JS}"
    pages = []
    try:
        for _ in range(visitors):
            pages.append(open_live(browser, app.demo.local_url, script))
        for _, page in pages:
            start_webcam(page)
        for _, page in pages:
            page.wait_for_function(WARM_JS, arg=WARM_FRAMES, timeout=120_000)
            page.evaluate(WATCH_JS)
        time.sleep(warmup)
        start = pages[0][1].evaluate("performance.timeOrigin + performance.now()")
        time.sleep(seconds)
        for _, page in pages:
            page.wait_for_function(PAINTED_JS, arg=[start, least], timeout=120_000)
        end = pages[0][1].evaluate("performance.timeOrigin + performance.now()")
        visits = [Visit(page.evaluate("latencyProbe"), clock_offset_ms(page)) for _, page in pages]
    finally:
        for context, _ in pages:
            context.close()
    wait_until_free(app.demo)
    return visits, (start, end)


def wait_until_free(demo, timeout: float = 15.0) -> None:
    """Until the closed pages' seats are free (on unload, or after the seats' idle time), so the next run is seated."""
    seats, deadline = demo.streamdream_app.room.seats, time.monotonic() + timeout
    while seats.seated() and time.monotonic() < deadline:
        time.sleep(0.1)


def layout(period: int, mirrored: bool) -> dict:
    """What `PROBE_JS` reads codes with: the band, the numbers in use, whether the page mirrors the webcam."""
    return {"bits": BITS, "band": BAND, "inset": INSET, "margin": MARGIN, "unscramble": pow(SCRAMBLE, -1, 2**BITS), "period": period,
            "mirrored": mirrored, "key_chars": KEY_CHARS}


# ---------------------------------------------------------------- analysis


class CameraTimeline:
    """When one page's camera presented each frame: numbers unwrapped across the clip's loops (k).

    The preview's callbacks skip frames when the page is busy and can stall for a while after a
    capture already drew a newer frame: missing frames are interpolated, and a number up to `LEAD_S`
    of frames ahead of the last one presented is taken as that coming frame, not one a loop ago.
    """

    LEAD_S = 2.0

    def __init__(self, samples: list, period: int) -> None:
        ks, ts = [], []
        for shown, captured, number in samples:
            if number < 0:
                continue
            k = number if not ks else ks[-1] + (number - ks[-1]) % period
            if not ks or k != ks[-1]:
                ks.append(k)
                ts.append(captured or shown)
        self.ks, self.ts, self.period = np.array(ks), np.array(ts), period
        self.frame_ms = (ts[-1] - ts[0]) / (ks[-1] - ks[0]) if len(ks) > 1 else 0.0
        self.lead = round(1000 * self.LEAD_S / self.frame_ms) if self.frame_ms else 0

    def index(self, number: int, at: float) -> int | None:
        """The unwrapped number of the frame numbered `number` that the camera presented last by `at`."""
        last = np.searchsorted(self.ts, at, side="right") - 1
        if last < 0:
            return None
        newest = int(self.ks[last])
        k = newest + self.lead - (newest + self.lead - number) % self.period
        return k if k >= self.ks[0] else None

    def time(self, k: int) -> float:
        """When frame `k` was presented (between presented frames: interpolated; past the last: extrapolated)."""
        if k > self.ks[-1]:
            return float(self.ts[-1] + (k - self.ks[-1]) * self.frame_ms)
        return float(np.interp(k, self.ks, self.ts))

    def between(self, start: float, end: float) -> set[int]:
        return set(self.ks[(self.ts >= start) & (self.ts < end)].tolist())


@dataclass
class Counts:
    """What one run's pages did within the window, summed over its visitors."""

    painted: int = 0  # new pictures painted
    decoded: int = 0  # of them, their number read
    unplaced: int = 0  # of those, a number the page's camera was not seen presenting (no latency for them)
    sent: int = 0  # frames the pages POSTed
    sent_not_shown: int = 0
    camera_frames: int = 0
    camera_not_shown: int = 0
    latencies: list[float] = field(default_factory=list)  # ms, per painted and decoded picture
    stages: list[dict[str, float]] = field(default_factory=list)  # per painted picture joined to its capture and server frame
    misread: int = 0  # pictures joined to their sent frame whose number read differs from the frame's


def analyse(visits: list[Visit], server: list[dict], window: tuple[float, float], period: int) -> Counts:
    counts = Counts()
    by_picture = {frame["shown"]: frame for frame in server}
    for visit in visits:
        count_visit(visit, by_picture, window, period, counts)
    return counts


def count_visit(visit: Visit, by_picture: dict[str, dict], window: tuple[float, float], period: int, counts: Counts) -> None:
    camera = CameraTimeline(visit.probe["camera"], period)
    captures: dict[str, list[dict]] = {}  # the clip loops: its frames' data URLs come back every loop
    for capture in visit.probe["captures"]:
        captures.setdefault(capture["key"], []).append(capture)
    start, end = window
    shown_ks, shown_captures = set(), set()
    for shown in visit.probe["shown"]:
        if not start <= shown.get("t_paint", -1) < end:
            continue
        counts.painted += 1
        if shown["code"] < 0:
            continue
        counts.decoded += 1
        k = camera.index(shown["code"], shown["t_paint"])
        if k is None:
            counts.unplaced += 1
            continue
        shown_ks.add(k)
        counts.latencies.append(shown["t_paint"] - camera.time(k))
        frame = by_picture.get(shown["key"])
        frame = server_ms(frame, visit.offset_ms) if frame else None
        capture = sent_before(captures.get(frame["key"], []), frame["pre0"]) if frame else None
        sent_k = camera.index(capture["code"], capture["t0"]) if capture and capture["code"] >= 0 else None
        if sent_k is not None:
            shown_captures.add(id(capture))
            counts.stages.append(stages(camera.time(sent_k), capture, frame, shown))
            counts.misread += k != sent_k
    sent = [c for c in visit.probe["captures"] if "post1" in c and start <= c["t0"] < end]
    counts.sent += len(sent)
    counts.sent_not_shown += sum(id(c) not in shown_captures for c in sent)
    in_view = camera.between(start, end)
    counts.camera_frames += len(in_view)
    counts.camera_not_shown += len(in_view - shown_ks)


def sent_before(captures: list[dict], received: float) -> dict | None:
    """Of the POSTed captures of one picture, the last sent before the server took it at `received` (page ms)."""
    return max((c for c in captures if c.get("post0", received) < received), key=lambda c: c["post0"], default=None)


def server_ms(frame: dict, offset_ms: float) -> dict:
    """A server frame's times on the page's clock (ms)."""
    return {key: value * 1000 + offset_ms if key in ("pre0", "fn0", "fn1", "post1") else value for key, value in frame.items()}


def stages(camera_ms: float, capture: dict, frame: dict, shown: dict) -> dict[str, float]:
    """One shown frame's `STAGES` (ms); they add up to its paint time minus its camera time."""
    work = frame["fn1"] - frame["fn0"]
    return {
        "capture": capture["t1"] - camera_ms,
        "upload": capture["post1"] - capture["t1"],
        "queue": frame["pre0"] - capture["post1"],
        "decode": frame["fn0"] - frame["pre0"],
        "engine": work - frame["tensors_ms"] - frame["flow_ms"] - frame["dream_ms"],
        "tensors": frame["tensors_ms"],
        "flow": frame["flow_ms"],
        "dream": frame["dream_ms"],
        "encode": frame["post1"] - frame["fn1"],
        "deliver": shown["t_src"] - frame["post1"],
        "download": shown["t_decoded"] - shown["t_src"],
        "display": shown["t_paint"] - shown["t_decoded"],
    }


def summary(counts: Counts, visitors: int, seconds: float) -> dict:
    """The run's figures: latency percentiles, rates per visitor, drops, the decode rate, stage means."""
    latencies = np.array(counts.latencies)
    figures = {
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies.size else 0.0,
        "latency_p95_ms": float(np.percentile(latencies, 95)) if latencies.size else 0.0,
        "latency_mean_ms": float(latencies.mean()) if latencies.size else 0.0,
        "displayed_fps": counts.painted / visitors / seconds,
        "sent_fps": counts.sent / visitors / seconds,
        "dropped_frames": counts.sent_not_shown,
        "dropped_share": counts.sent_not_shown / counts.sent if counts.sent else 0.0,
        "camera_frames_not_shown_share": counts.camera_not_shown / counts.camera_frames if counts.camera_frames else 0.0,
        "decode_rate": counts.decoded / counts.painted if counts.painted else 0.0,
        "unplaced": counts.unplaced,
        "frames_shown": counts.painted,
        "frames_broken_down": len(counts.stages),
        "misread": counts.misread,
    }
    if counts.stages:
        figures["breakdown_mean_ms"] = {name: float(np.mean([s[name] for s in counts.stages])) for name in STAGES}
        figures["breakdown_p50_ms"] = {name: float(np.median([s[name] for s in counts.stages])) for name in STAGES}
        figures["breakdown_total_mean_ms"] = float(np.mean([sum(s.values()) for s in counts.stages]))
    return figures


# ---------------------------------------------------------------- the run


def run(*, visitors: tuple[int, ...] = (1, 3), seconds: float = 20.0, warmup: float = 3.0, resolution: str = "240x180", camera_fps: int = 30,
        stream_every: list[float] | None = None, formats: list[str] | None = None, inline: list[bool] | None = None,
        rounds: int = 1, least: int = 0) -> dict:
    """Every variant (`stream_every` x `formats` x `inline`, None: the app as built) with each visitor count, `rounds`
    times, variants alternating within a visitor count; the JSON report (one entry per variant and count).
    `least`: a run goes on past `seconds` until every page painted that many pictures (a slow machine's smoke run)."""
    width, height = (int(v) for v in resolution.split("x"))
    variants = [Variant(*v) for v in itertools.product(stream_every or [None], formats or [None], inline or [None])]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="browser-latency-cam-") as folder:
        clip, period = code_clip(Path(folder), (width, height), camera_fps)
        with served(variants, max(visitors)) as apps, chromium(clip) as browser:
            results = {}
            for count, _, variant in itertools.product(visitors, range(rounds), variants):
                app = apps[variant]
                print(f"{count} visitor(s), {app.settings}", file=sys.stderr)
                seen = len(app.probe.frames)
                visits, window = measure(browser, app, count, seconds, warmup, period, least)
                counts = analyse(visits, app.probe.frames[seen:], window, period)
                results.setdefault((variant, count), []).append(summary(counts, count, (window[1] - window[0]) / 1000))
            chromium_version = browser.version
    runs = [{"visitors": count, **apps[variant].settings, **pooled(rounds_)} for (variant, count), rounds_ in results.items()]
    return {
        "benchmark": "browser_latency",
        "resolution": resolution,
        "camera_fps": camera_fps,
        "seconds": seconds,
        "warmup_s": warmup,
        "rounds": rounds,
        "targets": TARGETS,
        "machine": common.machine(cpus=os.cpu_count(), chromium=chromium_version, load_before=load_before, load_after=load_average()),
        "stages": STAGES,
        "runs": runs,
    }


def load_average() -> list[float]:
    """The machine's load over 1, 5 and 15 minutes: how much else ran beside the measurement."""
    return [round(load, 2) for load in os.getloadavg()]


def pooled(rounds: list[dict]) -> dict:
    """A variant's figures: its one round's, or over several the median of their latency p50 and p95, displayed
    fps and decode rate, with every round's figures beside (`rounds`)."""
    if len(rounds) == 1:
        return rounds[0]
    keys = ("latency_p50_ms", "latency_p95_ms", "displayed_fps", "decode_rate")
    return {**{key: float(np.median([r[key] for r in rounds])) for key in keys}, "rounds": rounds}


SMOKE = {"visitors": [1], "seconds": 4.0, "warmup": 1.0, "rounds": 1, "least": 3}


def main(argv: list[str] | None = None) -> dict:
    defaults = common.run_defaults(run)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--visitors", type=int, nargs="+", help=f"visitor counts, one run each (default: {' '.join(map(str, defaults['visitors']))})")
    parser.add_argument("--seconds", type=float, help="measured seconds per run (default %(default)s)")
    parser.add_argument("--warmup", type=float, help=f"seconds streamed before measuring, once every page was served {WARM_FRAMES} frames "
                        "(default %(default)s)")
    parser.add_argument("--resolution", help="the camera's WIDTHxHEIGHT (default %(default)s, the live size on a CPU)")
    parser.add_argument("--camera-fps", type=int, help="the fake camera's frame rate (default %(default)s)")
    parser.add_argument("--stream-every", type=float, nargs="+", metavar="S", help="variants: Gradio's webcam capture period (default: the app's)")
    parser.add_argument("--format", dest="formats", nargs="+", choices=["jpeg", "png", "webp"], help="variants: the output picture's format (default: the app's)")
    parser.add_argument("--inline", nargs="+", choices=["no", "yes"], help="variants: the output picture inline in the server's message "
                        "(a data URL) or as a file the page downloads (default: yes, as the app)")
    parser.add_argument("--rounds", type=int, help="measure every variant this many times, alternating (default %(default)s)")
    parser.add_argument("--smoke", action="store_true", help=f"a short check for CI: {SMOKE}")
    parser.add_argument("--out", help="also write the report here, indented")
    parser.set_defaults(**defaults)
    args = vars(parser.parse_args(argv))
    args["inline"] = [choice == "yes" for choice in args["inline"]] if args["inline"] else None
    out, smoke = args.pop("out"), args.pop("smoke")
    report = {**run(**{**args, **(SMOKE if smoke else {})}), "smoke": smoke}
    common.print_report(report, out)
    return report


if __name__ == "__main__":
    main()
