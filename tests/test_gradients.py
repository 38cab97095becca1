"""Tests for the image-gradient tools (issue #7): classify, saliency, fool, classviz, invert.

Each acceptance check of the issue is a test on skimage's `chelsea()` with the embedded
EfficientNet-Lite0 on the CPU. The fooling and class-visualization tests go through the CLI and
classify the saved file, so quantization, resolution and saving are covered as the user sees them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from streamdream.apps.cli import main
from streamdream.gradients import classify, invert, saliency
from streamdream.io.images import resize_max_side
from streamdream.models import create_model, imagenet_labels

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
GOLDFISH = 1


@pytest.fixture(scope="module")
def model():
    return create_model(device="cpu")


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return data.chelsea()


@pytest.fixture(scope="module")
def chelsea_file(tmp_path_factory, chelsea) -> Path:
    path = tmp_path_factory.mktemp("gradients") / "chelsea.png"
    Image.fromarray(chelsea).save(path)
    return path


def _load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_classify_chelsea_is_a_cat(model, chelsea):
    predictions = classify(chelsea, model)
    assert len(predictions) == 5
    assert predictions[0].index in CATS
    assert predictions[0].label == imagenet_labels()[predictions[0].index]
    probs = [p.prob for p in predictions]
    assert probs == sorted(probs, reverse=True)
    assert 0.5 < probs[0] <= 1.0 and sum(probs) <= 1.0 + 1e-6


def test_classify_json_lists_the_top5_best_first(chelsea_file, capsys):
    assert main(["classify", str(chelsea_file), "--json", "--device", "cpu"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [set(row) for row in rows] == [{"index", "label", "prob"}] * 5
    assert all(isinstance(r["index"], int) and isinstance(r["label"], str) and isinstance(r["prob"], float) for r in rows)
    assert rows[0]["index"] in CATS
    assert [r["prob"] for r in rows] == sorted((r["prob"] for r in rows), reverse=True)


def test_saliency_is_higher_on_the_cat_than_around_it(model, chelsea):
    # chelsea() is all cat, and zero padding makes the centre of any picture a little more salient
    # (random noise alone scores 1.16 on a central box), so the cat sits in the central box of a
    # random-noise canvas. Inside/outside ratio: the cat about 7; other noise there 0.8, grey 2.9.
    canvas = np.random.default_rng(0).integers(0, 256, chelsea.shape, dtype=np.uint8)
    cat = resize_max_side(chelsea, chelsea.shape[1] // 2)
    top, left = (np.array(canvas.shape[:2]) - cat.shape[:2]) // 2
    box = np.s_[top : top + cat.shape[0], left : left + cat.shape[1]]
    canvas[box] = cat
    assert classify(canvas, model)[0].index in CATS
    heat = saliency(canvas, model=model)
    assert heat.shape == canvas.shape[:2]
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    inside = np.zeros(heat.shape, dtype=bool)
    inside[box] = True
    assert heat[inside].mean() > 4.0 * heat[~inside].mean()


def test_saliency_cli_writes_a_map_and_an_overlay_at_the_input_size(chelsea_file, chelsea, tmp_path):
    gray, overlay = tmp_path / "map.png", tmp_path / "overlay.png"
    assert main(["saliency", str(chelsea_file), "-o", str(gray), "--device", "cpu"]) == 0
    assert main(["saliency", str(chelsea_file), "--class", "1", "-o", str(overlay), "--overlay", "--device", "cpu"]) == 0
    gray_rgb, overlay_rgb = _load(gray), _load(overlay)
    assert gray_rgb.shape == overlay_rgb.shape == chelsea.shape
    assert (gray_rgb[..., 0] == gray_rgb[..., 2]).all()  # grayscale
    assert not (overlay_rgb[..., 0] == overlay_rgb[..., 2]).all()  # colour-mapped


def test_fool_makes_chelsea_a_goldfish_within_8_levels(chelsea_file, chelsea, model, tmp_path, capsys):
    out = tmp_path / "fooled.png"
    assert main(["fool", str(chelsea_file), "--target", str(GOLDFISH), "-o", str(out), "-q", "--device", "cpu"]) == 0
    assert "iterations" in capsys.readouterr().out
    fooled = _load(out)
    assert fooled.shape == chelsea.shape
    change = np.abs(fooled.astype(int) - chelsea.astype(int))
    assert 0 < change.max() <= 8
    assert classify(fooled, model)[0].index == GOLDFISH


def test_fool_reports_failure_without_writing(chelsea_file, tmp_path, capsys):
    out = tmp_path / "fooled.png"
    code = main(["fool", str(chelsea_file), "--target", str(GOLDFISH), "--iterations", "0", "-o", str(out), "-q", "--device", "cpu"])
    assert code == 2 and not out.exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_classviz_goldfish_is_classified_as_goldfish(model, tmp_path):
    out = tmp_path / "goldfish.png"
    assert main(["classviz", "--class", str(GOLDFISH), "--seed", "1", "-o", str(out), "-q", "--device", "cpu"]) == 0
    image = _load(out)
    assert image.shape == (224, 224, 3)
    assert classify(image, model)[0].index == GOLDFISH


def test_invert_shallow_layer_reconstructs_the_photo(model, chelsea):
    small = resize_max_side(chelsea, 128)
    result = invert(small, "stem", iterations=30, model=model)
    assert result.shape == small.shape
    assert peak_signal_noise_ratio(small, result) >= 20.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", "{missing}"], "no such file"),
        (["classify", "{chelsea}", "--top", "0"], "from 1 to 1000"),
        (["saliency", "{chelsea}", "--class", "1000", "-o", "{out}"], "from 0 to 999"),
        (["fool", "{chelsea}", "--target", "-1", "-o", "{out}"], "from 0 to 999"),
        (["classviz", "--class", "1", "-o", "{tmp}/no/such/dir/out.png"], "does not exist"),
        (["classviz", "--class", "1", "-o", "{tmp}/out.xyz"], "unknown extension"),
        (["invert", "{chelsea}", "--layer", "blocks.99", "-o", "{out}"], "unknown layer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, chelsea_file, tmp_path, capsys):
    names = {"missing": tmp_path / "missing.png", "chelsea": chelsea_file, "out": tmp_path / "out.png", "tmp": tmp_path}
    code = main([arg.format(**names) for arg in argv] + ["--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("streamdream: error:") and message in err[0]
    assert list(tmp_path.iterdir()) == []
