"""Temporal stability of video dreaming, measured with the true motion of generated camera moves.

Prints one JSON object: for each recipe, the warping error (Lai et al. 2018; flow = the exact
camera motion, so no flow-estimation error enters the score) and the dream strength (mean
|output - input|), plus a long-clip burn-in check: strength over time, with a PNG plot.

Recipes: ours (flow-carried residual, consistency mask, carry < 1), `independent` (every frame a
full still dream: the flicker baseline), `blend_0.15` / `blend_0.5` (earlier tools: the previous
output blended linearly into the next input, then a full dream), `warp_nomask` (our carry without
the forward-backward check).

    python benchmarks/temporal.py --device cpu --size 320x240 --frames 60
    python benchmarks/temporal.py --device cuda --size 640x480 --frames 90 --long-frames 600
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import streamdream  # noqa: E402,F401  (first: sets the OpenMP wait policy before torch loads)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamdream.samples.make import camera_frames, true_backward_flow  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.session import StreamSession, TemporalSettings  # noqa: E402
from streamdream.temporal import Motion, strength, warping_error  # noqa: E402


class LinearBlend:
    """Earlier video-DeepDream recipe: dream (1 - w) * input + w * previous output from scratch."""

    def __init__(self, dreamer: Dreamer, weight: float) -> None:
        self.dreamer, self.weight, self.device = dreamer, weight, dreamer.device

    def first_frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.dreamer.first_frame(image, generator)

    def next_frame(self, image, previous_input, previous_output, motion: Motion, settings, generator) -> torch.Tensor:
        return self.dreamer.dream_tensor((1 - self.weight) * image + self.weight * previous_output, generator=generator)


def render(mode, settings: TemporalSettings, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    session = StreamSession(mode, settings, seed=0)
    started = time.perf_counter()
    outputs = [session.process(frame) for frame in frames]
    return outputs, (time.perf_counter() - started) / len(frames)


def per_frame_strength(outputs, inputs) -> list[float]:
    return [float(np.abs(o.astype(np.float32) - i).mean() / 255) for o, i in zip(outputs, inputs)]


def plot(values: list[float], path: Path) -> None:
    """A tiny line plot drawn with OpenCV (no plotting library needed)."""
    width, height, pad = 640, 240, 20
    image = np.full((height, width, 3), 255, np.uint8)
    top = max(values) * 1.1 or 1.0
    points = np.array(
        [(pad + i * (width - 2 * pad) / max(1, len(values) - 1), height - pad - v / top * (height - 2 * pad)) for i, v in enumerate(values)],
        np.int32,
    )
    cv2.polylines(image, [points], False, (200, 60, 20), 2)
    cv2.rectangle(image, (pad, pad), (width - pad, height - pad), (0, 0, 0), 1)
    cv2.putText(image, f"strength per frame (max {top:.3f})", (pad + 4, pad + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(str(path), image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--kind", default="pan", choices=["pan", "zoom", "rotate"])
    parser.add_argument("--recipes", default="ours,independent,blend_0.15,blend_0.5,warp_nomask")
    parser.add_argument("--long-frames", type=int, default=0, help="also render a clip this long with our recipe (burn-in check)")
    parser.add_argument("--plot", default="temporal_strength.png", help="where the long clip's strength plot goes")
    parser.add_argument("--carry", type=float)
    parser.add_argument("--frame-iterations", type=int)
    parser.add_argument("--frame-octaves", type=int)
    args = parser.parse_args()

    size = tuple(int(v) for v in args.size.split("x"))
    dreamer = Dreamer(device=args.device)
    ours = TemporalSettings().with_(carry=args.carry, frame_iterations=args.frame_iterations, frame_octaves=args.frame_octaves)
    recipes = {
        "ours": (dreamer, ours),
        "independent": (dreamer, ours.with_(independent=True)),
        "blend_0.15": (LinearBlend(dreamer, 0.15), ours),
        "blend_0.5": (LinearBlend(dreamer, 0.5), ours),
        "warp_nomask": (dreamer, ours.with_(check=False)),
    }
    frames, affines = camera_frames(args.kind, size, args.frames)
    flows = [true_backward_flow(a, b, size) for a, b in zip(affines, affines[1:])]
    report: dict = {"device": str(dreamer.device), "size": args.size, "frames": args.frames, "kind": args.kind, "settings": ours.__dict__, "recipes": {}}
    for name in args.recipes.split(","):
        mode, settings = recipes[name]
        outputs, seconds = render(mode, settings, frames)
        report["recipes"][name] = {
            "warping_error": warping_error(outputs, flows=flows),
            "strength": strength(outputs, frames),
            "seconds_per_frame": seconds,
        }
        print(name, report["recipes"][name], file=sys.stderr)
    if "ours" in report["recipes"] and "independent" in report["recipes"]:
        o, i = report["recipes"]["ours"], report["recipes"]["independent"]
        report["ours_vs_independent"] = {"warping_error_ratio": o["warping_error"] / i["warping_error"], "strength_ratio": o["strength"] / i["strength"]}
    if args.long_frames:
        long_frames, _ = camera_frames(args.kind, size, args.long_frames)
        outputs, seconds = render(dreamer, ours, long_frames)
        values = per_frame_strength(outputs, long_frames)
        plot(values, Path(args.plot))
        early, late = np.mean(values[100:200]), np.mean(values[-100:])
        report["long"] = {"frames": args.long_frames, "strength_100_200": early, "strength_last_100": late, "ratio": late / early, "seconds_per_frame": seconds, "plot": args.plot, "strength_every_50": values[::50]}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
