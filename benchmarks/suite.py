"""Every GPU figure in one command, sized for the first minutes a GPU is lent (issue #17).

Runs, most important first, within a time budget:

  1. the CUDA tests (pytest, in a subprocess)
  2. live dream, one session, at 640x480 and 1280x720 (`benchmarks/live.py`)
  3. per-iteration time of the dream step at 640x480: eager, captured CUDA graph, torch.compile
  4. live sessions 4 and 16 (each against one alone) through the batched scheduler
  5. offline 1920x1080 file render (`benchmarks/offline.py`) and a 1024 px still dream
  6. live style by the style network at 640x480, one session and 16 (`benchmarks/live.py --style`)
  7. the classic PyTorch DeepDream recipe (VGG16, random weights) at the live size, and the speedup

Each step gets a share of the budget that is left (`Step.share_s`, in proportion); a step whose
share is below what it needs to start is skipped ("skipped: budget"), and steps with a loop stop
at their deadline with what they have. After every step DIR/suite.json and DIR/suite.md are
rewritten atomically, so a run killed from outside still leaves the figures so far. Progress goes
to stderr; the last stdout line is suite.json's object. Exit 0 when the suite ran, missed targets
included; 1 when a step raised (the others still ran); 2 when the device asked for is missing.

    python benchmarks/suite.py --device cuda --out "$OUT"        # full: 480 s (plus ~10 s of imports) on an H200
    python benchmarks/suite.py --smoke                            # toy sizes on the CPU, under a minute, into out/suite
    python benchmarks/suite.py --smoke --device cuda --out "$OUT" # the same on a GPU: a first check in seconds
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import itertools
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks import live, offline  # noqa: E402
from streamdream.samples.make import camera_frames  # noqa: E402
from streamdream.convert import to_tensor, upload  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.errors import StreamdreamError  # noqa: E402
from streamdream.optimize import gradient_step, jitter_shifts, make_generator, octave_sizes, resize  # noqa: E402
from streamdream.runtime import configure  # noqa: E402

PAINTING = ROOT.parent / "shared" / "styles" / "starry_night.jpg"
SEED = 0
TOLERANCE = 2e-3  # mean |output - eager output| a faster variant may differ by (bf16, as tests/test_optimize.py allows)
COMPARE_STEPS = 4  # optimizer steps after which a variant's output is compared with eager's


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """The work of every step. FULL is sized so the whole suite fits 480 s on an H200 (~150-300 frames
    per live figure); SMOKE runs the same code paths at toy sizes, in seconds on a laptop CPU."""

    live: tuple[str, str] = ("640x480", "1280x720")
    live_frames: tuple[int, int] = (300, 200)
    source_fps: float = 120.0  # a camera faster than the 60 fps target, so the figure is what the stream sustains
    iteration: str = "640x480"
    iteration_reps: int = 50
    offline: str = "1920x1080"
    offline_seconds: float = 3.0
    still_side: int = 1024
    style: str = "640x480"
    style_frames: int = 150
    sessions: tuple[int, ...] = (4, 16)  # live sessions sharing the model (each run also measures one alone)
    sessions_resolution: str = "640x480"
    sessions_frames: int = 150
    classic_octaves: int = 4
    classic_iterations: int = 10
    classic_frames: int = 3


FULL = Sizes()
SMOKE = Sizes(
    live=("64x48", "96x72"),
    live_frames=(8, 6),
    iteration="64x48",
    iteration_reps=6,
    offline="64x48",
    offline_seconds=0.5,
    still_side=64,
    style="64x48",
    style_frames=4,
    sessions=(3,),
    sessions_resolution="64x48",
    sessions_frames=4,
    classic_octaves=2,
    classic_iterations=3,
    classic_frames=1,
)


@dataclass(frozen=True)
class Target:
    """A GPU target: `value op goal`, e.g. fps >= 60."""

    op: str  # ">=" or "<="
    goal: float
    unit: str

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.goal:g} {self.unit}"

    def verdict(self, value: float) -> str:
        """"yes", or how far the value misses (absolute and relative to the goal)."""
        miss = self.goal - value if self.op == ">=" else value - self.goal
        if miss <= 0:
            return "yes"
        return f"missed by {miss:.3g} {self.unit} ({100 * miss / self.goal:.0f}%)"


LIVE_TARGETS = (  # per live resolution, in Sizes.live order
    {"fps": Target(">=", 60, "fps"), "latency_p95_ms": Target("<=", 50, "ms"), "gpu_mem_mb": Target("<=", 2048, "MB")},
    {"fps": Target(">=", 30, "fps")},
)
ITERATION_TARGET = Target("<=", 1.0, "ms")
OFFLINE_TARGET = Target(">=", 20, "fps")
STYLE_TARGET = Target(">=", 60, "fps")  # issue #25: the style network at 640x480
STYLE_SESSION_TARGET = Target(">=", 24, "fps")  # each of 16 style sessions, as the dream's
SESSION_TARGETS = {  # issue #14, at 640x480 with 16 sessions
    "min_session_fps": Target(">=", 24, "fps"),
    "latency_p95_ms": Target("<=", 80, "ms"),
    "scaling": Target(">=", 8, "x"),
}
SPEEDUP_TARGET = Target(">=", 300, "x")


# --- results --------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of suite.md: a measured figure, its target and whether it is met."""

    step: int
    measurement: str
    value: object  # a number, a short text, or None when there is no figure
    unit: str = ""
    target: str = ""
    met: str = ""


