"""Option groups and argument types shared by several commands, built from `streamdream.settings`.

Each settings field becomes one option: its flag, type, range check and `--help` line (with the
default) come from the field, so no default or bound is written twice. Every number is checked when
parsed, so NaN, inf or an out-of-range value costs one line and exit 2 before any work starts.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from streamdream.settings import DEFAULT_MODEL, DEFAULT_PRESET, MAX_PIXELS, MAX_SIDE, OVERLAP_RANGE, PRESETS, RAY_FADE, RAY_OVERLAP, SEED_RANGE, OutputSettings, Range, Settings, TemporalSettings


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

    def parse(text: str) -> tuple[float, ...]:
        try:
            return tuple(one(v) for v in text.split(","))
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


VIDEO_OPTIONS = ["carry", "frame_iterations", "frame_octaves", "frame_step", "hold", "lift", "fill", "flow", "flow_preset", "flow_scale", "independent"]


def add_video_options(parser: argparse.ArgumentParser, frame_note: str = "", preset_note: str = "") -> None:
    """Options for video inputs: temporal coherence and encoding. `--temporal-preset` is None unless
    given (`render_options` reads None as `DEFAULT_PRESET`), so a command may choose another by mode."""
    group = parser.add_argument_group("video (when INPUT is a video file)", frame_note or None)
    group.add_argument("--temporal-preset", choices=list(PRESETS), help=f"per-frame work and flow settings; the options below override it (default {DEFAULT_PRESET}{preset_note})")
    add_settings(group, TemporalSettings, VIDEO_OPTIONS, defaults_from=DEFAULT_PRESET)
    group.add_argument("--no-cuda-graphs", action="store_true", help="on CUDA, run every frame's steps eagerly instead of replaying captured graphs (for comparison, or if a driver misbehaves)")
    group.add_argument("--no-audio", action="store_true", help="drop the audio track")
    group.add_argument("--allow-partial-input", action="store_true", help="a truncated or damaged input: render the frames that decode and exit 0 (default: keep them in a partial output and exit 2)")
    add_settings(group, OutputSettings, ["crf", "preset"])
    add_ray_options(parser)


def ray_address(text: str) -> str:
    """--ray's ADDRESS: auto, local, HOST:PORT or ray://HOST:PORT (a video name here means INPUT came after --ray)."""
    if text in ("auto", "local") or ":" in text:
        return text
    raise argparse.ArgumentTypeError(f"expected auto or HOST:PORT, got {text!r} (put INPUT before --ray, or write --ray=ADDRESS)")


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """--ray and its options: long videos in segments, or many clips, on a Ray cluster (`streamdream.distributed`)."""
    parser.add_argument("more_inputs", nargs="*", metavar="INPUT", help="with --ray: more videos, rendered into the folder -o names")
    group = parser.add_argument_group("Ray (videos; needs streamdream[ray])", "input and output must be on storage every Ray node mounts at the same path")
    group.add_argument("--ray", nargs="?", const="local", type=ray_address, metavar="ADDRESS", help="render on Ray: a local Ray without ADDRESS; auto or HOST:PORT joins a running cluster")
    group.add_argument("--ray-workers", type=number(int, Range(1, 100_000)), metavar="N", help="workers (default: one per GPU, or one per machine without GPUs)")
    group.add_argument("--overlap", type=number(int, OVERLAP_RANGE), metavar="N", help=f"frames each segment renders and discards before its first frame, to rebuild the warm state (default {RAY_OVERLAP})")
    group.add_argument("--fade", type=number(int, OVERLAP_RANGE), metavar="N", help=f"frames over which the two renderings of a seam are cross-faded; 0 for a hard cut (default {RAY_FADE})")
    group.add_argument("--segment-frames", type=number(int, Range(1, 10**9)), metavar="N", help="frames per segment (default: a few segments per worker)")
    group.add_argument("--resume", action="store_true", help="reuse the finished segments of an interrupted or failed --ray render of the same output")


def check_ray_options(args: argparse.Namespace) -> None:
    """Refuse Ray-only options without --ray; with it, refuse what Ray cannot render and, with several
    INPUTs, turn OUTPUT (a folder) into one path per INPUT. Runs before the outputs are claimed; the
    command then renders with `render.run_ray`."""
    from streamdream.errors import StreamdreamError
    from streamdream.io.paths import is_video_path

    if args.ray is None:
        if args.more_inputs:
            raise StreamdreamError("several INPUTs are rendered with --ray only; give one INPUT")
        used = [flag for flag, value in (("--ray-workers", args.ray_workers), ("--overlap", args.overlap), ("--fade", args.fade), ("--segment-frames", args.segment_frames), ("--resume", args.resume)) if value is not None and value is not False]
        if used:
            raise StreamdreamError(f"{', '.join(used)} apply to --ray renders only")
        return
    inputs = [args.input, *args.more_inputs]
    if None in inputs or not all(map(is_video_path, inputs)):
        raise StreamdreamError("--ray renders videos; give video INPUTs")
    if getattr(args, "preview", None) or getattr(args, "init", "content") != "content":
        raise StreamdreamError("--init and --preview apply to still images only")
    if args.more_inputs:
        from pathlib import Path

        from streamdream.distributed import JOINABLE

        folder = Path(args.output)
        if not folder.is_dir():
            raise StreamdreamError(f"with several INPUTs, -o names a folder; {folder} is not one")
        names = [Path(name) for name in inputs]
        args.output = [str(folder / (n.name if n.suffix.lower() in JOINABLE else n.stem + ".mp4")) for n in names]
        args.inputs = (*args.inputs, "more_inputs")  # none of them may be an output
