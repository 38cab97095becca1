"""`streamdream live`: dream a camera, a network stream or a file in real time, to files and network streams."""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time

from streamdream.settings import BUILTIN_STYLE, LIVE_MAX_SIDE, LIVE_PRESET, LIVE_SIDE_RANGE, LIVE_TIMEOUT_RANGE, LIVE_TIMEOUT_S, PRESETS, STRENGTH, STRENGTH_RANGE, live_preset, preset

from ..options import SEED, add_model_options, number

EXAMPLES = f"""examples:
  streamdream live /dev/video0 -o udp://127.0.0.1:5000          # then: vlc udp://@127.0.0.1:5000
  streamdream live /dev/video0 -o rtmp://127.0.0.1/live/dream   # an RTMP server that OBS reads
  streamdream live /dev/video0 -o live.mp4 -o udp://127.0.0.1:5000   # recorded and watched at once
  streamdream live samples/pan.mp4 --realtime -o live.mp4       # a file played at its own pace
  streamdream live udp://127.0.0.1:6000 -o dream.mkv --objective blocks.3:12 --strength 2
  streamdream live rtmp://127.0.0.1/live/cam --timeout 60 -o dream.mp4   # wait up to a minute for it
  streamdream live /dev/video0 -s starry_night.jpg -o udp://127.0.0.1:5000   # painted, not dreamed
  streamdream live samples/pan.mp4 --realtime -s {BUILTIN_STYLE}19 -o painted.mp4
  streamdream live /dev/video0 --virtual-camera              # pick "streamdream" as the camera in OBS or a call
  streamdream live /dev/video0 --virtual-camera /dev/video10 -o call.mp4   # that device, and recorded

The newest frame always wins: when dreaming is slower than the source, frames are dropped (counted
in the once-a-second status line), so the output stays live. Ctrl-C stops and finishes the files.

Faults: the source and every network output are opened before the model loads; one that is
missing, refuses, or sends nothing for --timeout seconds ends the run with one line (exit 2). A
network output that drops mid-stream is reopened with backoff while the files beside it keep every
frame (--no-reconnect ends the run instead: exit 1). A source that stalls is reported and waited
for; one that changes resolution is scaled to its first size; one silent past --timeout is lost
(exit 1); either way the files are finished and play. A source that ends ends the run (exit 0).
"""


def run_live(args: argparse.Namespace) -> None:
    from streamdream.errors import StreamdreamError
    from streamdream.io.live import LiveSource, Outputs, is_url, make_sinks
    from streamdream.io.virtual_camera import VirtualCamera

    if args.style and args.objective:
        raise StreamdreamError("--objective is for dreams; with --style the picture is painted")
    status = _Status(args.quiet)
    results: queue.Queue = queue.Queue()
    failure: list[BaseException] = []

    def lost(error: BaseException) -> None:  # a network output dropped and is not reopened: the run ends
        failure.append(error)
        results.put(None)

    inputs = () if is_url(args.input) or args.input.startswith("/dev/") else (args.input,)
    sinks = make_sinks(args.output, overwrite=args.overwrite, inputs=inputs, timeout=args.timeout, reconnect=args.reconnect, notify=status.note, on_lost=lost)
    max_side = args.max_side or LIVE_MAX_SIDE.on(args.device)
    # Source and outputs open before the model loads: one that refuses costs a line, not a model load.
    with LiveSource(args.input, max_side=max_side, timeout=args.timeout, realtime=args.realtime) as source:
        if args.virtual_camera is not None:  # at the source's rate, which a video call expects of a camera
            sinks.append(VirtualCamera(args.virtual_camera or None, fps=source.fps))
        with Outputs(sinks) as out:
            out.open(*source.size)
            _run(args, source, out, status, results, failure)
    for target in args.output:
        print(target)


def _run(args: argparse.Namespace, source, out, status: _Status, results: queue.Queue, failure: list[BaseException]) -> None:
    """Load the model and dream the opened `source` into the opened `out` until the source ends, Ctrl-C or a loss."""
    from streamdream.dream import Dreamer
    from streamdream.pipeline import LiveStream
    from streamdream.style_net import NetStylizer

    if args.style:  # the style network: the only style method fast enough for a live source
        mode = NetStylizer(args.style, strength=args.strength, device=args.device)
    else:
        mode = Dreamer(args.model, args.objective, weights=args.weights, strength=args.strength, device=args.device)
    stop = threading.Event()
    # Leaving the stream processes the frame still waiting, closes it and raises a frame's error.
    with LiveStream(mode, preset(args.temporal_preset or live_preset(mode.device)), seed=args.seed, on_result=results.put) as live:

        def read() -> None:
            try:
                for rgb in source.frames(stop, status.note):
                    live.submit(rgb)
            except BaseException as error:  # noqa: BLE001 - reported on the main thread
                if not stop.is_set():  # once stopping, a frame refused by the closed stream is expected
                    failure.append(error)
            finally:
                results.put(None)

        threading.Thread(target=read, name="streamdream-live-source", daemon=True).start()
        notice = None
        try:
            while (result := results.get()) is not None:
                out.write(result.image)
                status.tick(result.latency_ms, live.dropped)
                if live.notice != notice:  # e.g. out of memory: a frame lost, smaller from now on
                    notice = live.notice
                    status.note(notice)
        except KeyboardInterrupt:
            status.note("stopped")
        finally:
            stop.set()
    while not results.empty():  # frames that finished after the source ended, an output was lost or Ctrl-C
        if (result := results.get_nowait()) is not None:
            out.write(result.image)
    if failure:
        raise failure[0]  # the files keep what was done, and say so
    status.final(out, live.dropped)


