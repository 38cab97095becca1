"""Hours of streaming (issue #26): the live engine serving sessions for a long time, and visitors coming and going.

Two runs on one `LiveEngine`, as a web server lives: first the soak, then the churn.

* soak: `--sessions` cameras at `--resolution`, each fed by a thread of its own at `--source-fps`
  (on time whether the engine keeps up or not: it keeps the newest frame and counts the others as
  dropped), for `--minutes`. Every `--every` seconds a sample: the process's RSS, open file
  descriptors, Python threads and OS threads (/proc/self/task: OpenMP's, OpenCV's and torch's pools
  included), and each session's fps over the interval (its results in the interval / the interval).
  The first `WARMUP_S` (or `WARMUP_SHARE` of a shorter run) are left out: first frames, lazily
  started pools, allocator arenas filling. Judged on what follows: `rss_growth_pct`, from the first
  sample after the warm-up to the last; `fps_drift_pct`, the change of the least-squares line through
  the sessions' mean fps of every interval after the warm-up, from its first interval to its last (a
  line, not the last interval against the first: one noisy minute must not decide it). Each sample also
  times one fixed model step in a process of its own (`ReferenceStep`): the machine's own speed, which
  moves every fps on a shared host; `fps_drift_at_machine_speed_pct` is the same line through fps x that
  step.
* churn: `--churn` visitors of random sizes (`SIDES`, seeded) and modes (the soak's dreams and the
  style network's built-in style) come and go through the web app's admission, `admission.LiveRoom`:
  seats with the app's idle time and queue limit (`settings.LIVE_SEAT_*`), one engine session per
  seated visitor, closed when they leave or their seat goes idle.
  `--concurrent` at a time for `--seats` seats, so some queue. Each sends a few frames, waiting for
  each result as the web page does, then leaves in one of `EXITS`: closes the tab, closes it with a
  frame in flight, or just stops sending (its seat frees after the idle time, when someone visits).
  Vitals before and after, with gc.collect(): the start is taken after one warm-up round of
  `--concurrent` visitors, so the models, the engine's pools and the first sizes are already there
  (the `cold` vitals are before it). After the last visitor and the idle time a newcomer must be
  seated at once. Judged: threads, OS threads, open files and RSS back within `CHURN_TOLERANCE_PCT`
  of the start, every seat free, no engine session open, no visitor error.

Linux only (it reads /proc/self). Progress on stderr; one JSON object on stdout (`--out` also writes
it, indented, with the machine). Exit 0 when it ran, targets missed included.

    python benchmarks/soak.py                                         # the issue's run: 20 min of 4 sessions at 160x120, then 500 visitors
    python benchmarks/soak.py --out docs/soak.json                    # the same, kept with the machine and date
    python benchmarks/soak.py --smoke                                 # CI: a 15 s soak sampled every 5 s, 12 visitors
    python benchmarks/soak.py --minutes 3 --churn 100                 # a short look
    python benchmarks/soak.py --minutes 0 --churn 500 --concurrent 8  # the churn alone
    python benchmarks/soak.py --churn 0 --style builtin:19 --method net --resolution 320x240  # a style soak alone
    python benchmarks/soak.py --device cuda --resolution 640x480 --sessions 16 --minutes 60
"""

from __future__ import annotations

import argparse
import gc
import itertools
import multiprocessing
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import common  # noqa: E402
from benchmarks.live import VISITORS, camera_frame, cameras, visitor_modes  # noqa: E402
from streamdream.admission import LiveRoom, Queued  # noqa: E402
from streamdream.carry import FrameMode  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.engine import LiveEngine, LiveSession  # noqa: E402
from streamdream.optimize import objective_gradient  # noqa: E402
from streamdream.runtime import configure  # noqa: E402
from streamdream.settings import (  # noqa: E402
    DEFAULT_BUILTIN_STYLE, LIVE_SEAT_IDLE_S, STYLE_METHOD, TemporalSettings, live_preset, preset,
)


