"""Option groups and argument types shared by several commands."""

from __future__ import annotations

import argparse
import sys


def size_arg(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x480, got {text!r}") from None
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return width, height


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="efficientnet_lite0", help="backbone (see `streamdream models`; default %(default)s)")
    parser.add_argument("--weights", metavar="FILE", help="weights file for a torchvision model (loaded with weights_only=True)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default %(default)s)")


def add_io_options(parser: argparse.ArgumentParser, *, input_optional: bool = False, verbose: str) -> None:
    """INPUT, -o OUTPUT and the options every picture-or-video command shares."""
    parser.add_argument("input", nargs="?" if input_optional else None, metavar="INPUT", help="image (PNG, JPEG, WebP, BMP, TIFF) or video (MP4, MOV, MKV, WebM, AVI, GIF)")
    parser.add_argument("-o", "--output", required=True, help="output file; the format follows the extension")
    parser.add_argument("--max-side", type=int, help="resize the input so its longer side is N pixels first (videos: at most N)")
    parser.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality 1-100 (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_video_options(parser: argparse.ArgumentParser) -> None:
    """Options for video inputs: temporal coherence and encoding."""
    group = parser.add_argument_group("video (when INPUT is a video file)")
    group.add_argument("--temporal-preset", default="balanced", choices=["fast", "balanced", "quality"], help="per-frame work and flow settings; the options below override it (default %(default)s)")
    group.add_argument("--carry", type=float, help="share of the previous frame's result carried along the flow, 0..1 (balanced: 0.9)")
    group.add_argument("--frame-iterations", type=int, help="iterations per octave for frames after the first (balanced: 3)")
    group.add_argument("--frame-octaves", type=int, help="octaves for frames after the first (balanced: 2)")
    group.add_argument("--flow", choices=["dis", "none"], help="optical flow for carrying the previous result (default dis)")
    group.add_argument("--flow-preset", choices=["ultrafast", "fast", "medium"], help="DIS preset (balanced: fast)")
    group.add_argument("--flow-scale", type=float, help="compute flow at this fraction of the frame size (balanced: 0.5)")
    group.add_argument("--independent", action="store_true", help="dream every frame from scratch with the still settings (flickers; the baseline)")
    group.add_argument("--no-cuda-graphs", action="store_true", help="on CUDA, run every frame's steps eagerly instead of replaying captured graphs (for comparison, or if a driver misbehaves)")
    group.add_argument("--no-audio", action="store_true", help="drop the audio track")
    group.add_argument("--crf", type=int, default=18, help="H.264/VP9 quality, lower is better (default %(default)s)")
    group.add_argument("--preset", default="medium", help="x264 encoder speed preset (default %(default)s)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing output video")


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
            on_frame=advance,
        )
    if args.verbose:
        print(f"{report.frames} frames in {report.seconds:.1f} s ({report.fps:.2f} fps)", file=sys.stderr)
    print(report.path)
