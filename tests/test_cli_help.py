"""The first minute with the command line: `--help` answers at once, and every command shows examples."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["dream", "style", "evaluate", "classify", "saliency", "fool", "classviz", "invert", "ui", "models", "layers"]


def _wall(argv: list[str]) -> float:
    """Best of three wall times of `python argv...` run from the checkout (the best filters out a busy moment)."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return min(times)


def test_help_costs_under_a_second_more_than_python_itself():
    """Help must not import torch, timm or gradio: measured against `python -c pass` in the same run."""
    python = _wall(["-c", "pass"])
    for argv in (["--help"], ["dream", "--help"]):
        extra = _wall(["-m", "streamdream.apps.cli", *argv]) - python
        assert extra < 1.5, f"streamdream {' '.join(argv)} took {extra:.2f} s more than Python's start-up"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_ends_with_examples(command, capsys):
    from streamdream.apps.cli import main

    assert main([command, "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "examples:" in help_text or "example:" in help_text
    assert f"streamdream {command}" in help_text.split("example")[-1]


@pytest.mark.parametrize("torch_first", [False, True])
def test_the_command_line_loads_torch_without_collecting_and_leaves_the_collector_on(torch_first):
    """A command imports torch with the garbage collector paused and freezes what it made (0.4 s of
    start-up on the 2-core Xeon); the collector is on again after, and in a process that had torch
    already (a script, the tests) nothing is frozen."""
    script = (
        ("import torch; " if torch_first else "")
        + "import gc, sys; from streamdream.apps.cli import _load_torch; _load_torch(); "
        + "print(gc.isenabled(), gc.get_freeze_count(), 'torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, capture_output=True, text=True)
    enabled, frozen, loaded = done.stdout.split()
    assert enabled == "True" and loaded == "True"
    assert int(frozen) == 0 if torch_first else int(frozen) > 50_000