@dataclass(frozen=True)
class Plan:
    """How long the runs go: the issue's full run, or the CI smoke (`--smoke`); flags override either."""

    minutes: float = 20.0  # the soak's length (0: no soak)
    every: float = 60.0  # seconds between the soak's samples
    churn: int = 500  # visitors who come and go (0: no churn)


FULL = Plan()
SMOKE = Plan(minutes=15 / 60, every=5.0, churn=12)

WARMUP_S = 120.0  # the soak's first 2 minutes are not judged ...
WARMUP_SHARE = 0.2  # ... nor the first 20% of a shorter soak
RSS_GROWTH_PCT = 5.0  # soak target: RSS after the warm-up grows at most this much
REFERENCE_REPEATS = 3  # timed steps of `reference_step_ms` at each sample, the best kept
FPS_DRIFT_PCT = 10.0  # soak target: fps after the warm-up drifts at most this much, either way
CHURN_TOLERANCE_PCT = 5.0  # churn target: threads, open files and RSS end within this of the start

SIDES = (64, 240)  # a churn visitor's camera: width and height drawn from this range, px
FRAMES = (2, 6)  # ... and the frames it sends, at least and at most
EXITS = {"leave": 0.5, "abrupt": 0.25, "vanish": 0.25}
"""How a visitor goes, with its share: closes the tab after its last result (`LiveRoom.leave`), closes it
with a frame still in flight, or stops sending (the seat frees after `LIVE_SEAT_IDLE_S`)."""
SETTLE_MARGIN_S = 0.5  # waited beyond the seats' idle time before the newcomer comes
RESULT_TIMEOUT_S = 120.0  # a result that takes longer is a visitor error, not a hang


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- the process's vitals -------------------------------------------------------------------------


def vitals() -> dict:
    """RSS (MB), open file descriptors, Python threads and OS threads of this process (/proc/self)."""
    status = Path("/proc/self/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": len(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
            "os_threads": len(os.listdir("/proc/self/task"))}


class ReferenceStep:
    """A fixed model step timed on demand in a process of its own: the machine's speed beside the soak.

    On a shared machine the processor itself speeds up and slows down: the 2-core Xeon's model step
    ranged from 29 to 51 ms within an hour, alone each time, and two 20-minute soaks the same day saw
    their fps fall by 12% and rise by half with nothing in the process growing. So each sample also
    times this step (a batch the soak's size, one constant frame per session, forward to the dream
    layer and back; the best of `REFERENCE_REPEATS`), and the drift is also given for fps x step,
    frames per unit of the machine's speed. It follows a machine that changes speed; it does not follow
    another job competing for the cores (in a soak where one started, the fps halved and the step rose
    by a fifth), so judge either drift only on a machine left to the soak.
    A process of its own, not a thread of the soak's: a thread starts a second OpenMP team in the
    engine's process, and that alone cost the soak a third of its fps. It waits idle between samples.
    """

    def __init__(self, device: str, batch: int, height: int, width: int) -> None:
        self.args = (device, batch, height, width)

    def __enter__(self) -> ReferenceStep:
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs OpenMP threads
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_reference_worker, args=(child, *self.args), daemon=True)
        self._process.start()
        return self

    def __call__(self) -> float:
        self._connection.send(True)
        return self._connection.recv()

    def __exit__(self, *exc) -> None:
        self._connection.send(None)
        self._process.join(timeout=30)


def _reference_worker(connection, device: str, batch: int, height: int, width: int) -> None:
    dreamer = Dreamer(device=device)
    image = torch.full((batch, 3, height, width), 0.5, device=dreamer.device).contiguous(memory_format=dreamer.model.memory_format)
    while connection.recv():
        best = float("inf")
        for repeat in range(REFERENCE_REPEATS + 1):  # the first wakes the OpenMP workers
            started = time.perf_counter()
            objective_gradient(dreamer.model, dreamer.objective, image, dreamer.rule.tile)
            if repeat:
                best = min(best, time.perf_counter() - started)
        connection.send(round(1000 * best, 2))


