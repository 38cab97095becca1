"""What the benchmark scripts share: a command line made from their `run` function, one JSON line out."""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
from collections.abc import Callable
from pathlib import Path


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


def machine(**extra: object) -> dict:
    """Where a figure was measured: the processor, PyTorch, its threads and the date (and `extra`)."""
    import torch

    from streamdream.models.layout import processor

    return {"processor": processor(), "torch": torch.__version__, "threads": torch.get_num_threads(), **extra,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def print_report(report: dict, out: str | Path | None = None) -> None:
    """The report as one JSON line on stdout; with `out`, also written there, indented (e.g. into docs/)."""
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
