"""`streamdream ui`: serve the Gradio web app (Live webcam, Video, Still)."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile

from streamdream.errors import StreamdreamError
from streamdream.settings import (
    MAX_PIXELS,
    UI_MAX_PIXELS,
    UI_MAX_UPLOAD_MB,
    UI_MAX_VIDEO_SECONDS,
    Range,
)

from ..options import number, ray_address

EXAMPLES = """examples:
  streamdream ui                                  # http://127.0.0.1:7860 on this machine
  streamdream ui --port 8080
  streamdream ui --share                          # also a public gradio.live link
  streamdream ui --host 0.0.0.0 --max-live 8      # a room: 8 live seats, the others queue
  streamdream ui --host 0.0.0.0 --auth ann:s3cret # reachable from the network, behind a login
  streamdream ui --host 0.0.0.0 --max-upload-mb 50 --max-video-seconds 20   # tighter limits for a room
  streamdream ui --host 0.0.0.0 --ray auto        # Live served by one engine replica per GPU of this Ray cluster
  streamdream ui --ray --replicas 2 --max-live 4  # a local Ray, 2 replicas of 4 seats each

Live webcam, Video and Still tabs. Live streams, renders and stills share one live engine: the
frames of all live visitors are dreamed together as one batch, the newest camera frame wins and a
render takes turns with live frames. At start-up the app measures how many live visitors this
machine serves at a moving frame rate (a few seconds); visitors past that number see their place
in the queue and start when a seat frees.

With --ray, the Live tab is served by live engine replicas on a Ray cluster (one per GPU, or
--replicas), each with the seats it measured (or --max-live each); the queue stays one for all.
The Still and Video tabs' dreams and paintings go to the replica with the most free seats (the
picture or video travels to it and the result back; the image tools stay in the app's process).
Every node needs streamdream installed (pip install 'streamdream[ray]'); a painting uploaded for a
style must be on storage the nodes share.

Limits, each refused with one message: uploads over --max-upload-mb; pictures over
--max-megapixels, measured from their header before anything is decoded; videos over
--max-video-seconds, before their render is queued. A visitor renders one video at a time, and a
page that sends live frames faster than a browser does has the excess dropped unprocessed.
"""


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def login(text: str) -> tuple[str, str]:
    """--auth's USER:PASS (the password may hold colons; neither part may be empty)."""
    user, _, password = text.partition(":")
    if not (user and password):
        raise argparse.ArgumentTypeError("expected USER:PASS, both not empty")
    return user, password


def exposure_warning(host: str, share: bool, auth: tuple[str, str] | None) -> str | None:
    """The one line to print when the app is reachable from other machines, or None on loopback.

    Whoever reaches the app can use this machine's CPU or GPU and upload files to it; say so once,
    and how to put it behind a login, at start-up rather than after the first stranger arrives.
    """
    if host in LOOPBACK and not share:
        return None
    where = "through a public gradio.live link" if share else f"on {host} from other machines"
    return f"streamdream: warning: the web app is reachable {where}" + (", behind --auth's login" if auth else "; anyone who reaches it can use it (--auth USER:PASS asks for a login)")


def run_ui(args: argparse.Namespace) -> None:
    if not 0 < args.port < 65536:
        raise StreamdreamError(f"port must be between 1 and 65535, got {args.port}")
    warning = exposure_warning(args.host, args.share, args.auth)
    if warning:
        print(warning, file=sys.stderr)
    # One private folder for the app's examples and outputs and Gradio's uploads and file cache, so
    # nothing is served from elsewhere; set before gradio is imported (it reads the variable then).
    workdir = tempfile.mkdtemp(prefix="streamdream-ui-")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(workdir, "gradio"))
    try:
        from ..ui import build_app, launch
    except ImportError as exc:  # gradio is the `ui` extra
        raise StreamdreamError(f"the web UI needs gradio: pip install 'streamdream[ui]' ({exc})") from None
    from streamdream.runtime import configure

    configure("auto")  # the app's models pick the same device; this sets up torch for it once
    replicas = live_replicas(args)
    try:
        demo = build_app(workdir, max_live=args.max_live, max_pixels=round(args.max_megapixels * 1_000_000), max_video_seconds=args.max_video_seconds,
                         replicas=replicas)
        launch(args.host, args.port, args.share, demo=demo, auth=args.auth, max_upload_mb=args.max_upload_mb)
    finally:
        if replicas is not None:
            replicas.close()


def live_replicas(args: argparse.Namespace):
    """--ray's live engine replicas, ready to serve (None without --ray); one line when they cannot start."""
    if args.ray_cluster is None:
        if args.replicas is not None:
            raise StreamdreamError("--replicas applies to --ray only")
        return None
    from streamdream.distributed.live_replicas import start_replicas

    return start_replicas(args.ray_cluster, args.replicas, capacity=args.max_live)


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("ui", help="serve the web UI (Gradio): live webcam, video and still tabs", epilog=EXAMPLES,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default %(default)s)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    parser.add_argument("--auth", type=login, metavar="USER:PASS", help="ask every visitor for this login (Gradio's); say it whenever the app is reachable from other machines")
    parser.add_argument("--max-live", type=number(int, Range(low=1)), metavar="N",
                        help="live seats: visitors dreamed at once, the others queue (default: measured at start-up); with --ray, each replica's")
    # dest: not `ray`, which the CLI takes for the renders' --ray (`options.check_ray_options`)
    parser.add_argument("--ray", dest="ray_cluster", nargs="?", const="local", type=ray_address, metavar="ADDRESS",
                        help="serve the Live tab from live engine replicas on Ray: a local Ray without ADDRESS; auto or HOST:PORT joins a running cluster (needs streamdream[ray] on every node)")
    parser.add_argument("--replicas", type=number(int, Range(1, 100_000)), metavar="N",
                        help="with --ray: live engine replicas (default: one per GPU, or one per machine without GPUs)")
    parser.add_argument("--max-upload-mb", type=number(int, Range(low=1)), default=UI_MAX_UPLOAD_MB, metavar="N",
                        help="refuse uploads over N MiB (default %(default)s)")
    parser.add_argument("--max-megapixels", type=number(float, Range(above=0, high=MAX_PIXELS / 1_000_000)), default=UI_MAX_PIXELS / 1_000_000,
                        metavar="N", help="refuse pictures over N megapixels, read from their header before decoding (default %(default)g)")
    parser.add_argument("--max-video-seconds", type=number(float, Range(above=0)), default=UI_MAX_VIDEO_SECONDS, metavar="S",
                        help="refuse videos longer than S seconds (default %(default)g)")
    parser.set_defaults(run=run_ui)
