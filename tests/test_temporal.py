"""Tests for streamdream.temporal: flow direction, warping convention, occlusion check, metrics.

The conventions are what matter most here: a flow with the wrong sign or a half-pixel offset in
warping still "works" visually but smears every frame, so the tests pin down exact directions
with known translations rather than only checking shapes.
"""

from __future__ import annotations

from dataclasses import fields

import cv2
import numpy as np
import pytest
import torch

from streamdream.samples.make import camera_frames
from streamdream.settings import TemporalSettings
from streamdream.temporal import (
    FlowEstimator,
    flow_to_tensor,
    JudgeFlow,
    in_frame_mask,
    occlusion_mask,
    effect,
    video_scores,
    frame_flows,
    motion_from_flows,
    warp,
    warping_error,
)
from streamdream.temporal.motion import fill_holes

SIZE = 96  # frame side in the tests: small enough to be fast, large enough for DIS patches
SHIFT = (3, -2)  # (dx, dy) per frame: asymmetric so swapped axes or signs show up


def _texture(side: int = 192, seed: int = 0) -> np.ndarray:
    """Smoothed colour noise: textured at every scale DIS looks at, no repeating pattern."""
    rng = np.random.default_rng(seed)
    noise = rng.random((side, side, 3), dtype=np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), 2.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (smooth * 255).round().astype(np.uint8)


def _translated_frames(count: int, shift: tuple[int, int] = SHIFT) -> list[np.ndarray]:
    """Crops of one texture moving by `shift` per frame, so frame t(x) = frame t-1(x - shift)."""
    big = _texture()
    dx, dy = shift
    x0 = y0 = (big.shape[0] - SIZE) // 2 - (count // 2) * max(abs(dx), abs(dy))
    frames = []
    for t in range(count):
        y, x = y0 - t * dy, x0 - t * dx
        frames.append(np.ascontiguousarray(big[y : y + SIZE, x : x + SIZE]))
    return frames


def _constant_flow(dx: float, dy: float, height: int = SIZE, width: int = SIZE) -> torch.Tensor:
    flow = torch.empty(1, 2, height, width)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def _image(seed: int = 0, batch: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, SIZE, SIZE, generator=generator, dtype=dtype)


# --- FlowEstimator -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "scale"), [("fast", 1.0), ("fast", 0.5), ("medium", 1.0), ("ultrafast", 1.0)]
)
def test_flow_recovers_translation(preset: str, scale: float) -> None:
    previous, current = _translated_frames(2)
    # current(x) = previous(x - shift): the backward flow (current -> previous) is -shift
    # and the forward flow (previous -> current) is +shift.
    estimator = FlowEstimator(preset, scale=scale)
    for src, dst, expected in ((current, previous, -1), (previous, current, 1)):
        flow = estimator(src, dst)
        assert flow.shape == (SIZE, SIZE, 2) and flow.dtype == np.float32
        interior = flow[12:-12, 12:-12]
        error = np.linalg.norm(interior - expected * np.array(SHIFT, np.float32), axis=-1)
        assert error.mean() < 0.5, (preset, scale, error.mean())


def test_flow_accepts_gray_and_rejects_bad_input() -> None:
    previous, current = _translated_frames(2)
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (current, previous)]
    flow = FlowEstimator("fast")(*gray)
    assert np.abs(flow[12:-12, 12:-12] + np.array(SHIFT)).mean() < 0.5
    with pytest.raises(ValueError, match="uint8"):
        FlowEstimator()(current.astype(np.float32), previous.astype(np.float32))
    with pytest.raises(ValueError, match="size"):
        FlowEstimator()(current, previous[:-1])


