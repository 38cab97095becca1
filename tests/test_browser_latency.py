"""benchmarks/browser_latency.py's smoke run: a few seconds of one visitor in headless Chromium (~30 s).

Only that the figures are there: no timing is asserted (CI's machine is shared). Skipped (with the
reason) where /usr/bin/chromium or Playwright is missing, as tests/test_ui_browser.py is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("STREAMDREAM_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs the Debian chromium package)", allow_module_level=True)
pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytest.importorskip("gradio")

from benchmarks import browser_latency  # noqa: E402

DECODE_FLOOR = 0.5  # of the dreamed pictures shown, the share whose frame number is read back (1.0 measured)


def test_smoke_run_reports_positive_latency_and_frame_rate(tmp_path):
    out = tmp_path / "browser_latency.json"
    report = browser_latency.main(["--smoke", "--out", str(out)])
    assert json.loads(out.read_text()) == report and report["smoke"]
    (run,) = report["runs"]
    print(f"\n{json.dumps(run)}")
    assert run["visitors"] == 1
    assert run["latency_p50_ms"] > 0 and run["latency_p95_ms"] > 0
    assert run["displayed_fps"] > 0
    assert run["decode_rate"] >= DECODE_FLOOR
