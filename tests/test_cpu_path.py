"""The CPU path: the layout a model runs in on this machine is measured once and kept, and it dreams
the same still as PyTorch's default layout; the fused convolutions (`models.fused`) dream the same
still as PyTorch's eager ones.

A dream is chaotic over many steps: a difference of 1e-6 anywhere in the input moves a 40-step still
by as much as the dream itself (measured: mean |diff| 0.070 for a 1e-6 noise, 0.070 for the
channels-last layout, with an effect of 0.066). So the paths are compared where they can be equal,
one step, and over a whole still by what a viewer sees: how strong the dream is and how far it
climbed its objective.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
from collections.abc import Callable

import numpy as np
import pytest
import skimage.data
import torch

from streamdream.dream import Dreamer
from streamdream.errors import StreamdreamError
from streamdream.models import create_model, fused, layout
from streamdream.models.backbone import Backbone
from streamdream.models.fused import FusedConv2d, reference_path
from streamdream.optimize import make_generator

from .conftest import small


@pytest.fixture(scope="module")
def both():
    return create_model(device="cpu", channels_last=False), create_model(device="cpu", channels_last=True)


@pytest.fixture(params=["layout", "fusion"])
def paths(request, both) -> list[tuple[Backbone, Callable[[], contextlib.AbstractContextManager]]]:
    """The reference path and the fast one: PyTorch's default layout and channels-last, or PyTorch's
    eager convolutions (`fused.reference_path`) and the fused ones, each a model and how it runs."""
    if request.param == "layout":
        assert both[1].memory_format == torch.channels_last and both[0].memory_format == torch.contiguous_format
        return [(both[0], contextlib.nullcontext), (both[1], contextlib.nullcontext)]
    return [(both[1], reference_path), (both[1], contextlib.nullcontext)]


def test_one_step_is_the_same_on_both_paths(paths):
    image = torch.from_numpy(small(skimage.data.astronaut(), 240, 180)).permute(2, 0, 1)[None].float() / 255  # fused: over FUSED_MIN_PIXELS
    reference, fast = [], []
    for (model, how), out in zip(paths, (reference, fast)):
        with how():
            out.append(Dreamer(model, device="cpu", octaves=1, iterations=1).dream_tensor(image, generator=make_generator(0)))
    assert (reference[0] - image).abs().mean() > 0.005  # it did dream
    assert (fast[0] - reference[0]).abs().mean() < 1e-4  # measured 3e-6 at 512 px


def test_whole_stills_look_the_same_on_both_paths(paths):
    """Over three seeds at 192 px (one seed's objective gain varies by 5-15% with the seed alone): the same
    effect (measured 0.3% apart) and the same climb of the objective (1.4% apart)."""
    photo = small(skimage.data.astronaut(), 192, 192)
    effects, gains = [], []
    for model, how in paths:
        with how():
            dreamer = Dreamer(model, device="cpu")
            stills = [dreamer.dream(photo, seed=seed) for seed in range(3)]
            effects.append(np.mean([np.abs(still.astype(float) - photo).mean() for still in stills]))
            gains.append(np.mean([dreamer.objective_value(still) for still in stills]) - dreamer.objective_value(photo))
    assert effects[1] == pytest.approx(effects[0], rel=0.02)
    assert gains[1] == pytest.approx(gains[0], rel=0.1) and gains[0] > 0


def test_every_relu6_runs_inside_its_convolution(both):
    for model in both:
        convolutions = [m for m in model.modules() if isinstance(m, FusedConv2d)]
        assert sum(conv.activation == "relu6" for conv in convolutions) == 33  # lite0: stem, head, each of 16 blocks' expansion and depthwise layers (the first has no expansion)
        assert not any(isinstance(m, torch.nn.ReLU6) for m in model.modules())


@pytest.mark.parametrize("size", [(120, 160), (135, 137), (129, 131)])  # all over FUSED_MIN_PIXELS
@pytest.mark.parametrize("layout_", ["contiguous", "channels_last"])
def test_fused_gradients_are_eager_ones_on_odd_sizes_and_batches(both, size, layout_):
    """The gradient to the image through every kind of layer (strided, depthwise, 1x1, the head and
    classifier), a batch of two, the same whatever the size: equal to float rounding (measured 1e-6 of
    its mean) but where a rounding tips a ReLU6 over its edge, as PyTorch's two layouts also do
    (measured 5e-4 of its mean at 120x160 in PyTorch's default layout, between its eager layouts too)."""
    model = both[layout_ == "channels_last"]
    image = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=model.memory_format)

    def gradient() -> tuple[torch.Tensor, torch.Tensor]:
        x = image.clone().requires_grad_(True)
        acts = model(x, ["blocks.4", "blocks.1", "logit"])
        value = acts["blocks.4"].pow(2).mean() + acts["blocks.1"][:, 3].mean() + acts["logit"][:, 76].sum()
        return torch.autograd.grad(value, x)[0], acts["logit"]

    fast, fast_logits = gradient()
    with reference_path():
        eager, eager_logits = gradient()
    assert fast.shape == image.shape and eager.abs().max() > 0
    assert (fast - eager).abs().mean() <= 1e-3 * eager.abs().mean()
    torch.testing.assert_close(fast_logits, eager_logits, rtol=1e-4, atol=1e-4)  # logits of about 10: measured 2e-5 apart


@pytest.mark.parametrize("asked, used", [(["stem", "blocks.1", "blocks.4"], ["blocks.1"]), (["blocks.0", "head"], ["blocks.0", "head"])])
def test_fused_gradients_of_some_of_the_layers_asked_for_are_eager_ones(both, asked, used):
    """Style asks for several layers at once and an objective may use only some of them: the gradient
    flows from those alone, through the layers between them and below."""
    model = both[1]
    image = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1)).contiguous(memory_format=model.memory_format)

    def gradient() -> torch.Tensor:
        x = image.clone().requires_grad_(True)
        acts = model(x, asked)
        assert list(acts) == asked and all(a.requires_grad for a in acts.values())
        return torch.autograd.grad(sum(acts[layer].pow(2).mean() for layer in used), x)[0]

    fast = gradient()
    with reference_path():
        eager = gradient()
    assert eager.abs().max() > 0 and (fast - eager).abs().mean() <= 1e-3 * eager.abs().mean()


