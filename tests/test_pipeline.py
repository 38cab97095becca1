"""Stream sessions and pipelines: live drops stale frames, files drop none, settings and scene cuts."""

from __future__ import annotations

import fractions
import time

import numpy as np
import pytest
import torch

from samples.make import camera_frames
from streamdream.io.video import Frame
from streamdream.pipeline import LiveStream, run_file
from streamdream.session import PRESETS, StreamSession, TemporalSettings, preset
from streamdream.errors import StreamdreamError


class RecordingMode:
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


def test_live_stream_drops_stale_frames_and_keeps_the_newest():
    mode = RecordingMode(delay=0.03)
    clip = frames(20)
    with LiveStream(StreamSession(mode)) as live:
        for image in clip:
            live.submit(image)
            time.sleep(0.002)
    assert live.dropped > 0
    assert live.processed + live.dropped == len(clip)
    assert (live.latest.image == clip[-1]).all()  # the last frame in is the last frame out
    assert live.latest.latency_ms > 0


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


def test_timings_are_reported():
    session = StreamSession(RecordingMode(delay=0.01))
    for image in frames(2):
        session.process(image)
    assert session.timings.optimize_ms >= 10
    assert session.timings.flow_ms > 0


def test_presets():
    assert preset("fast").frame_iterations < preset("balanced").frame_iterations < preset("quality").frame_iterations
    assert set(PRESETS) == {"fast", "balanced", "quality"}
    with pytest.raises(StreamdreamError, match="fast, balanced, quality"):
        preset("turbo")


def test_live_stream_surfaces_worker_errors():
    class Broken(RecordingMode):
        def first_frame(self, image, generator):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with LiveStream(StreamSession(Broken())) as live:
            live.submit(frames(1)[0])
            time.sleep(0.1)