@dataclass
class Result:
    """What a step returns: its figures (for suite.json) and its rows (for suite.md)."""

    figures: dict = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)


@dataclass
class Context:
    """What a step may read: the options, the sizes, its deadline and the results of earlier steps."""

    device: torch.device
    smoke: bool
    sizes: Sizes
    compile_mode: str
    deadline: float = 0.0
    results: dict = field(default_factory=dict)  # step key -> that step's entry in suite.json

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def not_judged(self) -> str:
        """Why targets are not judged in this run ("" when they are): they are GPU targets at full size."""
        if self.smoke:
            return "n/a (smoke)"
        return "" if self.device.type == "cuda" else f"n/a ({self.device.type})"

    def judge(self, step: int, measurement: str, value: float | None, unit: str, target: Target | None = None) -> Row:
        """A row with its target and verdict."""
        if target is None:
            met = ""
        elif self.not_judged():
            met = self.not_judged()
        elif value is None:
            met = "no figure"
        else:
            met = target.verdict(value)
        return Row(step, measurement, value, unit, str(target) if target else "", met)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def frame(resolution: str, index: int = 0) -> np.ndarray:
    """A frame of the generated camera pan (the clip the live and offline benchmarks use)."""
    width, height = (int(v) for v in resolution.split("x"))
    return camera_frames("pan", (width, height), index + 1)[0][index]


# --- step 1: the CUDA tests -----------------------------------------------------------------------

# The CUDA tests carry the `cuda` marker (tests/conftest.py skips them without a GPU), so `-m cuda`
# selects them. Only the test files that mention CUDA are collected: collecting the UI tests too
# costs ~7 s of imports on a 2-core machine.
PYTEST_COUNTS = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def cuda_tests(ctx: Context) -> Result:
    """The CUDA-graph tests have never run on a GPU: on a lent GPU they come first."""
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "cuda" in p.read_text())
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", *files]
    timeout = max(1.0, ctx.left())
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        status = f"stopped: budget (pytest still running after {timeout:.0f} s)"
        return Result({"status": status}, [Row(1, "CUDA tests", status)])
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if PYTEST_COUNTS.search(line)), "")
    counts = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for number, outcome in PYTEST_COUNTS.findall(summary):
        counts["errors" if outcome.startswith("error") else outcome] = int(number)
    figures = {
        **counts,
        "exit_code": done.returncode,
        "summary": summary.strip("= "),
        "failures": [line for line in lines if line.startswith(("FAILED", "ERROR"))],
        "command": shlex.join(["python", *command[1:]]),
    }
    text = f"{counts['passed']} passed, {counts['failed']} failed, {counts['errors']} errors, {counts['skipped']} skipped"
    verdict = ctx.not_judged() or ("yes" if counts["passed"] and not (counts["failed"] or counts["errors"]) else "no")
    rows = [Row(1, "CUDA tests (pytest -m cuda)", text, "", "all pass", verdict)]
    rows += [Row(1, f"  {line}", "") for line in figures["failures"][:10]]
    return Result(figures, rows)


# --- step 2: live dream ---------------------------------------------------------------------------


