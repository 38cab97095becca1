"""The style network as a mode: stills, strength, the painting's embedding kept, batches, the carry, the CLI."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from streamdream.apps.cli import main
from streamdream.convert import to_tensor
from streamdream.errors import StreamdreamError
from streamdream.io.images import load_image, save_image
from streamdream.samples.make import camera_frames, true_backward_flow
from streamdream.scheduler import batches, run_planned
from streamdream.session import StreamSession
from streamdream.settings import PRESETS, TemporalSettings
from streamdream.style import Stylizer
from streamdream.style_net import NetStylizer, create_stylizer, painting_net
from streamdream.temporal import effect, warping_error

from .conftest import small
from .test_style import blobs


@pytest.fixture(scope="module")
def painting() -> np.ndarray:
    return small(skimage.data.rocket(), 128, 96)


def change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_a_painting_and_a_builtin_style_paint_a_still(painting, coffee_odd):
    for style in (painting, "builtin:19"):
        result = NetStylizer(style, device="cpu").stylize(coffee_odd)
        assert result.shape == coffee_odd.shape and result.dtype == np.uint8
        assert change(result, coffee_odd) > 10  # painted, not a copy


def test_strength_moves_from_the_photo_to_the_painting(painting, astronaut_96):
    for style in (painting, "builtin:3"):
        effects = [change(NetStylizer(style, strength=s, device="cpu").stylize(astronaut_96), astronaut_96) for s in (0.1, 0.5, 1.0)]
        assert effects[0] < effects[1] < effects[2]


def test_a_paintings_embedding_is_computed_once(astronaut_96):
    net = painting_net(torch.device("cpu"))
    fresh = blobs(seed=11)
    before = net.embedded
    first = NetStylizer(fresh, device="cpu").stylize(astronaut_96)
    again = NetStylizer(fresh.copy(), device="cpu").stylize(astronaut_96)
    assert net.embedded == before + 1
    assert np.array_equal(first, again)


def test_frames_of_many_streams_run_as_one_batch_with_their_own_styles(painting, astronaut_96, coffee_odd):
    photos = [to_tensor(small(p, 64, 48), "cpu") for p in (astronaut_96, coffee_odd, astronaut_96)]
    modes = [NetStylizer(painting, device="cpu"), NetStylizer(blobs(), device="cpu", strength=0.5), NetStylizer("builtin:5", device="cpu")]
    works = [mode.plan_first_frame(photo, torch.Generator()) for mode, photo in zip(modes, photos)]
    assert sorted(map(len, batches(works))) == [1, 2]  # the two paintings share a pass; the built-in net runs apart
    together = run_planned(works)
    for work, out in zip(works, together):
        torch.testing.assert_close(out, work.run(), atol=1e-5, rtol=0)


def test_carried_painting_is_steadier_than_the_network_on_every_frame_and_as_strong(painting):
    """A generated pan with exact motion: the carry must take away most of the network's flicker."""
    frames, affines = camera_frames("pan", (96, 64), 8)
    flows = [true_backward_flow(a, b, (96, 64)) for a, b in zip(affines, affines[1:])]
    mode = NetStylizer(painting, device="cpu")
    errors, effects = {}, {}
    for name, settings in {"carried": TemporalSettings(), "independent": TemporalSettings(independent=True)}.items():
        session = StreamSession(mode, settings, seed=0)
        outputs = [session.process(frame) for frame in frames]
        errors[name], effects[name] = warping_error(outputs, flows=flows), effect(outputs, frames)
    assert errors["carried"] < 0.3 * errors["independent"]  # measured 0.18x (2026-12-05)
    assert effects["carried"] > 0.9 * effects["independent"]


def test_a_stream_grown_from_the_frame_paints_as_one_that_starts_with_a_painting(painting):
    """The live preset on a CPU (`fresh_start="frame"`) must not start at a fraction of the painting:
    for the network a first frame costs no more than any other, so both presets give the same video."""
    frames, _ = camera_frames("zoom", (96, 64), 5)
    mode = NetStylizer(painting, device="cpu")
    fast, balanced = StreamSession(mode, PRESETS["fast"], seed=0), StreamSession(mode, PRESETS["balanced"], seed=0)
    for index, frame in enumerate(frames):
        result = fast.process(frame)
        assert np.array_equal(result, balanced.process(frame))
        if index == 0:
            assert np.array_equal(result, mode.still(frame))


