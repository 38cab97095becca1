"""Segment-parallel rendering on a local Ray: the same clip serially and with 1, 2, ... workers.

A generated camera pan (`samples.make`, exact motion known) is dreamed file to file by
`process_video` in this process, then by `streamdream.distributed.render_video` on a local Ray
(started here with one CPU per core) with each worker count. For every render: frames per second
of rendering (from the moment the workers have loaded the model to the joined output; also the
wall time with Ray start-up and model loads). The Ray outputs are checked against the serial one:
same frame count, timestamps and audio packets.

Seams: the warping error (Lai et al. 2018, pixels in [0, 1], with the clip's true motion) of each
frame pair across a segment boundary, divided by the mean over all pairs of the same output
(`seam_ratio`; 1 means a seam looks like any other cut between frames); `seam_ratio_serial` is the
same pairs in the serial render, for the clip's own variation. `--overlaps 0,8 --fades 0,4,8` sweeps the warm-up and the seams' cross-fade.
Prints progress on stderr and one JSON object on its last line.

    python benchmarks/ray_scale.py --resolution 160x120 --seconds 2 --segment-frames 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import av  # noqa: E402

from streamdream.dream import Dreamer  # noqa: E402
from streamdream.distributed import ClusterOptions, plan_segments, read_timeline, render_video  # noqa: E402
from streamdream.io.video import read_frames  # noqa: E402
from streamdream.runtime import configure  # noqa: E402
from streamdream.samples.make import camera_frames, make_clip, true_backward_flow  # noqa: E402
from streamdream.settings import DEFAULT_PRESET, RAY_FADE, RAY_OVERLAP, preset  # noqa: E402
from streamdream.temporal.metrics import warping_error  # noqa: E402
from streamdream.video import RenderOptions, process_video  # noqa: E402

FPS = 30


def dreamer(device):
    """What each Ray worker builds once (defined here, so Ray ships it by value)."""
    return Dreamer(device=device)


def timeline(path: Path) -> tuple[list[int], list[tuple[int, bytes]]]:
    """Video pts in presentation order and audio packets (pts, bytes)."""
    with av.open(str(path)) as container:
        pts = sorted(p.pts for p in container.demux(container.streams.video[0]) if p.size)
    with av.open(str(path)) as container:
        audio = [(p.pts, bytes(p)) for p in container.demux(container.streams.audio[0]) if p.size]
    return pts, audio


def pair_errors(path: Path, flows: list) -> list[float]:
    """Warping error of every consecutive frame pair (t-1, t) of the video at `path`, with the true flows."""
    frames = [frame.image for frame in read_frames(path)]
    return [warping_error(frames[t - 1 : t + 1], flows=[flows[t - 1]]) for t in range(1, len(frames))]


def seam_ratio(errors: list[float], seams: list[range]) -> float:
    """Mean error of the pairs across the seams (ending at a segment's first frame, or at one of the
    cross-faded frames after it) over the mean of all pairs."""
    across = [errors[t - 1] for seam in seams for t in seam]
    return (sum(across) / len(across)) / (sum(errors) / len(errors))


def run(*, device: str = "cpu", resolution: str = "160x120", seconds: float = 2.0, preset_name: str = DEFAULT_PRESET,
        workers: str = "1,2", segment_frames: int = 20, overlaps: str = str(RAY_OVERLAP), fades: str = str(RAY_FADE)) -> dict:
    import ray

    width, height = (int(v) for v in resolution.split("x"))
    counts = [int(v) for v in workers.split(",")]
    overlap_values = [int(v) for v in overlaps.split(",")]
    fade_values = [int(v) for v in fades.split(",")]
    first = (overlap_values[0], fade_values[0])
    options = RenderOptions(preset(preset_name))
    n = round(FPS * seconds)
    _, affines = camera_frames("pan", (width, height), n)
    flows = [true_backward_flow(affines[t - 1], affines[t], (width, height)) for t in range(1, n)]
    report: dict = {"device": device, "resolution": resolution, "preset": preset_name, "settings": repr(options.settings), "frames": n, "segment_frames": segment_frames,
                    "cpus": os.cpu_count(), "fps": {}, "wall_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        src = make_clip("pan", Path(tmp) / "pan.mp4", (width, height), fps=FPS, seconds=seconds)
        print("serial ...", file=sys.stderr)
        started = time.perf_counter()
        serial = process_video(src, Path(tmp) / "serial.mp4", Dreamer(device=device), options)
        report["wall_s"]["serial"] = time.perf_counter() - started
        report["fps"]["serial"] = serial.fps
        reference = timeline(serial.path)
        serial_errors = pair_errors(serial.path, flows)
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
        try:
            same = True
            sweep = [(k, f) for k in overlap_values for f in fade_values if (k, f) != first]
            runs = [(count, *first) for count in counts] + [(counts[-1], k, f) for k, f in sweep]
            by_setting, serial_by_setting = {}, {}
            for count, overlap, fade in runs:
                print(f"ray: {count} workers, overlap {overlap}, fade {fade} ...", file=sys.stderr)
                out = Path(tmp) / f"ray{count}-{overlap}-{fade}.mp4"
                started = time.perf_counter()
                job = render_video(src, out, dreamer, options, ClusterOptions(workers=count, device=device), overlap=overlap, fade=fade, segment_frames=segment_frames)
                wall = time.perf_counter() - started
                same = same and timeline(out) == reference
                seams = [range(s.start, s.start + s.fade + 1) for s in plan_segments(read_timeline(src), segment_frames, overlap, fade)[1:]]
                key = f"overlap {overlap}, fade {fade}"
                by_setting.setdefault(key, seam_ratio(pair_errors(out, flows), seams))
                serial_by_setting.setdefault(key, seam_ratio(serial_errors, seams))
                if (overlap, fade) == first:
                    report["fps"][str(count)] = job.fps
                    report["wall_s"][str(count)] = wall
                    report["per_worker_fps"] = {w.worker: w.fps for w in job.workers}
                    report["segments"] = len(seams) + 1
        finally:
            ray.shutdown()
    key = f"overlap {first[0]}, fade {first[1]}"
    report["overlap"], report["fade"] = first
    report["same_frames_timestamps_audio"] = same
    report["speedup"] = report["fps"][str(counts[-1])] / report["fps"]["serial"]
    report["seam_ratio"] = by_setting[key]
    report["seam_ratio_serial"] = serial_by_setting[key]
    if sweep:
        report["seam_ratio_by_setting"] = by_setting
        report["seam_ratio_serial_by_setting"] = serial_by_setting
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default %(default)s)")
    parser.add_argument("--resolution", default="160x120", help="WIDTHxHEIGHT (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length at 30 fps (default %(default)s)")
    parser.add_argument("--preset", dest="preset_name", default=DEFAULT_PRESET, help="fast, balanced, quality (default %(default)s)")
    parser.add_argument("--workers", default="1,2", help="Ray worker counts to run (default %(default)s)")
    parser.add_argument("--segment-frames", type=int, default=20, help="frames per segment (default %(default)s)")
    parser.add_argument("--overlaps", default=str(RAY_OVERLAP), help="warm-up frames; the first is used for the speed runs, every pair with --fades with the last worker count (default %(default)s)")
    parser.add_argument("--fades", default=str(RAY_FADE), help="cross-faded frames per seam, as --overlaps (default %(default)s)")
    args = parser.parse_args()
    configure(args.device)
    print(json.dumps(run(**vars(args))))


if __name__ == "__main__":
    main()
