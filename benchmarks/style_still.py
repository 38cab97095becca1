"""A still stylized with the default settings: wall time and how much of the painting it took on.

The acceptance run of the style issue: a photo at --size px (skimage's astronaut by default) with a
painting, every setting at the `Stylizer` defaults. Reports the wall time (model and style targets
included, as a first CLI run pays them), how far the colour statistics moved from the photo toward
the painting (RGB and CIELAB, `benchmarks.look.colour_shift`), and the style and content losses
before and after. Prints one JSON object on its last line; skips (exit 0) when the painting is absent.

    python benchmarks/style_still.py --device cpu --size 256
    python benchmarks/style_still.py --style ../shared/styles/the_scream.jpg --photo chelsea
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import skimage.data  # noqa: E402

from benchmarks.look import colour_shift  # noqa: E402
from streamdream.io.images import load_image, resize_max_side  # noqa: E402
from streamdream.style import Stylizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", type=Path, default=ROOT.parent / "shared" / "styles" / "starry_night.jpg")
    parser.add_argument("--photo", default="astronaut", help="a scikit-image sample photo (astronaut, chelsea, coffee, ...)")
    parser.add_argument("--size", type=int, default=256, help="longer side in pixels")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    if not args.style.is_file():
        message = f"painting {args.style} not found: nothing to measure"
        print(message, file=sys.stderr)
        print(json.dumps({"skipped": message}))
        return
    photo = resize_max_side(getattr(skimage.data, args.photo)(), args.size)
    painting = load_image(args.style).rgb
    started = time.perf_counter()
    stylizer = Stylizer(painting, device=args.device)
    result = stylizer.stylize(photo)
    seconds = time.perf_counter() - started
    goal = resize_max_side(painting, args.size)
    before, after = stylizer.losses(photo, photo), stylizer.losses(result, photo)
    report = {
        "device": str(stylizer.device),
        "photo": args.photo,
        "style": args.style.name,
        "size": list(result.shape[:2]),
        "seconds": round(seconds, 2),
        "colour_shift_rgb_pct": round(100 * colour_shift(result, photo, goal, lab=False), 1),
        "colour_shift_lab_pct": round(100 * colour_shift(result, photo, goal, lab=True), 1),
        "style_loss_before": round(before["style"], 4),
        "style_loss_after": round(after["style"], 4),
        "style_loss_drop": round(before["style"] / after["style"], 1),
        "content_loss_after": round(after["content"], 4),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
