"""Peak memory and time for dreaming a very large photo with tiled gradients.

Prints one JSON object. The photo is skimage's astronaut upscaled to --size (default 6000x4000),
written to a temporary PNG and dreamed through the CLI code path in this process, so the peak
resident set size (ru_maxrss) covers decoding, dreaming and encoding.

    python benchmarks/large_image.py --size 6000x4000 --iterations 1 --octaves 2
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (sets OpenMP's spin count before torch loads)
import skimage.data  # noqa: E402
from PIL import Image  # noqa: E402

from streamdream.apps.cli import main as cli  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="6000x4000")
    parser.add_argument("--iterations", default="10")
    parser.add_argument("--octaves", default="4")
    parser.add_argument("--tile", default="512")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / "big.png", Path(folder) / "big_dream.jpg"
        Image.fromarray(skimage.data.astronaut()).resize((width, height), Image.Resampling.BICUBIC).save(src)
        started = time.perf_counter()
        code = cli(["dream", str(src), "-o", str(dst), "--iterations", args.iterations, "--octaves", args.octaves, "--tile", args.tile, "--device", args.device, "-q"])
        seconds = time.perf_counter() - started
        out_size = Image.open(dst).size if dst.exists() else None
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(json.dumps({"size": args.size, "exit_code": code, "output_size": out_size, "iterations": int(args.iterations), "octaves": int(args.octaves), "tile": int(args.tile), "seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb)}))


if __name__ == "__main__":
    main()