def test_a_pairs_flows_are_the_same_on_one_thread_or_two() -> None:
    """`both_ways` gives each direction a DIS instance of its own, on one thread or, `at_once`, two:
    the same flows either way, frame after frame, though an instance's flow depends a little on its
    history (a 64x48 zoom's first flow differs after another flow); a bad pair fails in the caller
    and the estimator goes on."""
    zoom = camera_frames("zoom", (64, 48), 4)[0]
    fresh, used = FlowEstimator(), FlowEstimator()
    used(zoom[1], zoom[0])
    assert not np.array_equal(fresh(zoom[0], zoom[1]), used(zoom[0], zoom[1]))  # the history shows
    for frames in (zoom, _translated_frames(4)):
        one, two = FlowEstimator(), FlowEstimator()
        for previous, current in zip(frames, frames[1:]):
            backward, forward = one.both_ways(previous, current)
            assert all(np.array_equal(a, b) for a, b in zip((backward, forward), two.both_ways(previous, current, at_once=True)))
    assert np.abs(forward[12:-12, 12:-12] - np.array(SHIFT)).mean() < 0.5
    with pytest.raises(ValueError, match="size"):
        two.both_ways(previous, current[:-1], at_once=True)
    assert np.array_equal(two.both_ways(previous, current, at_once=True)[1], one.both_ways(previous, current)[1])


def test_the_judges_pair_keeps_its_settings() -> None:
    judge, renderer = JudgeFlow(), FlowEstimator("medium", scale=1.0)
    previous, current = _translated_frames(2)
    judged = judge.both_ways(previous, current, at_once=True)
    assert np.array_equal(judged[1], judge(previous, current))  # as its single flows: patch 12, finest scale 0
    assert not np.array_equal(judged[1], renderer(previous, current))


def test_flow_defaults_and_presets_are_the_settings() -> None:
    """A bare estimator flows as a default render does, and it takes exactly the presets the settings offer."""
    estimator = FlowEstimator()
    assert (estimator.preset, estimator.scale) == (TemporalSettings.default("flow_preset"), TemporalSettings.default("flow_scale"))
    choices = next(spec for spec in fields(TemporalSettings) if spec.name == "flow_preset").metadata["choices"]
    assert [FlowEstimator(preset).preset for preset in choices] == list(choices)
    with pytest.raises(ValueError, match=f"choose one of {', '.join(choices)}$"):
        FlowEstimator("slow")


def test_bad_scale_raises() -> None:
    with pytest.raises(ValueError, match="scale"):
        FlowEstimator("fast", scale=0.0)


def test_flow_to_tensor_layout() -> None:
    flow = np.stack([np.full((4, 5), 1.5), np.full((4, 5), -2.0)], axis=-1).astype(np.float32)
    tensor = flow_to_tensor(flow, "cpu")
    assert tensor.shape == (1, 2, 4, 5) and tensor.dtype == torch.float32
    assert torch.all(tensor[0, 0] == 1.5) and torch.all(tensor[0, 1] == -2.0)


# --- warp ------------------------------------------------------------------------------------


def test_warp_zero_flow_is_identity() -> None:
    image = _image(batch=2)
    out = warp(image, torch.zeros(2, 2, SIZE, SIZE))
    torch.testing.assert_close(out, image, atol=1e-5, rtol=0)


def test_warp_constant_flow_is_shift() -> None:
    image = _image()
    dx, dy = 2, -3
    out = warp(image, _constant_flow(dx, dy))
    # out[y, x] = image[y + dy, x + dx]; compare where the source is inside the image.
    expected = image[:, :, : SIZE + dy, dx:]
    torch.testing.assert_close(out[:, :, -dy:, : SIZE - dx], expected, atol=1e-5, rtol=0)
    # Border padding: sources beyond the right edge read the last column.
    torch.testing.assert_close(
        out[:, :, -dy:, SIZE - 1], image[:, :, : SIZE + dy, SIZE - 1], atol=1e-5, rtol=0
    )


def test_warp_half_pixel_is_bilinear_average() -> None:
    """Pins the pixel-centre convention: a half-pixel flow must average exact neighbours."""
    image = _image()
    out = warp(image, _constant_flow(0.5, 0.0))
    expected = 0.5 * (image[..., :-1] + image[..., 1:])
    torch.testing.assert_close(out[..., :-1], expected, atol=1e-5, rtol=0)


