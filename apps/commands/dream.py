"""`streamdream dream`: DeepDream on a picture."""

from __future__ import annotations

import argparse
import sys

from streamdream.errors import StreamdreamError

from streamdream.settings import DreamSettings

from ..options import SEED, add_io_options, add_model_options, add_settings, add_video_options, run_video, settings_from, size_arg

DREAM_EXAMPLES = """examples:
  streamdream dream photo.jpg -o dream.png
  streamdream dream photo.jpg -o dream.png --objective "blocks.4:39 + 0.5*blocks.5" --octaves 5 --lapnorm
  streamdream dream photo.jpg -o dream.jpg --objective logit:1 --max-side 1024 --seed 7
  streamdream dream --noise --size 512x512 -o noise.png --objective blocks.3:12
  streamdream dream photo.jpg -o guided.png --guide clouds.jpg
  streamdream dream samples/pan.mp4 -o pan_dream.mp4
  streamdream dream clip.mov -o dream.mp4 --max-side 640 --carry 0.95 --frame-iterations 5 --overwrite
  streamdream dream clip.mp4 -o flicker.mp4 --independent
"""


def add_dream_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dream")
    group.add_argument("--objective", help='what to amplify, e.g. "blocks.4", "blocks.4:39", "logit:285", "blocks.4:3 + 0.5*blocks.5" (default: the model\'s dream layer)')
    group.add_argument("--guide", metavar="IMAGE", help="dream toward the features of this image")
    add_settings(group, DreamSettings)
    group.add_argument("--seed", type=SEED, default=0, help="random seed; the same seed gives the same pixels (default %(default)s)")


def dreamer_from(args: argparse.Namespace):
    from streamdream.dream import Dreamer
    from streamdream.io.images import load_image

    return Dreamer(
        args.model,
        args.objective,
        guide_image=load_image(args.guide).rgb if args.guide else None,
        **settings_from(args, DreamSettings),
        device=args.device,
        weights=args.weights,
        cuda_graphs=not args.no_cuda_graphs,
    )


def run_dream(args: argparse.Namespace) -> None:
    """Dream a still, or hand a video to the frame pipeline."""
    from tqdm import tqdm

    from streamdream.dream import noise_image
    from streamdream.io.images import Picture, check_image_output, load_image, resize_picture, save_image
    from streamdream.io.video import check_video_output, is_video_path

    if args.noise == (args.input is not None):
        raise StreamdreamError("give an INPUT image or video, or --noise (with --size) to start from noise")
    if args.input and is_video_path(args.input):
        check_video_output(args.output, overwrite=args.overwrite)
        return run_video(args, dreamer_from(args))
    check_image_output(args.output, overwrite=args.overwrite)
    picture = load_image(args.input) if args.input else Picture(noise_image(*args.size, seed=args.seed), None)
    if args.max_side:
        picture = resize_picture(picture, args.max_side)
    dreamer = dreamer_from(args)
    height, width = picture.rgb.shape[:2]
    if args.verbose:
        print(f"model {dreamer.model.name} on {dreamer.device}, objective {dreamer.objective.description}, {width}x{height}", file=sys.stderr)
    with tqdm(total=dreamer.steps(height, width), desc="dreaming", unit="step", disable=args.quiet) as bar:
        result = dreamer.dream(picture.rgb, seed=args.seed, progress=bar.update)
    if args.verbose:
        print(f"objective {dreamer.objective_value(picture.rgb):.4g} -> {dreamer.objective_value(result):.4g}", file=sys.stderr)
    save_image(args.output, result, picture.alpha, quality=args.quality, overwrite=args.overwrite)
    print(args.output)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("dream", help="dream a picture or a video", description="Amplify what a layer of an ImageNet CNN sees in a picture or a video.", epilog=DREAM_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_options(parser, input_optional=True, verbose="print the model, the objective and its value before and after")
    parser.add_argument("--noise", action="store_true", help="start from noise instead of a picture")
    parser.add_argument("--size", type=size_arg, default=(512, 512), help="noise size WxH (default 512x512)")
    add_model_options(parser)
    add_dream_options(parser)
    add_video_options(parser)
    parser.set_defaults(run=run_dream, inputs=("input", "guide"))
