"""`streamdream` command line: thin wrappers that parse options and call the library.

Every user-fixable problem surfaces as one line on stderr and exit status 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from streamdream.errors import StreamdreamError  # first: the package sets the OpenMP wait policy before torch loads

import torch  # noqa: E402

from .commands import COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamdream", description="DeepDream and neural style for photos, videos and webcams.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Library warnings (e.g. "render stopped: out.mp4 is partial, with 41 frames") as plain lines.
    logging.basicConfig(format="streamdream: %(message)s", level=logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` finishes a render's partial file like Ctrl-C does
    try:
        args.run(args)
    except StreamdreamError as exc:
        print(f"streamdream: error: {exc}", file=sys.stderr)
        return 2
    except torch.OutOfMemoryError:
        print("streamdream: error: out of memory; lower --tile or --max-side, or use --device cpu", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("streamdream: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
