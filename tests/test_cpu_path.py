"""The CPU path: the layout a model runs in on this machine is measured once and kept, and it dreams
the same still as PyTorch's default layout.

A dream is chaotic over many steps: a difference of 1e-6 anywhere in the input moves a 40-step still
by as much as the dream itself (measured: mean |diff| 0.070 for a 1e-6 noise, 0.070 for the
channels-last layout, with an effect of 0.066). So the paths are compared where they can be equal,
one step, and over a whole still by what a viewer sees: how strong the dream is and how far it
climbed its objective.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch

from streamdream.dream import Dreamer
from streamdream.errors import StreamdreamError
from streamdream.models import create_model, layout
from streamdream.optimize import make_generator

from .conftest import small


@pytest.fixture(scope="module")
def both():
    return create_model(device="cpu", channels_last=False), create_model(device="cpu", channels_last=True)


def test_one_step_is_the_same_in_both_layouts(both, astronaut_96):
    image = torch.from_numpy(small(astronaut_96, 160, 120)).permute(2, 0, 1)[None].float() / 255
    reference, fast = (Dreamer(m, device="cpu", octaves=1, iterations=1).dream_tensor(image, generator=make_generator(0)) for m in both)
    assert both[1].memory_format == torch.channels_last and both[0].memory_format == torch.contiguous_format
    assert (reference - image).abs().mean() > 0.005  # it did dream
    assert (fast - reference).abs().mean() < 1e-4  # measured 3e-6 at 512 px


def test_whole_stills_look_the_same_in_both_layouts(both):
    """Over three seeds at 192 px (one seed's objective gain varies by 5-15% with the seed alone): the same
    effect (measured 0.3% apart) and the same climb of the objective (1.4% apart)."""
    photo = small(skimage.data.astronaut(), 192, 192)
    effects, gains = [], []
    for model in both:
        dreamer = Dreamer(model, device="cpu")
        stills = [dreamer.dream(photo, seed=seed) for seed in range(3)]
        effects.append(np.mean([np.abs(still.astype(float) - photo).mean() for still in stills]))
        gains.append(np.mean([dreamer.objective_value(still) for still in stills]) - dreamer.objective_value(photo))
    assert effects[1] == pytest.approx(effects[0], rel=0.02)
    assert gains[1] == pytest.approx(gains[0], rel=0.1) and gains[0] > 0


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
