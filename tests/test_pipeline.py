"""Stream sessions and pipelines: live drops stale frames, files drop none, settings and scene cuts."""

from __future__ import annotations

import fractions
import threading
import time

import numpy as np
import pytest
import torch

from streamdream.samples.make import camera_frames
from streamdream.io.video import Frame
from streamdream.pipeline import LiveStream, run_file
from streamdream.carry import FrameMode
from streamdream.session import StreamSession
from streamdream.settings import PRESETS, TemporalSettings, preset
from streamdream.errors import StreamdreamError


class RecordingMode(FrameMode):
    """A stand-in mode: passes frames through and records what it was asked."""

    device = torch.device("cpu")

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, float | None]] = []

    def first_frame(self, image, generator):
        time.sleep(self.delay)
        self.calls.append(("first", None))
        return image

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        time.sleep(self.delay)
        self.calls.append(("next", settings.carry))
        return image


def frames(n: int, size=(64, 48)) -> list[np.ndarray]:
    return camera_frames("pan", size, n)[0]


class GatedMode(RecordingMode):
    """A pass-through mode whose frames wait at a gate: the test says when each one may finish."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)  # released as each frame starts
        self.gate = threading.Semaphore(0)  # one permit per frame allowed to finish

    def first_frame(self, image, generator):
        self.entered.release()
        assert self.gate.acquire(timeout=30), "the test never opened the gate"
        return super().first_frame(image, generator)

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        self.entered.release()
        assert self.gate.acquire(timeout=30), "the test never opened the gate"
        return super().next_frame(image, previous_input, previous_output, motion, settings, generator)

    def busy(self) -> None:
        """Wait until a frame has started (and is held at the gate)."""
        assert self.entered.acquire(timeout=30), "no frame started"


def test_live_stream_drops_stale_frames_and_keeps_the_newest():
    mode = GatedMode()
    clip = frames(6)
    with LiveStream(mode, TemporalSettings(flow="none")) as live:
        live.submit(clip[0])
        mode.busy()  # frame 0 is being dreamed: the next ones wait, each replacing the one before
        for image in clip[1:]:
            live.submit(image)
        mode.gate.release(2)  # frame 0 and the one frame still waiting may finish
    assert (live.processed, live.dropped) == (2, 4)
    assert (live.latest.image == clip[-1]).all()  # the last frame in is the last frame out
    assert live.latest.frame == 6 and live.latest.index == 1
    assert live.latest.latency_ms > 0
    assert [kind for kind, _ in mode.calls] == ["first", "next"]  # frame 5 was warm-started from frame 0


def test_live_stream_hands_each_result_to_its_callback():
    clip = frames(3)
    seen = []
    with LiveStream(RecordingMode(), on_result=seen.append) as live:
        for image in clip:
            live.wait(live.submit(image))
    assert [r.index for r in seen] == [0, 1, 2] and all((r.image == image).all() for r, image in zip(seen, clip))


def test_file_pipeline_processes_every_frame_in_order():
    clip = frames(12)
    written: list[tuple[np.ndarray, int]] = []
    source = [Frame(image, pts=3 * i, time_base=fractions.Fraction(1, 90), index=i) for i, image in enumerate(clip)]
    count = run_file(source, StreamSession(RecordingMode(delay=0.005)), lambda image, frame: written.append((image, frame.pts)), depth=2)
    assert count == 12
    assert [pts for _, pts in written] == [3 * i for i in range(12)]
    assert all((image == clip[i]).all() for i, (image, _) in enumerate(written))


def test_file_pipeline_reports_a_failing_source_after_writing_what_was_done():
    clip = frames(6)

    def broken():
        for i, image in enumerate(clip[:3]):
            yield Frame(image, pts=i, time_base=fractions.Fraction(1, 30), index=i)
        raise StreamdreamError("decode failed")

    written = []
    with pytest.raises(StreamdreamError, match="decode failed"):
        run_file(broken(), StreamSession(RecordingMode()), lambda image, frame: written.append(frame.index))
    assert written == [0, 1, 2]


def test_a_settings_change_takes_effect_on_the_next_frame():
    mode = RecordingMode()
    session = StreamSession(mode, TemporalSettings(carry=0.9))
    clip = frames(3)
    session.process(clip[0])
    session.process(clip[1])
    session.settings = session.settings.with_(carry=0.25, flow_preset="ultrafast")
    session.process(clip[2])
    assert mode.calls == [("first", None), ("next", 0.9), ("next", 0.25)]
    assert session.flow.preset == "ultrafast"


@pytest.mark.parametrize(
    "preset_name, expected",
    [
        ("balanced", ["first", "next", "first"]),  # files: a cut gets the full still treatment
        ("fast", ["next", "next", "next"]),  # live: never a multi-second still dream, not even first
    ],
)
def test_a_scene_cut_drops_the_carry(preset_name, expected):
    mode = RecordingMode()
    session = StreamSession(mode, preset(preset_name))
    pan = frames(2)
    other = np.random.default_rng(0).integers(0, 256, pan[0].shape, dtype=np.uint8)
    for image in (pan[0], pan[1], other):
        session.process(image)
    assert [kind for kind, _ in mode.calls] == expected
    assert session.cuts == 1


@pytest.mark.parametrize("preset_name", ["fast", "balanced"])
def test_independent_frames_are_still_dreams_under_every_preset(preset_name):
    """--independent (the flicker baseline) dreams every frame as a still, also where the preset grows from the frame."""
    mode = RecordingMode()
    session = StreamSession(mode, preset(preset_name).with_(independent=True))
    for image in frames(3):
        session.process(image)
    assert [kind for kind, _ in mode.calls] == ["first", "first", "first"]


def test_timings_are_reported():
    session = StreamSession(RecordingMode(delay=0.01))
    for image in frames(2):
        session.process(image)
    assert session.timings.optimize_ms >= 10
    assert session.timings.flow_ms > 0


def test_presets():
    def effort(settings: TemporalSettings) -> tuple:
        """Steps per frame, then flow effort (every preset steps once per octave: more steps flicker more)."""
        return (settings.frame_iterations * settings.frame_octaves, ("ultrafast", "fast", "medium").index(settings.flow_preset), settings.flow_scale)

    assert effort(preset("fast")) <= effort(preset("balanced")) < effort(preset("quality"))
    assert preset("fast").fresh_start == "frame" and preset("balanced").fresh_start == "still"  # fast: never a still
    assert set(PRESETS) == {"fast", "balanced", "quality"}
    with pytest.raises(StreamdreamError, match="fast, balanced, quality"):
        preset("turbo")


def test_live_stream_surfaces_worker_errors():
    class Broken(RecordingMode):
        def first_frame(self, image, generator):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with LiveStream(Broken()) as live:
            live.submit(frames(1)[0])


def test_prepared_ahead_frames_give_what_frame_by_frame_gives():
    """A reader may prepare several frames before the optimizer processes the first."""
    clip = frames(4)
    one_by_one, ahead = RecordingMode(), RecordingMode()
    a, b = StreamSession(one_by_one, preset("balanced")), StreamSession(ahead, preset("balanced"))
    expected = [a.process(image) for image in clip]
    prepared = [b.prepare(image) for image in clip]
    assert all((b.process(p) == e).all() for p, e in zip(prepared, expected))
    assert ahead.calls == one_by_one.calls == [("first", None)] + [("next", preset("balanced").carry)] * 3


def test_a_reset_between_prepare_and_process_starts_afresh():
    mode = RecordingMode()
    session = StreamSession(mode, preset("balanced"))
    clip = frames(2)
    session.process(clip[0])
    prepared = session.prepare(clip[1])  # prepared to be carried from frame 0 ...
    session.reset()  # ... which is then forgotten
    session.process(prepared)
    assert [kind for kind, _ in mode.calls] == ["first", "first"]


def test_the_file_pipeline_uses_the_sessions_one_flow_estimator_on_one_thread():
    clip = frames(5)
    session = StreamSession(RecordingMode(), preset("balanced"))
    estimator, threads = session.flow, []
    flow = estimator._flow  # every flow, one or a pair, goes through it

    def counting(dis, src, dst):
        threads.append(threading.current_thread().name)
        return flow(dis, src, dst)

    estimator._flow = counting
    source = [Frame(image, pts=i, time_base=fractions.Fraction(1, 30), index=i) for i, image in enumerate(clip)]
    assert run_file(source, session, lambda image, frame: None) == 5
    assert len(threads) == 2 * 4  # backward and forward flow of each frame pair, computed once
    assert set(threads) == {"streamdream-read"}  # not the pair threads: the reader runs beside the model