def live_dream(ctx: Context) -> Result:
    """One live session per resolution, measured exactly as `benchmarks/live.py` measures it."""
    runs = [(resolution, f"live dream {resolution}", {"resolution": resolution, "frames": frames})
            for resolution, frames in zip(ctx.sizes.live, ctx.sizes.live_frames)]
    return live_runs(ctx, 2, runs, lambda i, name, report: live_rows(ctx, 2, name, report, LIVE_TARGETS[i]))


def live_runs(ctx: Context, step: int, runs: list[tuple[str, str, dict]], rows: Callable[[int, str, dict], list[Row]]) -> Result:
    """`live.run` for each (figure key, name, options) in `runs`, each with an equal share of the budget
    left, and `rows(i, name, report)` for each; a run the budget stops is a status row, and the others'
    figures are kept."""
    result = Result()
    for i, (key, name, options) in enumerate(runs):
        share = ctx.left() / (len(runs) - i)
        log(f"  {name}, up to {options['frames']} frames{' each' if 'sessions' in options else ''} in {share:.0f} s")
        try:
            report = live.run(device=str(ctx.device), source_fps=ctx.sizes.source_fps, deadline=time.perf_counter() + share, **options)
        except TimeoutError as error:
            result.figures[key] = {"status": f"stopped: budget ({error})"}
            result.rows.append(Row(step, name, result.figures[key]["status"]))
            continue
        result.figures[key] = report
        result.rows += rows(i, name, report)
    return result


def live_rows(ctx: Context, step: int, name: str, report: dict, targets: dict[str, Target]) -> list[Row]:
    """fps, latency, memory and where the time goes (flow / optimize / io), so a missed target shows why."""
    rows = [
        ctx.judge(step, f"{name}: fps", report["fps"], "fps", targets.get("fps")),
        ctx.judge(step, f"{name}: latency p50", report["latency_p50_ms"], "ms"),
        ctx.judge(step, f"{name}: latency p95", report["latency_p95_ms"], "ms", targets.get("latency_p95_ms")),
    ]
    if ctx.device.type == "cuda":
        rows.append(ctx.judge(step, f"{name}: peak GPU memory allocated", report["gpu_mem_mb"], "MB", targets.get("gpu_mem_mb")))
        rows.append(ctx.judge(step, f"{name}: peak GPU memory reserved by the allocator", report["gpu_reserved_mb"], "MB"))
    stages = " / ".join(f"{report[key]:.1f}" for key in ("flow_ms", "optimize_ms", "io_ms"))
    rows.append(Row(step, f"{name}: per frame flow / optimize / io", stages, "ms"))
    return rows


# --- step 3: one optimizer step -------------------------------------------------------------------


class IterationClock:
    """Marks the end of each optimizer step and gives the median time between marks.

    On CUDA the host runs ahead of the queued work, so the marks are CUDA events on the stream
    (GPU time, which for a launch-bound step is what the launches allow); elsewhere perf_counter.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def tick(self, _steps: int = 1) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def median_ms(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
            gaps = [a.elapsed_time(b) for a, b in itertools.pairwise(self.marks)]
        else:
            gaps = [1000 * (b - a) for a, b in itertools.pairwise(self.marks)]
        return statistics.median(gaps)


def step_image(ctx: Context, dreamer: Dreamer) -> torch.Tensor:
    return to_tensor(frame(ctx.sizes.iteration), dreamer.device)


def dream_steps(dreamer: Dreamer, image: torch.Tensor, count: int, progress=None) -> torch.Tensor:
    """`count` optimizer steps at the image's own size, the path a stream frame's iterations take
    (`Dreamer.dream_tensor`, one octave), from the suite's fixed seed: every variant sees the same jitter."""
    return dreamer.dream_tensor(image, generator=make_generator(SEED), octaves=1, iterations=count, progress=progress)


