"""Dreaming whole videos through the CLI: frame count, timestamps, audio, flicker, interruption, bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from streamdream.apps.cli import main
from streamdream.samples.make import camera_frames, make_clip, true_backward_flow
from streamdream.dream import Dreamer
from streamdream.io.video import read_frames
from streamdream.session import StreamSession, TemporalSettings
from streamdream.temporal import strength, warping_error
from streamdream.video import process_video

from .test_video_io import _zero_frames

FAST = ["--octaves", "2", "--iterations", "3", "--frame-iterations", "2", "--frame-octaves", "1", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A real camera pan over a photo, 96x64, 12 frames at 24 fps, with a stereo AAC track."""
    return make_clip("pan", tmp_path_factory.mktemp("clip") / "pan.mp4", size=(96, 64), fps=24, seconds=0.5)


def timestamps(path: Path) -> list[float]:
    return [float(frame.pts * frame.time_base) for frame in read_frames(path)]


def audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return []
        return [bytes(packet) for packet in container.demux(audio=0) if packet.size]


def test_dreamed_video_keeps_frames_timing_and_audio(clip, tmp_path):
    out = tmp_path / "dream.mp4"
    assert main(["dream", str(clip), "-o", str(out), *FAST]) == 0
    assert timestamps(out) == pytest.approx(timestamps(clip), abs=1e-3)
    assert len(timestamps(out)) == 12
    assert audio_payloads(out) == audio_payloads(clip) and audio_payloads(clip)
    first_in, first_out = next(read_frames(clip)).image, next(read_frames(out)).image
    assert np.abs(first_out.astype(int) - first_in).mean() > 3  # it really dreamed


def test_no_audio_drops_the_track(clip, tmp_path):
    out = tmp_path / "silent.mp4"
    assert main(["dream", str(clip), "-o", str(out), "--no-audio", *FAST]) == 0
    assert audio_payloads(out) == []


def test_max_side_shrinks_video_frames(clip, tmp_path, capsys):
    out = tmp_path / "small.mp4"
    assert main(["dream", str(clip), "-o", str(out), "--max-side", "48", *FAST]) == 0
    frame = next(read_frames(out)).image
    assert frame.shape == (32, 48, 3)
    capsys.readouterr()
    assert main(["evaluate", str(clip), str(out), "--json"]) == 0  # judged at the output's size
    scores = json.loads(capsys.readouterr().out)
    assert scores["frames"] == 12 and scores["strength"] > 0.01


def test_warm_start_flickers_far_less_than_independent_frames():
    """With the true camera motion as reference, carried dreams must be much steadier."""
    frames, affines = camera_frames("pan", (96, 64), 8)
    flows = [true_backward_flow(a, b, (96, 64)) for a, b in zip(affines, affines[1:])]
    dreamer = Dreamer(octaves=2, iterations=4, device="cpu")
    steady = TemporalSettings(frame_iterations=2, frame_octaves=1)
    errors, strengths = {}, {}
    for name, settings in {"carried": steady, "independent": steady.with_(independent=True)}.items():
        session = StreamSession(dreamer, settings, seed=0)
        outputs = [session.process(f) for f in frames]
        errors[name] = warping_error(outputs, flows=flows)
        strengths[name] = strength(outputs, frames)
    assert errors["carried"] < 0.5 * errors["independent"]
    assert strengths["carried"] > 0.7 * strengths["independent"]  # steadier without simply dreaming less


def test_interrupted_render_leaves_a_playable_partial_file(clip, tmp_path):
    out = tmp_path / "partial.mp4"

    def stop_after_three(done: int, total: int | None) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        process_video(clip, out, Dreamer(octaves=1, iterations=1, device="cpu"), on_frame=stop_after_three)
    assert len(timestamps(out)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["partial.mp4"]


@pytest.mark.slow
def test_sigint_from_the_terminal_keeps_the_frames_done(tmp_path):
    clip = make_clip("pan", tmp_path / "long.mp4", size=(96, 64), fps=24, seconds=4)
    out = tmp_path / "out.mp4"
    # Six steps a frame: with the presets' one small step, the 96 frames could all be done before a
    # loaded machine delivered the signal (seen once in a full run), and nothing would be interrupted.
    command = [sys.executable, "-m", "streamdream.apps.cli", "dream", str(clip), "-o", str(out), "--octaves", "1", "--iterations", "1",
               "--frame-iterations", "6", "--device", "cpu"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    seen = ""
    # tqdm redraws at most every 0.1 s, so it may never show "3/": wait for any count of 3 or more.
    while max(map(int, re.findall(r"\| *(\d+)/", seen)), default=0) < 3:
        chunk = process.stderr.read(1)
        assert chunk, f"render ended before it could be interrupted: {seen}"
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "kept the" in rest and str(out) in rest
    frames = len(timestamps(out))
    assert 3 <= frames < 96
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "out.mp4"]


@pytest.mark.parametrize(
    "make_input, message",
    [
        (lambda d: (d / "junk.mp4").write_bytes(os.urandom(2000)) and d / "junk.mp4", "junk.mp4"),
        (lambda d: d / "missing.mp4", "no such file"),
    ],
)
def test_bad_video_input_is_one_line_and_exit_2(tmp_path, capsys, make_input, message):
    source = make_input(tmp_path)
    assert main(["dream", str(source), "-o", str(tmp_path / "out.mp4"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamdream: error:") and message in err and "\n" not in err
    assert not (tmp_path / "out.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_existing_output_needs_overwrite(clip, tmp_path, capsys):
    out = tmp_path / "taken.mp4"
    out.write_bytes(b"keep me")
    assert main(["dream", str(clip), "-o", str(out), *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"


def test_evaluate_scores_videos(clip, tmp_path, capsys):
    assert main(["evaluate", str(clip), str(clip), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["frames"] == 12
    assert scores["strength"] == 0
    assert scores["warping_error"] == pytest.approx(scores["input_warping_error"])
    assert 0 < scores["input_warping_error"] < 0.01

    short = make_clip("pan", tmp_path / "short.mp4", size=(96, 64), fps=24, seconds=0.25, audio=False)
    assert main(["evaluate", str(clip), str(short)]) == 2
    assert "different frame counts" in capsys.readouterr().err


def test_unwritable_video_output_fails_before_rendering(clip, tmp_path, capsys):
    assert main(["dream", str(clip), "-o", str(tmp_path / "missing" / "out.mp4"), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamdream: error:") and "does not exist" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_zero_frame_video_is_refused(tmp_path, capsys):
    empty = _zero_frames(tmp_path)
    assert main(["dream", str(empty), "-o", str(tmp_path / "out.mp4"), *FAST]) == 2
    assert "no frames" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()
