"""`streamdream style`: neural style transfer on a picture or a video."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from streamdream.errors import StreamdreamError
from streamdream.settings import BUILTIN_STYLE, NET_VIDEO_PRESET, STILL_STYLE_METHOD, STYLE_METHOD, STYLE_METHODS, StyleSettings

from ..options import SEED, add_io_options, add_model_options, add_settings, add_video_options, numbers, settings_from
from ..render import run_ray, run_video

if TYPE_CHECKING:
    import numpy as np

    from streamdream.style import Stylizer
    from streamdream.style_net import NetStylizer

STYLE_EXAMPLES = f"""examples:
  streamdream style photo.jpg -s starry_night.jpg -o starry.png
  streamdream style photo.jpg -s {BUILTIN_STYLE}19 -o builtin19.png
  streamdream style photo.jpg -s starry_night.jpg -s the_scream.jpg --style-weights 0.7,0.3 -o mix.png
  streamdream style photo.jpg -s starry_night.jpg -o quick.png --method net --preview sheet.png
  streamdream style photo.jpg -s starry_night.jpg -o big.png --method optimize --max-side 512 --style-scale 1.5
  streamdream style photo.jpg -s starry_night.jpg -o kept.png --method optimize --preserve-colors --optimizer lbfgs --iterations 30
  streamdream style photo.jpg --method optimize --style-weight 0 --init noise -o reconstruction.png
  streamdream style samples/pan.mp4 -s starry_night.jpg -o pan_starry.mp4 --max-side 320

methods: net paints in one pass of a pretrained network (Ghiasi et al. 2017; any painting, or the 26
built-in styles {BUILTIN_STYLE}0 to {BUILTIN_STYLE}25): the default for videos, the only one that keeps up with a
camera. refine, the default for stills, starts the Gatys optimizer from the network's painting and runs
--refine-steps steps: the most of the painting's look for its time. optimize is the Gatys optimizer from
the photo (octaves x --iterations steps), the slowest.

