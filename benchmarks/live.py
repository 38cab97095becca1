"""Live dreaming throughput and latency, fed by a synthetic moving camera (no camera needed).

A capture thread delivers frames of a generated camera pan at the source frame rate into a
`LiveStream` (newest frame wins, stale frames dropped); the stream's session dreams them. Prints
progress on stderr and one JSON object on its last line. The first frame (a full still dream) is
reported apart and left out of the steady-state figures. `run()` is the same measurement for other
scripts (`benchmarks/suite.py`).

    python benchmarks/live.py --device cpu --resolution 320x240 --frames 60
    python benchmarks/live.py --device cuda --resolution 1280x720 --frames 300 --preset balanced
    python benchmarks/live.py --device cuda --resolution 640x480 --frames 300 --eager   # without CUDA graphs
    python benchmarks/live.py --device cuda --resolution 640x480 --frames 300 --style ../shared/styles/starry_night.jpg
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (first: sets the OpenMP wait policy before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamdream.samples.make import camera_frames  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.pipeline import LiveResult, LiveStream  # noqa: E402
from benchmarks import common  # noqa: E402
from streamdream.session import StreamSession, preset  # noqa: E402
from streamdream.style import Stylizer  # noqa: E402


def run(
    *,
    device: str = "cpu",
    resolution: str = "320x240",
    frames: int = 60,
    preset_name: str = "auto",
    source_fps: float = 30.0,
    eager: bool = False,
    style=None,
    deadline: float | None = None,
) -> dict:
    """One live session measured over `frames` results after the first; returns the JSON report.

    `style`: a painting (path or picture) for neural style instead of the dream. `deadline` (a
    `time.perf_counter()` value) ends the measurement early with the results so far, so a caller
    with a time budget is never held up; fewer than two steady results by then is a TimeoutError.
    """
    width, height = (int(v) for v in resolution.split("x"))
    options = {"device": device, "cuda_graphs": not eager}
    mode = Stylizer(style, **options) if style is not None else Dreamer(**options)
    name = preset_name if preset_name != "auto" else ("fast" if mode.device.type == "cpu" else "balanced")
    session = StreamSession(mode, preset(name))
    clip, _ = camera_frames("pan", (width, height), 120)
    results: list[tuple[LiveResult, dict, float]] = []  # result, stage timings, wall time when ready
    done = threading.Event()

    def collect(result: LiveResult) -> None:
        results.append((result, vars(session.timings).copy(), time.perf_counter()))
        print(f"\r{len(results) - 1}/{frames} frames", end="", file=sys.stderr)
        if len(results) > frames:
            done.set()

    if mode.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with LiveStream(session, on_result=collect) as live:
        index = 0
        while not done.is_set() and (deadline is None or time.perf_counter() < deadline):
            # the camera: one frame per period, whether or not the session keeps up
            live.submit(clip[index % len(clip)] if index // len(clip) % 2 == 0 else clip[-1 - index % len(clip)])
            index += 1
            time.sleep(1.0 / source_fps)
    print(file=sys.stderr)
    steady = results[1 : frames + 1]
    if len(steady) < 2:
        raise TimeoutError(f"{len(steady)} steady {resolution} frames before the deadline, at least 2 needed")
    first = results[0][0]
    latencies = np.array([r.latency_ms for r, _, _ in steady])
    stage = {key: float(np.mean([t[key] for _, t, _ in steady])) for key in ("flow_ms", "optimize_ms", "io_ms")}
    return {
        "device": str(mode.device),
        "mode": "style" if style is not None else "dream",
        "resolution": resolution,
        "preset": name,
        "source_fps": source_fps,
        "frames": len(steady),
        "fps": (len(steady) - 1) / (steady[-1][2] - steady[0][2]),  # results per second of wall time, sustained
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "first_frame_ms": first.latency_ms,
        "dropped": live.dropped,
        "gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if mode.device.type == "cuda" else 0.0,
        "gpu_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if mode.device.type == "cuda" else 0.0,
        "captured_graphs": len(mode.graphs) if mode.graphs is not None else 0,
        **stage,
    }


def main() -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--frames", type=int, help="results to collect after the first frame (default %(default)s)")
        parser.add_argument("--source-fps", type=float, help="the simulated camera's frame rate (default %(default)s)")
        parser.add_argument("--style", metavar="PAINTING", help="neural style with this painting instead of the dream")

    common.main(run, __doc__, add_arguments, "fast, balanced, quality; auto = fast on CPU, balanced on GPU")


if __name__ == "__main__":
    main()
