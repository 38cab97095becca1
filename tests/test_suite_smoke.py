"""benchmarks/suite.py: the smoke run covers every step, and a spent budget still leaves both files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import suite

ROOT = Path(__file__).resolve().parents[1]
STEP_KEYS = [step.key for step in suite.STEPS]
TABLE_HEADER = "| step | measurement | value | target | met |"


def test_smoke_run_measures_every_step(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/suite.py", "--smoke", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "suite.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == report  # the last stdout line is suite.json
    assert report["complete"] and report["meta"]["smoke"]
    steps = report["steps"]
    assert list(steps) == STEP_KEYS and len(steps) == 7
    for key, entry in steps.items():
        assert entry["status"] == "ok" and entry["figures"] or entry["status"].startswith("skipped: "), (key, entry)

    for resolution in suite.SMOKE.live:
        assert steps["2_live_dream"]["figures"][resolution]["fps"] > 0
    iteration = steps["3_optimizer_step"]["figures"]
    assert iteration["eager"]["ms"] > 0 and iteration["captured"]["ms"] > 0
    assert iteration["compiled"].get("ms", 0) > 0 or iteration["compiled"]["status"].startswith("unsupported: ")
    assert iteration["recommended_default"] in ("eager", "captured", "compiled")
    sessions = steps["4_batched_sessions"]["figures"][str(suite.SMOKE.sessions[0])]
    assert sessions["sessions"] == suite.SMOKE.sessions[0] and min(sessions["per_session_fps"]) > 0 and sessions["mean_batch"] > 1
    assert steps["5_offline"]["figures"]["offline"]["fps"] > 0 and steps["5_offline"]["figures"]["still"]["seconds"] > 0
    style = steps["6_live_style"]["figures"]
    assert style["net"]["fps"] > 0 and min(style[f"net_{suite.SMOKE.sessions[-1]}"]["per_session_fps"]) > 0
    classic = steps["7_classic"]["figures"]
    assert classic["fps"] > 0 and classic["speedup_vs_classic"] > 0

    markdown = (tmp_path / "suite.md").read_text()
    assert TABLE_HEADER in markdown and "- device: " in markdown and "n/a (smoke)" in markdown
    assert "frames per optimizer step" in markdown


def test_tiny_budget_skips_the_steps_and_still_writes_both_files(tmp_path, capsys):
    started = time.perf_counter()
    assert suite.main(["--smoke", "--budget-s", "1", "--out", str(tmp_path)]) == 0
    assert time.perf_counter() - started < 5
    report = json.loads((tmp_path / "suite.json").read_text())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == report
    assert report["complete"] and list(report["steps"]) == STEP_KEYS
    for entry in report["steps"].values():
        assert entry["status"] == "skipped: budget"
    markdown = (tmp_path / "suite.md").read_text()
    assert TABLE_HEADER in markdown and markdown.count("skipped: budget") == 7


def test_each_step_is_saved_before_the_next_starts_and_a_failing_step_does_not_stop_the_suite(tmp_path):
    on_disk_during_second: dict = {}

    def first(ctx: suite.Context) -> suite.Result:
        time.sleep(0.1)
        return suite.Result({"answer": 42}, [suite.Row(1, "first figure", 42.0, "fps")])

    def second(ctx: suite.Context) -> suite.Result:
        on_disk_during_second.update(json.loads((tmp_path / "suite.json").read_text()))  # what a kill now would leave
        raise RuntimeError("broken step")

    def never(ctx: suite.Context) -> suite.Result:
        raise AssertionError("a step without enough budget must not start")

    steps = [
        suite.Step("1_first", "first", share_s=1, min_s=0.05, run=first),
        suite.Step("2_second", "second", share_s=1, min_s=0.0, run=second),
        suite.Step("3_third", "third", share_s=1, min_s=60, run=never),
    ]
    args = suite.parse_args(["--smoke", "--budget-s", "3", "--out", str(tmp_path)])
    report = suite.run_suite(args, "python benchmarks/suite.py --test", steps)

    assert on_disk_during_second["steps"]["1_first"]["status"] == "ok"
    assert on_disk_during_second["steps"]["1_first"]["figures"] == {"answer": 42}
    assert on_disk_during_second["steps"]["2_second"]["status"] == "pending"
    assert not on_disk_during_second["complete"]
    statuses = {key: entry["status"] for key, entry in report["steps"].items()}
    assert statuses == {"1_first": "ok", "2_second": "error: RuntimeError: broken step", "3_third": "skipped: budget"}
    assert json.loads((tmp_path / "suite.json").read_text()) == json.loads(json.dumps(report, default=str))
    markdown = (tmp_path / "suite.md").read_text()
    assert "| 1 | first figure | 42 fps |  | " in markdown and "--test" in markdown
    assert not list(tmp_path.glob(".suite.*"))  # no temporary file left behind


@pytest.mark.parametrize(
    "target, value, verdict",
    [
        (suite.Target(">=", 60, "fps"), 72.0, "yes"),
        (suite.Target(">=", 60, "fps"), 45.0, "missed by 15 fps (25%)"),
        (suite.Target("<=", 1.0, "ms"), 1.5, "missed by 0.5 ms (50%)"),
        (suite.Target("<=", 2048, "MB"), 900.0, "yes"),
    ],
)
def test_targets_say_by_how_much_they_are_missed(target, value, verdict):
    assert target.verdict(value) == verdict
