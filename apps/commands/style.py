"""`streamdream style`: neural style transfer on a picture or a video."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from streamdream.errors import StreamdreamError
from streamdream.settings import StyleSettings

from ..options import SEED, add_io_options, add_model_options, add_settings, add_video_options, numbers, settings_from
from ..render import run_ray, run_video

if TYPE_CHECKING:
    import numpy as np

    from streamdream.style import Stylizer

STYLE_EXAMPLES = """examples:
  streamdream style photo.jpg -s starry_night.jpg -o starry.png
  streamdream style photo.jpg -s starry_night.jpg -s the_scream.jpg --style-weights 0.7,0.3 -o mix.png
  streamdream style photo.jpg -s starry_night.jpg -o big.png --max-side 512 --style-scale 1.5 --preview sheet.png
  streamdream style photo.jpg -s starry_night.jpg -o kept.png --preserve-colors --optimizer lbfgs --iterations 30
  streamdream style photo.jpg --style-weight 0 --init noise -o reconstruction.png
  streamdream style samples/pan.mp4 -s starry_night.jpg -o pan_starry.mp4 --max-side 320

videos: the first frame gets the full still treatment; every later frame starts from the previous
result carried along the optical flow and runs --frame-iterations x --frame-steps Adam steps at full size
(--frame-octaves does not apply), held near the carried result by --temporal-weight.
"""

def names_arg(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_style_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("style")
    group.add_argument("-s", "--style", action="append", default=[], metavar="IMAGE", help="style painting; repeat to blend several")
    group.add_argument("--style-weights", type=numbers(), metavar="W1,W2", help="blend of several styles, e.g. 0.7,0.3 (default equal)")
    group.add_argument("--content-layers", type=names_arg, metavar="L1,L2", help="content layers (default: the model's, blocks.3 on EfficientNet-Lite)")
    group.add_argument("--content-layer-weights", type=numbers(), metavar="W1,W2", help="blend of the content layers (default equal)")
    group.add_argument("--style-layers", type=names_arg, metavar="L1,L2", help="style layers (default: the model's, stem,blocks.0-4 on EfficientNet-Lite)")
    group.add_argument("--style-layer-weights", type=numbers(), metavar="W1,W2", help="weights of the style layers (default equal)")
    add_settings(group, StyleSettings)
    group.add_argument("--init", default="content", metavar="content|noise|IMAGE", help="start image for stills (default %(default)s)")
    group.add_argument("--preview", metavar="SHEET", help="also write a contact sheet content | style | result (stills)")
    group.add_argument("--seed", type=SEED, default=0, help="random seed for --init noise (default %(default)s)")


@dataclass(frozen=True)
class StyleRecipe:
    """A Stylizer as plain values, so that a still, a video and every Ray worker build the same one.

    Picklable for Ray; its repr names every setting that shapes the result (the styles by their
    paths), which is what a resumed Ray render must match. The style pictures travel with it,
    read once by the command, so the workers need not see their files.
    """

    model: str
    weights: str | None
    styles: tuple[str, ...]
    style_weights: tuple[float, ...] | None
    content_layers: tuple[str, ...] | None
    content_layer_weights: tuple[float, ...] | None
    style_layers: tuple[str, ...] | None
    style_layer_weights: tuple[float, ...] | None
    settings: StyleSettings
    cuda_graphs: bool
    pictures: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)  # the styles' RGB

    @classmethod
    def from_args(cls, args: argparse.Namespace, pictures: list[np.ndarray]) -> StyleRecipe:
        return cls(args.model, args.weights, tuple(args.style), args.style_weights, args.content_layers, args.content_layer_weights, args.style_layers, args.style_layer_weights,
                   StyleSettings(**settings_from(args, StyleSettings)), not args.no_cuda_graphs, tuple(pictures))

    def build(self, device: Any) -> Stylizer:
        from streamdream.style import Stylizer

        return Stylizer(self.pictures, model=self.model, style_weights=self.style_weights, content_layers=self.content_layers, content_layer_weights=self.content_layer_weights,
                        style_layers=self.style_layers, style_layer_weights=self.style_layer_weights, device=device, weights=self.weights, cuda_graphs=self.cuda_graphs, **asdict(self.settings))


def contact_sheet(pictures: list[np.ndarray], height: int) -> np.ndarray:
    """The pictures side by side, each scaled to `height` with its aspect ratio, on a white gutter."""
    import numpy as np
    from PIL import Image

    gutter = np.full((height, max(2, height // 32), 3), 255, np.uint8)
    tiles = []
    for rgb in pictures:
        width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
        tiles += [np.asarray(Image.fromarray(rgb).resize((width, height), Image.Resampling.LANCZOS)), gutter]
    return np.hstack(tiles[:-1])


def run_style(args: argparse.Namespace) -> None:
    """Stylize a still, or hand a video to the frame pipeline (or to Ray, with --ray)."""
    from tqdm import tqdm

    from streamdream.io.images import check_image_output, load_image, resize_picture, save_image
    from streamdream.io.video import check_video_output, is_video_path

    if args.style_weight > 0 and not args.style:
        raise StreamdreamError("give a style image with -s STYLE (or --style-weight 0 to reconstruct the content only)")
    styles = [load_image(path).rgb for path in args.style]  # first: a missing style fails before anything else
    recipe = StyleRecipe.from_args(args, styles)
    if args.ray is not None:  # the INPUTs were checked by `check_ray_options`
        return run_ray(args, recipe)
    if is_video_path(args.input):
        if args.init != "content" or args.preview:
            raise StreamdreamError("--init and --preview apply to still images only")
        check_video_output(args.output, overwrite=args.overwrite)
        return run_video(args, recipe.build(args.device))
    check_image_output(args.output, overwrite=args.overwrite)
    if args.preview:
        check_image_output(args.preview, overwrite=args.overwrite)
    picture = load_image(args.input)
    if args.max_side:
        picture = resize_picture(picture, args.max_side)
    init = args.init if args.init in ("content", "noise") else load_image(args.init).rgb
    stylizer = recipe.build(args.device)
    height, width = picture.rgb.shape[:2]
    if args.verbose:
        print(f"model {stylizer.model.name} on {stylizer.device}, content {', '.join(stylizer.content_layers)}, style {', '.join(stylizer.style_layers)}, {width}x{height}", file=sys.stderr)
    with tqdm(total=stylizer.steps(height, width), desc="stylizing", unit="step", disable=args.quiet) as bar:
        result = stylizer.stylize(picture.rgb, init=init, seed=args.seed, progress=bar.update)
    if args.verbose:
        before, after = stylizer.losses(picture.rgb, picture.rgb), stylizer.losses(result, picture.rgb)
        print(", ".join(f"{name} loss {before[name]:.4g} -> {after[name]:.4g}" for name in after), file=sys.stderr)
    save_image(args.output, result, picture.alpha, quality=args.quality, overwrite=args.overwrite)
    if args.preview:
        save_image(args.preview, contact_sheet([picture.rgb, *styles, result], min(height, 512)), overwrite=args.overwrite)
    print(args.output)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("style", help="paint a picture or a video in the style of a painting", description="Neural style transfer (Gatys et al.) on a picture or a video, with a frozen ImageNet CNN.", epilog=STYLE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_options(parser, verbose="print the model, the layers and the losses before and after")
    add_model_options(parser)
    add_style_options(parser)
    add_video_options(parser)
    parser.set_defaults(run=run_style, inputs=("input", "style", "init"), outputs=("output", "preview"))
