"""Objective strings, algebra, and that optimizing each kind of objective raises its own value."""

from __future__ import annotations

import pytest
import skimage.data
import torch

from streamdream.convert import to_tensor
from streamdream.dream import Dreamer, make_generator
from streamdream.errors import StreamdreamError
from streamdream.objectives import channel, class_logit, layer_l2, layer_mean, parse_objective, pixel_l2, temporal, total_variation
from streamdream.optimize import NormalizedAscent, evaluate, optimize

from .conftest import small


def fake_acts():
    torch.manual_seed(0)
    return {"a": torch.randn(1, 4, 3, 3), "b": torch.randn(1, 2, 3, 3), "logit": torch.randn(1, 1000)}


def test_algebra_matches_arithmetic_on_values():
    acts = fake_acts()
    a, b = layer_l2("a"), channel("b", 1)
    combined = a + 0.5 * b - 2 * layer_mean("a") / 4
    expected = acts["a"].pow(2).mean() + 0.5 * acts["b"][:, 1].mean() - 0.5 * acts["a"].mean()
    assert torch.allclose(combined(acts), expected)
    assert torch.allclose((-a)(acts), -a(acts))
    assert combined.layers == {"a", "b"}


def test_pixel_losses_match_their_formulas():
    generator = torch.Generator().manual_seed(0)
    image, carried, mask = (torch.rand(1, c, 5, 7, generator=generator) for c in (3, 3, 1))
    acts = {"input": image}
    dy, dx = image.diff(dim=-2), image.diff(dim=-1)
    assert torch.allclose(total_variation()(acts), -(dy.pow(2).mean() + dx.pow(2).mean()))
    assert torch.allclose(total_variation(power=1)(acts), -(dy.abs().mean() + dx.abs().mean()))
    assert torch.allclose(pixel_l2()(acts), (image - 0.5).pow(2).mean())
    assert torch.allclose(temporal(carried, mask)(acts), -(mask * (image - carried).pow(2)).mean())
    assert total_variation().layers == pixel_l2().layers == temporal(carried, mask).layers == {"input"}


def test_parse_builds_the_same_objective_as_code(model):
    acts = model(torch.rand(1, 3, 64, 64), ["blocks.4", "blocks.5", "logit"])
    parsed = parse_objective("blocks.4:3,7 + 0.5*blocks.5 - logit:1", model)
    built = channel("blocks.4", [3, 7]) + 0.5 * layer_l2("blocks.5") - class_logit(1)
    assert parsed.layers == {"blocks.4", "blocks.5", "logit"}
    assert torch.allclose(parsed(acts), built(acts))
    assert torch.allclose(parse_objective("mean(blocks.4)", model)(acts), acts["blocks.4"].mean())
    assert torch.allclose(parse_objective("-blocks.5", model)(acts), -acts["blocks.5"].pow(2).mean())


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no terms"),
        ("blocks.9", "valid layers: stem"),
        ("blocks.4:139", "112 channels"),
        ("logit:1000", "0-999"),
        ("blocks.4 +", "missing"),
        ("blocks.4:x", "channel indices"),
        ("logit:1,2", "one class"),
    ],
)
def test_bad_objective_strings_say_what_is_wrong(model, text, message):
    with pytest.raises(StreamdreamError, match=message):
        parse_objective(text, model)


@pytest.mark.parametrize("text", ["blocks.3", "mean(blocks.4)", "blocks.4:39", "blocks.2:1,5 + 0.5*blocks.4", "logit:1"])
def test_each_objective_rises_when_optimized(model, astronaut_96, text):
    objective = parse_objective(text, model)
    image = to_tensor(astronaut_96)
    before = evaluate(model, objective, image)
    after = evaluate(model, objective, optimize(image, model, objective, NormalizedAscent(step=0.012, jitter=4, tile=512), steps=4, generator=make_generator(0)))
    assert after > before + 0.05 * abs(before)


def test_guide_pulls_toward_the_guide_features(model, coffee_odd):
    photo = small(skimage.data.astronaut(), 192, 192)
    dreamer = Dreamer(model, guide_image=coffee_odd, octaves=2, iterations=4, device="cpu")
    assert dreamer.objective.description == f"guide({model.defaults.guide})"
    assert dreamer.objective_value(dreamer.dream(photo)) > 1.1 * dreamer.objective_value(photo)
    with pytest.raises(StreamdreamError, match="one layer"):
        Dreamer(model, "blocks.3 + blocks.4", guide_image=coffee_odd, device="cpu")
