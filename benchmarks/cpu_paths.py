"""The CPU paths of the model step, measured on this machine: layout, autocast dtype, threads, compile.

One step is what every CPU live frame, still octave and style step runs: EfficientNet-Lite0 forward to
`blocks.4` and back to the image, at --resolution, batch 1. Each row is the median over three rounds,
in which the rows take turns, of the mean of --repeats steps after a warm-up, all in one run, so the
rows compare. `fp32` is the product's path (`streamdream.models.fused`: convolution and ReLU6 as one
oneDNN primitive, weights reordered once, the gradient to the input only), `fp32 eager` PyTorch's
plain convolutions (`fused.reference_path`); `fused_vs_eager` is their ratio, channels-last, in each
round. Also measured:

- `kept_memory`: the product's step in new processes, glibc's default malloc against
  `runtime.keep_freed_memory` (which `configure` sets on the CPU, as it is for every row here), taking
  turns over the rounds: `default_ms`, `kept_ms`, and their ratio in each round;
- `flow_pair_ms`: a carried frame's two optical flows at --resolution (the renderer's DIS on a
  generated pan, `FlowEstimator.both_ways`), one after the other and at once on two threads (what the
  live engine does while it has a core per flow), taking turns over the rounds;
- `second_thread_ms`: the chosen path's step on a new thread while the thread that ran the rows above
  keeps its OpenMP team (what the live engine suffered before `runtime.on_own_thread`), against the
  same step on that thread;
- `chosen`: what `create_model` picks on this machine (`streamdream.models.layout`);
- with --compile, `torch.compile` (inductor) of the model: its compile time and step time;
- with --targets, the laptop path's figures as a user meets them (issue #24), each beside its target:
  live dreaming at 320x240 (`benchmarks/live.py`), four live sessions at 160x120 (both also with
  PyTorch's eager convolutions, `_eager`), live style by the
  default method and built-in style at 320x240 (the issue's "style: its own figures"), and `streamdream dream`
  on the 512 px astronaut end to end (a new process each time, after one warm-up run that fills the file
  cache), with the same command on a 16 px picture for what start-up alone costs; with --python, the
  command of another environment's interpreter, e.g. one with PyTorch's CPU build as the README's
  CPU-only section installs it (it starts 0.3-0.4 s sooner than the default CUDA build); `still_torch`
  says which PyTorch ran it.

Prints one JSON object, with the processor it ran on.

    python benchmarks/cpu_paths.py
    python benchmarks/cpu_paths.py --resolution 160x120 --threads 1
    python benchmarks/cpu_paths.py --compile
    python benchmarks/cpu_paths.py --targets
    python benchmarks/cpu_paths.py --targets --python ~/cpu-venv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from streamdream.models import create_model, layout  # noqa: E402
from streamdream.models.fused import reference_path  # noqa: E402
from streamdream.runtime import configure, keep_freed_memory, on_own_thread  # noqa: E402
from streamdream.samples.make import camera_frames  # noqa: E402
from streamdream.temporal import FlowEstimator  # noqa: E402
from streamdream.settings import DEFAULT_BUILTIN_STYLE, STYLE_METHOD  # noqa: E402

LAYER = "blocks.4"
ROUNDS = 3
# Issue #24's targets on a 2-core laptop-class CPU.
TARGETS = {"live_fps": 20.0, "live_p95_ms": 80.0, "sessions_fps": 18.0, "still_s": 3.5}


def step_ms(model, size: tuple[int, int], memory_format, dtype, repeats: int) -> float:
    """Mean milliseconds of a forward-and-backward step, after two warm-up steps."""
    image = torch.rand(1, 3, *size).contiguous(memory_format=memory_format)

    def step() -> None:
        x = image.detach().requires_grad_(True)
        with torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext():
            value = model(x, [LAYER])[LAYER].float().mean()
        torch.autograd.grad(value, x)

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return 1000 * (time.perf_counter() - started) / repeats


def run(resolution: str, repeats: int, threads: int | None, compile_: bool) -> dict:
    if threads:
        torch.set_num_threads(threads)
    width, height = (int(v) for v in resolution.split("x"))
    size = (height, width)
    models = {name: create_model(device="cpu", channels_last=name == "channels_last") for name in layout.LAYOUTS}
    paths = {  # label: (how, dtype); bf16 autocast always runs the eager convolutions
        "fp32": (contextlib.nullcontext, None),
        "fp32 eager": (reference_path, None),
        "bf16 autocast": (contextlib.nullcontext, torch.bfloat16),
    }
    timings: dict[str, list[float]] = {f"{name} {label}": [] for name in models for label in paths}
    for _ in range(ROUNDS):  # the rows take turns, so a machine whose speed drifts treats them alike
        for name, model in models.items():
            for label, (how, dtype) in paths.items():
                with how():
                    timings[f"{name} {label}"].append(step_ms(model, size, model.memory_format, dtype, repeats))
    rows = {row: round(statistics.median(values), 1) for row, values in timings.items()}
    fused_vs_eager = [fused / eager for fused, eager in zip(timings["channels_last fp32"], timings["channels_last fp32 eager"])]
    chosen = create_model(device="cpu")
    report = {
        "processor": layout.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "resolution": resolution,
        "step_ms": rows,
        "fused_vs_eager": [round(ratio, 2) for ratio in fused_vs_eager],  # channels-last, each round
        "chosen": "channels_last" if chosen.memory_format == torch.channels_last else "contiguous",
    }
    step_ms(chosen, size, chosen.memory_format, None, 2)  # this thread now keeps an OpenMP team
    report["second_thread_ms"] = {
        # on_own_thread: a new thread, while this one waits and keeps its team
        "beside_a_team": round(on_own_thread(step_ms, chosen, size, chosen.memory_format, None, repeats), 1),
        "this_thread": round(step_ms(chosen, size, chosen.memory_format, None, repeats), 1),
    }
    if compile_:
        started = time.perf_counter()
        compiled = torch.compile(chosen)
        first = step_ms(compiled, size, chosen.memory_format, None, 1)  # compiles forward and backward
        report["compile"] = {"compile_and_first_steps_s": round(time.perf_counter() - started, 1), "first_ms": round(first, 1),
                             "step_ms": round(step_ms(compiled, size, chosen.memory_format, None, repeats), 1)}
    return report


def flow_pair_ms(resolution: str, repeats: int) -> dict:
    width, height = (int(v) for v in resolution.split("x"))
    frames = camera_frames("pan", (width, height), repeats + 1)[0]
    estimator = FlowEstimator()
    timings: dict[str, list[float]] = {"one_after_the_other": [], "at_once": []}
    for _ in range(ROUNDS):
        for label in timings:
            at_once = label == "at_once"
            estimator.both_ways(frames[0], frames[1], at_once=at_once)  # warm-up
            started = time.perf_counter()
            for previous, current in zip(frames, frames[1:]):
                estimator.both_ways(previous, current, at_once=at_once)
            timings[label].append(1000 * (time.perf_counter() - started) / repeats)
    return {label: round(statistics.median(values), 2) for label, values in timings.items()}


def kept_memory(resolution: str, repeats: int) -> dict:
    """The chosen path's step in a new process each time, glibc's malloc as it comes against
    `keep_freed_memory`, the two taking turns; the step runs on a thread of its own, as the live
    engine's does."""
    timings: dict[str, list[float]] = {"default": [], "kept": []}
    for _ in range(ROUNDS):
        for memory in timings:
            done = subprocess.run([sys.executable, __file__, "--resolution", resolution, "--repeats", str(repeats), "--one-step", memory],
                                  check=True, capture_output=True, text=True)
            timings[memory].append(float(done.stdout.split()[-1]))
    return {"default_ms": round(statistics.median(timings["default"]), 1), "kept_ms": round(statistics.median(timings["kept"]), 1),
            "kept_vs_default": [round(kept / default, 2) for kept, default in zip(timings["kept"], timings["default"])]}


