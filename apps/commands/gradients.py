"""`streamdream classify | saliency | fool | classviz | invert`: the image-gradient tools (cs231n)."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Callable, Iterator

from streamdream.settings import ClassVizSettings, FoolSettings, InvertSettings, Range

from ..options import SEED, add_model_options, add_settings, number, settings_from

EXAMPLES = {
    "classify": "  streamdream classify photo.jpg\n  streamdream classify photo.jpg --json",
    "saliency": "  streamdream saliency photo.jpg -o map.png\n  streamdream saliency photo.jpg --class 285 -o overlay.png --overlay",
    "fool": "  streamdream fool photo.jpg --target 1 -o fooled.png",
    "classviz": "  streamdream classviz --class 1 -o goldfish.png --seed 1",
    "invert": "  streamdream invert photo.jpg --layer blocks.1 -o inverted.png",
}


CLASS = number(int, Range(0, 999))  # ImageNet-1k, the classes every model of the zoo predicts


def _model_kwargs(args: argparse.Namespace) -> dict:
    return {"model": args.model, "device": args.device, "weights": args.weights}


@contextlib.contextmanager
def _progress(args: argparse.Namespace, total: int, desc: str) -> Iterator[Callable[[int], None]]:
    """A progress callback whose bar appears at the first step, so a rejected input prints only its error line."""
    from tqdm import tqdm

    bar: tqdm | None = None

    def update(steps: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="step", disable=args.quiet)
        bar.update(steps)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def run_classify(args: argparse.Namespace) -> None:
    from streamdream.gradients import classify
    from streamdream.io.images import load_image

    predictions = classify(load_image(args.input).rgb, top=args.top, **_model_kwargs(args))
    if args.json:
        print(json.dumps([{"index": p.index, "label": p.label, "prob": p.prob} for p in predictions]))
        return
    for p in predictions:
        print(f"{p.index:4d}  {p.prob:6.1%}  {p.label}")


def run_saliency(args: argparse.Namespace) -> None:
    import numpy as np

    from streamdream.gradients import saliency, saliency_overlay
    from streamdream.io.images import check_image_output, load_image, save_image

    check_image_output(args.output, overwrite=args.overwrite)
    rgb = load_image(args.input).rgb
    heat = saliency(rgb, args.class_index, **_model_kwargs(args))
    gray = np.repeat(np.rint(heat * 255).astype(np.uint8)[..., None], 3, axis=2)
    save_image(args.output, saliency_overlay(rgb, heat) if args.overlay else gray, overwrite=args.overwrite)
    print(args.output)


def run_fool(args: argparse.Namespace) -> None:
    from streamdream.errors import StreamdreamError
    from streamdream.gradients import fool
    from streamdream.io.images import check_image_output, load_image, save_image

    check_image_output(args.output, overwrite=args.overwrite)
    picture = load_image(args.input)
    with _progress(args, args.iterations, "fooling") as progress:
        result = fool(picture.rgb, args.target, epsilon=args.epsilon / 255, step=args.step / 255, max_iterations=args.iterations, progress=progress, **_model_kwargs(args))
    if not result.success:
        raise StreamdreamError(f"the model does not predict class {args.target} after {result.iterations} iterations at --epsilon {args.epsilon:g}; raise --epsilon or --iterations")
    save_image(args.output, result.image, picture.alpha, overwrite=args.overwrite)
    print(f"iterations {result.iterations}  L-inf {result.linf * 255:.0f}/255 ({result.linf:.4f})  L2 {result.l2:.4f}")
    print(args.output)


def run_classviz(args: argparse.Namespace) -> None:
    from streamdream.gradients import class_visualization, class_visualization_steps
    from streamdream.io.images import check_image_output, save_image

    check_image_output(args.output, overwrite=args.overwrite)
    settings = settings_from(args, ClassVizSettings)
    steps = class_visualization_steps(args.size, args.octaves, args.octave_scale, args.iterations)
    with _progress(args, steps, "visualizing") as progress:
        image = class_visualization(args.class_index, seed=args.seed, progress=progress, **settings, **_model_kwargs(args))
    save_image(args.output, image, overwrite=args.overwrite)
    print(args.output)


def run_invert(args: argparse.Namespace) -> None:
    from streamdream.gradients import invert
    from streamdream.io.images import check_image_output, load_image, resize_max_side, save_image

    check_image_output(args.output, overwrite=args.overwrite)
    rgb = load_image(args.input).rgb
    if args.max_side:
        rgb = resize_max_side(rgb, args.max_side)
    with _progress(args, args.iterations, "inverting") as progress:
        settings = {k: v for k, v in settings_from(args, InvertSettings).items() if k != "max_side"}
        image = invert(rgb, args.layer, seed=args.seed, progress=progress, **settings, **_model_kwargs(args))
    save_image(args.output, image, overwrite=args.overwrite)
    print(args.output)


def _add(commands: argparse._SubParsersAction, name: str, help_text: str, run, *, image: bool = True, output: bool = True) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".", epilog="examples:\n" + EXAMPLES[name], formatter_class=argparse.RawDescriptionHelpFormatter)
    if image:
        parser.add_argument("input", metavar="IMAGE", help="image file (PNG, JPEG, WebP, BMP, TIFF)")
    if output:
        parser.add_argument("-o", "--output", required=True, help="output image; the format follows the extension")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing output file (never the input)")
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_model_options(parser)
    parser.set_defaults(run=run, inputs=("input",) if image else (), outputs=("output",) if output else ())
    return parser


def register(commands: argparse._SubParsersAction) -> None:
    parser = _add(commands, "classify", "top ImageNet labels of a picture", run_classify, output=False)
    parser.add_argument("--top", type=number(int, Range(1, 1000)), default=5, help="how many labels (default %(default)s)")
    parser.add_argument("--json", action="store_true", help='print [{"index", "label", "prob"}, ...], best first')

    parser = _add(commands, "saliency", "class saliency map: which pixels the class score depends on most", run_saliency)
    parser.add_argument("--class", dest="class_index", type=CLASS, help="ImageNet class 0-999 (default: the predicted one)")
    parser.add_argument("--overlay", action="store_true", help="save the map colour-mapped over the photo instead of as grayscale")

    parser = _add(commands, "fool", "fooling image: a barely changed picture the model sees as another class", run_fool)
    parser.epilog += "\n\nSave as PNG: JPEG or WebP compression changes the pixels and can undo the fooling."
    parser.add_argument("--target", type=CLASS, required=True, help="ImageNet class 0-999 to be predicted")
    add_settings(parser, FoolSettings)

    parser = _add(commands, "classviz", "class visualization: an image grown from noise to look like a class", run_classviz, image=False)
    parser.add_argument("--class", dest="class_index", type=CLASS, required=True, help="ImageNet class 0-999")
    add_settings(parser, ClassVizSettings)
    parser.add_argument("--seed", type=SEED, default=0, help="noise and jitter seed (default %(default)s)")

    parser = _add(commands, "invert", "feature inversion: an image grown from noise to match a layer's features of a picture", run_invert)
    parser.add_argument("--layer", required=True, help="layer whose features to match (see `streamdream layers`)")
    add_settings(parser, InvertSettings)
    parser.add_argument("--seed", type=SEED, default=0, help="noise seed (default %(default)s)")