def time_steps(dreamer: Dreamer, image: torch.Tensor, reps: int, seconds: float) -> dict:
    """Median ms per step after warm-up, and the output after COMPARE_STEPS steps (to compare variants).

    At most `reps` timed steps, fewer (but 3) when the warm-up says they would not fit in `seconds`.
    """
    dream_steps(dreamer, image, 2)  # warm-up: cuDNN autotuning; with CUDA graphs the size's first sight runs eagerly
    started = time.perf_counter()
    dream_steps(dreamer, image, 2)  # with CUDA graphs: the capture
    synchronize(dreamer.device)
    per_step = (time.perf_counter() - started) / 2
    reps = max(3, min(reps, int(seconds / per_step) - COMPARE_STEPS))
    clock = IterationClock(dreamer.device)
    dream_steps(dreamer, image, reps, clock.tick)
    return {"ms": clock.median_ms(), "reps": reps, "output": dream_steps(dreamer, image, COMPARE_STEPS)}


def compiled_steps(step: Callable, image: torch.Tensor, shifts: torch.Tensor, progress=None) -> torch.Tensor:
    """The dream's step loop over a torch.compile'd `gradient_step` (the project has no compile option)."""
    for shift in shifts:
        torch.compiler.cudagraph_mark_step_begin()  # each call is a new step: reduce-overhead may reuse outputs
        image = step(image, shift).clone()
        if progress is not None:
            progress(1)
    return image


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"


def compile_probe(ctx: Context) -> dict:
    """The torch.compile variant, in its own process (see `run_compile_probe`); returns its figures.

    Dynamo breaks the graph at `torch.autograd.grad` unless `trace_autograd_ops` is on (torch >= 2.9):
    that whole-step graph is tried first, then the default (a graph break at the gradient), and the
    graph breaks are counted. In smoke mode the backend is "eager" (Dynamo tracing only): Inductor
    needs ~80 s to compile this step on a 2-core CPU.
    """
    import torch._dynamo

    dreamer = Dreamer(device=ctx.device, cuda_graphs=False)
    image = step_image(ctx, dreamer)
    eager = dream_steps(dreamer, image, COMPARE_STEPS)
    model, objective, rule = dreamer.model, dreamer.objective, dreamer.rule
    size = torch.full((1, 1, 1, 1), rule.step, device=dreamer.device)
    step = lambda image, shift: gradient_step(image, shift, size, model, objective, rule)  # noqa: E731
    backend, mode = ("eager", None) if ctx.smoke else ("inductor", ctx.compile_mode)

    def shifts(count: int) -> torch.Tensor:  # the shifts `dream_steps` draws from the same seed
        return upload(jitter_shifts(make_generator(SEED), rule.jitter, count), dreamer.device)

    failures = []
    for trace in [True, False] if hasattr(torch._dynamo.config, "trace_autograd_ops") else [None]:
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        if trace is not None:
            torch._dynamo.config.trace_autograd_ops = trace
        compiled = torch.compile(step, backend=backend, mode=mode)
        try:
            started = time.perf_counter()
            compiled_steps(compiled, image, shifts(3))  # compiles (and records graphs under reduce-overhead)
            compile_s = time.perf_counter() - started
            clock = IterationClock(dreamer.device)
            compiled_steps(compiled, image, shifts(ctx.sizes.iteration_reps), clock.tick)
            output = compiled_steps(compiled, image, shifts(COMPARE_STEPS))
        except Exception as error:  # noqa: BLE001 - try the next configuration, report why
            traceback.print_exc()
            failures.append(f"trace_autograd_ops={trace}: {one_line(error)}")
            continue
        return {
            "ms": clock.median_ms(),
            "reps": ctx.sizes.iteration_reps,
            "mean_abs_diff": float((output - eager).abs().mean()),
            "backend": backend,
            "mode": mode,
            "trace_autograd_ops": trace,
            "graph_breaks": sum(torch._dynamo.utils.counters["graph_break"].values()),
            "compile_s": compile_s,
            "failed_first": failures,
        }
    return {"status": "unsupported: " + "; ".join(failures)}


def run_compile_probe(ctx: Context) -> dict:
    """torch.compile in a child process with a hard timeout: compiling can take minutes, hang or
    crash, and its caches and memory pools must not colour the later steps."""
    command = [sys.executable, __file__, "--compile-probe", "--device", str(ctx.device), "--compile-mode", ctx.compile_mode]
    if ctx.smoke:
        command.append("--smoke")
    timeout = ctx.left()
    if timeout < 5:
        return {"status": "skipped: budget"}
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"unsupported: not compiled and timed within {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return {"status": f"unsupported: {reason[:200]}"}
    return json.loads(lines[-1])