class _PaddedUnevenly(FusedConv2d):
    """Pads by one more row and column at the bottom and right before padding by its own `padding`."""

    def extra_padding(self, height: int, width: int) -> tuple[int, int, int, int]:
        return 0, 1, 0, 1


@pytest.mark.parametrize("channels", [3, 8])
def test_a_strided_convolution_padded_unevenly_has_the_eager_gradient(channels):
    """A strided convolution padded unevenly and by its own padding too (EfficientNet-Lite's strided
    layers pad only unevenly) gives the output and gradient its module gives: the fused path's kernel
    with zero taps (`FusedConv2d._unpadded`) stands for both paddings."""
    generator = torch.Generator().manual_seed(2)
    conv = _PaddedUnevenly(channels, 16, 3, stride=2, padding=1).requires_grad_(False)
    conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
    conv.activation = "relu6"
    chain = fused.ConvChain(conv)
    image = torch.rand(2, channels, 70, 91, generator=generator).contiguous(memory_format=torch.channels_last)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        x = image.clone().requires_grad_(True)
        y = fused.run_stages([chain], x, [0])[0]
        return y, torch.autograd.grad(y.pow(2).sum(), x)[0]

    fast, fast_gradient = run()
    with reference_path():
        eager, eager_gradient = run()
    assert fast.shape == (2, 16, 36, 46) and 0 < eager.mean() < 6
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    assert fast_gradient.shape == image.shape and eager_gradient.abs().max() > 0
    assert (fast_gradient - eager_gradient).abs().mean() <= 1e-5 * eager_gradient.abs().mean()


