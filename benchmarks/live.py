"""Live dreaming throughput and latency, fed by synthetic moving cameras (no camera needed).

The camera loop delivers frames of generated camera moves at the source frame rate into live
sessions of one `LiveEngine` (newest frame wins, stale frames dropped), which dreams them: with
`--sessions N`, N cameras with different objectives and strengths share the engine's batched
scheduler, after one session alone with the same settings in the same run (`scaling` compares
the two). Prints progress on stderr and one JSON object on its last line. The first frame of a
session (a full still dream, or a cold start) is left out of the steady-state figures, and with
several sessions every session's figures start once all of them are past their first (the session
measured alone before starts warm, and would otherwise count the others' start as its own). `run()`
is the same measurement for other scripts (`benchmarks/suite.py`).

With `--ray [ADDRESS]`, the N visitors go through the web app's seats (`admission.LiveRoom`) twice in
one run, each in a loop of its own that sends its camera's next frame when the last came back (as a
browser's stream does): once on this process's engine, once on `--replicas` live engine replicas on
Ray (`streamdream.distributed.live_replicas`; a local Ray without ADDRESS), so the two sets of
figures compare. `hop` is what the trip to a replica adds to a frame's latency (the round trip
less the replica's own latency). With `--kill-one`, the same visitors then go on while one replica
is killed halfway through: each visitor's longest time without a frame from then on is reported,
the moved visitors' and the others' apart, beside the others' usual time between frames (the median,
before the kill and after it, when their replica serves the moved visitors too).

    python benchmarks/live.py --device cpu --resolution 320x240 --frames 60
    python benchmarks/live.py --device cuda --resolution 1280x720 --frames 300 --preset balanced
    python benchmarks/live.py --device cuda --resolution 640x480 --frames 300 --eager   # without CUDA graphs
    python benchmarks/live.py --device cuda --resolution 640x480 --frames 300 --style ../shared/styles/starry_night.jpg
    python benchmarks/live.py --device cpu --resolution 320x240 --style builtin:19 --method net
    python benchmarks/live.py --device cpu --resolution 160x120 --sessions 4 --frames 40
    python benchmarks/live.py --device cuda --resolution 640x480 --sessions 16 --frames 300
    python benchmarks/live.py --device cpu --resolution 160x120 --sessions 8 --frames 20 --ray --replicas 2 --kill-one
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamdream  # noqa: E402,F401  (first: sets OpenMP's spin count before torch loads)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamdream.samples.make import KINDS, camera_frames  # noqa: E402
from streamdream.dream import Dreamer  # noqa: E402
from streamdream.carry import FrameMode  # noqa: E402
from streamdream.admission import LiveRoom  # noqa: E402
from streamdream.distributed.live_replicas import RemoteSession, start_replicas  # noqa: E402
from streamdream.engine import LiveEngine, LiveResult  # noqa: E402
from streamdream.looks import Look  # noqa: E402
from benchmarks import common  # noqa: E402
from streamdream.settings import STYLE_METHOD, TemporalSettings, live_preset, preset  # noqa: E402
from streamdream.style_net import create_stylizer  # noqa: E402

VISITORS = [(None, 1.0), ("blocks.3:5", 2.0), ("blocks.4", 0.5), ("blocks.4:39", 1.5)]
"""What the simulated visitors choose (objective, strength), in turn: no two neighbours alike."""

Results = list[tuple[LiveResult, dict, float]]  # result, the session's stage timings, wall time when ready


def cameras(count: int, size: tuple[int, int], length: int = 120) -> list[list[np.ndarray]]:
    """`count` different moving cameras: the sample moves (pan, zoom, rotate), then their mirror
    images, then the same started later in the clip."""
    moves = {kind: camera_frames(kind, size, length)[0] for kind in KINDS[: min(count, len(KINDS))]}
    clips = []
    for i in range(count):
        clip = moves[KINDS[i % len(KINDS)]]
        if i // len(KINDS) % 2:
            clip = [np.ascontiguousarray(frame[:, ::-1]) for frame in clip]
        offset = 7 * (i // (2 * len(KINDS)))
        clips.append(clip[offset:] + clip[:offset])
    return clips


def camera_frame(clip: list[np.ndarray], index: int) -> np.ndarray:
    """The camera's frame at tick `index`: the clip forth and back, so the motion never jumps."""
    return clip[index % len(clip)] if index // len(clip) % 2 == 0 else clip[-1 - index % len(clip)]


