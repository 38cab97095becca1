"""A visitor joins a running live engine: how long the visitor already there goes without a frame.

A held stream (the live preset on a CPU grows its dream from the frame and holds it at the effect of
the dreamer's still) asks its mode for that effect on its second frame, and a `Dreamer` measures it
by dreaming a thumbnail. One session streams a moving camera (`benchmarks/live.py`'s) through the
live engine, each frame sent when the last came back; after 40 frames a second visitor joins with a
dream of another strength (a new `Dreamer`) and sends 15 frames. Prints one JSON object: the first
visitor's median time between frames before the join, its longest from the join on, and when the
newcomer's second and last frames came (seconds from its join).

    python benchmarks/live_join.py
    python benchmarks/live_join.py --resolution 320x240 --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.live import camera_frame, cameras, longest_gap_s, median_gap_s  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.engine import LiveEngine  # noqa: E402
from streamdream.runtime import configure  # noqa: E402
from streamdream.settings import live_preset, preset  # noqa: E402

SETTLED_FRAMES, NEWCOMER_FRAMES = 40, 15


def run(device: str, resolution: str) -> dict:
    width, height = (int(v) for v in resolution.split("x"))
    clips = cameras(2, (width, height))
    settled_mode, newcomer_mode = Dreamer(device=device), Dreamer(device=device, strength=1.5)
    settings = preset(live_preset(settled_mode.device))
    stamps: list[float] = []
    stop = threading.Event()
    with LiveEngine() as engine:
        settled = engine.open(settled_mode, settings)

        def stream() -> None:
            for i in range(10**9):
                if stop.is_set():
                    return
                settled.wait(settled.submit(camera_frame(clips[0], i)), timeout=60)
                stamps.append(time.perf_counter())

        thread = threading.Thread(target=stream)
        thread.start()
        while len(stamps) < SETTLED_FRAMES:
            time.sleep(0.01)
        joined = time.perf_counter()
        newcomer = engine.open(newcomer_mode, settings)
        came = []
        for i in range(NEWCOMER_FRAMES):
            newcomer.wait(newcomer.submit(camera_frame(clips[1], i)), timeout=60)
            came.append(time.perf_counter() - joined)
        stop.set()
        thread.join()
    return {
        "device": str(settled_mode.device),
        "resolution": resolution,
        "preset": live_preset(settled_mode.device),
        "settled_median_gap_ms_before": round(1000 * median_gap_s([stamps], joined, after=False), 1),
        "settled_longest_gap_ms_after_join": round(1000 * longest_gap_s(stamps, joined), 1),
        "newcomer_second_frame_s": round(came[1], 2),
        "newcomer_last_frame_s": round(came[-1], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default %(default)s)")
    parser.add_argument("--resolution", default="160x120", help="WIDTHxHEIGHT (default %(default)s)")
    args = parser.parse_args()
    print(json.dumps(run(str(configure(args.device)), args.resolution)))


if __name__ == "__main__":
    main()
