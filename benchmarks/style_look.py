"""The three style methods compared on how they look: how much of the painting, how much of the photo.

For each painting (4 from ../shared/styles) on each photo (3 from scikit-image), at --side px (longer
side), the three methods of `streamdream.style_net.create_stylizer` run with their defaults: "optimize"
(Gatys from the photo), "net" (the feed-forward network, one pass) and "refine" (the optimizer started
from the network's painting). Each result is judged by a network the optimizer does not use
(EfficientNet-Lite2; the optimizer's is Lite0), so the optimizer cannot win by fitting its own judge:

- style distance: the sum over Lite2's default style layers of the squared Frobenius distance
  between the Gram matrices (`streamdream.objectives.gram_matrix`) of the result and of the
  painting resized to the result's longer side, each relative to the painting's squared Gram norm,
  as `streamdream.objectives.gram` normalises it. The unpainted photo's distance is the scale:
  `style_rel` is the result's over the photo's (1: none of the painting got in, 0: all of it).
- content distance: the mean squared difference of Lite2's features at its default content layer
  between result and photo, over the variance of the photo's features (0: the photo's content).
  Its scale: `painting_content`, the distance of the painting itself stretched to the photo's size
  (none of the photo's content).
- seconds: building the method's stylizer (the painting's embedding or Gram targets) and painting,
  in this run, the networks already loaded.

The summary gives each method's medians over the pairs. `--sheet` draws a contact sheet (rows:
painting on photo; columns: photo | painting | optimize | net | refine, each result tile labelled
with its relative style and content distance) and `--builtins` the network's 26 built-in styles
("builtin:N") on the astronaut. Prints one JSON object on its last line (progress on stderr); skips
(exit 0, a JSON note) when ../shared/styles is absent.

    python benchmarks/style_look.py --quick
    python benchmarks/style_look.py --side 256 --out docs/style_look.json \\
        --sheet docs/style_methods.png --builtins docs/style_builtins.png
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import numpy as np  # noqa: E402
import skimage.data  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from benchmarks import common  # noqa: E402
from streamdream.convert import to_tensor  # noqa: E402
from streamdream.io.images import load_image, resize_max_side  # noqa: E402
from streamdream.models import create_model  # noqa: E402
from streamdream.models.stylenets import BUILTIN_STYLES  # noqa: E402
from streamdream.objectives import gram_matrix  # noqa: E402
from streamdream.settings import BUILTIN_STYLE, STYLE_METHODS, StyleSettings  # noqa: E402
from streamdream.style_net import NetStylizer, builtin_net, create_stylizer, painting_net  # noqa: E402

STYLES = ROOT.parent / "shared" / "styles"
PAINTINGS = ("starry_night.jpg", "the_scream.jpg", "woman-with-hat-matisse.jpg", "shipwreck.jpg")
PHOTOS = ("astronaut", "coffee", "chelsea")
METHODS = ("optimize", "net", "refine")  # the sheet's column order: slowest first, as the methods grew
JUDGE = "efficientnet_lite2"  # not the optimizer's Lite0: a judge it does not fit
QUICK = {"side": 96, "iterations": 8, "refine_steps": 8}
TILE = 160  # the sheet's tile height in pixels
BUILTIN_TILE = 128
SHEET_LIMIT, BUILTINS_LIMIT = 1_500_000, 1_000_000  # bytes


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Judge:
    """Lite2's style and content distances of results from their painting and photo."""

    def __init__(self, device: torch.device) -> None:
        self.model = create_model(JUDGE, device=device)
        self.device = device
        self.style_layers = list(self.model.defaults.style)
        self.content_layer = self.model.defaults.content[0]

    def _acts(self, rgb: np.ndarray) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            acts = self.model(to_tensor(rgb, self.device), [*self.style_layers, self.content_layer])
        return {layer: a.float() for layer, a in acts.items()}

    def targets(self, painting: np.ndarray, photo: np.ndarray) -> dict[str, object]:
        """The painting's Gram matrices at the photo's longer side, and the photo's content features."""
        grams = {layer: gram_matrix(a) for layer, a in self._acts(resize_max_side(painting, max(photo.shape[:2]))).items()
                 if layer in self.style_layers}
        return {"grams": grams, "content": self._acts(photo)[self.content_layer]}

    def distances(self, result: np.ndarray, targets: dict[str, object]) -> dict[str, float]:
        acts = self._acts(result)
        style = sum(float((gram_matrix(acts[layer]) - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12))
                    for layer, target in targets["grams"].items())
        features = targets["content"]
        content = float((acts[self.content_layer] - features).pow(2).mean() / features.var().clamp_min(1e-12))
        return {"style": style, "content": content}


def photo(name: str, side: int) -> np.ndarray:
    return resize_max_side(getattr(skimage.data, name)(), side)


def warm_up(device: torch.device, settings: dict[str, int], painting: np.ndarray) -> None:
    """Load every network and run each method once on a thumbnail, so no timed run pays a first call."""
    tiny = photo("astronaut", 48)
    for method in METHODS:
        create_stylizer(method, painting, device=device, **{**settings, "iterations": 1, "refine_steps": 1}).stylize(tiny)
    painting_net(device), builtin_net(device)