def test_warp_matches_estimated_backward_flow() -> None:
    """warp(previous, estimator(current, previous)) must reproduce the current frame."""
    previous, current = _translated_frames(2)
    backward = flow_to_tensor(FlowEstimator("medium")(current, previous), "cpu")
    previous_t, current_t = (
        torch.from_numpy(f).permute(2, 0, 1)[None] / 255 for f in (previous, current)
    )
    error = (warp(previous_t, backward) - current_t).abs()[..., 12:-12, 12:-12].mean()
    assert error < 0.01
    unwarped = (previous_t - current_t).abs()[..., 12:-12, 12:-12].mean()
    assert unwarped > 5 * error


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_warp_keeps_shape_dtype_device(dtype: torch.dtype) -> None:
    image = _image(batch=2, dtype=dtype)[:, :, :, :80]
    out = warp(image, torch.zeros(2, 2, SIZE, 80))
    assert out.shape == image.shape and out.dtype == dtype and out.device == image.device
    torch.testing.assert_close(out, image, atol=1e-3, rtol=0)


@pytest.mark.cuda
def test_warp_and_mask_on_cuda_match_cpu() -> None:
    image, flow = _image(), _constant_flow(1.25, -0.75)
    out = warp(image.cuda(), flow.cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), warp(image, flow), atol=1e-5, rtol=0)
    half = warp(image.cuda().half(), flow.cuda())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float().cpu(), warp(image, flow), atol=2e-3, rtol=0)
    mask = occlusion_mask(-flow.cuda(), flow.cuda())
    assert mask.is_cuda
    assert torch.equal(mask.cpu(), occlusion_mask(-flow, flow))


def test_warp_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        warp(_image(), torch.zeros(1, 2, SIZE, SIZE - 1))
    with pytest.raises(ValueError):
        warp(_image(), torch.zeros(1, 3, SIZE, SIZE))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_motion_carries_along_its_flow_with_holes_filled(dtype: torch.dtype) -> None:
    """A frame's motion makes the flow's sampling grid once, for its mask and every carry along it:
    carrying is warping along the backward flow, the untrusted pixels filled from their neighbours."""
    previous, current = _translated_frames(2)
    motion = motion_from_flows(frame_flows(FlowEstimator("medium"), previous, current)).filled(1.0)
    assert 0.5 < float(motion.known.mean()) < 1.0  # the shift uncovers a border: some pixels untrusted
    image = _image(dtype=dtype)
    carried = motion.carry(image)
    assert carried.dtype == dtype
    torch.testing.assert_close(carried, fill_holes(warp(image, motion.backward), motion.known), rtol=0, atol=0)


# --- fill_holes --------------------------------------------------------------------------------


def test_fill_holes_keeps_known_values_and_fills_from_the_nearest() -> None:
    values = torch.zeros(1, 2, 40, 60)
    values[:, :, :, :20], values[:, :, :, 40:] = 0.3, -0.2
    known = torch.ones(1, 1, 40, 60)
    known[..., 20:40] = 0  # a hole across the middle
    filled = fill_holes(values, known)
    torch.testing.assert_close(filled * known, values * known)
    row = filled[0, 0, 20]
    assert row[21] > 0.2 and row[38] < -0.1  # each edge of the hole takes its own side's value
    assert torch.all(row[20:40] <= 0.3 + 1e-6) and torch.all(row[20:40] >= -0.2 - 1e-6)
    assert torch.all(row[20:40].diff() <= 1e-6)  # and goes smoothly from one to the other
    assert torch.equal(fill_holes(values, torch.zeros_like(known)), torch.zeros_like(values))
    constant = torch.full((1, 3, 40, 60), 0.3)
    torch.testing.assert_close(fill_holes(constant * known, known), constant)  # a hole in one colour closes in it


def test_a_small_holes_fill_is_its_own_neighbourhoods_however_deep_the_others_go() -> None:
    """A hole two pixels wide is filled from the levels around it alone: with a far, large hole as well
    (which the fill has to pull down many levels for) its values are the same, bit for bit, and with
    nothing else missing the known pixels come back as they were."""
    values = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    small = torch.ones(1, 1, 64, 64)
    small[..., 10:12, 10:12] = 0
    both = small.clone()
    both[..., 36:64, 36:64] = 0
    alone, beside = fill_holes(values, small), fill_holes(values, both)
    assert torch.equal(alone[..., 10:12, 10:12], beside[..., 10:12, 10:12])
    assert torch.equal(alone * small, values * small) and not torch.equal(alone, values)
    assert torch.equal(fill_holes(values, torch.ones_like(small)), values)