class _Status:
    """One status line a second on stderr (results per second, latency, frames dropped), and a line for each event.

    Events (a stall, a new resolution, an output lost or back) come from the source's and the
    outputs' threads; they are printed even with --quiet, which silences only the status line.
    """

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.latencies: list[float] = []
        self.count, self.since = 0, time.perf_counter()
        self._shown = 0  # length of the status line on screen, which an event line overwrites
        self._lock = threading.Lock()

    def tick(self, latency_ms: float, dropped: int) -> None:
        self.latencies.append(latency_ms)
        self.count += 1
        now = time.perf_counter()
        if now - self.since >= 1.0:
            if not self.quiet:
                p50 = sorted(self.latencies)[len(self.latencies) // 2]
                self._show(f"live: {self.count / (now - self.since):5.1f} fps  latency {p50:5.0f} ms  dropped {dropped}")
            self.latencies, self.count, self.since = [], 0, now

    def note(self, event: str) -> None:
        with self._lock:
            print(f"\rlive: {event}".ljust(self._shown + 1), file=sys.stderr, flush=True)
            self._shown = 0

    def final(self, out, dropped: int) -> None:
        if not self.quiet:
            written = f"; {out.summary()}" if out.sinks else ""
            self.note(f"{out.results} results, {dropped} frames dropped{written}")

    def _show(self, line: str) -> None:
        with self._lock:
            print(f"\r{line}".ljust(self._shown + 1), end="", file=sys.stderr, flush=True)
            self._shown = len(line)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "live",
        help="dream a camera, network stream or file live, to files and network streams",
        description="Dream a live source in real time: a camera (V4L2 device), a network stream, or a file played at its own pace.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="INPUT", help="camera device (/dev/video0), stream URL (udp://, srt://, rtmp://, http://) or video file")
    parser.add_argument("-o", "--output", action="append", default=[], help="video file (.mp4, .mkv, ...) or stream URL (udp://, tcp://, srt:// as MPEG-TS, rtmp:// as FLV); repeat for several at once; without it the run only shows its status")
    parser.add_argument("--realtime", action="store_true", help="play a file INPUT at its own frame rate, as a camera would (default: as fast as it decodes)")
    parser.add_argument("--virtual-camera", nargs="?", const="", metavar="DEVICE",
                        help="also be a camera that OBS or a video call can pick (pyvirtualcam: v4l2loopback on Linux, OBS's Virtual Camera on Windows and macOS), at the source's frame rate; DEVICE picks one (e.g. /dev/video10)")
    parser.add_argument("--timeout", type=number(float, LIVE_TIMEOUT_RANGE), default=LIVE_TIMEOUT_S, metavar="SECONDS", help="give up on a source that sends nothing, or a network output that does not answer, for this long (default %(default)g)")
    parser.add_argument("--reconnect", action=argparse.BooleanOptionalAction, default=True, help="reopen a network output that drops, with backoff, while the other outputs go on (default); --no-reconnect ends the run instead")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file (never the input)")
    parser.add_argument("--objective", help="what to amplify (default: the model's dream layer); see `streamdream layers`")
    parser.add_argument("-s", "--style", action="append", default=[], metavar="PAINTING", help=f"paint instead of dreaming, with this painting or a built-in style {BUILTIN_STYLE}N (0 to 25), by the style network; repeat to blend")
    parser.add_argument("--strength", type=number(float, STRENGTH_RANGE), default=STRENGTH, help=f"how strongly the picture changes (a dream's step, a painting's style), {STRENGTH_RANGE.span()} (default %(default)s)")
    parser.add_argument("--temporal-preset", choices=list(PRESETS), help=f"per-frame work (default: {LIVE_PRESET.cpu} on a CPU, {LIVE_PRESET.gpu} on a GPU)")
    parser.add_argument("--max-side", type=number(int, LIVE_SIDE_RANGE), help=f"shrink frames so the longer side is at most N pixels (default: {LIVE_MAX_SIDE.cpu} on a CPU, {LIVE_MAX_SIDE.gpu} on a GPU)")
    parser.add_argument("--seed", type=SEED, default=0, help="jitter seed (default %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no status line (events, such as an output lost, are still told)")
    add_model_options(parser)
    parser.set_defaults(run=run_live, inputs=("style",), outputs=())