def compare(args: argparse.Namespace, device: torch.device, settings: dict[str, int], paintings: list[str], photos: list[str],
            judge: Judge) -> tuple[list[dict], dict[tuple[str, str], dict[str, np.ndarray]]]:
    """Every method on every (painting, photo): the distances, the seconds, and the pictures for the sheet."""
    pairs, pictures = [], {}
    for painting_name in paintings:
        painting = load_image(STYLES / painting_name).rgb
        for photo_name in photos:
            picture = photo(photo_name, args.side)
            targets = judge.targets(painting, picture)
            baseline = judge.distances(picture, targets)
            stretched = np.asarray(Image.fromarray(painting).resize(picture.shape[1::-1], Image.Resampling.LANCZOS))
            entry = {"painting": painting_name, "photo": photo_name, "size": list(picture.shape[:2]),
                     "photo_style": round(baseline["style"], 4),
                     "painting_content": round(judge.distances(stretched, targets)["content"], 4), "methods": {}}
            shown = {"photo": picture, "painting": resize_max_side(painting, args.side)}
            for method in METHODS:
                started = time.perf_counter()
                result = create_stylizer(method, painting, device=device, **settings).stylize(picture)
                seconds = time.perf_counter() - started
                d = judge.distances(result, targets)
                entry["methods"][method] = {"style": round(d["style"], 4), "style_rel": round(d["style"] / baseline["style"], 3),
                                            "content": round(d["content"], 4), "seconds": round(seconds, 2)}
                shown[method] = result
                log(f"{painting_name} on {photo_name}: {method:8s} style {d['style'] / baseline['style']:.3f} of the photo's, "
                    f"content {d['content']:.3f}, {seconds:.1f} s")
            pairs.append(entry)
            pictures[(painting_name, photo_name)] = shown
    return pairs, pictures


def medians(entries: list[dict]) -> dict[str, dict[str, float]]:
    return {method: {"style_rel": round(statistics.median(e["methods"][method]["style_rel"] for e in entries), 3),
                     "content": round(statistics.median(e["methods"][method]["content"] for e in entries), 4),
                     "seconds": round(statistics.median(e["methods"][method]["seconds"] for e in entries), 2)}
            for method in METHODS}


# ---- pictures -------------------------------------------------------------------------------------


def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def to_height(rgb: np.ndarray, height: int) -> Image.Image:
    image = Image.fromarray(rgb)
    return image.resize((max(1, round(image.width * height / image.height)), height), Image.Resampling.LANCZOS)


def label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int, anchor: str = "la") -> None:
    """White text on a dark box, readable on any picture."""
    face = font(size)
    box = draw.textbbox(xy, text, font=face, anchor=anchor)
    draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text(xy, text, font=face, fill=(255, 255, 255), anchor=anchor)


def save_under(image: Image.Image, path: Path, limit: int) -> dict[str, object]:
    """Write a PNG under `limit` bytes: full colour if it fits, else 256 colours (then shrunk until it fits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    attempt, how = image, "rgb"
    while True:
        buffer = io.BytesIO()
        attempt.save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= limit or min(attempt.size) < 64:
            break
        if how == "rgb":
            attempt, how = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE), "256 colours"
        else:
            image = image.resize((round(image.width * 0.9), round(image.height * 0.9)), Image.Resampling.LANCZOS)
            attempt = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            how = f"256 colours, {image.width}x{image.height}"
    path.write_bytes(buffer.getvalue())
    return {"path": str(path), "bytes": buffer.tell(), "size": list(attempt.size), "encoding": how}


def sheet_rows(pairs: list[dict], paintings: list[str], photos: list[str]) -> list[tuple[str, str]]:
    """The sheet's rows: every painting on the first photo, two on each other photo (all when fewer)."""
    rows = [(p, photos[0]) for p in paintings]
    for i, photo_name in enumerate(photos[1:]):
        chosen = paintings if len(paintings) <= 2 else [paintings[(2 * i) % len(paintings)], paintings[(2 * i + 1) % len(paintings)]]
        rows += [(p, photo_name) for p in chosen]
    measured = {(e["painting"], e["photo"]) for e in pairs}
    return [row for row in rows if row in measured]