def change_pct(before: float, after: float) -> float:
    return round(100.0 * float(after - before) / float(before), 2)


# ---- the soak -------------------------------------------------------------------------------------


def camera(session: LiveSession, clip: list[np.ndarray], fps: float, stop: threading.Event, errors: list[str]) -> None:
    """Feed `session` its clip at `fps` as a camera does: on time, whether the engine kept up or not."""
    period, due, index = 1.0 / fps, time.perf_counter(), 0
    try:
        while not stop.is_set():
            session.submit(camera_frame(clip, index))
            index += 1
            due += period
            stop.wait(max(0.0, due - time.perf_counter()))
    except Exception as error:  # noqa: BLE001 - reported, and fails the soak
        errors.append(f"camera {threading.current_thread().name}: {type(error).__name__}: {error}")


def sample(sessions: list[LiveSession], seconds: float, every: float, reference: Callable[[], float]) -> list[dict]:
    """The vitals, each session's fps and the `reference` step every `every` seconds for `seconds`."""
    started = last = time.perf_counter()
    counts = [s.processed for s in sessions]
    samples = []
    for k in range(1, max(1, round(seconds / every)) + 1):
        time.sleep(max(0.0, started + k * every - time.perf_counter()))
        now, now_counts = time.perf_counter(), [s.processed for s in sessions]
        fps = [round((n - c) / (now - last), 3) for n, c in zip(now_counts, counts)]
        samples.append({"t_s": round(now - started, 2), **vitals(), "fps": fps, "reference_step_ms": reference()})
        log(f"soak {now - started:6.0f} s: " + ", ".join(f"{name} {value}" for name, value in samples[-1].items() if name != "t_s"))
        last, counts = now, now_counts
    return samples


def judge_soak(samples: list[dict], warmup_s: float) -> dict:
    """RSS growth and fps drift after the warm-up (see the module's docstring), against the targets."""
    kept = [s for s in samples if s["t_s"] >= warmup_s]
    intervals = kept[1:]  # the fps of an interval that began after the warm-up
    growth = change_pct(kept[0]["rss_mb"], kept[-1]["rss_mb"]) if kept else None
    drift = speed_drift = adjusted_drift = None
    if len(intervals) >= 2:
        middles = [s["t_s"] - (s["t_s"] - before["t_s"]) / 2 for before, s in zip(kept, intervals)]
        fps = np.array([float(np.mean(s["fps"])) for s in intervals])
        speed = np.array([1.0 / s["reference_step_ms"] for s in intervals])  # measured as each interval ends

        def trend(values: np.ndarray) -> float:
            line = np.polynomial.Polynomial.fit(middles, values, 1)
            return change_pct(line(middles[0]), line(middles[-1]))

        drift, speed_drift, adjusted_drift = trend(fps), trend(speed), trend(fps / speed)
    per_session = [round(float(np.mean(fps)), 3) for fps in zip(*(s["fps"] for s in intervals or samples))]
    return {
        "rss_growth_pct": growth,
        "fps_drift_pct": drift,
        "fps_drift_method": "least-squares line through the mean fps of each interval after the warm-up, first interval to last",
        "machine_speed_drift_pct": speed_drift,  # the same line through 1 / reference_step_ms
        "fps_drift_at_machine_speed_pct": adjusted_drift,  # through fps x reference_step_ms: the engine's own drift
        "per_session_fps": per_session,
        "rss_mb": {"after_warmup": kept[0]["rss_mb"] if kept else None, "last": samples[-1]["rss_mb"],
                   "peak": max(s["rss_mb"] for s in samples)},
        "meets_targets": growth is not None and drift is not None and growth <= RSS_GROWTH_PCT and abs(drift) <= FPS_DRIFT_PCT,
        "meets_targets_at_machine_speed": (growth is not None and adjusted_drift is not None and growth <= RSS_GROWTH_PCT
                                           and abs(adjusted_drift) <= FPS_DRIFT_PCT),
    }


