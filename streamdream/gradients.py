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

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from .convert import to_rgb, to_tensor
from .dream import make_generator, noise_image
from .errors import StreamdreamError
from .io.images import to_picture
from .models import DEFAULT_MODEL, INPUT, LOGIT, Backbone, create_model, imagenet_labels
from .objectives import Objective, class_logit
from .optimize import Ascent, Progress, ascend, autocast, minimize, octave_sizes, resize

ModelArg = str | Backbone
PictureLike = np.ndarray | Image.Image  # anything `to_picture` takes: uint8/uint16/float arrays, PIL images
SALIENCY_PERCENTILE = 99.0


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
    epsilon: float = 8 / 255,
    step: float = 1 / 255,
    max_iterations: int = 200,
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


def pixel_l2(center: float = 0.5) -> Objective:
    """Mean squared distance of the pixels from mid-grey: subtracted, it keeps what the class does not need grey."""
    return Objective(lambda acts: (acts[INPUT].float() - center).pow(2).mean(), [INPUT], "l2(input)")


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels: penalizes the high-frequency noise inversions grow."""
    return (image.diff(dim=-2).abs().mean() + image.diff(dim=-1).abs().mean()).float()


def class_visualization(
    class_index: int,
    size: int = 224,
    seed: int = 0,
    *,
    octaves: int = 3,
    octave_scale: float = 1.4,
    iterations: int = 20,
    step: float = 0.03,
    jitter: int = 16,
    l2: float = 1000.0,
    blur_every: int = 5,
    blur_sigma: float = 0.5,
    model: ModelArg = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    weights: str | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """A `size` x `size` picture grown from noise to maximize the class logit (Simonyan et al.; cs231n).

    Normalized ascent on `logit - l2 * pixel_l2` with random-roll jitter and Laplacian-normalized
    gradients (`ascend`), a light Gaussian blur every `blur_every` steps, and `iterations` steps per
    octave from coarse to fine. Blur and Laplacian normalization keep the image from filling with the
    high-frequency patterns the logit gradient prefers; the L2 term (whose pixel gradient is about 1e-5
    of the logit's, hence the large weight) lets what the class does not need fade back to grey.
    """
    if size < 16 or min(octaves, iterations, blur_every) < 1 or octave_scale <= 1.0:
        raise StreamdreamError("class visualization needs size >= 16, octave scale > 1 and positive octaves, iterations and blur period")
    backbone = _backbone(model, device, weights)
    objective = class_logit(_check_class(backbone, class_index)) - l2 * pixel_l2()
    ascent = Ascent(step=step, jitter=jitter, lapnorm=True)
    generator = make_generator(seed)
    kernel = 2 * int(np.ceil(3 * blur_sigma)) + 1
    image = to_tensor(noise_image(size, size, seed), backbone.mean.device)
    for octave_size in octave_sizes(size, size, octaves, octave_scale):
        image = resize(image, octave_size)
        for done in range(0, iterations, blur_every):
            chunk = ascent.with_(iterations=min(blur_every, iterations - done))
            image = TF.gaussian_blur(ascend(image, backbone, objective, chunk, generator, progress), kernel, blur_sigma)
    return to_rgb(image)


def class_visualization_steps(size: int = 224, octaves: int = 3, octave_scale: float = 1.4, iterations: int = 20) -> int:
    """How many ascent steps `class_visualization` takes (for progress bars)."""
    return len(octave_sizes(size, size, octaves, octave_scale)) * iterations


def invert(
    image: PictureLike,
    layer: str,
    *,
    iterations: int = 100,
    tv: float = 0.02,
    l2: float = 0.01,
    method: str = "lbfgs",
    lr: float = 0.05,
    seed: int = 0,
    model: ModelArg = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    weights: str | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """A picture grown from noise whose `layer` features match the input's (Mahendran & Vedaldi 2015).

    Minimizes ||f(x) - f(x0)||^2 / ||f(x0)||^2 + tv * TV(x) + l2 * pixel_l2(x) at the input's
    resolution. The relative feature error makes the weights mean the same at every layer; L-BFGS
    (default) converges in far fewer steps than Adam here, and stays smooth on deeper layers where
    Adam fills the image with noise. Shallow layers give the photo back; deep ones keep only what the
    network thinks matters.
    """
    if iterations < 1 or method not in ("lbfgs", "adam"):
        raise StreamdreamError("inversion needs a positive iteration count and method lbfgs or adam")
    backbone = _backbone(model, device, weights)
    backbone.resolve(layer)
    original = _picture_tensor(image, backbone)
    with torch.no_grad(), autocast(original.device):
        target = backbone(original, [layer])[layer].float()
    scale = target.pow(2).sum().clamp_min(1e-12)
    penalty = pixel_l2()

    def loss(x: torch.Tensor) -> torch.Tensor:
        features = backbone(x, [layer])[layer].float()
        return (features - target).pow(2).sum() / scale + tv * total_variation(x) + l2 * penalty({INPUT: x})

    height, width = original.shape[-2:]
    start = to_tensor(noise_image(width, height, seed), original.device)
    return to_rgb(minimize(start, loss, steps=iterations, lr=lr, method=method, progress=progress))