def contact_sheet(pairs: list[dict], pictures: dict, rows: list[tuple[str, str]], tile: int) -> Image.Image:
    columns = ["photo", "painting", *METHODS]
    titles = {"photo": "photo", "painting": "painting", "optimize": "optimize (Gatys)", "net": "net (one pass)",
              "refine": "refine (net + Gatys)"}
    scaled = {row: {c: to_height(pictures[row][c], tile) for c in columns} for row in rows}
    widths = [max(scaled[row][c].width for row in rows) for c in columns]
    gap, header = 4, 24
    sheet = Image.new("RGB", (sum(widths) + gap * (len(columns) + 1), header + len(rows) * (tile + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = gap
    for column, width in zip(columns, widths):
        draw.text((x + width // 2, header // 2 + 1), titles[column], font=font(15), fill=(0, 0, 0), anchor="mm")
        x += width + gap
    by_pair = {(e["painting"], e["photo"]): e for e in pairs}
    for r, row in enumerate(rows):
        y, x = header + r * (tile + gap), gap
        for column, width in zip(columns, widths):
            image = scaled[row][column]
            left = x + (width - image.width) // 2
            sheet.paste(image, (left, y))
            if column == "photo":
                label(draw, (left + 3, y + tile - 3), row[1], 11, "ld")
            elif column == "painting":
                label(draw, (left + 3, y + tile - 3), Path(row[0]).stem.replace("woman-with-hat-", ""), 11, "ld")
            else:
                m = by_pair[row]["methods"][column]
                label(draw, (left + 3, y + tile - 3), f"style {m['style_rel']:.2f}  content {m['content']:.2f}", 11, "ld")
            x += width + gap
    return sheet


def builtins_sheet(device: torch.device, side: int, tile: int) -> Image.Image:
    """The astronaut, then the 26 built-in styles painted on it at `side`, shown at `tile` px, numbered."""
    picture = photo("astronaut", side)
    tiles = [("photo", picture)]
    for n in range(BUILTIN_STYLES):
        tiles.append((f"{BUILTIN_STYLE}{n}", NetStylizer(f"{BUILTIN_STYLE}{n}", device=device).stylize(picture)))
        log(f"built-in style {n + 1}/{BUILTIN_STYLES}")
    columns = 7
    rows = -(-len(tiles) // columns)
    width = to_height(picture, tile).width
    gap = 3
    sheet = Image.new("RGB", (columns * (width + gap) + gap, rows * (tile + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (name, rgb) in enumerate(tiles):
        x, y = gap + (i % columns) * (width + gap), gap + (i // columns) * (tile + gap)
        sheet.paste(to_height(rgb, tile), (x, y))
        label(draw, (x + 3, y + 3), name, 12)
    return sheet


# ---- the run --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=256, help="longer side of the photos in pixels")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {PAINTINGS[0]} on {PHOTOS[0]} at {QUICK['side']} px, {QUICK['iterations']} optimizer steps "
                             f"per octave and {QUICK['refine_steps']} refine steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="also write the JSON here (e.g. docs/style_look.json)")
    parser.add_argument("--sheet", type=Path, help="contact sheet PNG of the methods (e.g. docs/style_methods.png)")
    parser.add_argument("--builtins", type=Path, help="PNG of the 26 built-in styles on the astronaut (e.g. docs/style_builtins.png)")
    args = parser.parse_args(argv)

    missing = [name for name in PAINTINGS if not (STYLES / name).is_file()]
    if missing:
        message = f"paintings not found in {STYLES}: {', '.join(missing)}; nothing to measure"
        log(message)
        print(json.dumps({"skipped": message}))
        return 0
    paintings, photos = (list(PAINTINGS[:1]), list(PHOTOS[:1])) if args.quick else (list(PAINTINGS), list(PHOTOS))
    settings: dict[str, int] = {}
    if args.quick:
        args.side = QUICK["side"]
        settings = {"iterations": QUICK["iterations"], "refine_steps": QUICK["refine_steps"]}
    device = torch.device(args.device)
    started = time.perf_counter()
    judge = Judge(device)
    warm_up(device, settings, load_image(STYLES / paintings[0]).rgb)
    pairs, pictures = compare(args, device, settings, paintings, photos, judge)
    used = StyleSettings().with_(**settings)
    report: dict[str, object] = {
        "meta": common.machine(device=str(device), quick=args.quick),
        "side": args.side,
        "methods": {m: ({"octaves": used.octaves, "iterations": used.iterations} if m == "optimize" else
                        {"refine_steps": used.refine_steps} if m == "refine" else {"strength": used.strength}) for m in METHODS},
        "judge": {"model": JUDGE, "style_layers": judge.style_layers, "content_layer": judge.content_layer},
        "pairs": pairs,
        "summary": medians(pairs),
        "painting_content_median": round(statistics.median(e["painting_content"] for e in pairs), 4),
        "per_painting": {name: medians([e for e in pairs if e["painting"] == name]) for name in paintings},
        "per_photo": {name: medians([e for e in pairs if e["photo"] == name]) for name in photos},
    }
    assert set(METHODS) == set(STYLE_METHODS)
    if args.sheet:
        rows = sheet_rows(pairs, paintings, photos)
        report["sheet"] = save_under(contact_sheet(pairs, pictures, rows, TILE), args.sheet, SHEET_LIMIT)
        log(f"wrote {args.sheet}")
    if args.builtins:
        report["builtins"] = save_under(builtins_sheet(device, args.side, min(BUILTIN_TILE, args.side)), args.builtins, BUILTINS_LIMIT)
        log(f"wrote {args.builtins}")
    report["seconds_total"] = round(time.perf_counter() - started, 1)
    common.print_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