def soak(engine: LiveEngine, modes: list[FrameMode], settings: TemporalSettings, clips: list[list[np.ndarray]], minutes: float,
         every: float, source_fps: float) -> dict:
    """One camera per mode on `engine` for `minutes`, sampled every `every` seconds, judged after the warm-up."""
    seconds = 60.0 * minutes
    warmup_s = min(WARMUP_S, WARMUP_SHARE * seconds)
    sessions = [engine.open(mode, settings) for mode in modes]
    stop, errors = threading.Event(), []
    feeders = [threading.Thread(target=camera, args=(s, c, source_fps, stop, errors), name=f"camera-{i}", daemon=True)
               for i, (s, c) in enumerate(zip(sessions, clips))]
    for feeder in feeders:
        feeder.start()
    try:
        height, width = clips[0][0].shape[:2]
        with ReferenceStep(str(modes[0].device), len(modes), height, width) as reference:
            samples = sample(sessions, seconds, every, reference)
    finally:
        stop.set()
        for feeder in feeders:
            feeder.join()
        for session in sessions:
            session.close()
    errors += [f"session {i}: {type(s.error).__name__}: {s.error}" for i, s in enumerate(sessions) if s.error is not None]
    judged = judge_soak(samples, warmup_s)
    return {"minutes": minutes, "every_s": every, "warmup_s": warmup_s, "source_fps": source_fps, "sessions": len(sessions),
            **judged, "processed": [s.processed for s in sessions], "dropped": [s.dropped for s in sessions], "errors": errors,
            "pass": judged["meets_targets"] and not errors, "samples": samples}


# ---- the churn ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visitor:
    key: str
    mode: FrameMode
    clip: list[np.ndarray]
    size: tuple[int, int]  # width, height of its camera
    frames: int  # results it waits for before it goes
    exit: str  # one of EXITS


def visitors(count: int, modes: list[FrameMode], clips: list[list[np.ndarray]], rng: np.random.Generator, prefix: str) -> list[Visitor]:
    """`count` visitors of random modes, cameras, sizes, frame counts and exits (`rng`: the same run each time)."""
    exits = list(EXITS)
    return [Visitor(f"{prefix}{i}", modes[rng.integers(len(modes))], clips[rng.integers(len(clips))],
                    (int(rng.integers(SIDES[0], SIDES[1] + 1)), int(rng.integers(SIDES[0], SIDES[1] + 1))),
                    int(rng.integers(FRAMES[0], FRAMES[1] + 1)), exits[rng.choice(len(exits), p=list(EXITS.values()))])
            for i in range(count)]


def visit(room: LiveRoom, visitor: Visitor, settings: TemporalSettings, period: float) -> dict:
    """One visitor's stay: a frame per `period` while queued, then frame after frame as each result
    comes (the web page's loop), then its exit. Returns what it saw; an error is kept, not raised."""
    frames = (cv2.resize(camera_frame(visitor.clip, i), visitor.size, interpolation=cv2.INTER_AREA) for i in itertools.count())
    results = queued = 0
    try:
        while results < visitor.frames:
            if isinstance(room.frame(visitor.key, next(frames), visitor.mode, settings, timeout=RESULT_TIMEOUT_S), Queued):
                queued += 1
                time.sleep(period)
            else:
                results += 1
        if visitor.exit != "vanish":
            room.leave(visitor.key, next(frames) if visitor.exit == "abrupt" else None)
        return {"results": results, "queued": queued, "error": None}
    except Exception as error:  # noqa: BLE001 - reported, and fails the churn
        return {"results": results, "queued": queued, "error": f"{visitor.key}: {type(error).__name__}: {error}"}


