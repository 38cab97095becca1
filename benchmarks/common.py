"""What the benchmark scripts share: a command line made from their `run` function, one JSON line out."""

from __future__ import annotations

import argparse
import inspect
import json
from collections.abc import Callable


def run_defaults(function: Callable) -> dict:
    """The keyword defaults of `function`: a script's command-line defaults, written once (in its `run` signature)."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not inspect.Parameter.empty}


def main(run: Callable[..., dict], doc: str, add_arguments: Callable[[argparse.ArgumentParser], None], preset_help: str) -> None:
    """Parse `--device --resolution --preset --eager` and the script's own options; print `run(...)` as JSON.

    The device goes through `streamdream.runtime.configure` first, as every front end's does.
    """
    from streamdream.runtime import configure

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", help="cpu, cuda, ... (default %(default)s)")
    parser.add_argument("--resolution", help="WIDTHxHEIGHT (default %(default)s)")
    parser.add_argument("--preset", dest="preset_name", help=preset_help + " (default %(default)s)")
    parser.add_argument("--eager", action="store_true", help="run every step eagerly (no captured CUDA graphs)")
    add_arguments(parser)
    parser.set_defaults(**run_defaults(run))
    args = parser.parse_args()
    print(json.dumps(run(**{**vars(args), "device": str(configure(args.device))})))
