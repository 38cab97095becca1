"""Neural style transfer: repaint a picture with the textures and colours of one or more paintings.

Gatys et al. (2016): optimize the pixels so that a frozen ImageNet CNN sees the content picture's
features at a deep layer and the paintings' feature correlations (Gram matrices) at several layers.
Stills run coarse to fine, so the style's large strokes form before the fine ones. Stream frames are
warm-started from the previous result carried along the optical flow and held to it by a temporal
loss (Ruder et al. 2016), so a few steps per frame suffice and textures do not boil.

`Stylizer` holds the model, the style targets and the settings; it is built once and reused for
stills, video frames and live streams. `stylize()` is the one-call API for a single picture.
"""

from __future__ import annotations

import copy
import functools
import operator
import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .convert import to_rgb, to_tensor
from .cuda_graphs import GraphCache
from .errors import StreamdreamError
from .io.images import from_rgb_like, load_image, resize_max_side, to_picture
from .carry import WarmStartMode
from .models import Backbone, create_model, resolve_device
from .objectives import Objective, content, gram_matrix, style, temporal, total_variation
from .optimize import LBFGS, Adam, Octaves, Progress, Targeted, Targets, make_generator, optimize, resize
from .scheduler import Deferred
from .settings import DEFAULT_MODEL, MIN_SIDE, StyleSettings, TemporalSettings

Picture = np.ndarray | Image.Image
Source = Picture | str | os.PathLike
"""A picture, or the path of an image file."""


MIN_STYLE_SIDE = 32
GRAM_CACHE_SIZES = 8

# YIQ (NTSC): Y is luminance, I and Q carry the colour; the inverse is computed, not hand-typed.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INVERSE = torch.linalg.inv(_YIQ)


def keep_colors(styled: torch.Tensor, content_image: torch.Tensor) -> torch.Tensor:
    """The luminance of `styled` with the colours (YIQ chrominance) of `content_image`.

    Gatys et al. 2016, "Preserving colour in neural artistic style transfer": the strokes and shading
    of the style live mostly in luminance, so this keeps them while the photo keeps its own colours.
    """
    to_yiq, to_rgb_ = _YIQ.to(styled), _YIQ_INVERSE.to(styled)
    y = torch.einsum("ij,bjhw->bihw", to_yiq[:1], styled)
    iq = torch.einsum("ij,bjhw->bihw", to_yiq[1:], content_image)
    return torch.einsum("ij,bjhw->bihw", to_rgb_, torch.cat([y, iq], dim=1)).clamp(0.0, 1.0)


def average_pooling(model: Backbone) -> Backbone:
    """`model` with every max-pooling stage replaced by average pooling, the original left untouched.

    Gatys et al. found average pooling gives smoother, more pleasing images with VGG. The copy shares
    every parameter and buffer with the original (no memory), only the pooling modules differ.
    Models without max pooling (EfficientNet) come back as they are.
    """
    if not any(isinstance(stage, nn.MaxPool2d) for stage in model.stages):
        return model
    memo = {id(t): t for t in (*model.parameters(), *model.buffers())}
    clone = copy.deepcopy(model, memo)
    for i, stage in enumerate(clone.stages):
        if isinstance(stage, nn.MaxPool2d):
            clone.stages[i] = nn.AvgPool2d(stage.kernel_size, stage.stride, stage.padding, ceil_mode=stage.ceil_mode)
    return clone


def sources(styles: Source | Sequence[Source]) -> list[Source]:
    """One style or several, as a list."""
    return [styles] if isinstance(styles, (np.ndarray, Image.Image, str, os.PathLike)) else list(styles)


def picture_rgb(source: Source) -> np.ndarray:
    """The RGB pixels of a picture, or of the image file a path names."""
    if isinstance(source, (str, os.PathLike)):
        return load_image(source).rgb
    return to_picture(source).rgb


def normalized(values: Sequence[float], what: str, count: int) -> list[float]:
    """Weights that sum to 1, after checking there is one per item and none is negative."""
    values = [float(v) for v in values]
    if len(values) != count:
        raise StreamdreamError(f"{what}: expected {count}, got {len(values)}")
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise StreamdreamError(f"{what} must be non-negative with a positive sum, got {', '.join(f'{v:g}' for v in values)}")
    total = sum(values)
    return [v / total for v in values]