def optimizer_step(ctx: Context) -> Result:
    """Per-iteration time of the live dream step (`Dreamer()`'s model, objective and settings, bf16 and
    channels-last on CUDA as the project runs it): eager, captured graph (`GraphCache`) and compiled;
    the fastest within TOLERANCE of eager's output is the recommended default."""
    reps = ctx.sizes.iteration_reps  # at most; fewer when they would not fit
    eager_dreamer = Dreamer(device=ctx.device, cuda_graphs=False)
    image = step_image(ctx, eager_dreamer)
    eager = time_steps(eager_dreamer, image, reps, ctx.left() / 4)
    del eager_dreamer
    dreamer = Dreamer(device=ctx.device)  # CUDA graphs on, as streams run; off CUDA the same eager loop
    captured = time_steps(dreamer, image, reps, ctx.left() / 3)
    failure = dreamer.graphs.failure if dreamer.graphs is not None else None
    variants = {
        "eager": {"ms": eager["ms"], "reps": eager["reps"], "mean_abs_diff": 0.0},
        "captured": (
            {"status": f"unsupported: {failure}"}
            if failure
            else {
                "ms": captured["ms"],
                "reps": captured["reps"],
                "mean_abs_diff": float((captured["output"] - eager["output"]).abs().mean()),
                "cuda_graph": dreamer.graphs is not None,
            }
        ),
    }
    log(f"  eager {variants['eager']['ms']:.2f} ms, captured {variants['captured'].get('ms', float('nan')):.2f} ms; compiling ...")
    del eager, captured, dreamer
    release_memory()
    variants["compiled"] = run_compile_probe(ctx)
    within = {name: v["ms"] for name, v in variants.items() if "ms" in v and v["mean_abs_diff"] < TOLERANCE}
    recommended = min(within, key=within.get)
    figures = {"resolution": ctx.sizes.iteration, "tolerance": TOLERANCE, **variants, "recommended_default": recommended}
    rows = []
    for name, v in variants.items():
        label = f"dream step {ctx.sizes.iteration}: {name}"
        if name == "compiled" and "backend" in v:
            label += f" ({v['backend']}, {v['mode']})" if v["backend"] != "eager" else " (Dynamo only, backend eager)"
        if "ms" not in v:
            rows.append(Row(3, label, v["status"], "", str(ITERATION_TARGET)))
            continue
        if name != "eager":
            label += f", mean abs diff vs eager {v['mean_abs_diff']:.1e}"
        rows.append(ctx.judge(3, label, v["ms"], "ms/iter", ITERATION_TARGET))
    rows.append(Row(3, "recommended default (fastest within tolerance)", recommended))
    return Result(figures, rows)


# --- step 4: batched sessions ---------------------------------------------------------------------


def batched_sessions(ctx: Context) -> Result:
    """N live sessions (different cameras, objectives and strengths) on the batched scheduler, measured
    exactly as `benchmarks/live.py --sessions N` measures them; each run also measures one session alone."""
    resolution = ctx.sizes.sessions_resolution
    runs = [(str(count), f"{count} live sessions {resolution}", {"resolution": resolution, "frames": ctx.sizes.sessions_frames, "sessions": count})
            for count in ctx.sizes.sessions]

    def rows(_: int, name: str, report: dict) -> list[Row]:
        targets = SESSION_TARGETS if report["sessions"] == 16 else {}
        return [
            Row(4, f"{name}: one session alone", f"{report['single_session_fps']:.1f}", "fps"),
            ctx.judge(4, f"{name}: slowest session", min(report["per_session_fps"]), "fps", targets.get("min_session_fps")),
            ctx.judge(4, f"{name}: worst latency p95", max(report["latency_p95_ms"]), "ms", targets.get("latency_p95_ms")),
            ctx.judge(4, f"{name}: scaling (all sessions' fps / one alone)", report["scaling"], "x", targets.get("scaling")),
            Row(4, f"{name}: frames per optimizer step", f"{report['mean_batch']:.2f}", ""),
        ]

    return live_runs(ctx, 4, runs, rows)


# --- step 5: offline render and a still -----------------------------------------------------------


