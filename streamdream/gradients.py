"""Image-gradient tools on a frozen ImageNet classifier (the cs231n set): what the network sees in a picture.

- `classify`: the top ImageNet labels of a picture.
- `saliency`: which pixels the class score is most sensitive to (Simonyan et al. 2014).
- `fool`: the smallest-looking change that makes the network see another class (a fooling image).
- `class_visualization`: an image grown from noise to maximize one class score.
- `invert`: an image grown from noise whose features at one layer match those of a picture.

The network always sees the whole picture resized to its square input size (`classifier_input`). It is
differentiable, so saliency and fooling work on the full-resolution pixels: the saliency map has the
photo's size, and the fooling perturbation, its L-inf bound and the saved file are all at the photo's
resolution. Pictures come in as anything `to_picture` takes and go out as H x W x 3 uint8 arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from PIL import Image

from .convert import to_rgb, to_tensor
from .dream import make_generator, noise_image
from .errors import StreamdreamError
from .io.images import to_picture
from .models import DEFAULT_MODEL, LOGIT, Backbone, create_model, imagenet_labels
from .objectives import class_logit, content, pixel_l2, total_variation
from .optimize import LBFGS, Adam, NormalizedAscent, Octaves, Progress, autocast, optimize, resize
from .settings import ClassVizSettings, FoolSettings, InvertSettings, Settings

ModelArg = str | Backbone
PictureLike = np.ndarray | Image.Image  # anything `to_picture` takes: uint8/uint16/float arrays, PIL images
SALIENCY_PERCENTILE = 99.0
FOOL, VIZ = FoolSettings(), ClassVizSettings()  # the defaults (fooling in 0-255 levels there)
S = TypeVar("S", bound=Settings)


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    prob: float


@dataclass(frozen=True)
class FoolResult:
    """A fooling image at the input's resolution and how far it is from the input (pixels in [0, 1])."""

    image: np.ndarray
    iterations: int
    linf: float
    l2: float
    success: bool


# --- shared plumbing ----------------------------------------------------------------------------


def _backbone(model: ModelArg, device: str | torch.device, weights: str | None) -> Backbone:
    return model if isinstance(model, Backbone) else create_model(model, weights=weights, device=device)


def _settings_and_backbone(options: dict[str, Any], kind: type[S]) -> tuple[S, Backbone]:
    """The settings from `options` (checked first: a bad value costs no model load), and the backbone
    named by its `model`, `device` and `weights` (as for `classify`)."""
    model, device, weights = (options.pop(name, default) for name, default in (("model", DEFAULT_MODEL), ("device", "auto"), ("weights", None)))
    settings = kind(**options)
    return settings, _backbone(model, device, weights)


def _check_class(model: Backbone, index: int) -> int:
    count = model.layers[LOGIT].channels
    if not 0 <= index < count:
        raise StreamdreamError(f"class index {index} is out of range: ImageNet classes are 0-{count - 1}")
    return index


def _picture_tensor(image: PictureLike, model: Backbone) -> torch.Tensor:
    return to_tensor(to_picture(image).rgb, model.mean.device)


def classifier_input(model: Backbone, image: torch.Tensor) -> torch.Tensor:
    """The whole image resized to the model's square input size.

    Squashing instead of the usual shorter-side resize + center crop keeps every pixel in view, so
    saliency covers the whole photo and a fooling perturbation can use all of it. On EfficientNet-Lite0
    it is also the more confident of the two on skimage's chelsea (Egyptian cat 0.79 vs tiger cat 0.38).
    The resize is differentiable: gradients reach the full-resolution pixels.
    """
    size = model.defaults.input_size
    return resize(image, (size, size))


def _logits(model: Backbone, image: torch.Tensor) -> torch.Tensor:
    with autocast(image.device):
        return model.logits(classifier_input(model, image)).float()


