"""Option groups and argument types shared by several commands, built from `streamdream.settings`.

Each settings field becomes one option: its flag, type, range check and `--help` line (with the
default) come from the field, so no default or bound is written twice. Every number is checked when
parsed, so NaN, inf or an out-of-range value costs one line and exit 2 before any work starts.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from streamdream.settings import MAX_PIXELS, MAX_SIDE, MIN_SIDE, PRESETS, SEED_RANGE, OutputSettings, Range, Settings, TemporalSettings, preset

DEFAULT_MODEL = "efficientnet_lite0"  # streamdream.models.DEFAULT_MODEL, without importing torch for --help


def number(kind: type, bounds: Range):
    """An argparse type: a finite `kind` within `bounds`; anything else gets one line naming the range."""
    expected = bounds.describe(kind is int)

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not bounds.allows(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def numbers(bounds: Range = Range(low=0.0)):
    """An argparse type: comma-separated finite numbers within `bounds`, e.g. 0.7,0.3."""
    one = number(float, bounds)

    def parse(text: str) -> list[float]:
        try:
            return [one(v) for v in text.split(",")]
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.7,0.3, each {bounds.span()}, got {text!r}") from None

    return parse


SEED = number(int, SEED_RANGE)


def size_arg(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT, each side 1..MAX_SIDE and the area at most MAX_PIXELS."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE) or width * height > MAX_PIXELS:
        raise argparse.ArgumentTypeError(f"size must be 1 to {MAX_SIDE} pixels a side and at most {MAX_PIXELS // 1_000_000} megapixels, got {text!r}")
    return width, height


def add_settings(group, cls: type[Settings], names: list[str] | None = None, *, defaults_from: str | None = None) -> None:
    """One option per field of `cls` (or of `names`): `--octave-scale` for `octave_scale`, typed and range-checked.

    With `defaults_from` (a preset's name) the options default to None, so that only what the user
    gives overrides the preset, and the help shows the preset's value.
    """
    for spec in fields(cls):
        if names is not None and spec.name not in names:
            continue
        meta = spec.metadata
        flag = meta.get("flag") or "--" + spec.name.replace("_", "-")
        shown = getattr(PRESETS[defaults_from], spec.name) if defaults_from else spec.default
        suffix = f" ({defaults_from}: {shown})" if defaults_from else (" (default %(default)s)" if spec.default is not None else "")
        options = {"dest": spec.name, "help": meta["help"] + suffix, "default": None if defaults_from else spec.default}
        if isinstance(spec.default, bool):
            options.update(action="store_true", default=None if defaults_from else False, help=meta["help"])
        elif meta.get("choices"):
            options["choices"] = meta["choices"]
        else:
            kind = int if str(spec.type).startswith("int") else float  # annotations are strings here
            options.update(type=number(kind, meta["range"]), metavar="N", help=f"{meta['help']}, {meta['range'].span()}{suffix}")
        group.add_argument(flag, **options)


def settings_from(args: argparse.Namespace, cls: type[Settings]) -> dict:
    """The values of `cls`'s fields from parsed options, for a mode's keyword arguments."""
    return {spec.name: getattr(args, spec.name) for spec in fields(cls) if hasattr(args, spec.name)}


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help="backbone (see `streamdream models`; default %(default)s)")
    parser.add_argument("--weights", metavar="FILE", help="weights file for a torchvision model (loaded with weights_only=True)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default %(default)s)")


def add_io_options(parser: argparse.ArgumentParser, *, input_optional: bool = False, verbose: str) -> None:
    """INPUT, -o OUTPUT and the options every picture-or-video command shares."""
    parser.add_argument("input", nargs="?" if input_optional else None, metavar="INPUT", help="image (PNG, JPEG, WebP, BMP, TIFF) or video (MP4, MOV, MKV, WebM, AVI, GIF)")
    parser.add_argument("-o", "--output", required=True, help="output file; the format follows the extension")
    add_settings(parser, OutputSettings, ["max_side", "quality"])
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file (never an input)")
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(inputs=("input",), outputs=("output",))


VIDEO_OPTIONS = ["carry", "frame_iterations", "frame_octaves", "flow", "flow_preset", "flow_scale", "independent"]


def add_video_options(parser: argparse.ArgumentParser, frame_note: str = "") -> None:
    """Options for video inputs: temporal coherence and encoding."""
    group = parser.add_argument_group("video (when INPUT is a video file)", frame_note or None)
    group.add_argument("--temporal-preset", default="balanced", choices=list(PRESETS), help="per-frame work and flow settings; the options below override it (default %(default)s)")
    add_settings(group, TemporalSettings, VIDEO_OPTIONS, defaults_from="balanced")
    group.add_argument("--no-cuda-graphs", action="store_true", help="on CUDA, run every frame's steps eagerly instead of replaying captured graphs (for comparison, or if a driver misbehaves)")
    group.add_argument("--no-audio", action="store_true", help="drop the audio track")
    group.add_argument("--allow-partial-input", action="store_true", help="a truncated or damaged input: render the frames that decode and exit 0 (default: keep them in a partial output and exit 2)")
    add_settings(group, OutputSettings, ["crf", "preset"])


def run_video(args: argparse.Namespace, mode) -> None:
    """Render INPUT through `mode` frame by frame into OUTPUT, with a progress bar."""
    from tqdm import tqdm

    from streamdream.video import process_video

    settings = preset(args.temporal_preset).with_(**{name: getattr(args, name) for name in VIDEO_OPTIONS})
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