def crowd(room: LiveRoom, people: list[Visitor], settings: TemporalSettings, concurrent: int, period: float) -> list[dict]:
    """`people` visit `concurrent` at a time, each as soon as a place frees; what each saw, in order."""
    stays = []
    with ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="visitor") as pool:
        for i, stay in enumerate(pool.map(lambda v: visit(room, v, settings, period), people), 1):
            stays.append(stay)
            if i % max(1, len(people) // 10) == 0:
                log(f"churn {i}/{len(people)} visitors: " + ", ".join(f"{name} {value}" for name, value in vitals().items()))
    return stays


def state(engine: LiveEngine, room: LiveRoom) -> dict:
    """The vitals (after a garbage collection) and who holds what: engine sessions, seats, the queue."""
    gc.collect()
    return {**vitals(), "engine_sessions": len(engine.sessions), "room_sessions": len(room.sessions()), "seated": len(room.seats.seated()),
            "waiting": len(room.seats.waiting())}


def churn(engine: LiveEngine, modes: list[FrameMode], settings: TemporalSettings, count: int, concurrent: int, seats: int,
          source_fps: float, seed: int) -> dict:
    """`count` visitors through a `LiveRoom` on `engine` after a warm-up round; judged as the module's docstring says."""
    rng = np.random.default_rng(seed)
    clips = cameras(3, (2 * SIDES[1], SIDES[1]), length=30)
    room, period = LiveRoom(engine, seats), 1.0 / source_fps
    cold = state(engine, room)
    warmup = crowd(room, visitors(concurrent, modes, clips, rng, "warmup-"), settings, concurrent, period)
    people = visitors(count, modes, clips, rng, "visitor-")
    opening = settle(room, replace(people[0], key="newcomer-0"), settings, period)
    start = state(engine, room)
    started = time.perf_counter()
    stays = crowd(room, people, settings, concurrent, period)
    seconds = time.perf_counter() - started
    newcomer = settle(room, replace(people[0], key="newcomer-1"), settings, period)
    end = state(engine, room)
    errors = [s["error"] for s in [*warmup, opening, *stays, newcomer] if s["error"]]
    changes = {key: change_pct(start[key], end[key]) for key in ("threads", "os_threads", "fds", "rss_mb")}
    freed = all(end[key] == 0 for key in ("engine_sessions", "room_sessions", "seated", "waiting"))
    return {
        "visitors": count, "concurrent": concurrent, "seats": seats, "seconds": round(seconds, 1), "sides": SIDES, "frames": FRAMES,
        "exits": {name: sum(v.exit == name for v in people) for name in EXITS},
        "modes": dict(Counter(type(v.mode).__name__ for v in people)),
        "results": sum(s["results"] for s in stays), "queued_frames": sum(s["queued"] for s in stays),
        "cold": cold, "start": start, "end": end, "change_pct": changes, "newcomer_seated_at_once": newcomer["queued"] == 0,
        "errors": errors,
        "pass": freed and not errors and newcomer["queued"] == 0 and all(abs(v) <= CHURN_TOLERANCE_PCT for v in changes.values()),
    }


def settle(room: LiveRoom, newcomer: Visitor, settings: TemporalSettings, period: float) -> dict:
    """Wait out the seats' idle time, then `newcomer` comes and leaves; returns its stay.

    `Seats` frees an idle seat when someone visits, so its first visit frees the seats of those who
    stopped sending, and it is seated at once (`queued` 0).
    """
    time.sleep(LIVE_SEAT_IDLE_S + SETTLE_MARGIN_S)
    return visit(room, replace(newcomer, exit="leave"), settings, period)


# ---- both -----------------------------------------------------------------------------------------


def run(*, device: str = "cpu", resolution: str = "160x120", preset_name: str = "auto", eager: bool = False, style: str | None = None,
        method: str = STYLE_METHOD, sessions: int = 4, source_fps: float = 30.0, plan: Plan = FULL, concurrent: int = 6, seats: int = 4,
        seed: int = 0) -> dict:
    """The soak, then the churn on the same engine (either skipped when its `plan` length is 0); the JSON report."""
    width, height = (int(v) for v in resolution.split("x"))
    modes = visitor_modes(sessions, device=device, eager=eager, style=style, method=method)
    name = preset_name if preset_name != "auto" else live_preset(modes[0].device)
    settings = preset(name)
    report: dict = {"device": str(modes[0].device), "resolution": resolution, "mode": f"style ({method})" if style else "dream",
                    "preset": name, "plan": asdict(plan),
                    "targets": {"rss_growth_pct": RSS_GROWTH_PCT, "fps_drift_pct": FPS_DRIFT_PCT, "churn_tolerance_pct": CHURN_TOLERANCE_PCT}}
    with LiveEngine() as engine:
        if plan.minutes > 0:
            report["soak"] = soak(engine, modes, settings, cameras(sessions, (width, height)), plan.minutes, plan.every, source_fps)
        if plan.churn > 0:
            churners = visitor_modes(len(VISITORS), device=device, eager=eager) + visitor_modes(1, device=device, style=DEFAULT_BUILTIN_STYLE, method="net")
            report["churn"] = churn(engine, churners, settings, plan.churn, concurrent, seats, source_fps, seed)
    report["pass"] = all(report[part]["pass"] for part in ("soak", "churn") if part in report)
    return report


def main(argv: list[str] | None = None) -> None:
    defaults = common.run_defaults(run)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=defaults["device"], help="cpu, cuda, ... (default %(default)s)")
    parser.add_argument("--resolution", default=defaults["resolution"], help="the soak's cameras, WIDTHxHEIGHT (default %(default)s)")
    parser.add_argument("--preset", dest="preset_name", default=defaults["preset_name"], help="fast, balanced, quality; auto = the live preset of the device (default %(default)s)")
    parser.add_argument("--eager", action="store_true", help="run every step eagerly (no captured CUDA graphs)")
    parser.add_argument("--style", help="the soak paints this painting (or builtin:N) instead of dreaming")
    parser.add_argument("--method", default=defaults["method"], help="style method for --style (default %(default)s)")
    parser.add_argument("--sessions", type=int, default=defaults["sessions"], help="the soak's cameras (default %(default)s)")
    parser.add_argument("--source-fps", type=float, default=defaults["source_fps"], help="every camera's frame rate (default %(default)s)")
    parser.add_argument("--minutes", type=float, help=f"the soak's length; 0: no soak (default {FULL.minutes:g}; smoke {SMOKE.minutes:.2g})")
    parser.add_argument("--every", type=float, help=f"seconds between the soak's samples (default {FULL.every:g}; smoke {SMOKE.every:g})")
    parser.add_argument("--churn", type=int, help=f"visitors who come and go; 0: no churn (default {FULL.churn}; smoke {SMOKE.churn})")
    parser.add_argument("--concurrent", type=int, default=defaults["concurrent"], help="churn visitors at a time (default %(default)s)")
    parser.add_argument("--seats", type=int, default=defaults["seats"], help="live seats for the churn (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="the churn's visitors (default %(default)s)")
    parser.add_argument("--smoke", action="store_true", help="the CI run: " + ", ".join(f"--{k} {v:.3g}" for k, v in asdict(SMOKE).items()))
    parser.add_argument("--out", help="also write the JSON here (e.g. docs/soak.json), with the machine and the date")
    args = vars(parser.parse_args(argv))
    lengths = {f.name: args.pop(f.name) for f in fields(Plan)}
    plan = replace(SMOKE if args.pop("smoke") else FULL, **{name: value for name, value in lengths.items() if value is not None})
    out = args.pop("out")
    report = run(**{**args, "device": str(configure(args["device"])), "plan": plan})
    if out:
        report["machine"] = common.machine()
    common.print_report(report, out)


if __name__ == "__main__":
    main()