def _class_gradient(
    model: Backbone, image: torch.Tensor, score: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient of `score(logits)` w.r.t. the full-resolution `image`, and the logits (one forward pass)."""
    image = image.detach().requires_grad_(True)
    logits = _logits(model, image)
    (grad,) = torch.autograd.grad(score(logits), image)
    return grad, logits.detach()


# --- classification and saliency ----------------------------------------------------------------


def classify(
    image: PictureLike, model: ModelArg = DEFAULT_MODEL, top: int = 5, *, device: str | torch.device = "auto", weights: str | None = None
) -> list[Prediction]:
    """The `top` most probable ImageNet classes of a picture, best first (softmax probabilities)."""
    if top < 1:
        raise StreamdreamError(f"top must be at least 1, got {top}")
    backbone = _backbone(model, device, weights)
    with torch.no_grad():
        probs = _logits(backbone, _picture_tensor(image, backbone)).softmax(dim=1)[0]
    values, indices = probs.topk(min(top, probs.numel()))
    labels = imagenet_labels()
    return [Prediction(int(i), labels[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]


def saliency(
    image: PictureLike,
    class_index: int | None = None,
    *,
    model: ModelArg = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    weights: str | None = None,
) -> np.ndarray:
    """Class saliency map (H x W float in [0, 1], the picture's size): max over colours of |d score / d pixel|.

    The score is the unnormalized class logit, as in Simonyan et al.: the softmax would also reward
    lowering the other classes, which blurs the map. Default class: the predicted one (the top logit).
    Raw gradients are spiky (a few pixels hold the maximum), so the map is scaled by its 99th
    percentile and clipped to 1: readable as a picture, and only the top 1% lose their order.
    """
    backbone = _backbone(model, device, weights)
    index = None if class_index is None else _check_class(backbone, class_index)
    grad, _ = _class_gradient(
        backbone, _picture_tensor(image, backbone), lambda logits: logits.max() if index is None else logits[0, index]
    )
    heat = grad[0].abs().amax(dim=0).cpu().numpy()
    return np.clip(heat / max(float(np.percentile(heat, SALIENCY_PERCENTILE)), 1e-12), 0.0, 1.0)


def saliency_overlay(image: PictureLike, saliency_map: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The photo with the saliency map blended on top in OpenCV's JET colour map (red = salient)."""
    rgb = to_picture(image).rgb
    heat = cv2.applyColorMap(np.rint(saliency_map * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(rgb, 1.0 - opacity, cv2.cvtColor(heat, cv2.COLOR_BGR2RGB), opacity, 0.0)


# --- fooling images -----------------------------------------------------------------------------


def fool(
    image: PictureLike,
    target: int,
    *,
    epsilon: float = FOOL.epsilon / 255,
    step: float = FOOL.step / 255,
    max_iterations: int = FOOL.iterations,
    model: ModelArg = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    weights: str | None = None,
    progress: Progress | None = None,
) -> FoolResult:
    """Nudge a picture until the model predicts `target`, changing no pixel by more than `epsilon`.

    Iterative signed-gradient ascent (I-FGSM) on the target's log-probability: the sign step spends
    the whole L-inf budget evenly, and the log-probability also pushes the competing classes down, so
    chelsea becomes a goldfish in a handful of steps. The perturbation lives at full resolution and is
    truncated to whole uint8 levels before every check, so the image that is tested is exactly the one
    returned (and saved), and its distance to the input never exceeds `epsilon`.
    """
    if epsilon <= 0 or step <= 0 or max_iterations < 0:
        raise StreamdreamError("fooling needs a positive epsilon and step and a non-negative iteration count")
    backbone = _backbone(model, device, weights)
    _check_class(backbone, target)
    original = _picture_tensor(image, backbone)
    delta = torch.zeros_like(original)
    candidate, iterations = original, 0
    while True:
        grad, logits = _class_gradient(backbone, candidate, lambda lg: lg.log_softmax(dim=1)[0, target])
        success = int(logits.argmax()) == target
        if success or iterations == max_iterations:
            break
        delta = (delta + step * grad.sign()).clamp(-epsilon, epsilon)
        candidate = (original + torch.trunc(delta * 255.0) / 255.0).clamp(0.0, 1.0)
        iterations += 1
        if progress is not None:
            progress(1)
    out = to_rgb(candidate)
    change = (out.astype(np.float64) - to_rgb(original)) / 255.0
    return FoolResult(out, iterations, float(np.abs(change).max()), float(np.linalg.norm(change)), success)


# --- images from noise --------------------------------------------------------------------------


def class_visualization(class_index: int, *, seed: int = 0, progress: Progress | None = None, **options: Any) -> np.ndarray:
    """A square picture grown from noise to maximize the class logit (Simonyan et al.; cs231n).

    `options`: the fields of `ClassVizSettings` (size, octaves, iterations, step, l2, blur_every, ...)
    and the model (`model`, `device`, `weights`, as for `classify`).

    Normalized ascent on `logit - l2 * pixel_l2` with random-roll jitter and Laplacian-normalized
    gradients (`NormalizedAscent`), a light Gaussian blur every `blur_every` steps, and `iterations`
    steps per octave from coarse to fine. Blur and Laplacian normalization keep the image from filling
    with the high-frequency patterns the logit gradient prefers; the L2 term (whose pixel gradient is
    about 1e-5 of the logit's, hence the large weight) lets what the class does not need fade back to
    grey. As every octave pyramid of the project, each octave starts from the noise at its size plus
    the upsampled change of the octave before.
    """
    settings, backbone = _settings_and_backbone(options, ClassVizSettings)
    objective = class_logit(_check_class(backbone, class_index)) - settings.l2 * pixel_l2()
    # One tile: a class visualization is small, and the whole image in view is what the logit judges.
    rule = NormalizedAscent(step=settings.step, jitter=settings.jitter, tile=settings.size, lapnorm=True, blur_every=settings.blur_every, blur_sigma=settings.blur_sigma)
    noise = to_tensor(noise_image(settings.size, settings.size, seed), backbone.mean.device)
    schedule = Octaves(settings.octaves, settings.octave_scale)
    image = optimize(noise, backbone, objective, rule, steps=settings.iterations, schedule=schedule, generator=make_generator(seed), progress=progress)
    return to_rgb(image)


def class_visualization_steps(size: int = VIZ.size, octaves: int = VIZ.octaves, octave_scale: float = VIZ.octave_scale, iterations: int = VIZ.iterations) -> int:
    """How many ascent steps `class_visualization` takes (for progress bars)."""
    return len(Octaves(octaves, octave_scale).sizes(size, size)) * iterations


def invert(image: PictureLike, layer: str, *, seed: int = 0, progress: Progress | None = None, **options: Any) -> np.ndarray:
    """A picture grown from noise whose `layer` features match the input's (Mahendran & Vedaldi 2015).

    `options`: the fields of `InvertSettings` but `max_side` (iterations, tv, l2, method, lr) and the
    model (`model`, `device`, `weights`, as for `classify`).

    Minimizes ||f(x) - f(x0)||^2 / ||f(x0)||^2 + tv * TV(x) + l2 * pixel_l2(x) at the input's
    resolution, TV with absolute differences (it keeps edges). The relative feature error makes the
    weights mean the same at every layer; L-BFGS (default) converges in far fewer steps than Adam
    here, and stays smooth on deeper layers where Adam fills the image with noise. Shallow layers give
    the photo back; deep ones keep only what the network thinks matters.
    """
    settings, backbone = _settings_and_backbone(options, InvertSettings)
    backbone.resolve(layer)
    original = _picture_tensor(image, backbone)
    with torch.no_grad(), autocast(original.device):
        target = backbone(original, [layer])[layer].float()
    objective = content(layer, target) + settings.tv * total_variation(power=1) - settings.l2 * pixel_l2()
    height, width = original.shape[-2:]
    start = to_tensor(noise_image(width, height, seed), original.device)
    rule = LBFGS() if settings.method == "lbfgs" else Adam(settings.lr)
    return to_rgb(optimize(start, backbone, objective, rule, steps=settings.iterations, progress=progress))