# --- occlusion_mask -----------------------------------------------------------------------


def test_occlusion_mask_translation() -> None:
    dx, dy = SHIFT
    # Current(x) = previous(x - shift): backward flow -shift, forward flow +shift.
    mask = occlusion_mask(_constant_flow(dx, dy), _constant_flow(-dx, -dy))
    assert mask.shape == (1, 1, SIZE, SIZE)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    # Pixels x whose source x - shift is outside: first dx columns, last |dy| rows.
    expected = torch.ones(SIZE, SIZE)
    expected[:, :dx] = 0
    expected[SIZE + dy :, :] = 0
    assert torch.equal(mask[0, 0], expected)
    assert torch.equal(in_frame_mask(_constant_flow(-dx, -dy))[0, 0], expected)


def test_occlusion_mask_flags_disocclusion() -> None:
    backward = _constant_flow(-2.0, 0.0)
    forward = _constant_flow(2.0, 0.0)
    # In the previous frame the block [30:50, 40:60] moves elsewhere, so round trips from the
    # current pixels that land there do not come back.
    forward[:, 0, 30:50, 40:60] = -3.0
    mask = occlusion_mask(forward, backward)[0, 0]
    # Current pixels x land at x - 2: the rejected block is shifted 2 columns right.
    expected = torch.ones(SIZE, SIZE)
    expected[30:50, 42:62] = 0
    expected[:, :2] = 0  # sources left of the frame
    assert torch.equal(mask, expected)


def test_occlusion_mask_flags_motion_boundary() -> None:
    # Left half still, right half moving 4 px to the left (source 4 px to the right).
    edge = 40
    backward = torch.zeros(1, 2, SIZE, SIZE)
    backward[:, 0, :, edge:] = 4.0
    forward = torch.zeros(1, 2, SIZE, SIZE)
    forward[:, 0, :, edge:] = -4.0  # consistent: the round trip returns home everywhere
    mask = occlusion_mask(forward, backward)[0, 0]
    assert torch.all(mask[:, edge - 1 : edge + 1] == 0)  # the boundary columns
    assert torch.all(mask[:, : edge - 1] == 1)
    assert torch.all(mask[:, edge + 1 : SIZE - 4] == 1)
    assert torch.all(mask[:, SIZE - 4 :] == 0)  # sources right of the frame


def test_occlusion_mask_batch_and_shape_check() -> None:
    flows = torch.zeros(3, 2, SIZE, SIZE)
    assert occlusion_mask(flows, flows).shape == (3, 1, SIZE, SIZE)
    with pytest.raises(ValueError):
        occlusion_mask(flows, flows[:1])


# --- metrics ---------------------------------------------------------------------------------


def _flicker(frames: list[np.ndarray], amount: float = 20.0, seed: int = 1) -> list[np.ndarray]:
    """Add independent per-frame noise, the way an incoherent per-frame stylisation would."""
    rng = np.random.default_rng(seed)
    return [
        np.clip(f + rng.normal(0, amount, f.shape), 0, 255).astype(np.uint8) for f in frames
    ]


def _gt_backward_flows(count: int) -> list[np.ndarray]:
    dx, dy = SHIFT
    flow = np.empty((SIZE, SIZE, 2), np.float32)
    flow[..., 0], flow[..., 1] = -dx, -dy
    return [flow] * (count - 1)


def test_warping_error_static_sequence_is_zero() -> None:
    frames = [_texture()[:SIZE, :SIZE]] * 4
    zero_flows = [np.zeros((SIZE, SIZE, 2), np.float32)] * 3
    assert warping_error(frames, flows=zero_flows) == pytest.approx(0.0, abs=1e-9)
    assert warping_error(frames, frames, estimator=FlowEstimator("fast")) < 1e-6


