"""Dreaming whole videos through the CLI: frame count, timestamps, audio, flicker, interruption, bad input."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from streamdream.apps.cli import main
from streamdream.samples.make import camera_frames, make_clip, true_backward_flow
from streamdream.dream import Dreamer
from streamdream.io.video import read_frames
from streamdream.session import StreamSession
from streamdream.settings import TemporalSettings
from streamdream.temporal import effect, warping_error
from streamdream.video import process_video

from .conftest import until
from .test_video_io import _zero_frames

HEAD = 6  # frames of the never-ending source in the Ctrl-C test
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
    assert scores["frames"] == 12 and scores["effect"] > 0.01


def test_warm_start_flickers_far_less_than_independent_frames():
    """With the true camera motion as reference, carried dreams must be much steadier."""
    frames, affines = camera_frames("pan", (96, 64), 8)
    flows = [true_backward_flow(a, b, (96, 64)) for a, b in zip(affines, affines[1:])]
    dreamer = Dreamer(octaves=2, iterations=4, device="cpu")
    steady = TemporalSettings(frame_iterations=2, frame_octaves=1)
    errors, effects = {}, {}
    for name, settings in {"carried": steady, "independent": steady.with_(independent=True)}.items():
        session = StreamSession(dreamer, settings, seed=0)
        outputs = [session.process(f) for f in frames]
        errors[name] = warping_error(outputs, flows=flows)
        effects[name] = effect(outputs, frames)
    assert errors["carried"] < 0.5 * errors["independent"]
    assert effects["carried"] > 0.7 * effects["independent"]  # steadier without simply dreaming less


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
    """Ctrl-C in the middle of a render: exit 130, the frames done kept in a playable file, the source untouched.

    The render must not be able to finish before the signal, however fast the machine. The input is
    an ffconcat list (named .mkv: FFmpeg tells it by its content) of HEAD real frames followed by a
    named pipe (the CLI refuses a pipe as INPUT itself, and probes INPUT before reading it again).
    The CLI renders the HEAD frames, then its decoder waits on the pipe for more video, as on a
    source still arriving; the test feeds it nothing, sends Ctrl-C once the CLI is seen waiting
    there with at least three frames reported done, and only then ends the pipe.
    """
    head = make_clip("pan", tmp_path / "head.y4m", size=(96, 64), fps=24, seconds=HEAD / 24, audio=False)  # raw: no decoder delay
    tail = tmp_path / "tail.y4m"
    os.mkfifo(tail)
    clip = tmp_path / "endless.mkv"
    clip.write_text(f"ffconcat version 1.0\nfile {head.name}\nfile {tail.name}\n")
    source = {p.name: p.read_bytes() for p in (head, clip)}
    out = tmp_path / "out.mp4"
    command = [sys.executable, "-m", "streamdream.apps.cli", "dream", str(clip), "-o", str(out), "--octaves", "1", "--iterations", "1", "--device", "cpu"]
    # tqdm redraws at most every 0.1 s by default, so a count could stay unshown: have it print every frame.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")} | {"TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    seen: list[str] = []  # the CLI's stderr so far, read on a thread so that every wait below has a timeout

    def read_stderr() -> None:
        for chunk in iter(lambda: process.stderr.read(1), ""):
            seen.append(chunk)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    pipe: list[int] = []  # our write end of the tail, once the CLI has opened it for reading

    def waiting_on_the_tail() -> bool:
        if not pipe:
            try:
                pipe.append(os.open(tail, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO until a reader has it open
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
        return bool(pipe)

    def frames_done() -> int:
        return max(map(int, re.findall(r"(\d+)(?:/\d+ |frame )\[", "".join(seen))), default=0)

    try:
        until(lambda: process.poll() is not None or (waiting_on_the_tail() and frames_done() >= 3), timeout=120)
        if process.poll() is not None:
            reader.join(timeout=120)
        assert process.poll() is None, f"render ended before it could be interrupted: {''.join(seen)}"
        interrupted_at = len(seen)
        process.send_signal(signal.SIGINT)
        os.close(pipe.pop())  # end of input for the decoder, so the CLI need not wait for it on the way out
        process.wait(timeout=120)
    finally:
        for fd in pipe:
            os.close(fd)
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=120)
        process.stderr.close()
    rest = "".join(seen[interrupted_at:])
    assert process.returncode == 130, "".join(seen)
    assert "streamdream: interrupted; kept the" in rest and str(out) in rest
    frames = len(timestamps(out))
    assert 3 <= frames <= HEAD
    assert timestamps(out) == pytest.approx(timestamps(head)[:frames], abs=1e-3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["endless.mkv", "head.y4m", "out.mp4", "tail.y4m"]
    assert {name: (tmp_path / name).read_bytes() for name in source} == source and stat.S_ISFIFO(tail.lstat().st_mode)


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
    assert scores["effect"] == 0
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
