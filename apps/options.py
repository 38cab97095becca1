"""Option groups and argument types shared by several commands."""

from __future__ import annotations

import argparse
import math
import sys


# The largest side and area any command accepts: past these a dream would not fit a machine's
# memory (a 16384 px square is 1 GB of float pixels before any activation) and the image loader
# refuses such files anyway.
MAX_SIDE = 16384
MAX_PIXELS = 250_000_000


def number(kind: type = float, low: float | None = None, high: float | None = None, *, above: float | None = None):
    """An argparse type: a finite `kind` in [low, high] (or > `above`); NaN, inf and out-of-range get one line."""
    if above is not None:
        span = f"above {above:g}" + (f" and at most {high:g}" if high is not None else "")
    elif high is None:
        span = f"at least {low:g}"
    else:
        span = f"from {low:g} to {high:g}"
    noun = "a whole number" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun} {span}, got {text!r}") from None
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high) or (above is not None and value <= above):
            raise argparse.ArgumentTypeError(f"expected {noun} {span}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def numbers(low: float = 0.0):
    """An argparse type: comma-separated finite numbers >= `low`, e.g. 0.7,0.3."""
    one = number(float, low)

    def parse(text: str) -> list[float]:
        try:
            return [one(v) for v in text.split(",")]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers of at least {low:g}, such as 0.7,0.3, got {text!r}") from None

    return parse


SIDE = number(int, 16, MAX_SIDE)
SIDE_RANGE = f"16-{MAX_SIDE}"
SEED = number(int, 0, 2**63 - 1)
OCTAVES = number(int, 1, 12)
OCTAVE_SCALE = number(float, high=4.0, above=1.0)
ITERATIONS = number(int, 1, 100_000)
WEIGHT = number(float, 0)


def size_arg(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, each side 1..MAX_SIDE and the area at most MAX_PIXELS."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise argparse.ArgumentTypeError(f"size must be 1 to {MAX_SIDE} pixels a side and at most {MAX_PIXELS // 1_000_000} megapixels, got {text!r}")
    return width, height


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="efficientnet_lite0", help="backbone (see `streamdream models`; default %(default)s)")
    parser.add_argument("--weights", metavar="FILE", help="weights file for a torchvision model (loaded with weights_only=True)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default %(default)s)")


def add_io_options(parser: argparse.ArgumentParser, *, input_optional: bool = False, verbose: str) -> None:
    """INPUT, -o OUTPUT and the options every picture-or-video command shares."""
    parser.add_argument("input", nargs="?" if input_optional else None, metavar="INPUT", help="image (PNG, JPEG, WebP, BMP, TIFF) or video (MP4, MOV, MKV, WebM, AVI, GIF)")
    parser.add_argument("-o", "--output", required=True, help="output file; the format follows the extension")
    parser.add_argument("--max-side", type=SIDE, metavar="N", help=f"resize the input so its longer side is N pixels first, {SIDE_RANGE} (videos: at most N)")
    parser.add_argument("--quality", type=number(int, 1, 100), default=95, help="JPEG/WebP quality 1-100 (default %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file (never an input)")
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(inputs=("input",), outputs=("output",))


def add_video_options(parser: argparse.ArgumentParser) -> None:
    """Options for video inputs: temporal coherence and encoding."""
    group = parser.add_argument_group("video (when INPUT is a video file)")
    group.add_argument("--temporal-preset", default="balanced", choices=["fast", "balanced", "quality"], help="per-frame work and flow settings; the options below override it (default %(default)s)")
    group.add_argument("--carry", type=number(float, 0, 1), help="share of the previous frame's result carried along the flow, 0..1 (balanced: 0.9)")
    group.add_argument("--frame-iterations", type=ITERATIONS, help="iterations per octave for frames after the first (balanced: 3)")
    group.add_argument("--frame-octaves", type=OCTAVES, help="octaves for frames after the first, 1-12 (balanced: 2)")
    group.add_argument("--flow", choices=["dis", "none"], help="optical flow for carrying the previous result (default dis)")
    group.add_argument("--flow-preset", choices=["ultrafast", "fast", "medium"], help="DIS preset (balanced: fast)")
    group.add_argument("--flow-scale", type=number(float, high=1.0, above=0.0), help="compute flow at this fraction of the frame size, 0..1 (balanced: 0.5)")
    group.add_argument("--independent", action="store_true", help="dream every frame from scratch with the still settings (flickers; the baseline)")
    group.add_argument("--no-cuda-graphs", action="store_true", help="on CUDA, run every frame's steps eagerly instead of replaying captured graphs (for comparison, or if a driver misbehaves)")
    group.add_argument("--no-audio", action="store_true", help="drop the audio track")
    group.add_argument("--allow-partial-input", action="store_true", help="a truncated or damaged input: render the frames that decode and exit 0 (default: keep them in a partial output and exit 2)")
    group.add_argument("--crf", type=number(int, 0, 51), default=18, help="H.264/VP9 quality 0-51, lower is better (default %(default)s)")
    group.add_argument("--preset", default="medium", choices=["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"], help="x264 encoder speed preset (default %(default)s)")


def run_video(args: argparse.Namespace, mode) -> None:
    """Render INPUT through `mode` frame by frame into OUTPUT, with a progress bar."""
    from tqdm import tqdm

    from streamdream.session import preset
    from streamdream.video import process_video

    settings = preset(args.temporal_preset).with_(
        carry=args.carry,
        frame_iterations=args.frame_iterations,
        frame_octaves=args.frame_octaves,
        flow=args.flow,
        flow_preset=args.flow_preset,
        flow_scale=args.flow_scale,
        independent=args.independent or None,
    )
    with tqdm(desc="rendering", unit="frame", disable=args.quiet) as bar:

        def advance(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = process_video(
            args.input,
            args.output,
            mode,
            settings=settings,
            seed=args.seed,
            max_side=args.max_side,
            audio=not args.no_audio,
            crf=args.crf,
            preset=args.preset,
            overwrite=args.overwrite,
            allow_partial_input=args.allow_partial_input,
            on_frame=advance,
        )
    if args.verbose:
        print(f"{report.frames} frames in {report.seconds:.1f} s ({report.fps:.2f} fps)", file=sys.stderr)
    print(report.path)
