"""`streamdream evaluate`: how much a processed video flickers, and how strongly it was changed."""

from __future__ import annotations

import argparse
import json

from streamdream.errors import StreamdreamError


def run_evaluate(args: argparse.Namespace) -> None:
    from streamdream.io.video import read_frames
    from streamdream.temporal import video_scores

    inputs = (frame.image for frame in read_frames(args.input))
    outputs = (frame.image for frame in read_frames(args.output))
    try:
        scores = video_scores(inputs, outputs)
    except ValueError as exc:  # unequal frame counts or sizes
        raise StreamdreamError(f"cannot compare {args.input} and {args.output}: {exc}") from None
    if args.json:
        print(json.dumps(scores))
        return
    print(f"frames               {scores['frames']}")
    print(f"warping error        {scores['warping_error']:.6f}   (output flicker; lower is steadier)")
    print(f"input warping error  {scores['input_warping_error']:.6f}   (the input's own, the floor)")
    print(f"effect               {scores['effect']:.4f}     (mean |output - input|, pixels in [0, 1])")
    print(f"pixels judged        {scores['judged']:.3f}      (share whose flow passed the forward-backward check)")
    print(f"scene cuts           {scores['cuts']}          (frame pairs left out: the input's own error jumps there)")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="measure a processed video's flicker (warping error) and effect (how far it is from the input)",
        description="Warping error (Lai et al. 2018) of OUTPUT_VIDEO with flow and occlusion masks from INPUT_VIDEO "
        "(DIS flow at full resolution with settings no renderer preset uses), the input's own warping error, the effect (mean |output - input|), the share of "
        "pixels judged, and the scene cuts left out. Works on any two videos with equal frame counts.",
        epilog="example:\n  streamdream evaluate samples/pan.mp4 pan_dream.mp4 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT_VIDEO")
    parser.add_argument("output", metavar="OUTPUT_VIDEO")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run_evaluate)