videos: with net, every frame after the first keeps the previous painting's strokes carried along the
optical flow (at full size: the {NET_VIDEO_PRESET} preset), takes --renew of its new painting where the flow is
trusted and keeps --rejected-keep of the carried strokes where its check fails. With refine and optimize
every later frame starts from the previous result carried along the flow and runs --frame-iterations x
--frame-steps Adam steps at full size, held near the carried result by --temporal-weight.
"""

def names_arg(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def add_style_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("style")
    group.add_argument("-s", "--style", action="append", default=[], metavar="IMAGE", help=f"style painting, or a built-in style {BUILTIN_STYLE}N (N from 0 to 25, --method net); repeat to blend several")
    group.add_argument("--method", choices=STYLE_METHODS, help=f"net: a pretrained network in one pass; refine: a few optimizer steps from its painting; optimize: the Gatys optimizer (default: {STILL_STYLE_METHOD} for a still, {STYLE_METHOD} for a video or a built-in style)")
    group.add_argument("--style-weights", type=numbers(), metavar="W1,W2", help="blend of several styles, e.g. 0.7,0.3 (default equal)")
    group.add_argument("--content-layers", type=names_arg, metavar="L1,L2", help="content layers (default: the model's, blocks.3 on EfficientNet-Lite)")
    group.add_argument("--content-layer-weights", type=numbers(), metavar="W1,W2", help="blend of the content layers (default equal)")
    group.add_argument("--style-layers", type=names_arg, metavar="L1,L2", help="style layers (default: the model's, stem,blocks.0-4 on EfficientNet-Lite)")
    group.add_argument("--style-layer-weights", type=numbers(), metavar="W1,W2", help="weights of the style layers (default equal)")
    add_settings(group, StyleSettings)
    group.add_argument("--init", default="content", metavar="content|noise|IMAGE", help="start image for stills with --method optimize (default %(default)s)")
    group.add_argument("--preview", metavar="SHEET", help="also write a contact sheet content | style | result (stills)")
    group.add_argument("--seed", type=SEED, default=0, help="random seed for --init noise (default %(default)s)")


@dataclass(frozen=True)
class StyleRecipe:
    """A Stylizer as plain values, so that a still, a video and every Ray worker build the same one.

    Picklable for Ray; its repr names every setting that shapes the result (the styles by their
    paths), which is what a resumed Ray render must match. The style pictures travel with it,
    read once by the command, so the workers need not see their files.
    """

    method: str
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
    pictures: tuple[np.ndarray | str, ...] = field(default=(), repr=False, compare=False)  # the styles' RGB (built-in styles by name)

    @classmethod
    def from_args(cls, args: argparse.Namespace, pictures: list[np.ndarray | str]) -> StyleRecipe:
        return cls(args.method, args.model, args.weights, tuple(args.style), args.style_weights, args.content_layers, args.content_layer_weights, args.style_layers, args.style_layer_weights,
                   StyleSettings(**settings_from(args, StyleSettings)), not args.no_cuda_graphs, tuple(pictures))

    def build(self, device: Any) -> Stylizer | NetStylizer:
        from streamdream.style_net import create_stylizer

        return create_stylizer(self.method, self.pictures, model=self.model, style_weights=self.style_weights, content_layers=self.content_layers, content_layer_weights=self.content_layer_weights,
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
    from streamdream.io.images import check_image_output, load_image, resize_picture, save_image
    from streamdream.io.paths import is_video_path
    from streamdream.style_net import NetStylizer, builtin_index

    frames = args.ray is not None or is_video_path(args.input)
    builtin = any(builtin_index(path) is not None for path in args.style)  # the network's own styles
    args.method = args.method or (STYLE_METHOD if frames or builtin else STILL_STYLE_METHOD)
    if args.method == "net":
        args.temporal_preset = args.temporal_preset or NET_VIDEO_PRESET
    if not args.style and (args.method != "optimize" or args.style_weight > 0):
        raise StreamdreamError(f"give a style painting with -s PAINTING or a built-in style with -s {BUILTIN_STYLE}N" + (" (or --style-weight 0 to reconstruct the content only)" if args.method == "optimize" else ""))
    if args.init != "content" and args.method != "optimize":
        raise StreamdreamError("--init applies to --method optimize only")
    # first: a missing style fails before anything else
    styles = [path if builtin_index(path) is not None else load_image(path).rgb for path in args.style]
    recipe = StyleRecipe.from_args(args, styles)
    if args.ray is not None:  # the INPUTs were checked by `check_ray_options`
        return run_ray(args, recipe)
    if is_video_path(args.input):
        if args.init != "content" or args.preview:
            raise StreamdreamError("--init and --preview apply to still images only")
        from streamdream.io.video import check_video_output

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
    if isinstance(stylizer, NetStylizer):
        result = stylizer.stylize(picture.rgb)
    else:
        result = _optimized(args, stylizer, picture.rgb, init)
    save_image(args.output, result, picture.alpha, quality=args.quality, overwrite=args.overwrite)
    if args.preview:
        shown = [s for s in styles if not isinstance(s, str)]  # built-in styles have no picture
        save_image(args.preview, contact_sheet([picture.rgb, *shown, result], min(picture.rgb.shape[0], 512)), overwrite=args.overwrite)
    print(args.output)


def _optimized(args: argparse.Namespace, stylizer: Stylizer, rgb: np.ndarray, init: str | np.ndarray) -> np.ndarray:
    """A still by the optimizer (refine or optimize), with a progress bar and, verbose, its losses."""
    from tqdm import tqdm

    height, width = rgb.shape[:2]
    if args.verbose:
        print(f"model {stylizer.model.name} on {stylizer.device}, content {', '.join(stylizer.content_layers)}, style {', '.join(stylizer.style_layers)}, {width}x{height}", file=sys.stderr)
    with tqdm(total=stylizer.steps(height, width), desc="stylizing", unit="step", disable=args.quiet) as bar:
        result = stylizer.stylize(rgb, init=init, seed=args.seed, progress=bar.update)
    if args.verbose:
        before, after = stylizer.losses(rgb, rgb), stylizer.losses(result, rgb)
        print(", ".join(f"{name} loss {before[name]:.4g} -> {after[name]:.4g}" for name in after), file=sys.stderr)
    return result


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("style", help="paint a picture or a video in the style of a painting", description="Neural style transfer on a picture or a video: a pretrained feed-forward network (Ghiasi et al. 2017), or the Gatys et al. optimizer on a frozen ImageNet CNN.", epilog=STYLE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_io_options(parser, verbose="print the model, the layers and the losses before and after")
    add_model_options(parser)
    add_style_options(parser)
    add_video_options(parser, preset_note=f"; {NET_VIDEO_PRESET} with --method net")
    parser.set_defaults(run=run_style, inputs=("input", "style", "init"), outputs=("output", "preview"))