def test_refine_starts_from_the_networks_painting_and_lowers_its_style_loss(astronaut_96):
    style = blobs()
    refine = create_stylizer("refine", [style], device="cpu", refine_steps=10)
    assert isinstance(refine, Stylizer) and refine.steps(96, 96) == 10
    painted = refine.painter.stylize(astronaut_96)
    refined = refine.stylize(astronaut_96)
    assert refine.losses(refined, astronaut_96)["style"] < refine.losses(painted, astronaut_96)["style"]
    assert change(refined, painted) < change(astronaut_96, painted)  # it started from the painting, not the photo


@pytest.mark.parametrize(
    "styles, options, message",
    [
        ([np.zeros((1, 1, 3), np.uint8)], {}, "at least 16"),
        ([np.full((64, 64, 3), 128, np.uint8)], {}, "one flat colour"),
        (["builtin:26"], {}, "builtin:0 to builtin:25"),
        (["builtin:x"], {}, "builtin:0 to builtin:25"),
        (["builtin:1", blobs()], {}, "cannot be blended"),
        ([], {}, "give a style"),
        (["builtin:1"], {"strength": 2.0}, "at most 1"),
        (["builtin:1"], {"renew": 0.0}, "renew"),
    ],
)
def test_bad_styles_are_one_line_errors(styles, options, message):
    with pytest.raises(StreamdreamError, match=message) as caught:
        NetStylizer(styles, device="cpu", **options)
    assert "\n" not in str(caught.value)


def test_builtin_styles_are_for_the_network_only():
    with pytest.raises(StreamdreamError, match="network only"):
        create_stylizer("refine", ["builtin:1"], device="cpu")


# --- command line ----------------------------------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """The start of a PNG that claims `width` x `height` pixels: what a decompression bomb shows before any pixel."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.fixture
def photo_file(tmp_path, astronaut_96):
    path = tmp_path / "photo.png"
    save_image(path, small(astronaut_96, 48, 40))
    return path


def test_cli_paints_with_a_builtin_style_by_default(photo_file, tmp_path):
    out = tmp_path / "out.png"
    assert main(["style", str(photo_file), "-s", "builtin:19", "-o", str(out), "--device", "cpu", "-q"]) == 0
    result = load_image(out).rgb
    assert result.shape == (40, 48, 3) and change(result, load_image(photo_file).rgb) > 10


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-s", "{painting}", "--init", "noise"], "--init applies to --method optimize"),
        (["-s", "builtin:3", "--method", "refine"], "network only"),
        (["-s", "builtin:99"], "builtin:0 to builtin:25"),
        (["-s", "{grey}"], "one flat colour"),
        (["-s", "{tiny}"], "at least 16"),
        (["-s", "{text}"], "image"),
        (["-s", "{huge}"], "megapixel limit"),
        (["-s", "builtin:3", "--strength", "3"], "at most 1"),
    ],
)
def test_cli_bad_styles_are_one_line_exit_2_and_write_nothing(photo_file, tmp_path, capsys, extra, message):
    files = {"painting": tmp_path / "p.png", "grey": tmp_path / "grey.png", "tiny": tmp_path / "tiny.png", "text": tmp_path / "text.png", "huge": tmp_path / "huge.png"}
    save_image(files["painting"], blobs())
    save_image(files["grey"], np.full((64, 64, 3), 90, np.uint8))
    Image.new("RGB", (1, 1), "red").save(files["tiny"])
    files["text"].write_text("not a picture")
    files["huge"].write_bytes(png_header(20000, 20000))
    before = sorted(tmp_path.iterdir())
    argv = ["style", str(photo_file), *(a.format(**files) for a in extra), "-o", str(tmp_path / "out.png"), "--device", "cpu", "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamdream: error:") and message in err and "\n" not in err
    assert sorted(tmp_path.iterdir()) == before
