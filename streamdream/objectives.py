"""Composable objectives: small scalar functions of layer activations, higher is better.

Objectives add, subtract, negate and scale like numbers (`a + 0.5 * b`, `-c`), and know which layers
they read, so the backbone computes only those. The CLI builds them from short strings:

    blocks.4              mean squared activation of a layer (the classic DeepDream "L2" objective)
    mean(blocks.4)        mean activation of a layer
    blocks.4:39           mean activation of one channel; blocks.4:3,7,9 several channels
    logit:285             one ImageNet class logit
    blocks.4:39 + 0.5*blocks.5 - 0.2*logit:1

Every loss of the project lives here too, as an objective (negated, so that higher is better
everywhere): content and Gram style (neural style, feature inversion), total variation, the temporal
loss of stream frames and the pull of pixels toward grey. The optimizer (`streamdream.optimize`)
knows nothing of them.

Every objective is a mean over positions, so its value does not depend on the image size and tiles
of one image can be scored separately.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch

from .errors import StreamdreamError
from .models import INPUT, LOGIT, Backbone

Activations = Mapping[str, torch.Tensor]


class Objective:
    """A scalar function of named activations with the set of layers it needs."""

    def __init__(self, fn: Callable[[Activations], torch.Tensor], layers: Iterable[str], description: str) -> None:
        self.fn = fn
        self.layers = frozenset(layers)
        self.description = description

    def __call__(self, acts: Activations) -> torch.Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def __add__(self, other: Objective) -> Objective:
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(lambda acts: self(acts) + other(acts), self.layers | other.layers, f"{self.description} + {other.description}")

    def __mul__(self, factor: float) -> Objective:
        if isinstance(factor, Objective) or not isinstance(factor, (int, float)):
            return NotImplemented
        return Objective(lambda acts: factor * self(acts), self.layers, f"{factor:g}*({self.description})")

    __rmul__ = __mul__

    def __truediv__(self, divisor: float) -> Objective:
        return self * (1.0 / divisor)

    def __neg__(self) -> Objective:
        return self * -1.0

    def __sub__(self, other: Objective) -> Objective:
        return self + (-other)


def layer_l2(layer: str) -> Objective:
    """Mean squared activation: its gradient is the activation itself, amplifying whatever the layer sees."""
    return Objective(lambda acts: acts[layer].float().pow(2).mean(), [layer], layer)


def layer_mean(layer: str) -> Objective:
    return Objective(lambda acts: acts[layer].float().mean(), [layer], f"mean({layer})")


def channel(layer: str, channels: int | Sequence[int]) -> Objective:
    """Mean activation of the chosen channel(s): grows the one feature those channels detect."""
    index = [channels] if isinstance(channels, int) else list(channels)
    return Objective(lambda acts: acts[layer][:, index].float().mean(), [layer], f"{layer}:{','.join(map(str, index))}")


def class_logit(index: int) -> Objective:
    return Objective(lambda acts: acts[LOGIT][:, index].float().mean(), [LOGIT], f"logit:{index}")


def guide(layer: str, guide_features: torch.Tensor) -> Objective:
    """Match a guide image: each position of the image pulls toward its best-matching guide feature.

    This is the classic DeepDream guide: score = mean over positions x of max_j <f(x), g_j>, whose
    gradient at x is the guide feature g_j that x already resembles most.
    """
    g = guide_features.float().flatten(2)  # B x C x M

    def score(acts: Activations) -> torch.Tensor:
        f = acts[layer].float().flatten(2)  # B x C x N
        similarity = torch.einsum("bcn,bcm->bnm", f, g.to(f.device))
        return similarity.max(dim=2).values.mean()

    return Objective(score, [layer], f"guide({layer})")


def per_sample(objectives: Sequence[Objective]) -> Objective:
    """One objective per sample of a batch (the frames of several streams), summed.

    Each objective sees only its own sample's activations, so each sample's gradient is exactly its
    own objective's, as if it ran alone.
    """
    layers = frozenset().union(*(o.layers for o in objectives))

    def score(acts: Activations) -> torch.Tensor:
        return sum(o({layer: acts[layer][i : i + 1] for layer in o.layers}) for i, o in enumerate(objectives))

    return Objective(score, layers, f"per_sample({', '.join(o.description for o in objectives)})")


# --- parsing -------------------------------------------------------------------------------------

_TERM = re.compile(r"^\s*(?:(?P<weight>\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?(?P<atom>\S+)\s*$")
_FUNC = re.compile(r"^(?P<func>l2|mean)\((?P<inner>[^()]+)\)$")


def parse_objective(text: str, model: Backbone) -> Objective:
    """Build an objective from a string like `blocks.4:39 + 0.5*blocks.5`, checked against `model`."""
    tokens = [t.strip() for t in re.split(r"([+-])", text)]
    tokens = tokens[1:] if tokens[0] == "" else ["+", *tokens]  # a leading sign, or an implicit "+"
    if len(tokens) < 2 or len(tokens) % 2:
        raise StreamdreamError(f"objective {text!r} has no terms; try a layer name such as {model.defaults.dream}")
    terms = []
    for sign, term in zip(tokens[0::2], tokens[1::2]):
        if not term:
            raise StreamdreamError(f"objective {text!r}: a term is missing after {sign!r}")
        objective = _parse_term(term, model, text)
        terms.append(-objective if sign == "-" else objective)
    return functools.reduce(operator.add, terms)


def _parse_term(part: str, model: Backbone, text: str) -> Objective:
    match = _TERM.match(part)
    if match is None:
        raise StreamdreamError(f"cannot read objective term {part.strip()!r} in {text!r}; write e.g. 0.5*blocks.4:3")
    weight = float(match["weight"]) if match["weight"] else 1.0
    atom = match["atom"]
    func = _FUNC.match(atom)
    kind, atom = (func["func"], func["inner"]) if func else ("l2", atom)
    name, _, channels = atom.partition(":")
    if name == LOGIT:
        index = _parse_indices(channels or "", 1000, f"{LOGIT} (ImageNet classes)", atom)
        if len(index) != 1 or kind != "l2":
            raise StreamdreamError(f"write a class objective as logit:N with one class index, not {atom!r}")
        return class_logit(index[0]) if weight == 1.0 else weight * class_logit(index[0])
    info = model.layers[model.resolve(name)]
    if channels:
        objective = channel(name, _parse_indices(channels, info.channels, name, atom))
    else:
        objective = layer_mean(name) if kind == "mean" else layer_l2(name)
    return objective if weight == 1.0 else weight * objective


def _parse_indices(text: str, count: int, what: str, atom: str) -> list[int]:
    try:
        index = [int(t) for t in text.split(",")]
    except ValueError:
        raise StreamdreamError(f"cannot read channel indices in {atom!r}; write e.g. {what}:3 or {what}:3,7") from None
    bad = [i for i in index if not 0 <= i < count]
    if bad:
        raise StreamdreamError(f"index {bad[0]} out of range in {atom!r}: {what} has {count} channels (0-{count - 1})")
    return index


# --- losses: style transfer (Gatys et al. 2016), inversion, priors on the pixels ---------------------
# Each feature loss is relative to its target's own energy, so layers (and backbones) whose activations
# differ in scale by orders of magnitude weigh alike, and a weight of 1 means the same thing on every
# model. The objectives are the negated losses: higher is better, as everywhere in this module.


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """B x C x C feature correlations normalized by C*H*W, so they do not grow with the image size."""
    b, c, h, w = features.shape
    f = features.float().reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def content(layer: str, target: torch.Tensor) -> Objective:
    """Negated squared error to the target's features at `layer`, relative to the target's energy.

    The energy is taken at every evaluation, so a float32 target updated in place (a captured stream
    step's static buffer) is followed; a float reduction per step costs nothing next to the network.
    """
    target = target.detach().float()

    def score(acts: Activations) -> torch.Tensor:
        return -(acts[layer].float() - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)

    return Objective(score, [layer], f"content({layer})")


def gram(layer: str, target: torch.Tensor) -> Objective:
    """Negated squared Frobenius distance to a target Gram matrix (from `gram_matrix`), relative to its norm."""
    target = target.detach().float()
    scale = target.pow(2).sum().clamp_min(1e-12)
    return Objective(lambda acts: -(gram_matrix(acts[layer]) - target).pow(2).sum() / scale, [layer], f"gram({layer})")


def style(targets: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None) -> Objective:
    """Weighted sum of `gram` objectives, one per layer of `targets` (weights default to 1)."""
    weights = weights or {}
    terms = [gram(layer, target) * weights.get(layer, 1.0) for layer, target in targets.items()]
    if not terms:
        raise StreamdreamError("a style objective needs at least one layer")
    return functools.reduce(operator.add, terms)


def total_variation(power: float = 2.0) -> Objective:
    """Negated mean |difference|**power between neighbouring pixels: a smoothness prior against noise.

    Squares (2, style) penalize large steps most and so smooth everything; absolute values (1, the
    V^beta regularizer of Mahendran & Vedaldi's inversions with beta = 1) leave edges sharp.
    """

    def score(acts: Activations) -> torch.Tensor:
        image = acts[INPUT].float()
        dy = (image[..., 1:, :] - image[..., :-1, :]).abs().pow(power).mean()
        dx = (image[..., :, 1:] - image[..., :, :-1]).abs().pow(power).mean()
        return -(dx + dy)

    return Objective(score, [INPUT], "tv" if power == 2 else f"tv{power:g}")


def temporal(carried: torch.Tensor, mask: torch.Tensor) -> Objective:
    """Negated `mean(mask * (x - carried)^2)` (Ruder et al. 2016): stay where the flow put the last frame.

    `carried` and `mask` are followed if updated in place (a captured stream step's static buffers).
    """
    carried, mask = carried.detach().float(), mask.detach().float()
    return Objective(lambda acts: -(mask * (acts[INPUT].float() - carried).pow(2)).mean(), [INPUT], "temporal")


def pixel_l2(center: float = 0.5) -> Objective:
    """Mean squared distance of the pixels from mid-grey: subtracted, it lets what the rest does not need fade to grey."""
    return Objective(lambda acts: (acts[INPUT].float() - center).pow(2).mean(), [INPUT], "l2(input)")
