"""Offline file render throughput: a generated camera pan dreamed from file to file, end to end.

Decode, flow, dream and encode all run as `streamdream dream IN.mp4 -o OUT.mp4` runs them
(`process_video`, pipelined threads, no frame dropped). The clip is generated into a temporary
directory at the asked size; the first frame's full still dream is included in the wall time and
also reported apart. Prints progress on stderr and one JSON object on its last line.

    python benchmarks/offline.py --device cpu --resolution 320x240 --seconds 2
    python benchmarks/offline.py --device cuda --resolution 1920x1080 --seconds 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (first: sets the OpenMP wait policy before torch loads)
import torch  # noqa: E402

from samples.make import make_clip  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.session import preset  # noqa: E402
from streamdream.video import process_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resolution", default="320x240")
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length at 30 fps")
    parser.add_argument("--preset", default="balanced", help="fast, balanced, quality")
    parser.add_argument("--eager", action="store_true", help="run every step eagerly (no captured CUDA graphs)")
    args = parser.parse_args()

    width, height = (int(v) for v in args.resolution.split("x"))
    dreamer = Dreamer(device=args.device, cuda_graphs=not args.eager)
    with tempfile.TemporaryDirectory() as tmp:
        src = make_clip("pan", Path(tmp) / "pan.mp4", (width, height), seconds=args.seconds)
        times: list[float] = []

        def on_frame(done: int, total: int) -> None:
            times.append(time.perf_counter())
            print(f"\r{done}/{total} frames", end="", file=sys.stderr)

        if dreamer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        report = process_video(src, Path(tmp) / "out.mp4", dreamer, settings=preset(args.preset), overwrite=True, on_frame=on_frame)
        print(file=sys.stderr)
    steady = len(times) - 1  # frames finished after the first one, over the time since it finished
    print(
        json.dumps(
            {
                "device": str(dreamer.device),
                "resolution": args.resolution,
                "preset": args.preset,
                "frames": report.frames,
                "wall_s": report.seconds,
                "fps": report.fps,
                "fps_after_first": steady / (times[-1] - times[0]) if steady > 0 else None,
                "first_frame_s": times[0] - started,
                "gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if dreamer.device.type == "cuda" else 0.0,
                "captured_graphs": len(dreamer.graphs) if dreamer.graphs is not None else 0,
            }
        )
    )


if __name__ == "__main__":
    main()