def test_a_fused_step_leaves_no_garbage_and_backpropagates_once(both):
    """The fused run keeps its activations until its backward and lets them go there, or with its
    outputs when no backward comes, without a reference cycle (one would hold a step's activations
    until Python's garbage collector happened to run)."""
    model = both[1]
    image = torch.rand(1, 3, 96, 128).contiguous(memory_format=torch.channels_last)
    gc.collect()
    gc.disable()
    try:
        for backward in (True, False, True):
            x = image.clone().requires_grad_(True)
            acts = model(x, ["stem", "blocks.4"])  # the stem's output is also what its ReLU6's gradient keeps
            if backward:
                torch.autograd.grad(acts["blocks.4"].sum(), x)
            del acts
        assert gc.collect() == 0
    finally:
        gc.enable()
    x = image.clone().requires_grad_(True)
    value = model(x, ["blocks.2"])["blocks.2"].sum()
    torch.autograd.grad(value, x, retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass only"):
        torch.autograd.grad(value, x)


def test_reordered_weights_are_kept_for_a_few_shapes_only(both):
    """A live server meets many frame sizes: each convolution keeps the plans (reordered weights) of its last few."""
    model = both[1]
    for side in range(190, 190 + 3 * fused.PACKED_SHAPES):  # each over FUSED_MIN_PIXELS
        x = torch.rand(1, 3, side, side).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        torch.autograd.grad(model(x, ["blocks.1"])["blocks.1"].sum(), x)
    kept = [len(fused._PACKS[m]) for m in model.modules() if m in fused._PACKS]
    assert kept and max(kept) == fused.PACKED_SHAPES  # the newest shapes


def test_the_layout_is_measured_once_and_kept(both, monkeypatch, tmp_path):
    monkeypatch.delenv("STREAMDREAM_CPU_LAYOUT")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = create_model(device="cpu", channels_last=False)
    chosen = layout.fastest_cpu_layout(model, "blocks.4")
    stored = json.loads((tmp_path / "streamdream" / "cpu-choices.json").read_text())
    (timings,) = stored.values()
    assert set(timings) == {"contiguous", "channels_last"} and all(ms > 0 for ms in timings.values())
    assert chosen == layout.LAYOUTS[min(timings, key=timings.get)]

    def no_timing(*args):
        raise AssertionError("measured again")

    monkeypatch.setattr(layout, "_best_ms", no_timing)
    for slower in layout.LAYOUTS:  # whatever the cache says, without measuring
        (key,) = stored
        stored[key] = {name: 2.0 if name == slower else 1.0 for name in layout.LAYOUTS}
        (tmp_path / "streamdream" / "cpu-choices.json").write_text(json.dumps(stored))
        assert layout.fastest_cpu_layout(model, "blocks.4") != layout.LAYOUTS[slower]
    model.to(memory_format=torch.contiguous_format)  # the shared reference model, as it was


def test_a_forced_layout_is_checked(monkeypatch, both):
    monkeypatch.setenv("STREAMDREAM_CPU_LAYOUT", "contiguous")
    assert layout.fastest_cpu_layout(both[0], "blocks.4") == torch.contiguous_format
    monkeypatch.setenv("STREAMDREAM_CPU_LAYOUT", "nhwc")
    with pytest.raises(StreamdreamError, match="must be one of contiguous, channels_last, got 'nhwc'"):
        layout.fastest_cpu_layout(both[0], "blocks.4")


def test_a_style_networks_precision_is_measured_once_and_kept(monkeypatch, tmp_path):
    monkeypatch.delenv("STREAMDREAM_CPU_DTYPE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    runs: list[torch.dtype] = []

    def network(image: torch.Tensor) -> torch.Tensor:
        runs.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else image.dtype)
        return torch.nn.functional.conv2d(image, torch.ones(4, 3, 3, 3))

    chosen = layout.fastest_cpu_dtype("a test network", network)
    (timings,) = json.loads((tmp_path / "streamdream" / "cpu-choices.json").read_text()).values()
    assert set(timings) == {"float32", "bfloat16"} and chosen == layout.DTYPES[min(timings, key=timings.get)]
    assert set(runs) == {torch.float32, torch.bfloat16}  # both were timed, bf16 under autocast
    runs.clear()
    assert layout.fastest_cpu_dtype("a test network", network) == chosen and not runs  # kept, not timed again
    monkeypatch.setenv("STREAMDREAM_CPU_DTYPE", "half")
    with pytest.raises(StreamdreamError, match="STREAMDREAM_CPU_DTYPE must be one of float32, bfloat16, got 'half'"):
        layout.fastest_cpu_dtype("a test network", network)


def test_a_small_picture_runs_eager_and_a_big_one_fused(both):
    """Below `FUSED_MIN_PIXELS` (height x width) the fused operator's higher cost per call outweighs
    what it saves: the whole network runs eager, so it reorders no weights. A batch of small pictures
    does too, so a live frame runs the same way batched with others or alone."""
    model = both[1]

    def step(batch: int, height: int, width: int) -> None:
        x = torch.rand(batch, 3, height, width).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        torch.autograd.grad(model(x, ["blocks.2"])["blocks.2"].sum(), x)

    fused._PACKS.clear()
    step(1, 48, 64)  # 3.1k pixels
    step(4, 48, 64)
    assert len(fused._PACKS) == 0
    step(1, 64, 80)  # 5.1k
    assert len(fused._PACKS) > 0


def test_off_the_cpu_the_network_traces_as_one_graph(both):
    """Off the CPU nothing runs fused, and `torch.compile` (the GPU suite's compiled step) must see the
    plain network: one graph, no break. The meta device stands in for a GPU here."""
    model = copy.deepcopy(both[1]).to("meta")
    torch._dynamo.reset()
    explained = torch._dynamo.explain(lambda x: model(x, ["blocks.4"])["blocks.4"].sum())(torch.rand(1, 3, 256, 256, device="meta"))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
