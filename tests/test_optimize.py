"""The optimizer: sizes through octaves and tiles, tiled gradients, Laplacian pyramid, seeds, ranges."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF

from streamdream.convert import to_rgb, to_tensor
from streamdream.cuda_graphs import GraphCache
from streamdream.dream import Dreamer, make_generator
from streamdream.models import create_model
from streamdream.objectives import content, layer_l2
from streamdream.optimize import (
    Adam,
    NormalizedAscent,
    Octaves,
    Targeted,
    gather_roll,
    laplacian_merge,
    laplacian_normalize,
    laplacian_split,
    objective_gradient,
    octave_sizes,
    optimize,
    roll,
    tile_slices,
)

@pytest.mark.parametrize("length, tile", [(100, 512), (512, 512), (513, 512), (1000, 300), (67, 16)])
def test_tiles_cover_without_gaps_or_slivers(length, tile):
    pieces = tile_slices(length, tile)
    assert pieces[0].start == 0 and pieces[-1].stop == length
    assert all(a.stop == b.start for a, b in zip(pieces, pieces[1:]))
    sizes = [p.stop - p.start for p in pieces]
    assert max(sizes) <= tile and max(sizes) - min(sizes) <= 1


def ascent(**changes) -> NormalizedAscent:
    """The dream rule with the default dream settings of EfficientNet-Lite0, and `changes`."""
    return NormalizedAscent(**{"step": 0.012, "jitter": 32, "tile": 512, **changes})


def test_tiled_gradient_matches_whole_image_away_from_seams(model, astronaut_96):
    image = to_tensor(astronaut_96)
    objective = layer_l2("blocks.1")
    whole, value = objective_gradient(model, objective, image, tile=512)
    tiled, tiled_value = objective_gradient(model, objective, image, tile=48)
    assert whole.shape == tiled.shape == image.shape
    # Each tile sees its own quarter: the gradient there has the same direction as the whole image's.
    inner = (slice(None), slice(None), slice(8, 40), slice(8, 40))
    cosine = torch.nn.functional.cosine_similarity(whole[inner].flatten(), tiled[inner].flatten(), dim=0)
    assert cosine > 0.9
    assert float(tiled_value) == pytest.approx(float(value), rel=0.3)


def test_octave_sizes_end_at_full_size_and_stop_at_minimum():
    sizes = octave_sizes(480, 640, 4, 1.4)
    assert sizes[-1] == (480, 640) and len(sizes) == 4
    assert sizes[0] == (round(480 / 1.4**3), round(640 / 1.4**3))
    assert octave_sizes(40, 40, 6, 2.0) == [(40, 40)]


@pytest.mark.parametrize("tile", [512, 56])
def test_dream_keeps_size_and_range_through_octaves_and_tiles(model, coffee_odd, tile):
    image = to_tensor(coffee_odd)
    rule, schedule = ascent(tile=tile), Octaves(3, 1.3)
    out = optimize(image, model, layer_l2("blocks.3"), rule, steps=2, schedule=schedule, generator=make_generator(0))
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1
    assert (out - image).abs().mean() > 0.005


def test_laplacian_pyramid_is_exactly_invertible_on_odd_sizes():
    grad = torch.randn(2, 3, 37, 50)
    bands = laplacian_split(grad, 4)
    assert len(bands) == 4
    assert [b.shape[-2:] for b in bands] == [(37, 50), (19, 25), (10, 13), (5, 7)]
    assert torch.allclose(laplacian_merge(bands), grad, atol=1e-5)


def test_laplacian_normalization_equalizes_band_energy():
    y, x = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    # A strong smooth bump plus faint fine noise: normalization must lift the fine band to parity.
    noise = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    grad = (10 * torch.exp(-4 * (x**2 + y**2)) + 0.01 * noise).expand(1, 3, 64, 64).contiguous()

    def rms(band: torch.Tensor) -> torch.Tensor:
        return band.pow(2).mean().sqrt()

    before = laplacian_split(grad, 4)
    after = laplacian_split(laplacian_normalize(grad, 4), 4)
    ratio_before = rms(before[0]) / rms(before[-1])
    ratio_after = rms(after[0]) / rms(after[-1])
    assert ratio_before < 0.03
    assert ratio_after > 5 * ratio_before


def test_same_seed_same_pixels_other_seed_other_pixels(model, astronaut_96):
    dreamer = Dreamer(model, "blocks.3", octaves=2, iterations=2, device="cpu")
    first, again, other = (dreamer.dream(astronaut_96, seed=s) for s in (1, 1, 2))
    assert (first == again).all()
    assert (first != other).any()


def test_lapnorm_dream_changes_the_picture(model, astronaut_96):
    plain = Dreamer(model, "blocks.3", octaves=2, iterations=3, device="cpu")
    lap = Dreamer(model, "blocks.3", octaves=2, iterations=3, lapnorm=True, device="cpu")
    a, b = plain.dream(astronaut_96, seed=0), lap.dream(astronaut_96, seed=0)
    assert a.shape == b.shape == astronaut_96.shape
    assert (a != b).any()
    assert lap.objective_value(b) > lap.objective_value(astronaut_96)


def test_warm_start_residual_is_kept_when_no_iterations_change_it(model, astronaut_96):
    """The carried residual must reach the full-size output intact, fine detail included."""
    image = 0.25 + 0.5 * to_tensor(astronaut_96)  # mid-range, so no clamping can touch the residual
    residual = (0.05 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))).clamp(-0.2, 0.2)
    schedule = Octaves(3, 1.4)
    out = optimize(image, model, layer_l2("blocks.3"), ascent(), steps=0, schedule=schedule, generator=make_generator(0), residual=residual)
    assert torch.allclose(out, (image + residual).clamp(0, 1), atol=1e-5)


def test_blur_runs_every_n_steps_and_at_the_end_of_each_octave(model):
    image = 0.25 + 0.5 * torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    rule = ascent(step=0.0, jitter=0, blur_every=2, blur_sigma=1.0)  # no step: only the blur moves pixels
    out = optimize(image, model, layer_l2("stem"), rule, steps=3)  # blurred after step 2 and after step 3
    assert torch.allclose(out, TF.gaussian_blur(TF.gaussian_blur(image, 7, 1.0), 7, 1.0), atol=1e-6)


def test_uint8_round_trip_is_exact(astronaut_96):
    assert (to_rgb(to_tensor(astronaut_96)) == astronaut_96).all()


@pytest.mark.parametrize("dy, dx", [(0, 0), (3, -5), (-7, 2), (13, 40), (-40, -13)])
@pytest.mark.parametrize("how", [roll, gather_roll], ids=["roll", "gather"])
def test_tensor_roll_matches_torch_roll_and_undoes_itself(dy, dx, how):
    image = torch.rand(1, 3, 11, 17)
    shift = torch.tensor([dy, dx])
    rolled = how(image, shift)
    assert torch.equal(rolled, torch.roll(image, (dy, dx), (2, 3)))
    assert torch.equal(how(rolled, -shift), image)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_replayed_steps_match_eager(astronaut_96, device):
    """On CUDA the step is a captured graph (equal within bf16 tolerance); elsewhere the same static-buffer
    replay loop calls the step directly, which must give exactly the eager result."""
    model = create_model(device=device)
    objective, rule, graphs = layer_l2("blocks.3"), ascent(tile=64), GraphCache()
    image = to_tensor(astronaut_96, device)  # 96 px in 64 px tiles: the tile loop is replayed too

    def ascend(graphs: GraphCache | None) -> torch.Tensor:
        return optimize(image, model, objective, rule, steps=4, generator=make_generator(1), graphs=graphs)

    first = ascend(graphs)
    assert len(graphs) == 0  # the first sight of a size runs eagerly and is remembered
    fast = ascend(graphs)
    eager = ascend(None)
    assert len(graphs) == 1 and graphs.failure is None
    assert fast.shape == eager.shape == image.shape
    if device == "cpu":
        assert torch.equal(fast, eager) and torch.equal(first, eager)
    else:
        assert (fast - eager).abs().mean() < 2e-3 and (fast - eager).abs().max() < 0.05
    assert (fast - image).abs().mean() > 0.01  # the steps did move the picture


@pytest.mark.parametrize("device", DEVICES)
def test_replayed_steps_stay_random_and_new_sizes_run_eagerly(astronaut_96, device):
    model = create_model(device=device)
    objective, graphs = layer_l2("blocks.3"), GraphCache(max_graphs=1)
    image = to_tensor(astronaut_96, device)

    def ascend(image: torch.Tensor, seed: int) -> torch.Tensor:
        return optimize(image, model, objective, ascent(), steps=3, generator=make_generator(seed), graphs=graphs)

    for _ in range(2):
        ascend(image, 0)
    a, b = ascend(image, 1), ascend(image, 2)
    assert (a - b).abs().mean() > 1e-3  # other seeds, other shifts, under replay too
    small = image[..., :80, :72]
    other = ascend(small, 0)
    assert other.shape[-2:] == (80, 72) and len(graphs) == 1  # a size seen once runs eagerly
    ascend(small, 0)
    assert len(graphs) == 1  # captured on its second use; the older size made room (max_graphs=1)
    for _ in range(2):  # the dropped size comes back, captured anew
        again = ascend(image, 1)
        assert (again - a).abs().max() < (1e-6 if device == "cpu" else 0.05)


@pytest.mark.parametrize("device", DEVICES)
def test_replayed_descent_loads_each_calls_targets_and_a_fresh_optimizer(astronaut_96, device):
    """Adam over static buffers: every call must see its own targets and start from a fresh optimizer,
    so replays equal eager runs call for call (exactly on the CPU)."""
    model = create_model(device=device)
    image = to_tensor(astronaut_96, device)
    with torch.no_grad():
        photos = [model(p, ["stem"])["stem"].float() for p in (image, image.flip(-1), image.flip(-2))]
    start = torch.full_like(image, 0.5)

    def descend(features: torch.Tensor, graphs: GraphCache | None) -> torch.Tensor:
        objective = Targeted(lambda targets: content("stem", targets["features"]), {"features": features}, "content(stem)")
        return optimize(start, model, objective, Adam(0.05), steps=3, graphs=graphs)

    graphs = GraphCache()
    replayed = [descend(features, graphs) for features in photos]
    assert len(graphs) == 1 and graphs.failure is None  # the first call ran eagerly, the others replayed
    for features, fast in zip(photos, replayed):
        eager = descend(features, None)
        assert torch.equal(fast, eager) if device == "cpu" else (fast - eager).abs().mean() < 2e-3
    assert (replayed[1] - replayed[2]).abs().mean() > 1e-3  # the targets did reach the replayed step