def offline_and_still(ctx: Context) -> Result:
    """A generated clip rendered file to file (`benchmarks/offline.py`), then one still through the
    `Dreamer` that `streamdream dream photo.jpg` builds (every default), first call included."""
    log(f"  offline {ctx.sizes.offline}, {ctx.sizes.offline_seconds} s clip")
    render = offline.run(
        device=str(ctx.device),
        resolution=ctx.sizes.offline,
        seconds=ctx.sizes.offline_seconds,
        deadline=time.perf_counter() + 0.7 * ctx.left(),
    )
    side = ctx.sizes.still_side
    log(f"  still {side} px")
    started = time.perf_counter()
    dreamer = Dreamer(device=ctx.device)
    loaded = time.perf_counter()
    result = dreamer.dream(frame(f"{side}x{side * 3 // 4}"))
    still = {"size": list(result.shape[:2]), "seconds": time.perf_counter() - loaded, "model_load_s": loaded - started}
    name = f"offline {ctx.sizes.offline} file render"
    rows = [
        ctx.judge(5, f"{name}{' (stopped early)' if render['stopped_early'] else ''}", render["fps"], "fps", OFFLINE_TARGET),
        ctx.judge(5, f"{name}: first frame", render["first_frame_s"], "s"),
        ctx.judge(5, f"still {side} px ({result.shape[1]}x{result.shape[0]}, defaults)", still["seconds"], "s"),
    ]
    return Result({"offline": render, "still": still}, rows)


# --- step 6: live style ---------------------------------------------------------------------------


def painting() -> tuple[object, str]:
    """Starry Night from ../shared/styles when present, else a generated stand-in; and which it is."""
    if PAINTING.is_file():
        return str(PAINTING), PAINTING.name
    import skimage.data

    return skimage.data.coffee(), f"generated: skimage.data.coffee() ({PAINTING.name} not found)"


def live_style(ctx: Context) -> Result:
    """Live style by the style network (the default method), one session and many, measured exactly
    as `benchmarks/live.py --style` measures them."""
    picture, source = painting()
    resolution = ctx.sizes.style
    runs = [("net", f"live style (net) {resolution}", {"resolution": resolution, "frames": ctx.sizes.style_frames, "style": picture}),
            *((f"net_{count}", f"{count} live style sessions (net) {resolution}", {"resolution": resolution, "frames": ctx.sizes.style_frames, "style": picture, "sessions": count})
              for count in ctx.sizes.sessions[-1:])]

    def rows(_: int, name: str, report: dict) -> list[Row]:
        if "sessions" not in report:
            return live_rows(ctx, 6, name, report, {"fps": STYLE_TARGET})
        return [
            ctx.judge(6, f"{name}: slowest session", min(report["per_session_fps"]), "fps", STYLE_SESSION_TARGET),
            ctx.judge(6, f"{name}: worst latency p95", max(report["latency_p95_ms"]), "ms"),
            Row(6, f"{name}: frames per network pass", f"{report['mean_batch']:.2f}", ""),
        ]

    result = live_runs(ctx, 6, runs, rows)
    result.figures["painting"] = source
    return result


# --- step 7: the classic recipe -------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RELU4_3 = 23  # torchvision vgg16.features[:23] ends with relu4_3


def classic_model(device: torch.device) -> torch.nn.Module:
    """VGG16 up to relu4_3 with random weights: the speed of the recipe, never a download."""
    import torchvision

    features = torchvision.models.vgg16(weights=None).features[:RELU4_3]
    return features.to(device).eval().requires_grad_(False)


def classic_dream(model: torch.nn.Module, base: torch.Tensor, octaves: int, iterations: int, generator: torch.Generator) -> torch.Tensor:
    """The classic PyTorch DeepDream: octaves of scale 1.4 (smallest first, detail re-added on the way
    up), each `iterations` steps of roll-jittered gradient ascent on the mean squared activation,
    normalized by the gradient's mean magnitude; eager, fp32, no tiles."""
    mean = torch.tensor(IMAGENET_MEAN, device=base.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=base.device).view(1, 3, 1, 1)
    detail = None
    for size in octave_sizes(*base.shape[-2:], octaves, 1.4, min_side=8):
        start = resize(base, size)
        image = start if detail is None else (start + F.interpolate(detail, size=size, mode="bilinear")).clamp(0, 1)
        for _ in range(iterations):
            dy, dx = (int(v) for v in torch.randint(-32, 33, (2,), generator=generator))
            x = torch.roll(image, (dy, dx), (2, 3)).requires_grad_(True)
            loss = model((x - mean) / std).pow(2).mean()
            (grad,) = torch.autograd.grad(loss, x)
            grad = torch.roll(grad, (-dy, -dx), (2, 3))
            image = (image + 0.01 * grad / (grad.abs().mean() + 1e-8)).clamp(0, 1)
        detail = image - start
    return image


