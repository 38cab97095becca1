"""`streamdream dream`: DeepDream on a picture."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from streamdream.errors import StreamdreamError
from streamdream.settings import DreamSettings

from ..options import SEED, add_io_options, add_model_options, add_settings, add_video_options, settings_from, size_arg
from ..render import run_ray, run_video

if TYPE_CHECKING:
    from streamdream.dream import Dreamer

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


@dataclass(frozen=True)
class DreamRecipe:
    """A Dreamer as plain values, so that a still, a video and every Ray worker build the same one.

    Picklable for Ray; its repr names every setting that shapes the dream, which is what a resumed
    Ray render must match. The guide is a path: each worker reads it, as the command does.
    """

    model: str
    weights: str | None
    objective: str | None
    guide: str | None
    settings: DreamSettings
    cuda_graphs: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DreamRecipe:
        return cls(args.model, args.weights, args.objective, args.guide, DreamSettings(**settings_from(args, DreamSettings)), not args.no_cuda_graphs)

    def build(self, device: Any) -> Dreamer:
        from streamdream.dream import Dreamer
        from streamdream.io.images import load_image

        guide_image = load_image(self.guide).rgb if self.guide else None
        return Dreamer(self.model, self.objective, guide_image=guide_image, device=device, weights=self.weights, cuda_graphs=self.cuda_graphs, **asdict(self.settings))


def run_dream(args: argparse.Namespace) -> None:
    """Dream a still, or hand a video to the frame pipeline (or to Ray, with --ray)."""
    from tqdm import tqdm

    from streamdream.dream import noise_image
    from streamdream.io.images import Picture, check_image_output, load_image, resize_picture, save_image
    from streamdream.io.paths import is_video_path

    recipe = DreamRecipe.from_args(args)
    if args.ray is not None:  # the INPUTs were checked by `check_ray_options`
        return run_ray(args, recipe)
    if args.noise == (args.input is not None):
        raise StreamdreamError("give an INPUT image or video, or --noise (with --size) to start from noise")
    if args.input and is_video_path(args.input):
        from streamdream.io.video import check_video_output

        check_video_output(args.output, overwrite=args.overwrite)
        return run_video(args, recipe.build(args.device))
    check_image_output(args.output, overwrite=args.overwrite)
    picture = load_image(args.input) if args.input else Picture(noise_image(*args.size, seed=args.seed), None)
    if args.max_side:
        picture = resize_picture(picture, args.max_side)
    dreamer = recipe.build(args.device)
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
