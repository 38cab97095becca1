"""`streamdream live`: dream a camera, a network stream or a file in real time, to a file or a network stream."""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time

from streamdream.settings import BUILTIN_STYLE, LIVE_MAX_SIDE, LIVE_PRESET, LIVE_SIDE_RANGE, PRESETS, STRENGTH, STRENGTH_RANGE, live_preset, preset

from ..options import SEED, add_model_options, number

EXAMPLES = f"""examples:
  streamdream live /dev/video0 -o udp://127.0.0.1:5000          # then: vlc udp://@127.0.0.1:5000
  streamdream live /dev/video0 -o rtmp://127.0.0.1/live/dream   # an RTMP server that OBS reads
  streamdream live samples/pan.mp4 --realtime -o live.mp4       # a file played at its own pace
  streamdream live udp://127.0.0.1:6000 -o dream.mkv --objective blocks.3:12 --strength 2
  streamdream live /dev/video0 -s starry_night.jpg -o udp://127.0.0.1:5000   # painted, not dreamed
  streamdream live samples/pan.mp4 --realtime -s {BUILTIN_STYLE}19 -o painted.mp4

The newest frame always wins: when dreaming is slower than the source, frames are dropped (counted
in the once-a-second status line), so the output stays live. Ctrl-C stops and finishes the file.
"""


def run_live(args: argparse.Namespace) -> None:
    from streamdream.dream import Dreamer
    from streamdream.errors import StreamdreamError
    from streamdream.io.images import resize_max_side
    from streamdream.io.live import LiveSink, is_url, live_frames
    from streamdream.pipeline import LiveStream
    from streamdream.style_net import NetStylizer

    if args.style and args.objective:
        raise StreamdreamError("--objective is for dreams; with --style the picture is painted")
    inputs = () if is_url(args.input) or args.input.startswith("/dev/") else (args.input,)
    sink = LiveSink(args.output, overwrite=args.overwrite, inputs=inputs) if args.output else None  # before the model loads
    if args.style:  # the style network: the only style method fast enough for a live source
        mode = NetStylizer(args.style, strength=args.strength, device=args.device)
    else:
        mode = Dreamer(args.model, args.objective, weights=args.weights, strength=args.strength, device=args.device)
    name = args.temporal_preset or live_preset(mode.device)
    max_side = args.max_side or LIVE_MAX_SIDE.on(mode.device)
    results: queue.Queue = queue.Queue()
    stop = threading.Event()
    failure: list[BaseException] = []

    with (sink or _NoSink()) as out:
        # Leaving the stream processes the frame still waiting, closes it and raises a frame's error.
        with LiveStream(mode, preset(name), seed=args.seed, on_result=results.put) as live:

            def read() -> None:
                try:
                    for rgb in live_frames(args.input, realtime=args.realtime, stop=stop):
                        live.submit(resize_max_side(rgb, max_side) if max(rgb.shape[:2]) > max_side else rgb)
                except BaseException as error:  # noqa: BLE001 - reported on the main thread
                    if not stop.is_set():  # once stopping, a frame refused by the closed stream is expected
                        failure.append(error)
                finally:
                    results.put(None)

            threading.Thread(target=read, name="streamdream-live-source", daemon=True).start()
            status = _Status(live, args.quiet)
            try:
                while (result := results.get()) is not None:
                    out.write(result.image)
                    status.tick(result.latency_ms)
            except KeyboardInterrupt:
                print(file=sys.stderr)
            finally:
                stop.set()
        while not results.empty():  # frames that finished after the source ended or Ctrl-C
            if (result := results.get_nowait()) is not None:
                out.write(result.image)
        if failure:
            raise failure[0]
        status.final(out.frames)
    if args.output:
        print(args.output)


class _NoSink:
    """Preview-only runs (no -o): results are counted, not written."""

    frames = 0

    def __enter__(self) -> _NoSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def write(self, image) -> None:
        self.frames += 1


class _Status:
    """One status line a second on stderr: results per second, latency, frames dropped."""

    def __init__(self, session, quiet: bool) -> None:
        self.session, self.quiet = session, quiet
        self.latencies: list[float] = []
        self.count, self.since = 0, time.perf_counter()

    def tick(self, latency_ms: float) -> None:
        self.latencies.append(latency_ms)
        self.count += 1
        now = time.perf_counter()
        if now - self.since >= 1.0:
            if not self.quiet:
                p50 = sorted(self.latencies)[len(self.latencies) // 2]
                print(f"\rlive: {self.count / (now - self.since):5.1f} fps  latency {p50:5.0f} ms  dropped {self.session.dropped}", end="", file=sys.stderr, flush=True)
            self.latencies, self.count, self.since = [], 0, now

    def final(self, frames: int) -> None:
        if not self.quiet:
            print(f"\rlive: {frames} frames written, {self.session.dropped} dropped", file=sys.stderr)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "live",
        help="dream a camera, network stream or file live, to a file or a network stream",
        description="Dream a live source in real time: a camera (V4L2 device), a network stream, or a file played at its own pace.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT", help="camera device (/dev/video0), stream URL (udp://, srt://, rtmp://, http://) or video file")
    parser.add_argument("-o", "--output", help="video file (.mp4, .mkv, ...) or stream URL (udp:// or srt:// as MPEG-TS, rtmp:// as FLV); without it the run only shows its status")
    parser.add_argument("--realtime", action="store_true", help="play a file INPUT at its own frame rate, as a camera would (default: as fast as it decodes)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file (never the input)")
    parser.add_argument("--objective", help="what to amplify (default: the model's dream layer); see `streamdream layers`")
    parser.add_argument("-s", "--style", action="append", default=[], metavar="PAINTING", help=f"paint instead of dreaming, with this painting or a built-in style {BUILTIN_STYLE}N (0 to 25), by the style network; repeat to blend")
    parser.add_argument("--strength", type=number(float, STRENGTH_RANGE), default=STRENGTH, help=f"how strongly the picture changes (a dream's step, a painting's style), {STRENGTH_RANGE.span()} (default %(default)s)")
    parser.add_argument("--temporal-preset", choices=list(PRESETS), help=f"per-frame work (default: {LIVE_PRESET.cpu} on a CPU, {LIVE_PRESET.gpu} on a GPU)")
    parser.add_argument("--max-side", type=number(int, LIVE_SIDE_RANGE), help=f"shrink frames so the longer side is at most N pixels (default: {LIVE_MAX_SIDE.cpu} on a CPU, {LIVE_MAX_SIDE.gpu} on a GPU)")
    parser.add_argument("--seed", type=SEED, default=0, help="jitter seed (default %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no status line")
    add_model_options(parser)
    parser.set_defaults(run=run_live, inputs=("style",), outputs=())