def test_warping_error_ground_truth_flows() -> None:
    frames = _translated_frames(5)
    following = warping_error(frames, flows=_gt_backward_flows(5))
    assert following == pytest.approx(0.0, abs=1e-9)
    flickering = warping_error(_flicker(frames), flows=_gt_backward_flows(5))
    assert flickering > 0.005
    # Outputs that ignore the motion (a still image) are penalised too: this fails if the
    # metric warps in the wrong direction, because then following outputs would score badly.
    still = [frames[0]] * 5
    assert warping_error(still, flows=_gt_backward_flows(5)) > 0.005


def test_warping_error_estimated_flows_agree_in_ordering() -> None:
    frames = _translated_frames(5)
    estimator = FlowEstimator("medium")
    following = warping_error(iter(frames), iter(frames), estimator=estimator)
    flickering = warping_error(iter(_flicker(frames)), iter(frames), estimator=estimator)
    still = warping_error([frames[0]] * 5, frames, estimator=estimator)
    assert following < 1e-3
    assert flickering > 5 * following and still > 5 * following


def test_warping_error_default_estimator_and_streaming() -> None:
    frames = _translated_frames(3)
    outputs = (f for f in _flicker(frames))  # a one-pass generator
    assert warping_error(outputs, iter(frames)) > 0.005


def test_warping_error_argument_errors() -> None:
    frames = _translated_frames(3)
    with pytest.raises(ValueError, match="exactly one"):
        warping_error(frames)
    with pytest.raises(ValueError, match="exactly one"):
        warping_error(frames, frames, flows=_gt_backward_flows(3))
    with pytest.raises(ValueError, match="estimator"):
        warping_error(frames, flows=_gt_backward_flows(3), estimator=FlowEstimator())
    with pytest.raises(ValueError, match="two frames"):
        warping_error(frames[:1], frames[:1])
    with pytest.raises(ValueError):
        warping_error(frames, frames[:2])


def test_effect() -> None:
    frames = [np.clip(f, 0, 200).astype(np.uint8) for f in _translated_frames(3)]
    assert effect(frames, frames) == 0.0
    brighter = [f + np.uint8(10) for f in frames]
    assert effect(iter(brighter), iter(frames)) == pytest.approx(10 / 255, abs=1e-6)
    as_float = [f.astype(np.float32) / 255 for f in brighter]
    assert effect(as_float, frames) == pytest.approx(10 / 255, abs=1e-6)
    with pytest.raises(ValueError):
        effect(frames, frames[:2])
    with pytest.raises(ValueError):
        effect([], [])


def test_judge_flow_is_not_the_renderers_and_recovers_translation() -> None:
    previous, current = _translated_frames(2)
    judge = JudgeFlow()
    flow = judge(current, previous)
    assert np.abs(flow[16:-16, 16:-16] + np.array(SHIFT)).mean() < 0.5
    for preset in ("ultrafast", "fast", "medium"):  # full-resolution DIS, but with settings no renderer preset has
        assert not np.allclose(flow, FlowEstimator(preset)(current, previous), atol=1e-3)
    tiny = judge(current[:12, :20], previous[:12, :20])  # below DIS's pyramid: estimated larger, scaled back
    assert tiny.shape == (12, 20, 2) and np.isfinite(tiny).all()


def test_video_scores_leave_out_a_cut_and_count_it() -> None:
    """A pair across a cut is counted in `cuts`, not in the warping error, which it would swamp."""
    scene = _translated_frames(4)
    other = [np.ascontiguousarray(_texture(seed=5)[:SIZE, :SIZE])] * 3
    inputs = scene + other
    outputs = _flicker(inputs, amount=8.0)
    scores = video_scores(inputs, outputs)
    assert scores["cuts"] == 1 and scores["frames"] == 7
    assert scores["input_warping_error"] < 1e-3 < scores["warping_error"] < 0.01
    uncut = video_scores(scene, outputs[:4])
    assert scores["warping_error"] == pytest.approx(uncut["warping_error"], rel=0.5)
