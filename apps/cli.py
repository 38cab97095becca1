"""`streamdream` command line: thin wrappers that parse options and call the library.

Every problem a user can fix surfaces as one line on stderr: exit status 2 for bad input or options
(checked before any model loads), 1 when the machine failed the run (disk full), 130 for Ctrl-C.
Only the standard library is imported at module level, so `--help` is quick and a Ctrl-C while
torch is still loading ends as cleanly as one during a render.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (the usage block is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"streamdream: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .commands import COMMANDS

    parser = Parser(prog="streamdream", description="DeepDream and neural style for photos, videos and webcams.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _files(args: argparse.Namespace, names: Sequence[str]) -> Iterator[str]:
    """The file names held by the options `names` (a single value, or a list for repeatable options)."""
    for name in names:
        value = getattr(args, name, None)
        for item in value if isinstance(value, list) else [value]:
            if item is not None:
                yield str(item)


def _load_torch() -> None:
    """Import torch with Python's cyclic garbage collector paused, then freeze what the import made.

    Why: importing torch makes about 270,000 container objects, nearly all of which live as long as
    the process. The collector walked all of them in its automatic collections along the way and again
    in the final one at exit: about 0.4 s of a one-shot command's 2 s start-up on the 2-core Xeon.
    `gc.freeze` moves them out of its sight for good, with the few thousand reference cycles the import
    leaves behind (collecting those first would cost 0.1 s; the process's peak memory is the same).
    Only when this call is what imports torch: in a process that has it already (the tests'), nothing
    else is frozen.
    """
    if "torch" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _one_line(exc: BaseException) -> str:
    """The message with its notes (e.g. where a partial video was kept) on the same line."""
    return "; ".join(part for part in [str(exc), *getattr(exc, "__notes__", [])] if part)  # a bare Ctrl-C has no message


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as exc:
        print(f"streamdream: interrupted{'; ' + _one_line(exc) if getattr(exc, '__notes__', None) else ''}", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    from streamdream.errors import StreamdreamError, is_out_of_memory  # first: the package sets OpenMP's spin count before torch loads
    from streamdream.io.paths import claim_outputs

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a bad option (one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    # Library notices (an animated input, dropped transparency) as plain lines, on the current stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("streamdream: %(message)s"))
    logger = logging.getLogger("streamdream")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` finishes a render's partial file like Ctrl-C does
    try:
        if hasattr(args, "ray"):  # dream, style: --ray and several INPUTs (streamdream.distributed)
            from .options import check_ray_options

            check_ray_options(args)
        inputs = [name for name in _files(args, getattr(args, "inputs", ())) if Path(name).exists()]
        with claim_outputs(_files(args, getattr(args, "outputs", ())), inputs, overwrite=getattr(args, "overwrite", False)):
            if hasattr(args, "device") and getattr(args, "ray", None) is None:  # (--ray: each worker sets up its own) the one place the command line sets up torch (threads, cuDNN autotuning)
                _load_torch()
                from streamdream.runtime import configure

                args.device = configure(args.device)
            args.run(args)
    except StreamdreamError as exc:
        print(f"streamdream: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        print("streamdream: error: out of memory; lower --max-side (or --size, --tile), or use --device cpu", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
