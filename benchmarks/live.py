"""Live dreaming throughput and latency, fed by a synthetic moving camera (no camera needed).

A capture thread delivers frames of a generated camera pan at the source frame rate into a
`LiveStream` (newest frame wins, stale frames dropped); the stream's session dreams them. Prints
progress on stderr and one JSON object on its last line. The first frame (a full still dream) is
reported apart and left out of the steady-state figures.

    python benchmarks/live.py --device cpu --resolution 320x240 --frames 60
    python benchmarks/live.py --device cuda --resolution 1280x720 --frames 300 --preset balanced
    python benchmarks/live.py --device cuda --resolution 640x480 --frames 300 --eager   # without CUDA graphs
    python benchmarks/live.py --device cuda --resolution 640x480 --frames 300 --style ../shared/styles/starry_night.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (first: sets the OpenMP wait policy before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from samples.make import camera_frames  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.pipeline import LiveResult, LiveStream  # noqa: E402
from streamdream.session import StreamSession, preset  # noqa: E402
from streamdream.style import Stylizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", default="320x240")
    parser.add_argument("--frames", type=int, default=60, help="results to collect after the first frame")
    parser.add_argument("--preset", default="auto", help="fast, balanced, quality; auto = fast on CPU, balanced on GPU")
    parser.add_argument("--source-fps", type=float, default=30.0)
    parser.add_argument("--eager", action="store_true", help="run every step eagerly (no captured CUDA graphs)")
    parser.add_argument("--style", metavar="PAINTING", help="neural style with this painting instead of the dream")
    args = parser.parse_args()

    width, height = (int(v) for v in args.resolution.split("x"))
    options = {"device": args.device, "cuda_graphs": not args.eager}
    mode = Stylizer(args.style, **options) if args.style else Dreamer(**options)
    name = args.preset if args.preset != "auto" else ("fast" if mode.device.type == "cpu" else "balanced")
    session = StreamSession(mode, preset(name))
    clip, _ = camera_frames("pan", (width, height), 120)
    results: list[tuple[LiveResult, dict, float]] = []  # result, stage timings, wall time when ready
    done = threading.Event()

    def collect(result: LiveResult) -> None:
        results.append((result, vars(session.timings).copy(), time.perf_counter()))
        print(f"\r{len(results) - 1}/{args.frames} frames", end="", file=sys.stderr)
        if len(results) > args.frames:
            done.set()

    if mode.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with LiveStream(session, on_result=collect) as live:
        index = 0
        while not done.is_set():  # the camera: one frame per period, whether or not the session keeps up
            live.submit(clip[index % len(clip)] if index // len(clip) % 2 == 0 else clip[-1 - index % len(clip)])
            index += 1
            time.sleep(1.0 / args.source_fps)
    print(file=sys.stderr)
    first, steady = results[0][0], results[1 : args.frames + 1]
    latencies = np.array([r.latency_ms for r, _, _ in steady])
    stage = {key: float(np.mean([t[key] for _, t, _ in steady])) for key in ("flow_ms", "optimize_ms", "io_ms")}
    report = {
        "device": str(mode.device),
        "mode": "style" if args.style else "dream",
        "resolution": args.resolution,
        "preset": name,
        "frames": len(steady),
        "fps": (len(steady) - 1) / (steady[-1][2] - steady[0][2]),  # results per second of wall time, sustained
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "first_frame_ms": first.latency_ms,
        "dropped": live.dropped,
        "gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if mode.device.type == "cuda" else 0.0,
        "captured_graphs": len(mode.graphs) if mode.graphs is not None else 0,
        **stage,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