def painting_rgb(source: Source) -> np.ndarray:
    """A style painting's RGB pixels (a picture, or the image file a path names), checked (`check_painting`)."""
    return check_painting(picture_rgb(source), f"style {source}" if isinstance(source, (str, os.PathLike)) else "the style painting")


def check_painting(rgb: np.ndarray, name: str = "the style painting") -> np.ndarray:
    """A painting that a style can be read from, or a one-line error: large enough, and not one flat colour."""
    height, width = rgb.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise StreamdreamError(f"{name} is {width}x{height} pixels: a style needs at least {MIN_SIDE} on each side")
    if float(rgb.std(axis=(0, 1)).max()) < 1.0:
        raise StreamdreamError(f"{name} is one flat colour: it has no strokes or texture to paint with")
    return rgb


class Stylizer(WarmStartMode):
    """A reusable neural style transfer: model + style targets + loss weights + optimizer settings.

    Options (all keyword):
      styles              one or more paintings (arrays, PIL images or file paths); may be empty with style_weight=0
      style_weights       blend of several styles (normalized to sum 1); their Gram matrices are mixed
      content_layers, content_layer_weights, style_layers, style_layer_weights: default the model's
      **options           the fields of `settings.StyleSettings`: loss weights, strength (multiplies the
                          style weight, as the web UI's slider sets it), style scale, optimizer,
                          iterations, lr, octaves, frame_steps, preserve_colors, pooling (defaults tuned
                          for the embedded EfficientNet-Lite0, with their ranges, are written there)
      cuda_graphs         on CUDA, replay a stream's Adam step as a captured graph from the second frame of a
                          size on (`streamdream.cuda_graphs`); False runs every step eagerly
      painter             a `streamdream.style_net.NetStylizer` to refine: stills and first frames start from
                          its painting and run `refine_steps` steps at full size (no pyramid: it would blur
                          the painting's strokes), and what a stream's flow cannot carry starts from it too
    """

    def __init__(
        self,
        styles: Source | Sequence[Source] = (),
        *,
        model: str | Backbone = DEFAULT_MODEL,
        style_weights: Sequence[float] | None = None,
        content_layers: Sequence[str] | None = None,
        content_layer_weights: Sequence[float] | None = None,
        style_layers: Sequence[str] | None = None,
        style_layer_weights: Sequence[float] | None = None,
        device: str | torch.device = "auto",
        weights: str | None = None,
        cuda_graphs: bool = True,
        painter=None,
        **options,
    ) -> None:
        settings = StyleSettings().with_(**options)  # unknown names raise TypeError, values out of range a StreamdreamError
        if settings.content_weight == settings.style_weight == 0:
            raise StreamdreamError("content and style weight are both 0: there is nothing to optimize")
        self.device = resolve_device(device)
        backbone = model if isinstance(model, Backbone) else create_model(model, weights=weights, device=self.device)
        self.model = average_pooling(backbone) if settings.pooling == "avg" else backbone
        styles = sources(styles)
        if settings.style_weight > 0 and not styles:
            raise StreamdreamError("give at least one style image (or set the style weight to 0 for content reconstruction)")
        self.styles = [painting_rgb(s) for s in styles]
        self.style_weights = normalized(style_weights or [1.0] * len(styles), "style weights", len(styles)) if styles else []
        self.content_layers = self._layers(content_layers, self.model.defaults.content, content_layer_weights, 1.0, "content layers")
        self.style_layers = self._layers(style_layers, self.model.defaults.style, style_layer_weights, settings.layer_weight_exp, "style layers")
        self.content_weight, self.style_weight, self.tv_weight = settings.content_weight, settings.style_weight * settings.strength, settings.tv_weight
        self.temporal_weight = settings.temporal_weight
        self.style_scale = settings.style_scale
        self.rule = Adam(settings.lr) if settings.optimizer == "adam" else LBFGS()
        self.iterations, self.frame_steps = settings.iterations, settings.frame_steps
        self.octaves, self.octave_scale = settings.octaves, settings.octave_scale
        self.preserve_colors = settings.preserve_colors
        self.painter, self.refine_steps = painter, settings.refine_steps
        self.graphs = GraphCache() if cuda_graphs and self.device.type == "cuda" else None
        self._grams: dict[tuple[int, int], dict[str, torch.Tensor]] = {}

    def _layers(
        self, layers: Sequence[str] | None, default: Sequence[str], weights: Sequence[float] | None, exp: float, what: str
    ) -> dict[str, float]:
        """Layer -> weight (summing to 1): the given weights times exp**depth, checked against the model."""
        layers = list(layers or default)
        for layer in layers:
            self.model.resolve(layer)
        given = weights or [1.0] * len(layers)
        return dict(zip(layers, normalized([w * exp**i for i, w in enumerate(given)], f"weights of the {what}", len(layers))))

    # --- losses -------------------------------------------------------------------------------------

    def _style_grams(self, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """The styles' blended Gram matrices for a content of `size`, computed once per size."""
        if size not in self._grams:
            if len(self._grams) >= GRAM_CACHE_SIZES:
                self._grams.clear()
            side = max(MIN_STYLE_SIDE, round(self.style_scale * max(size)))
            blended: dict[str, torch.Tensor] = {}
            with torch.no_grad():
                for picture, weight in zip(self.styles, self.style_weights):
                    acts = self.model(to_tensor(resize_max_side(picture, side), self.device), self.style_layers)
                    for layer in self.style_layers:
                        blended[layer] = blended.get(layer, 0.0) + weight * gram_matrix(acts[layer])
            self._grams[size] = blended
        return self._grams[size]

    def content_features(self, content_image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The content picture's float32 features at the content layers: the content loss's targets."""
        with torch.no_grad():
            acts = self.model(content_image, self.content_layers)
        return {layer: acts[layer].float() for layer in self.content_layers}

    def terms(self, content_image: torch.Tensor, features: Mapping[str, torch.Tensor] | None = None) -> dict[str, Objective]:
        """The unweighted objectives (negated losses) for stylizing `content_image`, by name.

        `features`: its `content_features`, when they are already at hand (a stream's static buffers).
        """
        features = self.content_features(content_image) if features is None else features
        terms = {"content": _weighted_sum({layer: content(layer, features[layer]) for layer in self.content_layers}, self.content_layers)}
        if self.styles:
            terms["style"] = style(self._style_grams(tuple(content_image.shape[-2:])), self.style_layers)
        terms["tv"] = total_variation()
        return terms

    def objective(self, content_image: torch.Tensor, features: Mapping[str, torch.Tensor] | None = None) -> Objective:
        """What the optimizer maximizes: the weighted sum of the terms whose weight is not 0."""
        weights = {"content": self.content_weight, "style": self.style_weight, "tv": self.tv_weight}
        return _weighted_sum(self.terms(content_image, features), {name: weights[name] for name in weights if weights[name] > 0})

    def losses(self, image: Picture, content_image: Picture) -> dict[str, float]:
        """The unweighted losses of a result against its content picture (same size), e.g. to compare runs."""
        x, c = (to_tensor(to_picture(p).rgb, self.device) for p in (image, content_image))
        if x.shape != c.shape:
            raise StreamdreamError(f"image {tuple(x.shape[-2:])} and content {tuple(c.shape[-2:])} differ in size")
        terms = self.terms(c)
        with torch.no_grad():
            acts = self.model(x, functools.reduce(operator.or_, (t.layers for t in terms.values())))
            return {name: -float(term(acts)) for name, term in terms.items()}

    # --- optimization -------------------------------------------------------------------------------

    def steps(self, height: int, width: int) -> int:
        """How many optimizer steps a still of this size takes (for progress bars)."""
        if self.painter is not None:
            return self.refine_steps
        return len(Octaves(self.octaves, self.octave_scale).sizes(height, width)) * self.iterations

    def stylize_tensor(
        self, image: torch.Tensor, *, start: torch.Tensor | None = None, progress: Progress | None = None
    ) -> torch.Tensor:
        """Stylize a 1 x 3 x H x W tensor in [0, 1] coarse to fine, from `start` (default: the image).

        Each octave begins from its own resize of `start` plus the change the coarser octave made,
        upsampled: the strokes carry up the pyramid while the start's fine detail stays sharp. The
        objective is the image's at each octave's size. With a `painter`, `start` defaults to its
        painting, refined in `refine_steps` steps at full size.
        """
        image = image.to(self.device)
        if self.painter is not None:
            start = self.painter.painted(image) if start is None else start
            steps, schedule = self.refine_steps, None
        else:
            steps, schedule = self.iterations, Octaves(self.octaves, self.octave_scale)
        result = optimize(
            image if start is None else start.to(self.device),
            self.model,
            lambda size: self.objective(resize(image, size)),
            self.rule,
            steps=steps,
            schedule=schedule,
            progress=progress,
        )
        return keep_colors(result, image) if self.preserve_colors else result

    def start_image(self, init: str | Source, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        """The optimization's first image: None for "content", noise for "noise", else a picture resized to fit.

        The noise is faint, around mid-grey: full-range white noise leaves a speckle that the deep
        layers cannot see and so never remove (it doubled the pixel error of content reconstructions).
        """
        if isinstance(init, str) and init == "content":
            return None
        if isinstance(init, str) and init == "noise":
            return (0.4 + 0.2 * torch.rand(image.shape, generator=generator)).to(self.device)
        return resize(to_tensor(picture_rgb(init), self.device), tuple(image.shape[-2:]))

    def stylize(self, image: Picture, *, init: str | Source = "content", seed: int | None = 0, progress: Progress | None = None) -> Picture:
        """Stylize a numpy array or PIL image; returns the same type (alpha, if any, is kept as it was)."""
        picture = to_picture(image)
        tensor = to_tensor(picture.rgb, self.device)
        start = self.start_image(init, tensor, make_generator(seed))
        out = self.stylize_tensor(tensor, start=start, progress=progress)
        return from_rgb_like(to_rgb(out), image, picture.alpha)

    # --- streams (`carry.FrameMode`) ------------------------------------------------------------------

    def first_frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A stream's first frame gets the full still treatment."""
        return self.stylize_tensor(image)

    def carried(self, previous_input: torch.Tensor, previous_output: torch.Tensor) -> torch.Tensor:
        """The strokes as a change to the frame (styled minus content): laid over the new frame they
        follow its content and light, and where the flow fails they can be filled from the
        neighbours' (`Motion.filled`) without smearing the neighbours' picture into the gap."""
        return previous_output - previous_input

    def warm_work(self, image: torch.Tensor, carried: torch.Tensor, trust: torch.Tensor, settings: TemporalSettings, generator: torch.Generator) -> Deferred:
        """`_warm_frame`, which runs alone: its Adam steps are not batched across streams."""
        return Deferred(functools.partial(self._warm_frame, image, carried, trust, settings))

    def _warm_frame(self, image: torch.Tensor, carried: torch.Tensor, trust: torch.Tensor, settings: TemporalSettings) -> torch.Tensor:
        """The new frame (with a `painter`, its painting) plus the carried strokes where they are
        trusted (blended in by `trust`); then
        `settings.frame_iterations * self.frame_steps` steps at full size only (no octaves:
        a pyramid would blur the carried strokes), the temporal loss holding trusted pixels in place.

        The objective reads this frame's targets by name (see `_frame_objective`), so on CUDA one
        captured step serves every later frame of the size.
        """
        carried = (image + carried).clamp(0.0, 1.0)
        fresh = image if self.painter is None else self.painter.painted(image)
        targets = {"carried": carried, "mask": trust, **{f"content:{layer}": f for layer, f in self.content_features(image).items()}}
        objective = Targeted(lambda buffers: self._frame_objective(image, buffers), targets, "style-frame")
        steps = settings.frame_iterations * self.frame_steps
        result = optimize(torch.lerp(fresh, carried, trust), self.model, objective, self.rule, steps=steps, graphs=self.graphs)
        return keep_colors(result, image) if self.preserve_colors else result

    def _frame_objective(self, image: torch.Tensor, targets: Targets) -> Objective:
        """The stream frame's objective, reading its targets only from `targets` (`_warm_frame`'s names;
        of `image` only the size is used), so a captured step built on static copies of them serves
        every later frame of that size."""
        features = {layer: targets[f"content:{layer}"] for layer in self.content_layers}
        objective = self.objective(image, features)
        if self.temporal_weight > 0:
            objective = objective + self.temporal_weight * temporal(targets["carried"], targets["mask"])
        return objective


def _weighted_sum(objectives: Mapping[str, Objective], weights: Mapping[str, float]) -> Objective:
    return functools.reduce(operator.add, (objectives[name] * weight for name, weight in weights.items()))


def stylize(image: Picture, styles: Source | Sequence[Source] = (), *, init: str | Source = "content", seed: int | None = 0, **options) -> Picture:
    """Stylize one picture (numpy array or PIL image in, the same type out). Options as for `Stylizer`."""
    return Stylizer(styles, **options).stylize(image, init=init, seed=seed)
