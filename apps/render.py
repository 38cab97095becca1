"""Rendering a video for `dream` and `style`: frame by frame in this process, or in segments on Ray.

The commands hand in what renders: `run_video` takes the mode itself, `run_ray` a recipe, a small
picklable value that each Ray worker builds its own mode from (and whose repr names every setting
of the mode, so a resumed render can tell whether it continues the same one). This module imports
the option groups but never the commands, so commands, run paths and options depend on each
other in one direction only.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from streamdream.settings import DEFAULT_PRESET, RAY_FADE, RAY_OVERLAP, preset

from .options import VIDEO_OPTIONS

if TYPE_CHECKING:
    from streamdream.carry import FrameMode
    from streamdream.video import RenderOptions


class Recipe(Protocol):
    """What a command hands `run_ray`: frozen and picklable, with a repr that names all the mode's settings."""

    def build(self, device: Any) -> FrameMode: ...


def render_options(args: argparse.Namespace) -> RenderOptions:
    """The options of `process_video` from the command line: the temporal preset with the flags that override it, and the encoding."""
    from streamdream.video import RenderOptions

    settings = preset(args.temporal_preset or DEFAULT_PRESET).with_(**{name: getattr(args, name) for name in VIDEO_OPTIONS})
    return RenderOptions(settings, seed=args.seed, max_side=args.max_side, crf=args.crf, preset=args.preset, allow_partial_input=args.allow_partial_input, audio=not args.no_audio)


@contextlib.contextmanager
def _progress_bar(quiet: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A frame counter and the callback that moves it to (frames done, frames in all, when known)."""
    from tqdm import tqdm

    with tqdm(desc="rendering", unit="frame", disable=quiet) as bar:

        def advance(done: int, total: int | None) -> None:
            bar.total = total
            bar.update(done - bar.n)

        yield advance


def run_video(args: argparse.Namespace, mode: FrameMode) -> None:
    """Render INPUT through `mode` frame by frame into OUTPUT, with a progress bar."""
    from streamdream.video import process_video

    with _progress_bar(args.quiet) as advance:
        report = process_video(args.input, args.output, mode, render_options(args), overwrite=args.overwrite, on_frame=advance)
    if args.verbose:
        print(f"{report.frames} frames in {report.seconds:.1f} s ({report.fps:.2f} fps)", file=sys.stderr)
    print(report.path)


def run_ray(args: argparse.Namespace, recipe: Recipe) -> None:
    """Render INPUT (or every INPUT) on Ray with one progress bar; per-worker speed at the end.

    `--resume` reuses segments only of a render with the same `repr(recipe)` and render options:
    what shapes the pixels, and nothing else of the command line (output, workers, progress).
    """
    from streamdream.distributed import ClusterOptions, render_files, render_video

    options = render_options(args)
    cluster = ClusterOptions(address=args.ray, workers=args.ray_workers, device=args.device)
    with _progress_bar(args.quiet) as advance:
        if args.more_inputs:
            report = render_files(list(zip([args.input, *args.more_inputs], args.output, strict=True)), recipe.build, options, cluster, overwrite=args.overwrite, on_progress=advance)
        else:
            report = render_video(args.input, args.output, recipe.build, options, cluster, overlap=RAY_OVERLAP if args.overlap is None else args.overlap, fade=RAY_FADE if args.fade is None else args.fade,
                                  segment_frames=args.segment_frames, resume=args.resume, overwrite=args.overwrite, fingerprint=repr(recipe), on_progress=advance)
    if not args.quiet:
        for worker in report.workers:
            print(f"{worker.worker}: {worker.frames} frames (+{worker.warmup} warm-up) in {worker.seconds:.1f} s, {worker.fps:.2f} fps", file=sys.stderr)
    if args.verbose:
        print(f"{report.frames} frames in {report.seconds:.1f} s ({report.fps:.2f} fps), {report.tasks} tasks, {report.reused} segments reused", file=sys.stderr)
    for path in report.outputs:
        print(path)