def one_step_ms(resolution: str, repeats: int, memory: str) -> float:
    """`kept_memory`'s measurement, in its own process."""
    if memory == "kept":
        keep_freed_memory()
    width, height = (int(v) for v in resolution.split("x"))

    def measure() -> float:
        model = create_model(device="cpu")
        step_ms(model, (height, width), model.memory_format, None, 4)  # the plans made, the heap grown
        return step_ms(model, (height, width), model.memory_format, None, repeats)

    return on_own_thread(measure)


def dream_command_s(picture: Path, runs: int, python: str) -> list[float]:
    """Seconds of `streamdream dream PICTURE -o OUT` as the user waits for it, each in a new process,
    after one unmeasured run (the file cache, the CPU choices of `models.layout`): the `streamdream`
    beside the interpreter `python`, or that interpreter's `-m streamdream.apps.cli`."""
    script = Path(python).parent / "streamdream"
    command = [str(script)] if script.is_file() else [python, "-m", "streamdream.apps.cli"]
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        for run_ in range(runs + 1):
            started = time.perf_counter()
            subprocess.run([*command, "dream", str(picture), "-o", str(Path(folder) / "out.png"), "--overwrite"],
                           check=True, capture_output=True)
            if run_:
                seconds.append(round(time.perf_counter() - started, 2))
    return seconds


