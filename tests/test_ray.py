"""Segment-parallel rendering on Ray: plans, joins, retries and resume, on one small local Ray.

The clip is generated here: 45 flat grey frames whose level says their index (10 + 5 i), with the
stereo chord of `samples.make` as audio. A stand-in mode (`Marked`) inverts the frames, reads the
index back from the level, and can kill its worker or fail at a given frame, so faults land
exactly where a test wants them. One CLI test runs the real Dreamer, as tiny as it gets.
"""

from __future__ import annotations

import fractions
import functools
import os
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from streamdream.distributed import ClusterOptions, TaskFailed, choose_boundaries, cross_fade, join_segments, plan_segments, read_timeline, render_files, render_video, scene_cut_keyframes
from streamdream.carry import FrameMode
from streamdream.distributed.segments import Timeline
from streamdream.errors import StreamdreamError
from streamdream.io.video import VideoInfo, VideoWriter, probe_video, read_frames
from streamdream.samples.make import make_clip
from streamdream.video import RenderOptions, process_video

FRAMES = 45
SEGMENT = 16  # seams at 16/30 s and 32/30 s: no whole millisecond, as MP4 edit lists would like
OVERLAP = 2
FADE = 3
ONE_WORKER = ClusterOptions(workers=1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ray")
    chord = make_clip("pan", folder / "chord.mp4", (32, 32), fps=30, seconds=FRAMES / 30)
    info = VideoInfo(64, 48, FRAMES, 30.0, FRAMES / 30, fractions.Fraction(1, 30), 0, True)
    with VideoWriter(folder / "levels.mp4", info, audio_source=chord, preset="veryfast") as writer:
        for i in range(FRAMES):
            writer.write(np.full((48, 64, 3), 10 + 5 * i, np.uint8), i)
    return folder / "levels.mp4"


class Marked(FrameMode):
    """A stand-in mode: inverts each frame; `kill_at` ends its worker process once, `fail_at` raises every time."""

    device = torch.device("cpu")

    def __init__(self, device=None, *, kill_at: int | None = None, once: Path | None = None, fail_at: int | None = None) -> None:
        self.kill_at, self.once, self.fail_at = kill_at, once, fail_at

    def _frame(self, image: torch.Tensor) -> torch.Tensor:
        index = round((float(image.mean()) * 255 - 10) / 5)
        if index == self.kill_at and not self.once.exists():
            self.once.touch()
            os._exit(1)  # a worker killed mid-segment
        if index == self.fail_at:
            raise StreamdreamError(f"frame {index} is cursed")
        return 1 - image

    def first_frame(self, image, generator):
        return self._frame(image)

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        return self._frame(image)


def stream(path: Path) -> tuple[int, list[int], list[tuple[int, bytes]]]:
    """Frame count, video pts in presentation order, audio packets (pts, bytes)."""
    with av.open(str(path)) as container:
        pts = sorted(p.pts for p in container.demux(container.streams.video[0]) if p.size)
    with av.open(str(path)) as container:
        audio = [(p.pts, bytes(p)) for p in container.demux(container.streams.audio[0]) if p.size]
    return len(pts), pts, audio


# --- planning (no Ray) --------------------------------------------------------------------------


def test_boundaries_prefer_scene_cuts_then_nearest_key_frames():
    assert choose_boundaries(100, 30, []) == [30, 60]  # no key frame: the ideal places; the rest (40) is one segment
    assert choose_boundaries(100, 30, [25, 50, 58]) == [25, 58]
    assert choose_boundaries(100, 30, [25, 36], cuts={36}) == [36, 66]
    assert choose_boundaries(44, 30, [20]) == []  # too short to split without a stub
    assert scene_cut_keyframes([0, 250, 500, 612, 862, 1112]) == {612}


def test_plan_covers_every_frame_once_with_warm_up_before(clip):
    timeline = read_timeline(clip)
    assert timeline.frames == FRAMES and timeline.keyframes[0] == 0
    plan = plan_segments(timeline, SEGMENT, OVERLAP, FADE)
    assert [(s.start, s.stop, s.warmup, s.fade, s.tail) for s in plan] == [(0, 16, 0, 0, 3), (16, 32, 2, 3, 3), (32, 45, 2, 3, 0)]
    assert [s.first_pts for s in plan] == [timeline.pts[0], timeline.pts[14], timeline.pts[30]]
    assert [s.cuts for s in plan] == [(timeline.pts[16],), (timeline.pts[19], timeline.pts[32]), (timeline.pts[35],)]
    assert [s.body for s in plan] == [range(0, 16), range(3, 16), range(3, 13)]
    assert plan_segments(Timeline(list(range(10)), [0]), 20, 8)[0].stop == 10


def test_spans_cross_faded_and_joined_are_the_input_timeline_with_its_audio_bit_identical(clip, tmp_path):
    """Segments rendered apart with `process_video(span=...)`, seams cross-faded, joined by stream copy: no frame lost or doubled."""
    timeline = read_timeline(clip)
    plan = plan_segments(timeline, SEGMENT, OVERLAP, FADE)
    files = [tmp_path / f"part{s.index}.mp4" for s in plan]
    for segment, path in zip(plan, files, strict=True):
        assert process_video(clip, path, Marked(), RenderOptions(audio=False), span=segment.span).frames == segment.frames
    parts = []
    for s in plan:
        if s.fade:
            seam = cross_fade(files[s.index - 1], files[s.index], tmp_path / f"seam{s.index}.mp4", timeline.pts[s.start : s.start + s.fade], probe_video(clip))
            parts.append((seam, None, timeline.pts[s.start]))
        parts.append((files[s.index], s.body, timeline.pts[s.start + s.fade]))
    joined = tmp_path / "joined.mp4"
    assert join_segments(parts, joined, probe_video(clip).time_base, audio_source=clip) == FRAMES
    assert stream(joined) == stream(clip)
    levels = [round((255 - float(frame.image.mean()) - 10) / 5) for frame in read_frames(joined)]
    assert levels == list(range(FRAMES))  # every frame in its place, the faded ones too


def test_a_worker_that_does_not_see_the_driver_s_files_says_so_in_one_line(tmp_path):
    from streamdream.distributed.ray_render import _Renderer

    worker = object.__new__(_Renderer)  # as on a node without the shared mount
    worker.name, worker.error = "worker 1 on 10.0.0.9", None
    problem = worker.check({str(tmp_path / "work" / ".marker"): "token"}, {})
    assert problem.startswith(f"worker 1 on 10.0.0.9 cannot see {tmp_path / 'work'} as the driver does; the input and output must be on a file system every Ray node mounts")
    assert "cannot read /nowhere/clip.mp4" in worker.check({}, {"/nowhere/clip.mp4": 1})


# --- on Ray -------------------------------------------------------------------------------------


def test_a_killed_worker_s_segment_is_retried_and_the_output_is_complete(ray_local, clip, tmp_path):
    out = tmp_path / "out.mp4"
    factory = functools.partial(Marked, kill_at=24, once=tmp_path / "killed")  # in segment 1 only
    report = render_video(clip, out, factory, cluster=ONE_WORKER, overlap=OVERLAP, fade=FADE, segment_frames=SEGMENT)
    assert (tmp_path / "killed").exists()  # the worker did die mid-segment
    assert stream(out) == stream(clip)
    assert sum(w.frames for w in report.workers) == FRAMES + 2 * FADE  # each frame once, the two seams' twice
    assert not any(tmp_path.glob(".out.mp4.segments"))  # the work folder went with success


def test_a_segment_failing_twice_fails_the_job_and_resume_reuses_the_rest(ray_local, clip, tmp_path):
    out = tmp_path / "out.mp4"
    with pytest.raises(TaskFailed) as failed:
        render_video(clip, out, functools.partial(Marked, fail_at=40), cluster=ONE_WORKER, overlap=OVERLAP, fade=FADE, segment_frames=SEGMENT)
    message = "; ".join([str(failed.value), *failed.value.__notes__])
    assert "segment 2 (frames 32-44) of levels.mp4 failed 2 times: frame 40 is cursed" in message
    assert "the 2 finished segments are kept in" in message and "\n" not in message
    assert not out.exists()
    with pytest.raises(StreamdreamError, match="pass --resume"):
        render_video(clip, out, Marked, cluster=ONE_WORKER, overlap=OVERLAP, fade=FADE, segment_frames=SEGMENT)
    report = render_video(clip, out, Marked, cluster=ONE_WORKER, overlap=OVERLAP, fade=FADE, segment_frames=SEGMENT, resume=True)
    assert (report.tasks, report.reused) == (1, 2)
    assert stream(out) == stream(clip)


def test_many_clips_one_task_each_one_progress_over_all_frames(ray_local, clip, tmp_path):
    outs = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    seen = []
    report = render_files([(clip, outs[0]), (clip, outs[1])], Marked, cluster=ClusterOptions(workers=2), on_progress=lambda done, total: seen.append((done, total)))
    assert report.tasks == 2 and seen[-1] == (2 * FRAMES, 2 * FRAMES)
    assert all(stream(out) == stream(clip) for out in outs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # no work file left


def test_cli_dream_on_ray_matches_the_input_timeline(ray_local, clip, tmp_path, capsys):
    from streamdream.apps.cli import main

    out = tmp_path / "dream.mp4"
    tiny = ["--max-side", "32", "--iterations", "1", "--octaves", "1", "--frame-iterations", "1", "--frame-octaves", "1", "-q"]
    assert main(["dream", str(clip), "-o", str(out), "--ray", "--ray-workers", "1", "--segment-frames", str(SEGMENT), "--overlap", str(OVERLAP), "--fade", str(FADE), *tiny]) == 0
    assert stream(out) == stream(clip)
    assert capsys.readouterr().out.strip() == str(out)


# --- command line, no Ray needed ----------------------------------------------------------------


def test_cli_resume_goes_on_with_the_same_command_and_refuses_other_settings(clip, tmp_path, capsys, monkeypatch):
    """The plan records the mode's recipe and the render options: --resume takes the same command
    (its output, worker and progress options aside) and refuses a changed setting of either, before Ray starts."""
    from streamdream.apps.cli import main
    from streamdream.distributed import ray_render

    class Stopping:
        """Stands in for the workers: the job writes its plan before they check the files, and there they stop."""

        count = 1

        def check(self, folders, inputs):
            raise StreamdreamError("stopped before rendering")

    monkeypatch.setattr(ray_render, "_on_cluster", lambda cluster, mode_factory, job: job(Stopping()))
    command = ["dream", str(clip), "-o", str(tmp_path / "o.mp4"), "--ray", "--segment-frames", str(SEGMENT), "--octaves", "1", "-q"]
    assert main(command) == 2  # the plan is written, then the stand-in cluster stops
    assert "stopped before rendering" in capsys.readouterr().err
    assert main([*command, "--resume", "-v", "--ray-workers", "3"]) == 2
    assert "stopped before rendering" in capsys.readouterr().err
    for change in (["--octave-scale", "1.5"], ["--no-cuda-graphs"], ["--carry", "0.5"], ["--no-audio"], ["--crf", "20"], ["--fade", "2"]):
        assert main([*command, "--resume", *change]) == 2
        assert "with other settings" in capsys.readouterr().err, change


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--resume"], "--resume apply to --ray renders only"),
        (["more.mp4"], "several INPUTs are rendered with --ray only"),
        (["more.mp4", "--ray"], "-o names a folder"),
        (["--ray", "--preview", "x.png"], "apply to still images only"),
    ],
)
def test_cli_refuses_ray_misuse_in_one_line(clip, tmp_path, capsys, extra, message):
    from streamdream.apps.cli import main

    assert main(["style", str(clip), *extra, "-o", str(tmp_path / "o.mp4"), "-s", str(clip)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_ray_address_must_look_like_one(clip, tmp_path, capsys):
    from streamdream.apps.cli import main

    assert main(["dream", "--ray", str(clip), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "put INPUT before --ray" in capsys.readouterr().err


def test_ray_missing_says_how_to_install(clip, tmp_path, capsys, monkeypatch):
    from streamdream.apps.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["dream", str(clip), "-o", str(tmp_path / "o.mp4"), "--ray"]) == 2
    assert "install streamdream[ray]" in capsys.readouterr().err


RAY_BAD_INPUTS = [
    # (extra arguments after INPUT -o OUTPUT, what the one line says)
    (["--ray=127.0.0.1:1"], "no Ray cluster answers at 127.0.0.1:1 (connection refused)"),
    (["--ray=ray://127.0.0.1:1"], "no Ray cluster answers at ray://127.0.0.1:1"),
    (["--ray=[::1]:1"], "no Ray cluster answers at [::1]:1"),
    (["--ray=nosuchhost.invalid:6379"], "no Ray cluster answers at nosuchhost.invalid:6379"),
    (["--ray=127.0.0.1:port"], "the port must be a number from 1 to 65535"),
    (["--ray=127.0.0.1:70000"], "the port must be a number from 1 to 65535"),
    (["--ray", "--ray-workers", "0"], "--ray-workers"),
    (["--ray", "--ray-workers", "nan"], "--ray-workers"),
    (["--ray", "--segment-frames", "0"], "--segment-frames"),
    (["--ray", "--fade", "-1"], "--fade"),
    (["--ray", "--overlap", "inf"], "--overlap"),
    (["--fade", "2"], "--fade apply to --ray renders only"),
    (["--ray-workers", "2", "--segment-frames", "8"], "--ray-workers, --segment-frames apply to --ray renders only"),
]


@pytest.mark.parametrize(("extra", "message"), RAY_BAD_INPUTS, ids=[" ".join(extra) for extra, _ in RAY_BAD_INPUTS])
def test_bad_ray_options_are_one_line_and_exit_2_with_nothing_written(clip, tmp_path, capsys, extra, message):
    """Refused before any work: a cluster that does not answer is said at once (Ray alone would retry
    for minutes), the input is untouched and no output, partial or hidden, is left behind."""
    pytest.importorskip("ray")
    from streamdream.apps.cli import main

    before = clip.read_bytes()
    output = tmp_path / "out" / "o.mp4"
    output.parent.mkdir()
    assert main(["dream", str(clip), "-o", str(output), *extra, "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert clip.read_bytes() == before and list(output.parent.iterdir()) == []