def visitor_modes(count: int, *, device: str, eager: bool = False, style=None, method: str = STYLE_METHOD) -> list[FrameMode]:
    """The modes of `count` simulated visitors: dreams with `VISITORS`' objectives and strengths in turn
    (each built once and shared, as the web app shares its modes), or all one painting's style by `method`."""
    options = {"device": device, "cuda_graphs": not eager}
    if style is not None:
        return [create_stylizer(method, style, **options)] * count
    dreamers = [Dreamer(objective=objective, strength=strength, **options) for objective, strength in VISITORS[:count]]
    return [dreamers[i % len(dreamers)] for i in range(count)]


@dataclass
class Measured:
    results: list[Results]  # per stream
    dropped: list[int]  # per stream: camera frames replaced before the engine took them
    mean_batch: float  # frames per optimizer call once every stream was running (first frames left out)
    since: float | None  # when every stream had a result after its first (`time.perf_counter()`): steady from then on


def measure(modes: list[FrameMode], settings: TemporalSettings, clips: list[list[np.ndarray]], frames: int, source_fps: float,
            deadline: float | None) -> Measured:
    """Feed one live stream per mode its camera at `source_fps` through one live engine until every
    stream has `frames` results from the moment all of them are past their first (`Measured.since`).

    Until then a stream that started warm (its mode measured before) shares the machine with the
    others' first frames and still-effect measurements: counting its results from its own second one
    on would put the others' start in its steady frame rate."""
    results: list[Results] = [[] for _ in modes]
    done, running = threading.Event(), threading.Event()
    since: list[float] = []
    sessions = []

    def collector(i: int):
        def collect(result: LiveResult) -> None:
            now = time.perf_counter()
            results[i].append((result, vars(sessions[i].stream.timings).copy(), now))
            if not since and min(len(r) for r in results) >= 2:
                since.append(now)
                running.set()
            counts = [sum(t >= since[0] for _, _, t in r) if since else 0 for r in results]
            if min(counts) == counts[i] and not done.is_set():  # this stream was among the slowest: the count moved
                print(f"\r{counts[i]}/{frames} frames" + (f" on each of {len(modes)} sessions" if len(modes) > 1 else ""), end="", file=sys.stderr)
            if min(counts) >= frames:
                done.set()
        return collect

    with LiveEngine() as engine:
        sessions += [engine.open(mode, settings, on_result=collector(i)) for i, mode in enumerate(modes)]
        index, counted = 0, None
        while not done.is_set() and (deadline is None or time.perf_counter() < deadline):
            if counted is None and running.is_set():
                counted = (engine.steps, engine.batched)  # from here on every session is warm
            for session, clip in zip(sessions, clips):  # the cameras: one frame per period, kept up with or not
                session.submit(camera_frame(clip, index))
            index += 1
            time.sleep(1.0 / source_fps)
        steps, batched = engine.steps - (counted or (0, 0))[0], engine.batched - (counted or (0, 0))[1]
    print(file=sys.stderr)
    return Measured(results, [session.dropped for session in sessions], batched / steps if steps else 0.0, since[0] if since else None)


def visitor_looks(count: int) -> list[Look]:
    """`VISITORS` in turn as the web app's looks: what a visitor sends a replica, which builds the same dream `visitor_modes` makes."""
    return [Look(objective=objective or "", strength=strength) for objective, strength in (VISITORS[i % len(VISITORS)] for i in range(count))]