def classic_recipe(ctx: Context) -> Result:
    """Frames per second of the classic recipe at the live size, one frame after another, and how
    many times faster the live dream of step 2 is."""
    resolution = ctx.sizes.live[0]
    width, height = (int(v) for v in resolution.split("x"))
    clip, _ = camera_frames("pan", (width, height), ctx.sizes.classic_frames + 1)
    model = classic_model(ctx.device)
    generator = make_generator(SEED)
    run = functools.partial(classic_dream, model, octaves=ctx.sizes.classic_octaves, iterations=ctx.sizes.classic_iterations, generator=generator)
    run(to_tensor(clip[0], ctx.device))  # warm-up (cuDNN autotuning, allocator)
    synchronize(ctx.device)
    started, done = time.perf_counter(), 0
    for image in clip[1:]:
        run(to_tensor(image, ctx.device))
        synchronize(ctx.device)
        done += 1
        if ctx.left() < 0:
            break
    fps = done / (time.perf_counter() - started)
    live_fps = ctx.results.get("2_live_dream", {}).get("figures", {}).get(resolution, {}).get("fps")
    speedup = live_fps / fps if live_fps else None
    recipe = f"VGG16 (random weights) to relu4_3, {ctx.sizes.classic_octaves} octaves x {ctx.sizes.classic_iterations} iterations, fp32 eager"
    figures = {"resolution": resolution, "recipe": recipe, "frames": done, "fps": fps, "live_fps": live_fps, "speedup_vs_classic": speedup}
    rows = [
        ctx.judge(7, f"classic recipe {resolution} ({recipe})", fps, "fps"),
        ctx.judge(7, "speedup_vs_classic (live dream fps / classic fps)" + ("" if speedup else ": no live figure from step 2"), speedup, "x", SPEEDUP_TARGET),
    ]
    return Result(figures, rows)


# --- the runner -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One measurement of the suite; `key` starts with its number and names it in suite.json."""

    key: str
    title: str
    share_s: float  # expected seconds in a full CUDA run; the budget left is split in these proportions
    min_s: float  # not started with less than this
    run: Callable[[Context], Result]

    @property
    def number(self) -> int:
        return int(self.key.split("_")[0])


STEPS = [
    Step("1_cuda_tests", "CUDA tests", 60, 10, cuda_tests),
    Step("2_live_dream", "live dream, one session", 80, 10, live_dream),
    Step("3_optimizer_step", "per-iteration time: eager, CUDA graph, torch.compile", 150, 10, optimizer_step),
    Step("4_batched_sessions", "live sessions 4 and 16 (batched scheduler)", 60, 10, batched_sessions),
    Step("5_offline", "offline file render and still", 60, 10, offline_and_still),
    Step("6_live_style", "live style (network), one session and 16", 60, 10, live_style),
    Step("7_classic", "classic recipe and speedup", 40, 5, classic_recipe),
]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_memory() -> None:
    """Between steps: each step's peak memory should be its own."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        models = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        models = []
    return f"{models[0] if models else platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def write_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename over it, so a reader (or a kill) never sees half a file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8") as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "# streamdream GPU figures (benchmarks/suite.py)",
        "",
        f"- device: {meta['device_name']} (`{meta['device']}`)",
        f"- torch {meta['torch']}, CUDA {meta['cuda'] or 'none'}, cuDNN {meta['cudnn'] or 'none'}",
        f"- date: {meta['date_utc']}",
        f"- command: `{meta['command']}`",
        f"- mode: {'smoke (toy sizes; targets not judged)' if meta['smoke'] else 'full'}, budget {meta['budget_s']:g} s, "
        f"elapsed {report['elapsed_s']:.1f} s{'' if report['complete'] else ' (incomplete)'}",
        "",
        "| step | measurement | value | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        value = row["value"]
        shown = "—" if value is None else f"{value:.4g}" if isinstance(value, float | int) else str(value)
        cells = [str(row["step"]), row["measurement"], f"{shown} {row['unit']}".strip(), row["target"], row["met"]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def save(out: Path, report: dict) -> None:
    write_atomic(out / "suite.json", json.dumps(report, indent=1, default=str) + "\n")
    write_atomic(out / "suite.md", markdown(report))


def context(args: argparse.Namespace) -> Context:
    """The run's settings; the process-wide torch options are set here, once, as every front end does."""
    device = configure("cpu" if args.smoke and args.device == "auto" else args.device)
    return Context(device=device, smoke=args.smoke, sizes=SMOKE if args.smoke else FULL, compile_mode=args.compile_mode)


