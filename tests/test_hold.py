"""The effect a video or live stream is held at (`carry.EffectHold`, `Dreamer.still_effect`).

A stream's dream is held at the effect of a still dream: neither burning in over a long clip nor
fading, and, when it grows from nothing (the CPU live preset), reaching that effect within a few
dozen frames. The effect is mean |output - input| with pixels in [0, 1].
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from skimage import data

from streamdream.convert import to_tensor
from streamdream.carry import EffectHold, FrameMode, Previous
from streamdream.dream import EFFECT_PROBE_SIDE, Dreamer
from streamdream.engine import LiveEngine
from streamdream.optimize import make_generator
from streamdream.samples.make import camera_frames
from streamdream.scheduler import OptimizeCall
from streamdream.session import StreamSession
from streamdream.settings import preset
from streamdream.temporal import no_motion

from .conftest import until




def effects(outputs: list[np.ndarray], inputs: list[np.ndarray]) -> list[float]:
    return [float(np.abs(o.astype(float) - i).mean() / 255) for o, i in zip(outputs, inputs)]


@pytest.fixture(scope="module")
def pan() -> list[np.ndarray]:
    return camera_frames("pan", (96, 72), 40)[0]


def small_dreamer(strength: float = 1.0) -> Dreamer:
    return Dreamer(octaves=2, iterations=3, strength=strength, device="cpu")


def test_still_effect_is_a_still_dream_of_a_thumbnail_measured_once(monkeypatch):
    dreamer = small_dreamer()
    photo = to_tensor(np.ascontiguousarray(data.astronaut()[::2, ::2]))  # 256 x 256: above the probe's side
    runs = []
    real_run = OptimizeCall.run
    monkeypatch.setattr(OptimizeCall, "run", lambda call, progress=None: runs.append(call.image.shape) or real_run(call, progress))

    assert not dreamer.knows_still_effect(photo)
    measured = dreamer.still_effect(photo)
    assert runs == [(1, 3, EFFECT_PROBE_SIDE, EFFECT_PROBE_SIDE)]  # one dream, of a thumbnail
    assert dreamer.knows_still_effect(torch.flip(photo, dims=[-1])) and not dreamer.knows_still_effect(photo[..., :100, :])
    thumbnail = torch.nn.functional.interpolate(photo, size=(EFFECT_PROBE_SIDE,) * 2, mode="area")
    still = real_run(dreamer.call(thumbnail, generator=make_generator(0)))
    assert measured == pytest.approx(float((still - thumbnail).abs().mean()), rel=1e-6)
    assert 0.01 < measured < 0.2

    assert dreamer.still_effect(torch.flip(photo, dims=[-1])) == measured  # kept for pictures of that size
    assert len(runs) == 1


def test_still_effect_hardly_depends_on_the_picture():
    """Why one thumbnail can stand for every frame: the still's effect is the settings', not the picture's."""
    dreamer = Dreamer(device="cpu")  # the defaults: what a stream's still is
    photos = [data.astronaut(), data.coffee()]
    first, second = (dreamer.still_effect(to_tensor(np.ascontiguousarray(p))) for p in photos)
    assert dreamer._still_effects.keys() == {(160, 160), (107, 160)}  # measured twice: two sizes
    assert abs(first - second) < 0.1 * first


def test_a_stream_grown_from_the_frame_reaches_its_still_effect_and_stays(pan):
    dreamer = small_dreamer()
    session = StreamSession(dreamer, preset("fast"))
    measured = effects([session.process(f) for f in pan], pan)
    mark = dreamer.still_effect(to_tensor(pan[0]))
    assert session._carry._hold.mark == mark
    assert measured[0] < 0.3 * mark  # no still: the first frame is one small step
    assert all(0.85 * mark < s < 1.1 * mark for s in measured[15:])  # grown within 15 frames, then held


def test_a_new_mode_mid_stream_is_held_at_its_own_still(pan):
    """A live strength slider makes a new dreamer: the stream follows it without a restart."""
    gentle, strong = small_dreamer(), small_dreamer(2.0)
    session = StreamSession(gentle, preset("fast"))
    for frame in pan[:20]:
        session.process(frame)
    session.mode = strong
    measured = effects([session.process(f) for f in pan[20:]], pan[20:])
    assert session.cuts == 0  # the same shot: carried on, not restarted
    mark = strong.still_effect(to_tensor(pan[0]))
    assert mark > 1.5 * gentle.still_effect(to_tensor(pan[0]))
    assert all(0.85 * mark < s < 1.1 * mark for s in measured[10:])


def test_a_still_start_is_held_at_that_stills_own_effect(pan):
    dreamer = small_dreamer()
    session = StreamSession(dreamer, preset("balanced"))
    first = session.process(pan[0])
    session.process(pan[1])
    assert session._carry._hold.mark == pytest.approx(float(np.abs(first.astype(float) - pan[0]).mean() / 255), abs=2e-3)  # uint8 rounding
    assert dreamer._still_effects == {}  # no thumbnail dream: the still itself says


class Painter(FrameMode):
    """A mode with no still effect of its own (style cannot say)."""

    device = torch.device("cpu")

    def first_frame(self, image, generator):
        return image

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        return image


def test_a_mode_that_cannot_say_leaves_the_stream_unheld():
    hold, motion = EffectHold(), no_motion(8, 8, torch.device("cpu"))
    hold.grown()
    previous_input = torch.zeros(1, 3, 8, 8)
    assert hold(motion, Painter(), Previous(0, previous_input, previous_input + 0.5), preset("fast")) is motion
    assert hold.mark is None


def test_a_render_beside_live_frames_measures_under_the_compute_lock():
    dreamer = small_dreamer()
    image = to_tensor(camera_frames("pan", (48, 32), 1)[0][0])
    with LiveEngine() as engine:
        serialized = engine.serialized(dreamer)
        with engine.exclusive():  # a live batch holds the model
            measuring = threading.Thread(target=serialized.still_effect, args=(image,))
            measuring.start()
            until(lambda: engine.waiting == 1)
            assert measuring.is_alive() and dreamer._still_effects == {}
        measuring.join(timeout=60)
        assert serialized.still_effect(image) == dreamer.still_effect(image) > 0
        assert engine.serialized(Painter()).still_effect(image) is None
