"""Offline file render throughput: a generated camera pan dreamed from file to file, end to end.

Decode, flow, dream and encode all run as `streamdream dream IN.mp4 -o OUT.mp4` runs them
(`process_video`, pipelined threads, no frame dropped). The clip is generated into a temporary
directory at the asked size; the first frame's full still dream is included in the wall time and
also reported apart. Prints progress on stderr and one JSON object on its last line. `run()` is the
same measurement for other scripts (`benchmarks/suite.py`).

    python benchmarks/offline.py --device cpu --resolution 320x240 --seconds 2
    python benchmarks/offline.py --device cuda --resolution 1920x1080 --seconds 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import torch  # noqa: E402

from streamdream.samples.make import make_clip  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from benchmarks import common  # noqa: E402
from streamdream.settings import DEFAULT_PRESET, preset  # noqa: E402
from streamdream.video import RenderOptions, process_video  # noqa: E402


class _OutOfTime(Exception):
    """Raised from the frame callback to end a render at the caller's deadline."""


def run(
    *,
    device: str = "cpu",
    resolution: str = "320x240",
    seconds: float = 2.0,
    preset_name: str = DEFAULT_PRESET,
    eager: bool = False,
    deadline: float | None = None,
) -> dict:
    """Render a generated clip of `seconds` at 30 fps file to file; returns the JSON report.

    `deadline` (a `time.perf_counter()` value) stops the render after the frame that passes it, so a
    caller with a time budget is never held up: the figures then cover the frames done
    (`"stopped_early": true`, `wall_s` up to the last frame, no encoder flush).
    """
    width, height = (int(v) for v in resolution.split("x"))
    dreamer = Dreamer(device=device, cuda_graphs=not eager)
    with tempfile.TemporaryDirectory() as tmp:
        src = make_clip("pan", Path(tmp) / "pan.mp4", (width, height), seconds=seconds)
        times: list[float] = []

        def on_frame(done: int, total: int) -> None:
            times.append(time.perf_counter())
            print(f"\r{done}/{total} frames", end="", file=sys.stderr)
            if deadline is not None and times[-1] > deadline and (total is None or done < total):
                raise _OutOfTime

        if dreamer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        try:
            report = process_video(src, Path(tmp) / "out.mp4", dreamer, RenderOptions(preset(preset_name)), overwrite=True, on_frame=on_frame)
            frames, wall_s, stopped = report.frames, report.seconds, False
        except _OutOfTime:
            frames, wall_s, stopped = len(times), times[-1] - started, True
        print(file=sys.stderr)
    steady = len(times) - 1  # frames finished after the first one, over the time since it finished
    return {
        "device": str(dreamer.device),
        "resolution": resolution,
        "preset": preset_name,
        "frames": frames,
        "wall_s": wall_s,
        "fps": frames / wall_s if wall_s > 0 else 0.0,
        "fps_after_first": steady / (times[-1] - times[0]) if steady > 0 else None,
        "first_frame_s": times[0] - started,
        "stopped_early": stopped,
        "gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if dreamer.device.type == "cuda" else 0.0,
        "captured_graphs": len(dreamer.graphs) if dreamer.graphs is not None else 0,
    }


def main() -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--seconds", type=float, help="clip length at 30 fps (default %(default)s)")

    common.main(run, __doc__, add_arguments, "fast, balanced, quality")


if __name__ == "__main__":
    main()