def live_figures(measured: dict) -> dict:
    return {"fps": round(measured["fps"], 1), "p95_ms": round(measured["latency_p95_ms"], 1),
            "flow_ms": round(measured["flow_ms"], 1), "optimize_ms": round(measured["optimize_ms"], 1)}


def sessions_figures(measured: dict) -> dict:
    return {"fps_each": round(min(measured["per_session_fps"]), 1), "p95_ms": round(max(measured["latency_p95_ms"]), 1)}


def targets(frames: int, runs: int, python: str) -> dict:
    """The issue's figures on this machine, each with its target and whether it is met."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from benchmarks import live

    single = live.run(device="cpu", resolution="320x240", frames=frames)
    with reference_path():  # the same with PyTorch's eager convolutions: what the fused ones gained
        single_eager = live.run(device="cpu", resolution="320x240", frames=frames)
    several = live.run(device="cpu", resolution="160x120", frames=frames, sessions=4)
    with reference_path():
        several_eager = live.run(device="cpu", resolution="160x120", frames=frames, sessions=4)
    style = live.run(device="cpu", resolution="320x240", frames=frames, style=DEFAULT_BUILTIN_STYLE, method=STYLE_METHOD)
    with tempfile.TemporaryDirectory() as folder:
        photo, tiny = Path(folder) / "astronaut.png", Path(folder) / "tiny.png"
        Image.fromarray(skimage.data.astronaut()).save(photo)  # 512 x 512
        Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tiny)
        still, start = dream_command_s(photo, runs, python), dream_command_s(tiny, runs, python)
    figures = {
        "live_320x240": live_figures(single),
        "live_320x240_eager": live_figures(single_eager),
        "sessions_4_160x120": sessions_figures(several),
        "sessions_4_160x120_eager": sessions_figures(several_eager),
        f"live_style_{STYLE_METHOD}_320x240": {"fps": round(style["fps"], 1), "p95_ms": round(style["latency_p95_ms"], 1)},
        "still_512_s": still,
        "still_torch": subprocess.run([python, "-c", "import torch; print(torch.__version__)"], check=True, capture_output=True, text=True).stdout.strip(),
        "startup_16px_s": start,
    }
    met = {
        "live_fps": figures["live_320x240"]["fps"] >= TARGETS["live_fps"],
        "live_p95_ms": figures["live_320x240"]["p95_ms"] <= TARGETS["live_p95_ms"],
        "sessions_fps": figures["sessions_4_160x120"]["fps_each"] >= TARGETS["sessions_fps"],
        "still_s": statistics.median(still) <= TARGETS["still_s"],
    }
    return {**figures, "targets": TARGETS, "met": met}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", default="320x240", help="WIDTHxHEIGHT (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=8, help="timed steps per row (default %(default)s)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: one per core)")
    parser.add_argument("--compile", dest="compile_", action="store_true", help="also time torch.compile (inductor; slow to compile)")
    parser.add_argument("--targets", action="store_true", help="also measure issue #24's figures: live fps, four sessions, a still end to end (about 2 min)")
    parser.add_argument("--frames", type=int, default=120, help="--targets: live results per run (default %(default)s)")
    parser.add_argument("--runs", type=int, default=3, help="--targets: timed runs of each command (default %(default)s)")
    parser.add_argument("--python", default=sys.executable, help="--targets: time the still with this interpreter's streamdream (e.g. a venv with PyTorch's CPU build; default: this one)")
    parser.add_argument("--one-step", choices=("default", "kept"), help=argparse.SUPPRESS)  # kept_memory's child process
    args = parser.parse_args()
    if shutil.which(args.python) is None:
        parser.error(f"--python {args.python}: no such interpreter")
    if args.one_step:
        print(one_step_ms(args.resolution, args.repeats, args.one_step))
        return
    configure("cpu")
    report = on_own_thread(run, args.resolution, args.repeats, args.threads, args.compile_)
    report["flow_pair_ms"] = flow_pair_ms(args.resolution, 4 * args.repeats)
    report["kept_memory"] = kept_memory(args.resolution, args.repeats)
    if args.targets:
        report["laptop_path"] = targets(args.frames, args.runs, args.python)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