def run_suite(args: argparse.Namespace, command: str, steps: list[Step] = STEPS) -> dict:
    """Run the steps in order within the budget, saving after each; returns suite.json's object."""
    started = time.perf_counter()
    end = started + args.budget_s
    ctx = context(args)
    report = {
        "meta": {
            "device": str(ctx.device),
            "device_name": device_name(ctx.device),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command,
            "smoke": args.smoke,
            "budget_s": args.budget_s,
        },
        "steps": {s.key: {"title": s.title, "status": "pending"} for s in steps},
        "rows": [],
        "elapsed_s": 0.0,
        "complete": False,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save(args.out, report)
    rows: dict[str, list[Row]] = {}
    for i, step in enumerate(steps):
        remaining = end - time.perf_counter()
        share = remaining * step.share_s / sum(s.share_s for s in steps[i:])
        entry = report["steps"][step.key]
        if share < step.min_s:
            log(f"[{time.perf_counter() - started:6.1f} s] {step.key}: skipped (budget: {share:.1f} s of {step.min_s} s needed)")
            entry["status"] = "skipped: budget"
            rows[step.key] = [Row(step.number, step.title, "skipped: budget")]
        else:
            log(f"[{time.perf_counter() - started:6.1f} s] {step.key}: {step.title} (up to {share:.0f} s)")
            ctx.deadline = time.perf_counter() + share
            entry.update(run_step(step, ctx))
            rows[step.key] = entry.pop("_rows")
            ctx.results[step.key] = entry
            release_memory()
        report["rows"] = [vars(row) for key in rows for row in rows[key]]
        report["elapsed_s"] = time.perf_counter() - started
        save(args.out, report)
    report["complete"] = True
    save(args.out, report)
    return report


def run_step(step: Step, ctx: Context) -> dict:
    """A step's suite.json entry. A step that runs out of time keeps its status; one that raises is
    recorded as an error (with the traceback on stderr) and the suite goes on to the next."""
    began = time.perf_counter()
    try:
        result = step.run(ctx)
        status = result.figures.pop("status", "ok")
        rows = result.rows
    except TimeoutError as error:
        result, status = Result(), f"stopped: budget ({error})"
        rows = [Row(step.number, step.title, status)]
    except Exception as error:  # noqa: BLE001 - one broken step must not cost the GPU minutes of the others
        traceback.print_exc()
        result, status = Result(), f"error: {one_line(error)}"
        rows = [Row(step.number, step.title, status)]
    return {"status": status, "seconds": time.perf_counter() - began, "figures": result.figures, "_rows": rows}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every step at toy sizes (on the CPU unless --device says otherwise)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget in seconds (default %(default)g)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "suite", help="folder for suite.json and suite.md (default: out/suite, git-ignored)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--compile-mode", default="reduce-overhead", help="torch.compile mode for step 3 (default %(default)s)")
    parser.add_argument("--compile-probe", action="store_true", help=argparse.SUPPRESS)  # step 3's child process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compile_probe:
        try:
            figures = compile_probe(context(args))
        except Exception as error:  # noqa: BLE001 - the reason is the figure
            traceback.print_exc()
            figures = {"status": f"unsupported: {one_line(error)}"}
        print(json.dumps(figures))
        return 0
    command = shlex.join(sys.orig_argv if argv is None else ["python", "benchmarks/suite.py", *argv])
    try:
        report = run_suite(args, command)
    except StreamdreamError as error:  # e.g. --device cuda without a GPU: nothing was measured
        print(f"suite: {error}", file=sys.stderr)
        return 2
    print(json.dumps(report, default=str))
    return 1 if any(s["status"].startswith("error") for s in report["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
