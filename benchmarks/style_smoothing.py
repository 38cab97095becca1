"""Does SWAG activation smoothing make style transfer on EfficientNet-Lite0 better? (issue #6)

Wang, Li & Vasconcelos (CVPR 2021, "Rethinking and Improving the Robustness of Image Style Transfer")
found that non-VGG networks stylize poorly because their activations are peaky, and proposed SWAG: a
softmax over each layer's C*H*W activations (temperature T, 1 in the paper's code) before the Gram
matrices and the content comparison. This script stylizes every painting in --styles onto two
scikit-image photos with plain Gram matrices and with SWAG at each --temperatures value, every other
setting at the project's defaults (--swag-style-weight changes the SWAG runs' style weight), and scores each result with measures the optimizer did not see:

  judge_style     relative Gram distance to the painting (as objectives.gram, mean over layers) on a
                  different network (--judge, default EfficientNet-Lite2, its default style layers);
                  lower = more stylized. The photo itself scores `photo_judge_style`.
  colour_rgb/lab  how far the per-channel mean and std moved from the photo toward the painting, in %
                  (benchmarks.look.colour_shift, the acceptance metric of tests/test_style.py)
  judge_content   relative feature error to the photo on the judge's content layer; lower = more kept
  seconds         wall time of the stylization (noisy on a shared machine)
  own_style_ratio the optimized style loss after / before, in the variant's own (smoothed) terms: a
                  check that the optimization converged, not comparable across variants

The smoothing is applied by wrapping the backbone, so the experiment needs nothing from the product
code: both losses then see smoothed activations, the pixel (TV) term does not. Prints one JSON object
on its last line and writes one contact sheet per painting (rows: photos; columns: painting, photo,
plain, SWAG per temperature) into --out (default: a new temporary directory).

Result (2-core CPU, 6 paintings x 2 photos, 256 px): SWAG lost on every pair. At T=1 the softmax of
these signed, wide-ranging block outputs is nearly one-hot and the optimization diverges (its own style
loss rises); at T=10 it converges but ends 1.7x farther from the painting on the judge (median), with
less colour moved and a rainbow speckle, and more style weight (30) does not close the gap. So the
product keeps plain Gram matrices and this transform lives only here.

    python benchmarks/style_smoothing.py --size 256 --styles ../shared/styles --out /tmp/swag
    python benchmarks/style_smoothing.py --temperatures 10 --swag-style-weight 30 --out /tmp/swag_w30
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from benchmarks.look import colour_shift  # noqa: E402
from streamdream.convert import to_tensor  # noqa: E402
from streamdream.io.images import load_image, resize_max_side, save_image  # noqa: E402
from streamdream.models import DEFAULT_MODEL, INPUT, Backbone, create_model  # noqa: E402
from streamdream.objectives import gram_matrix  # noqa: E402
from streamdream.settings import StyleSettings  # noqa: E402
from streamdream.style import Stylizer  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
PHOTOS = {"astronaut": skimage.data.astronaut, "chelsea": skimage.data.chelsea}


def swag(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """SWAG's softmax over all C*H*W activations of each image, times C*H*W: exp(F/T) / mean(exp(F/T)).

    The factor only rescales each layer by a constant (the project's losses are relative to their
    target's norm); it keeps the transform independent of the image size, so a painting seen at
    another aspect ratio than the photo still has comparable Gram matrices.
    """
    flat = features.float().reshape(features.shape[0], -1)
    return (torch.softmax(flat / temperature, dim=1) * flat.shape[1]).reshape(features.shape)


class Smoothed(Backbone):
    """`base` (sharing its modules) whose activations come out through `swag`, except the pixels."""

    def __init__(self, base: Backbone, temperature: float) -> None:
        self.temperature = temperature
        stages = list(zip(base.stage_names, base.stages))
        mean, std = base.mean.flatten().tolist(), base.std.flatten().tolist()
        super().__init__(base.name, stages, mean=mean, std=std, defaults=base.defaults, aliases=base.aliases)

    def forward(self, image: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        acts = super().forward(image, layers)
        return {name: a if name == INPUT else swag(a, self.temperature) for name, a in acts.items()}


class Judge:
    """Style and content distances on a network the optimizer never saw."""

    def __init__(self, name: str, device: str) -> None:
        self.model, self.device = create_model(name, device=device), device
        self.style_layers = list(self.model.defaults.style)
        self.content_layer = self.model.defaults.content[0]

    @torch.no_grad()
    def features(self, rgb: np.ndarray) -> dict[str, torch.Tensor]:
        return self.model(to_tensor(rgb, self.device), [*self.style_layers, self.content_layer])

    def grams(self, rgb: np.ndarray) -> dict[str, torch.Tensor]:
        acts = self.features(rgb)
        return {layer: gram_matrix(acts[layer]) for layer in self.style_layers}

    def style_distance(self, rgb: np.ndarray, target: dict[str, torch.Tensor]) -> float:
        grams = self.grams(rgb)
        return statistics.fmean(float((grams[k] - g).pow(2).sum() / g.pow(2).sum()) for k, g in target.items())

    def content_distance(self, rgb: np.ndarray, photo: np.ndarray) -> float:
        out, ref = self.features(rgb)[self.content_layer], self.features(photo)[self.content_layer]
        return float((out - ref).pow(2).mean() / ref.pow(2).mean())


def labelled_row(tiles: list[tuple[str, np.ndarray]], height: int) -> np.ndarray:
    """Tiles side by side, each scaled to `height`, with its label in a white band above."""
    band, gutter = 16, 4
    scaled = [(label, Image.fromarray(rgb).resize((max(1, round(rgb.shape[1] * height / rgb.shape[0])), height), Image.Resampling.LANCZOS)) for label, rgb in tiles]
    width = sum(im.width for _, im in scaled) + gutter * (len(scaled) - 1)
    sheet = Image.new("RGB", (width, height + band), "white")
    draw, x = ImageDraw.Draw(sheet), 0
    for label, im in scaled:
        sheet.paste(im, (x, band))
        draw.text((x + 2, 2), label, fill="black")
        x += im.width + gutter
    return np.asarray(sheet)


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.vstack(padded)


def summarize(runs: list[dict], variants: list[str]) -> dict[str, dict]:
    """Per smoothed variant, pair by pair against plain: how often it is better, and median ratios."""
    plain = {(r["style"], r["content"]): r for r in runs if r["variant"] == "plain"}
    summary = {}
    for variant in variants[1:]:
        mine = [r for r in runs if r["variant"] == variant]
        base = [plain[(r["style"], r["content"])] for r in mine]
        summary[variant] = {
            "pairs": len(mine),
            "judge_style_lower": sum(m["judge_style"] < b["judge_style"] for m, b in zip(mine, base)),
            "judge_content_within_10pct_or_lower": sum(m["judge_content"] <= 1.1 * b["judge_content"] for m, b in zip(mine, base)),
            "both": sum(m["judge_style"] < b["judge_style"] and m["judge_content"] <= 1.1 * b["judge_content"] for m, b in zip(mine, base)),
            "median_judge_style_ratio": round(statistics.median(m["judge_style"] / b["judge_style"] for m, b in zip(mine, base)), 3),
            "median_judge_content_ratio": round(statistics.median(m["judge_content"] / b["judge_content"] for m, b in zip(mine, base)), 3),
            "mean_colour_lab_pct": round(statistics.fmean(m["colour_lab_pct"] for m in mine), 1),
            "plain_mean_colour_lab_pct": round(statistics.fmean(b["colour_lab_pct"] for b in base), 1),
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="longer side of the photos, px (default %(default)s)")
    parser.add_argument("--styles", type=Path, default=ROOT.parent / "shared" / "styles", help="folder of paintings (default %(default)s)")
    parser.add_argument("--steps", type=int, default=StyleSettings.default("iterations"), help="optimizer steps per octave (default: the Stylizer's, %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default %(default)s)")
    parser.add_argument("--temperatures", default="1,10", help="SWAG softmax temperatures to compare with plain Grams; 1 is the paper's (default %(default)s)")
    parser.add_argument("--swag-style-weight", type=float, default=StyleSettings.default("style_weight"), help="style weight of the SWAG variants, e.g. to match plain's stylization strength (default: the Stylizer's, %(default)s)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the network the optimizer uses (default %(default)s)")
    parser.add_argument("--judge", default="efficientnet_lite2", help="the network that scores the results (default %(default)s)")
    parser.add_argument("--out", type=Path, help="folder for the contact sheets (default: a new temporary folder)")
    parser.add_argument("--device", default="cpu", help="(default %(default)s)")
    args = parser.parse_args()

    paintings = sorted(p for p in args.styles.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if args.styles.is_dir() else []
    if not paintings:
        message = f"no style paintings in {args.styles}: nothing to compare"
        print(message, file=sys.stderr)
        print(json.dumps({"skipped": message}))
        return
    if args.judge == args.model:
        parser.error("the judge must be a different network from the one the optimizer uses")
    temperatures = [float(t) for t in args.temperatures.split(",") if t.strip()]
    out = args.out or Path(tempfile.mkdtemp(prefix="style_smoothing_"))
    out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(args.seed)
    base = create_model(args.model, device=args.device)
    models = {"plain": base, **{f"swag_T{t:g}": Smoothed(base, t) for t in temperatures}}
    judge = Judge(args.judge, args.device)
    photos = {name: resize_max_side(make(), args.size) for name, make in PHOTOS.items()}
    runs, sheets, started = [], [], time.perf_counter()
    for path in paintings:
        painting = load_image(path).rgb
        goal = resize_max_side(painting, args.size)  # the painting at the scale the Stylizer sees it (style_scale 1)
        target = judge.grams(goal)
        rows = []
        for photo_name, photo in photos.items():
            tiles = [("painting", goal), ("photo", photo)]
            photo_style = judge.style_distance(photo, target)
            for variant, model in models.items():
                style_weight = StyleSettings.default("style_weight") if variant == "plain" else args.swag_style_weight
                stylizer = Stylizer(painting, model=model, style_weight=style_weight, iterations=args.steps, device=args.device)
                clock = time.perf_counter()
                result = stylizer.stylize(photo, seed=args.seed)
                seconds = time.perf_counter() - clock
                before, after = stylizer.losses(photo, photo)["style"], stylizer.losses(result, photo)["style"]
                run = {
                    "style": path.stem,
                    "content": photo_name,
                    "variant": variant,
                    "judge_style": round(judge.style_distance(result, target), 4),
                    "photo_judge_style": round(photo_style, 4),
                    "colour_rgb_pct": round(100 * colour_shift(result, photo, goal, lab=False), 1),
                    "colour_lab_pct": round(100 * colour_shift(result, photo, goal, lab=True), 1),
                    "judge_content": round(judge.content_distance(result, photo), 4),
                    "seconds": round(seconds, 1),
                    "own_style_ratio": round(after / before, 4),
                }
                runs.append(run)
                tiles.append((variant, result))
                print(json.dumps(run), file=sys.stderr, flush=True)
            rows.append(labelled_row(tiles, args.size))
        sheet = out / f"{path.stem}.png"
        save_image(sheet, stack_rows(rows))
        sheets.append(str(sheet))
    variants = list(models)
    print(json.dumps({
        "model": args.model, "judge": args.judge, "judge_style_layers": judge.style_layers, "judge_content_layer": judge.content_layer,
        "size": args.size, "steps": args.steps, "seed": args.seed, "variants": variants, "swag_style_weight": args.swag_style_weight,
        "total_seconds": round(time.perf_counter() - started, 1), "runs": runs, "summary": summarize(runs, variants), "sheets": sheets,
    }))


if __name__ == "__main__":
    main()