def visit(room: LiveRoom, mode_of: Callable[[Look], object], looks: list[Look], settings: TemporalSettings, clips: list[list[np.ndarray]],
          frames: int, deadline: float | None, midway: Callable[[], None] | None = None) -> list[Results]:
    """Each visitor's camera through `room`, in a loop of its own (its next frame when the last came
    back), until each has `frames` results after its first; `midway()` runs once, as soon as one
    visitor has half of them and every visitor streams (has a result after its first), on the thread
    of that visitor, while the others stream on: all of them are still streaming then, and none is
    held back (at a barrier, the faster visitors would go without frames for the wait, and every
    gap from then on would look like the slowest visitor's). The stage-timings slot of each result holds
    its `hop_ms` (0 in this process)."""
    results: list[Results] = [[] for _ in looks]
    halfway = threading.Lock()  # taken, for good, by the visitor that runs `midway`

    def made(open_session, look: Look, image: np.ndarray) -> tuple[LiveResult, float]:
        session = open_session(mode_of(look), settings, look.stream)
        return session.wait(session.submit(image)), session.hop_ms if isinstance(session, RemoteSession) else 0.0

    def visitor(i: int) -> None:
        index = 0
        while len(results[i]) <= frames and (deadline is None or time.perf_counter() < deadline):
            result, hop_ms = room.serve(f"visitor {i}", functools.partial(made, look=looks[i], image=camera_frame(clips[i], index)))
            index += 1
            results[i].append((result, {"hop_ms": hop_ms}, time.perf_counter()))
            if midway is not None and len(results[i]) > frames // 2 and all(len(r) > 1 for r in results) and halfway.acquire(blocking=False):
                midway()

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(len(looks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i in range(len(looks)):
        room.leave(f"visitor {i}")
    return results


def figures(results: list[Results], frames: int, resolution: str) -> dict:
    """Aggregate and per-session frame rates and latencies of steady results (and the hop's, on Ray)."""
    kept = [steady(r, frames, resolution) for r in results]
    per_session = [fps(k) for k in kept]
    latencies = np.concatenate([[r.latency_ms for r, _, _ in k] for k in kept])
    hops = np.concatenate([[t["hop_ms"] for _, t, _ in k] for k in kept])
    return {
        "aggregate_fps": sum(per_session),
        "per_session_fps": per_session,
        "fairness": min(per_session) / max(per_session),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "hop_p50_ms": float(np.percentile(hops, 50)),
        "hop_p95_ms": float(np.percentile(hops, 95)),
    }


def arrivals(results: Results) -> list[float]:
    """When each of a visitor's results came (`time.perf_counter()`)."""
    return [t for _, _, t in results]


def longest_gap_s(times: list[float], since: float) -> float:
    """The longest time a visitor went without a frame (`times`: when its frames came) from `since` on
    (counted from its last frame before)."""
    before = [t for t in times if t < since]
    after = [t for t in times if t >= since]
    stamps = before[-1:] + after
    return max((b - a for a, b in itertools.pairwise(stamps)), default=0.0)


def median_gap_s(visitors: list[list[float]], since: float, after: bool) -> float:
    """The visitors' usual time between frames (the median gap; each visitor's `times` its frames
    came at) before `since`, or from their last frame before it on."""
    gaps = []
    for times in visitors:
        first = max((i for i, t in enumerate(times) if t < since), default=0)
        gaps += list(np.diff(times[first:] if after else times[: first + 1]))
    return float(np.median(gaps)) if gaps else 0.0


def run_on_ray(device: str, resolution: str, frames: int, preset_name: str, sessions: int, address: str, replicas: int, kill_one: bool,
               deadline: float | None) -> dict:
    """The visitors on this process's engine, then on `replicas` Ray replicas (and one killed midway with `kill_one`)."""
    width, height = (int(v) for v in resolution.split("x"))
    looks = visitor_looks(sessions)
    name = preset_name if preset_name != "auto" else live_preset(torch.device(device))
    settings = preset(name)
    clips = cameras(sessions, (width, height))
    load = os.getloadavg()
    with LiveEngine() as engine:
        here = visit(LiveRoom(engine, sessions), Look.mode, looks, settings, clips, frames, deadline)
    print("in process: done", file=sys.stderr)
    fleet = start_replicas(address, replicas, capacity=sessions)  # seats for every visitor on any replica: throughput, not admission
    try:
        room = fleet.room()
        names = [replica.name for replica in fleet.replicas]
        on_ray = visit(room, lambda look: look, looks, settings, clips, frames, deadline)
        print("on Ray: done", file=sys.stderr)
        report = {
            "device": device, "mode": "dream", "resolution": resolution, "preset": name, "sessions": sessions, "frames": frames,
            "replicas": names, "load_average_before": load,
            "in_process": {key: value for key, value in figures(here, frames, resolution).items() if not key.startswith("hop")},
            "ray": figures(on_ray, frames, resolution),
        }
        report["ray_vs_in_process"] = report["ray"]["aggregate_fps"] / report["in_process"]["aggregate_fps"]
        if kill_one:
            killed: dict = {}

            def kill() -> None:  # the first replica, while every visitor streams
                doomed = fleet.replicas[0]
                killed.update(name=doomed.name, at=time.perf_counter(), visitors=[key for key, session in room.sessions().items()
                                                                                    if isinstance(session, RemoteSession) and session.replica is doomed])
                fleet.ray.kill(doomed.actor)

            faulty = visit(room, lambda look: look, looks, settings, clips, frames, deadline, midway=kill)
            gaps = {f"visitor {i}": longest_gap_s(arrivals(r), killed["at"]) for i, r in enumerate(faulty)}
            report["fault"] = {
                "killed": killed["name"],
                "moved": killed["visitors"],
                "longest_gap_s_moved": {key: gaps[key] for key in killed["visitors"]},
                "longest_gap_s_others": {key: gap for key, gap in gaps.items() if key not in killed["visitors"]},
                "median_gap_s_others": {when: median_gap_s([arrivals(r) for i, r in enumerate(faulty) if f"visitor {i}" not in killed["visitors"]],
                                                           killed["at"], after=when == "after") for when in ("before", "after")},
                "target_s": 2.0,
            }
        report["load_average_after"] = os.getloadavg()
        return report
    finally:
        fleet.close()


def steady(results: Results, frames: int, resolution: str, since: float | None = None) -> Results:
    """The results after the first (a still dream, or a cold start) and, given `since`, from then on
    (`Measured.since`), at most `frames` of them."""
    kept = [r for r in results[1:] if since is None or r[2] >= since][:frames]
    if len(kept) < 2:
        raise TimeoutError(f"{len(kept)} steady {resolution} frames before the deadline, at least 2 needed")
    return kept


def fps(results: Results) -> float:
    """Results per second of wall time, sustained."""
    return (len(results) - 1) / (results[-1][2] - results[0][2])


def run(
    *,
    device: str = "cpu",
    resolution: str = "320x240",
    frames: int = 60,
    preset_name: str = "auto",
    source_fps: float = 30.0,
    eager: bool = False,
    style=None,
    method: str = STYLE_METHOD,
    sessions: int = 1,
    ray: str | None = None,
    replicas: int = 2,
    kill_one: bool = False,
    deadline: float | None = None,
) -> dict:
    """Live sessions measured over `frames` results each after their first; returns the JSON report.

    One session: throughput, latency, stage timings and memory. Several (`sessions`): N cameras,
    each with its own objective and strength (`VISITORS`), served together by one engine, and one
    session alone with the first visitor's settings measured first in the same run, for `scaling`.
    `style`: a painting (path or picture, or "builtin:N") for neural style by `method` instead of the dream. `deadline` (a
    `time.perf_counter()` value) ends the measurement early with the results so far, so a caller
    with a time budget is never held up; fewer than two steady results by then is a TimeoutError.
    `ray`: the visitors' dreams on this process's engine and on `replicas` live replicas on the Ray
    cluster at that address ("local": a Ray of this machine's own), `kill_one` killing one midway
    (`run_on_ray`).
    """
    if ray is not None:
        if style is not None:
            raise SystemExit("--ray measures the visitors' dreams (VISITORS); leave --style out")
        if kill_one and replicas < 2:
            raise SystemExit("--kill-one needs --replicas 2 or more: the visitors move to the replicas left")
        return run_on_ray(device, resolution, frames, preset_name, sessions, ray, replicas, kill_one, deadline)
    width, height = (int(v) for v in resolution.split("x"))
    modes = visitor_modes(sessions, device=device, eager=eager, style=style, method=method)
    name = preset_name if preset_name != "auto" else live_preset(modes[0].device)
    clips = cameras(sessions, (width, height))
    if modes[0].device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    alone = measure(modes[:1], preset(name), clips[:1], frames, source_fps, deadline)
    kept = steady(alone.results[0], frames, resolution, alone.since)
    latencies = np.array([r.latency_ms for r, _, _ in kept])
    report = {
        "device": str(modes[0].device),
        "mode": f"style ({method})" if style is not None else "dream",
        "resolution": resolution,
        "preset": name,
        "source_fps": source_fps,
        "frames": len(kept),
        "fps": fps(kept),
        "latency_p50_ms": float(np.percentile(latencies, 50)),
        "latency_p95_ms": float(np.percentile(latencies, 95)),
        "first_frame_ms": alone.results[0][0][0].latency_ms,
        "dropped": alone.dropped[0],
        "gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if modes[0].device.type == "cuda" else 0.0,
        "gpu_reserved_mb": torch.cuda.max_memory_reserved() / 2**20 if modes[0].device.type == "cuda" else 0.0,
        "captured_graphs": len(modes[0].graphs) if modes[0].graphs is not None else 0,
        **{key: float(np.mean([t[key] for _, t, _ in kept])) for key in ("flow_ms", "optimize_ms", "io_ms")},
    }
    if sessions == 1:
        return report
    many = measure(modes, preset(name), clips, frames, source_fps, deadline)
    kept_each = [steady(r, frames, resolution, many.since) for r in many.results]
    per_session = [fps(k) for k in kept_each]
    return {
        **{key: report[key] for key in ("device", "mode", "resolution", "preset", "source_fps")},
        "sessions": sessions,
        "frames": min(len(k) for k in kept_each),
        "per_session_fps": per_session,
        "latency_p95_ms": [float(np.percentile([r.latency_ms for r, _, _ in k], 95)) for k in kept_each],
        "aggregate_fps": sum(per_session),
        "single_session_fps": report["fps"],
        "scaling": sum(per_session) / report["fps"],
        "fairness": min(per_session) / max(per_session),  # 1: every session at the same rate
        "mean_batch": many.mean_batch,
        "dropped": many.dropped,
        "gpu_mem_mb": torch.cuda.max_memory_allocated() / 2**20 if modes[0].device.type == "cuda" else 0.0,
    }


def main() -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--frames", type=int, help="results to collect after the first frame (default %(default)s)")
        parser.add_argument("--source-fps", type=float, help="the simulated camera's frame rate (default %(default)s)")
        parser.add_argument("--style", metavar="PAINTING", help="neural style with this painting (or builtin:N) instead of the dream")
        parser.add_argument("--method", help="style method: net, refine or optimize (default %(default)s)")
        parser.add_argument("--sessions", type=int, help="live sessions served together, each its own camera, objective and strength; "
                            "also measures one session alone in the same run (default %(default)s)")
        parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                            help="the sessions on this process's engine, then on live engine replicas on Ray (a local Ray without ADDRESS)")
        parser.add_argument("--replicas", type=int, help="with --ray: live engine replicas (default %(default)s)")
        parser.add_argument("--kill-one", action="store_true", help="with --ray: then kill one replica midway and report each visitor's longest time without a frame")

    common.main(run, __doc__, add_arguments, "fast, balanced, quality; auto = fast on CPU, balanced on GPU")


if __name__ == "__main__":
    main()
