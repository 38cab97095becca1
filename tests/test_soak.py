"""benchmarks/soak.py --smoke: every session streams, and after the churn every seat, session and thread is given back.

No figure here depends on the machine's speed: the soak's fps must only be positive, and the churn's
counts are compared with their own start. The soak's and churn's targets (`pass`) are judged by the
full run on a quiet machine, not here.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import soak
from streamdream import runtime

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_streams_every_session_and_the_churn_gives_everything_back(tmp_path):
    out = tmp_path / "soak.json"
    done = subprocess.run([sys.executable, "benchmarks/soak.py", "--smoke", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert json.loads(out.read_text()) == report and report["machine"]["torch"]

    run = report["soak"]
    assert run["errors"] == [] and run["sessions"] == 4
    assert len(run["per_session_fps"]) == 4 and min(run["per_session_fps"]) > 0, run["per_session_fps"]
    assert len(run["samples"]) == round(60 * soak.SMOKE.minutes / soak.SMOKE.every)
    for sample in run["samples"]:
        assert sample["rss_mb"] > 0 and sample["fds"] > 0 and sample["os_threads"] >= sample["threads"] >= 1 + 4  # main and the cameras
        assert sample["reference_step_ms"] > 0
    assert None not in (run["rss_growth_pct"], run["fps_drift_pct"], run["machine_speed_drift_pct"], run["fps_drift_at_machine_speed_pct"])

    churn = report["churn"]
    assert churn["errors"] == [] and churn["visitors"] == soak.SMOKE.churn and churn["results"] >= soak.FRAMES[0] * soak.SMOKE.churn
    start, end = churn["start"], churn["end"]
    assert end["engine_sessions"] == end["room_sessions"] == end["seated"] == end["waiting"] == 0, end
    assert churn["newcomer_seated_at_once"]
    assert (end["threads"], end["os_threads"], end["fds"]) == (start["threads"], start["os_threads"], start["fds"]), (start, end)


@pytest.mark.skipif(runtime._libc("malloc_trim") is None, reason="the C library has no malloc_trim (not glibc)")
def test_release_memory_hands_back_what_was_freed_inside_the_heap():
    blocks = [bytearray(64 * 1024) for _ in range(3200)]  # 200 MB in the heap: under glibc's mmap threshold
    last = blocks.pop()  # kept: the heap cannot simply shrink from its top
    del blocks
    freed = soak.vitals()["rss_mb"]
    runtime.release_memory()
    assert soak.vitals()["rss_mb"] < freed - 100
    del last


_STEPS = """
import resource, sys
import torch
from streamdream import runtime
from streamdream.models import create_model
if sys.argv[1] == "keep":
    runtime.keep_freed_memory()
model = create_model(device="cpu")

def faults():  # page faults of 3 steps after 4 others (the first make the plans), at a live frame's size
    image = torch.rand(1, 3, 240, 320).contiguous(memory_format=model.memory_format)
    def step():
        x = image.detach().requires_grad_(True)
        torch.autograd.grad(model(x, ["blocks.4"])["blocks.4"].mean(), x)
    for _ in range(4):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        step()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

print(runtime.on_own_thread(faults))  # the live engine's case: a thread of its own, with its own arena
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_a_model_step_reuses_the_memory_of_the_last_without_page_faults():
    """`keep_freed_memory` (set by `configure` on the CPU): a step's freed blocks serve the next step,
    where glibc's defaults hand them back and fault every page in again."""
    def faults(how: str) -> int:
        done = subprocess.run([sys.executable, "-c", _STEPS, how], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.split()[-1])

    kept, default = faults("keep"), faults("default")
    # three steps of about 100 MB each: no page new (measured 0 in 11 runs of 12, 675 pages of heap grown once)
    assert kept < 1500, kept
    assert default > 5000, default  # glibc's defaults: thousands of pages a step (measured: 12.7-21k in three)
