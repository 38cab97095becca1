"""Live visitors past one machine: live engine replicas as Ray actors, one router in the app.

One process serves live visitors from one GPU (or CPU), and the seats it measures are all there
are. Here each Ray actor (`LiveReplica`: one per GPU, or `count` on CPUs) holds a `LiveEngine`,
builds its visitors' modes from their `looks.Look` once (the look is a few fields; a mode holds a
model and never travels) and batches its visitors' frames exactly as the app's own engine does.
The app keeps its `admission.LiveRoom` with the router, `LiveReplicas`, in the engine's place
(`LiveReplicas.room`): the seats, the queue and its "you are number K" stay in one process and
global, and only frames travel.

Why the pieces are as they are:

* affinity: a visitor's session (`RemoteSession`) lives on one replica, where its warm state is,
  and sends every frame there; a new session goes to the replica with the most free seats (its
  capacity less the sessions open on it);
* one queue: the room's `Seats` hold the sum of the replicas' capacities, each measured on its
  replica (`looks.default_capacity`) or given; the sum follows replicas that die or are added (a
  replica added takes the next visitors at once);
* faults: a frame whose replica died (`RayActorError`) moves every session of that replica to the
  replicas left at once, fresh (its warm state died with it), sends the frame again there, and
  those sessions' `notice` says so for `RAY_LIVE_NOTICE_S`; nobody else notices. The moved
  visitors keep their seats, so the survivors serve more than they measured until visitors leave;
* a frame is one actor call (`LiveReplica.frame`, which returns its result); a threaded actor takes
  `RAY_LIVE_CALLS` at once, so the replica's engine sees all its visitors' frames and batches them;
* the web app's other model work (a Still tab's still, a Video tab's render) goes to the replica
  with the most free seats (`LiveReplicas.still`, `LiveReplicas.render`) as the recipe of its mode
  (a picklable call that builds it, `looks.frame_mode`'s) and the pixels or the file's bytes, and
  comes back by value: the app keeps its outputs in its own folder and no node needs its files. The
  replica runs it on its engine as the app's own process does (`LiveEngine.run`, `serialized`),
  taking turns with its live frames; a render's progress is polled from the replica
  (`LiveReplica.progress`) and a cancelled one is stopped with `ray.cancel`;
* actors, `ray.get`, `ray.wait`, `ray.cancel` and `ray.kill` are all the cluster code there is; the
  connection is `ray_render`'s (`connect`), and `ray` is imported only when replicas start.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..admission import LiveRoom, Seats, resume
from ..carry import FrameMode
from ..engine import LiveEngine, LiveResult, LiveSession
from ..errors import StreamdreamError
from ..looks import Look, Recipe, default_capacity
from ..session import FrameTimings
from ..settings import (
    LIVE_QUEUE_LIMIT,
    LIVE_SEAT_IDLE_S,
    RAY_LIVE_CALLS,
    RAY_LIVE_NOTICE_S,
    RAY_LIVE_START_S,
    TemporalSettings,
)
from ..video import FrameCallback, RenderOptions, RenderReport, process_video
from .ray_render import connect, import_ray

log = logging.getLogger(__name__)

MOVED = "the live server you were on stopped: your dream started afresh on another"
NONE_LEFT = "no live replica is left on the Ray cluster"

Build = Callable[[Look], FrameMode]  # a look's mode, the same object for the same look (`Look.mode` caches)
PROGRESS_S = 0.5  # seconds between two looks at a render's progress on its replica


@dataclass(frozen=True)
class Served:
    """A frame's answer from its replica: the result, and what the visitor's readout shows of the stream."""

    result: LiveResult
    fps: float
    processed: int
    dropped: int
    working_side: int | None
    timings: FrameTimings


@dataclass
class _Visitor:
    """A replica's record of one visitor: the session serving it and the look and settings it is served with."""

    session: LiveSession
    look: Look
    settings: TemporalSettings | None
    mode: FrameMode  # the look's, built here


class LiveReplica:
    """A Ray actor: one live engine, its visitors' sessions by the router's session number.

    The router decides who is served and whether a stream starts afresh; the replica opens a
    visitor's session at its first frame and keeps its look and settings, which a frame brings only
    when they change (`RemoteSession`).
    """

    def __init__(self, build: Build, device: str, threads: int | None, capacity: int | None) -> None:
        import ray

        from ..runtime import configure

        configure(device, threads=threads)
        self.name = f"replica {os.getpid()} on {ray.util.get_node_ip_address()}"
        self.build = build
        self.engine = LiveEngine()
        self.capacity = capacity if capacity is not None else default_capacity(self.engine).capacity
        self._lock = threading.Lock()
        self._visitors: dict[int, _Visitor] = {}
        self._progress: dict[str, tuple[int, int | None]] = {}  # render key -> how far it is

    def ready(self) -> tuple[str, int]:
        """(name, seats): the replica has its engine and knows its capacity."""
        return self.name, self.capacity

    def frame(self, number: int, image: np.ndarray, fresh: bool = False, look: Look | None = None,
              settings: TemporalSettings | None = None) -> Served | Exception:
        """Session `number`'s frame, through `look`'s mode with `settings` when given (else those it
        has); `fresh` starts its stream afresh. A mode new to the stream is built here, on the call's
        thread, not on the engine's. A library error (a bad look, a frame lost to memory) comes back as
        the answer, one line for the visitor's readout as in the app's own process, where a raise
        would come back wrapped in Ray's traceback."""
        try:
            with self._lock:
                known = self._visitors.get(number)
            if look is not None:
                mode = self.build(look)
            elif known is not None:
                look, settings, mode = known.look, known.settings, known.mode
            else:
                raise StreamdreamError(f"live session {number} sent no look with its first frame")
            with self._lock:
                session = resume(self.engine, known.session if known else None, mode, settings, fresh=fresh)
                self._visitors[number] = _Visitor(session, look, settings, mode)
            result = session.wait(session.submit(image))
        except StreamdreamError as error:
            return error
        return Served(result, session.fps(), session.processed, session.dropped, session.working_side, replace(session.stream.timings))

    def close(self, number: int) -> None:
        with self._lock:
            visitor = self._visitors.pop(number, None)
        if visitor is not None:
            visitor.session.close()

    def still(self, recipe: Recipe, rgb: np.ndarray, seed: int | None) -> np.ndarray | Exception:
        """The still of `rgb` (H x W x 3 uint8) by `recipe`'s mode, under the engine's compute lock
        (`LiveEngine.run`), as the app's own process makes it; a library error comes back as the answer."""
        try:
            return self.engine.run(_still, recipe, rgb, seed)
        except StreamdreamError as error:
            return error

    def render(self, key: str, recipe: Recipe, video: bytes, name: str, suffix: str,
               options: RenderOptions) -> tuple[bytes, RenderReport] | Exception:
        """The video `video` (the bytes of the file `name`) rendered by `recipe`'s mode (`process_video`)
        into a `suffix` file, as its bytes, with the report; its frames take turns with the live frames
        (`LiveEngine.serialized`). The files live in a folder of this call's own, gone after it.
        `progress(key)` tells how far it is; after `ray.cancel` it stops at the next frame. A library
        error comes back as the answer."""
        import ray

        context = ray.get_runtime_context()

        def on_frame(done: int, total: int | None) -> None:
            if context.is_canceled():
                raise StreamdreamError("the render was cancelled")
            self._progress[key] = (done, total)

        try:
            with tempfile.TemporaryDirectory(prefix="streamdream-replica-") as folder:
                src, dst = Path(folder) / name, Path(folder) / f"output{suffix}"
                src.write_bytes(video)
                report = process_video(src, dst, self.engine.serialized(recipe()), options, on_frame=on_frame)
                return dst.read_bytes(), report
        except StreamdreamError as error:
            return error
        finally:
            self._progress.pop(key, None)

    def progress(self, key: str) -> tuple[int, int | None] | None:
        """(frames done, frames in all if known) of render `key` so far; None before its first frame or after its end."""
        return self._progress.get(key)


@dataclass(eq=False)
class _Replica:
    """The router's record of one replica: its actor, seats and the sessions open on it."""

    actor: Any
    name: str
    capacity: int
    sessions: set[RemoteSession] = field(default_factory=set)
    alive: bool = True

    @property
    def free(self) -> int:
        return self.capacity - len(self.sessions)


@dataclass(frozen=True)
class _Sent:
    """What a frame went out under: its replica (the same one, not an equal one), look and settings."""

    replica: _Replica
    look: Look
    settings: TemporalSettings | None


@dataclass
class _Stream:
    timings: FrameTimings = field(default_factory=FrameTimings)  # the last frame's stage timings, on its replica


class RemoteSession:
    """A visitor's live session as the app holds it (what a front end uses of a `LiveSession`), its
    stream on one replica.

    `submit` sends the frame to the replica at once (an actor call; it never blocks) and `wait` gets
    its result, with `latency_ms` from `submit` to the result here. `mode` is the visitor's `Look`
    (the replica builds its mode) and `settings` the stream's, sent with a frame only until the
    replica has answered a frame under them (it keeps each session's): from then on a frame is its
    pixels alone, the less for the hop to carry and unpickle; `reset` starts the stream afresh from
    the next frame. The readout's figures (`fps`, `processed`, `dropped`, `working_side`,
    `stream.timings`) are the replica's, as of the last result; `hop_ms` is what the trip to the
    replica added to it. `notice` says for `RAY_LIVE_NOTICE_S` that the session moved because its
    replica stopped.
    """

    def __init__(self, replicas: LiveReplicas, replica: _Replica, number: int, mode: Look, settings: TemporalSettings | None) -> None:
        self.replicas, self.replica, self.number = replicas, replica, number
        self.mode, self.settings = mode, settings
        self.closed = False
        self.submitted = self.processed = self.dropped = 0
        self.working_side: int | None = None
        self.stream = _Stream()
        self.hop_ms = 0.0
        self.moved_at: float | None = None  # when its replica died and it moved (the router's clock)
        self._fps = 0.0
        self._fresh = False
        self._lock = threading.Lock()
        self._known: _Sent | None = None  # the replica, look and settings of the last frame answered
        # frame number -> image, when submitted, the replica it went to with the look and settings it ran under, and its ObjectRef there
        self._flight: dict[int, tuple[np.ndarray, float, _Sent, Any]] = {}

    def submit(self, image: np.ndarray) -> int:
        """Send the newest frame (H x W x 3 uint8) to the replica; returns its number, for `wait`."""
        with self._lock:
            self._check()
            self.submitted += 1
            self._flight[self.submitted] = (image, time.perf_counter(), *self._send(image))
            return self.submitted

    def wait(self, frame: int | None = None, timeout: float | None = None) -> LiveResult:
        """The result of frame number `frame` (default: the last submitted), sent again to another
        replica if its own died meanwhile. Raises the replica's error for the frame (a bad look, a
        lost frame), `TimeoutError` after `timeout` seconds, and `StreamdreamError` when no replica is left."""
        ray = self.replicas.ray
        frame = self.submitted if frame is None else frame
        with self._lock:
            self._check()  # closed: its frames are not waited for
            image, submitted, sent, ref = self._flight[frame]
        while True:
            try:
                answer = ray.get(ref, timeout=timeout)
                break
            except ray.exceptions.GetTimeoutError:
                raise TimeoutError(f"no result for frame {frame} within {timeout} s") from None
            except ray.exceptions.RayActorError:
                self.replicas.lost(sent.replica)  # the one the frame went to (the session may have moved since): moves it, or says none is left
                with self._lock:
                    self._check()
                    sent, ref = self._send(image)
                    self._flight[frame] = (image, submitted, sent, ref)
        with self._lock:
            self._flight.pop(frame, None)
            if isinstance(answer, Exception):
                raise answer
            self._known = sent
            latency_ms = (time.perf_counter() - submitted) * 1000
            self.hop_ms = latency_ms - answer.result.latency_ms
            self.processed, self.dropped, self.working_side, self._fps = answer.processed, answer.dropped, answer.working_side, answer.fps
            self.stream.timings = answer.timings
            return replace(answer.result, latency_ms=latency_ms, frame=frame)

    def fps(self) -> float:
        """Results per second over the last few results (the replica's count)."""
        return self._fps

    @property
    def notice(self) -> str | None:
        """`MOVED` for `RAY_LIVE_NOTICE_S` after the session moved to another replica, else None."""
        if self.moved_at is not None and self.replicas.clock() - self.moved_at < RAY_LIVE_NOTICE_S:
            return MOVED
        return None

    def reset(self) -> None:
        """The next frame starts afresh (a new look: the old result does not carry over)."""
        with self._lock:
            self._fresh = True

    def close(self) -> None:
        """Stop serving the session: its stream on the replica closes and its frames in flight are not waited for."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._flight.clear()
        self.replicas.forget(self)

    def _send(self, image: np.ndarray) -> tuple[_Sent, Any]:  # under self._lock
        """Where the frame goes (the session's replica now) under which look and settings, and the
        frame's ObjectRef there; the look and settings travel unless the replica answered under them."""
        fresh, self._fresh = self._fresh, False
        sent = _Sent(self.replica, self.mode, self.settings)
        if sent == self._known:
            return sent, sent.replica.actor.frame.remote(self.number, image, fresh)
        return sent, sent.replica.actor.frame.remote(self.number, image, fresh, sent.look, sent.settings)

    def _check(self) -> None:
        if self.closed:
            raise StreamdreamError("the live session is closed")


class LiveReplicas:
    """The router: live engine replicas on Ray, seen by a `LiveRoom` as its engine (`open`).

    `ray`: the module; `build`: a look's mode, sent to each replica once (default `Look.mode`);
    `options`: each actor's Ray resources (`num_cpus`, `num_gpus`); `threads`: torch's threads on
    each; `capacity`: each replica's seats (None: measured on it); `started`: this process started
    the Ray it runs on and shuts it down on `close`. `clock`: seconds, monotonic, for the seats'
    idleness and the notices (tests pass their own). Start them with `start_replicas`.
    """

    def __init__(self, ray, *, build: Build = Look.mode, options: dict | None = None, device: str = "auto", threads: int | None = None,
                 capacity: int | None = None, started: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.ray, self.started, self.clock = ray, started, clock
        self._remote = ray.remote(LiveReplica).options(max_restarts=0, max_concurrency=RAY_LIVE_CALLS, **(options or {}))
        self._arguments = (build, device, threads, capacity)
        self._lock = threading.Lock()
        self._replicas: list[_Replica] = []
        self._numbers = itertools.count(1)
        self._seats: Seats | None = None  # the room's, whose capacity follows the replicas'

    @property
    def replicas(self) -> list[_Replica]:
        """The replicas serving now."""
        with self._lock:
            return [r for r in self._replicas if r.alive]

    @property
    def capacity(self) -> int:
        """The seats of the replicas serving now."""
        return sum(r.capacity for r in self.replicas)

    def add(self, count: int) -> None:
        """Start `count` replicas and wait until they serve; they take the next visitors at once.

        Raises `StreamdreamError` in one line when they cannot start: the workers cannot import
        streamdream, a replica failed, or the cluster has no room for them within `RAY_LIVE_START_S`.
        """
        ray = self.ray
        actors = [self._remote.remote(*self._arguments) for _ in range(count)]
        try:
            ready = ray.get([actor.ready.remote() for actor in actors], timeout=RAY_LIVE_START_S)
        except ray.exceptions.RayError as error:  # a timeout, an actor that died starting, a class its worker could not import
            for actor in actors:
                ray.kill(actor)
            if isinstance(error, ray.exceptions.GetTimeoutError):
                raise StreamdreamError(f"{count} live replicas did not start within {RAY_LIVE_START_S:g} s: the Ray cluster has no free CPUs or GPUs for them") from None
            raise StreamdreamError(start_failure(error)) from None
        with self._lock:
            self._replicas += [_Replica(actor, name, capacity) for actor, (name, capacity) in zip(actors, ready, strict=True)]
        self._follow_capacity()

    def room(self, *, idle_s: float = LIVE_SEAT_IDLE_S, queue_limit: int = LIVE_QUEUE_LIMIT) -> LiveRoom:
        """The seats in front of these replicas: one queue, as many seats as the replicas serving now have."""
        room = LiveRoom(self, max(1, self.capacity), idle_s=idle_s, queue_limit=queue_limit, clock=self.clock)
        self._seats = room.seats
        return room

    def open(self, mode: Look, settings: TemporalSettings | None = None, *, seed: int | None = 0) -> RemoteSession:
        """A new visitor's session (what `LiveRoom` asks of its engine), on the replica with the most free seats.

        `mode`: the visitor's `Look`, built on the replica; `seed` must be 0, the only one a replica opens with."""
        if seed != 0:
            raise StreamdreamError(f"live replicas open their streams with seed 0, not {seed}")
        with self._lock:
            replica = self._roomiest()
            session = RemoteSession(self, replica, next(self._numbers), mode, settings)
            replica.sessions.add(session)
            return session

    def lost(self, replica: _Replica) -> None:
        """`replica` died: each of its sessions moves, fresh, to the replica with the most free seats.
        Raises `StreamdreamError` (`NONE_LEFT`) when no replica is left to move to."""
        with self._lock:
            first = replica.alive  # the first frame to hear of it moves the sessions; the others find them moved
            replica.alive = False
            moving = list(replica.sessions)
            replica.sessions.clear()
            left = any(r.alive for r in self._replicas)
            now = self.clock()
            for session in moving if left else ():
                session.replica, session.moved_at = self._roomiest(), now
                session.replica.sessions.add(session)
        if first:
            log.warning("live %s stopped; its %d visitors start afresh on the others", replica.name, len(moving))
            self.ray.kill(replica.actor)  # dead, or unreachable for good (`max_restarts=0`): it serves nobody now
            self._follow_capacity()
        if not left:
            raise StreamdreamError(NONE_LEFT)

    def forget(self, session: RemoteSession) -> None:
        """A closed session: its seat on its replica frees, and its stream there closes."""
        with self._lock:
            replica = session.replica
            replica.sessions.discard(session)
        if replica.alive:
            replica.actor.close.remote(session.number)

    def still(self, recipe: Recipe, rgb: np.ndarray, seed: int | None) -> tuple[np.ndarray, str]:
        """(the still of `rgb` by `recipe`'s mode, the name of the replica that made it): made on the
        replica with the most free seats (`LiveReplica.still`). Raises the replica's library error."""
        return self._on_replica(lambda actor: actor.still.remote(recipe, rgb, seed))

    def render(self, recipe: Recipe, src: str | os.PathLike, dst: str | os.PathLike, options: RenderOptions,
               on_frame: FrameCallback | None = None) -> tuple[RenderReport, str]:
        """(`process_video`'s report, the name of the replica that rendered it): the video `src` rendered
        into `dst` by `recipe`'s mode on the replica with the most free seats (`LiveReplica.render`).

        `on_frame(done, total)` runs here as the replica's progress is polled (every `PROGRESS_S`);
        when it raises (the visitor cancelled, the video is too long), the render on the replica is
        cancelled and the error goes on. Raises the replica's library error."""
        src, dst = Path(src), Path(dst)
        video, key = src.read_bytes(), uuid.uuid4().hex

        def follow(actor, ref) -> None:
            while not self.ray.wait([ref], timeout=PROGRESS_S)[0]:
                done = self.ray.get(actor.progress.remote(key))
                if done is not None and on_frame is not None:
                    on_frame(*done)

        (data, report), name = self._on_replica(lambda actor: actor.render.remote(key, recipe, video, src.name, dst.suffix, options), follow)
        dst.write_bytes(data)
        return replace(report, path=dst), name

    def _on_replica(self, send: Callable[[Any], Any], follow: Callable[[Any, Any], None] | None = None) -> tuple[Any, str]:
        """(the answer to `send(actor)`, the replica's name) from the replica with the most free seats,
        sent again to the one with the most left if it died meanwhile (`lost`). `follow(actor, ref)`
        watches the call until it is done; what it raises cancels the call (`ray.cancel`)."""
        ray = self.ray
        while True:
            with self._lock:
                replica = self._roomiest()
            ref = send(replica.actor)
            try:
                if follow is not None:
                    follow(replica.actor, ref)
                answer = ray.get(ref)
            except ray.exceptions.RayActorError:
                self.lost(replica)
                continue
            except BaseException:
                ray.cancel(ref)
                raise
            if isinstance(answer, Exception):
                raise answer
            return answer, replica.name

    def close(self) -> None:
        """Stop every replica (and the Ray this process started)."""
        with self._lock:
            replicas, self._replicas = self._replicas, []
        for replica in replicas:
            self.ray.kill(replica.actor)
        if self.started:
            self.ray.shutdown()

    def _roomiest(self) -> _Replica:  # under self._lock
        alive = [r for r in self._replicas if r.alive]
        if not alive:
            raise StreamdreamError(NONE_LEFT)
        return max(alive, key=lambda r: r.free)  # the first of the roomiest: ties go in start order

    def _follow_capacity(self) -> None:
        if self._seats is not None:
            self._seats.capacity = max(1, self.capacity)  # read under the seats' lock at each visit; an int is set at once


def _still(recipe: Recipe, rgb: np.ndarray, seed: int | None) -> np.ndarray:
    """The Still tab's work on a replica: the mode built there (cached), then its still."""
    return recipe().still(rgb, seed)


def start_failure(error: Exception) -> str:
    """Why replicas could not start, in one line: above all, workers that cannot import streamdream."""
    missing = re.search(r"No module named '([^']+)'", str(error))
    if missing:
        return (f"the Ray workers cannot import {missing.group(1)}: install streamdream (pip install 'streamdream[ray]') "
                "on every node of the cluster, in the Python its workers run")
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"a live replica failed to start: {lines[-1] if lines else type(error).__name__}"


def placement(resources: dict[str, float], nodes: int, count: int | None) -> tuple[int, dict, int | None]:
    """(replicas, each one's Ray resources, torch threads in each) on a cluster with `resources`.

    With GPUs: one GPU each, `count` at most the cluster's GPUs (default: one per GPU). Without:
    `count` (default one per machine), each holding an equal share of the cluster's CPUs, spread
    over the machines first, with as many torch threads as CPUs.
    """
    gpus = int(resources.get("GPU", 0))
    if gpus:
        count = count or gpus
        if count > gpus:
            raise StreamdreamError(f"{count} live replicas need a GPU each, and the Ray cluster has {gpus}; ask for at most {gpus} (--replicas)")
        return count, {"num_gpus": 1, "num_cpus": 1}, None
    count = count or nodes
    share = max(1, int(resources.get("CPU", 1)) // count)
    return count, {"num_cpus": share, "scheduling_strategy": "SPREAD"}, share


def start_replicas(address: str | None = None, count: int | None = None, *, capacity: int | None = None, build: Build = Look.mode,
                   clock: Callable[[], float] = time.monotonic) -> LiveReplicas:
    """Live replicas on the Ray cluster at `address` (as `ClusterOptions.address`; None: a local Ray),
    `count` of them (`placement`), each with `capacity` seats (None: measured on it); ready to serve.

    Raises `StreamdreamError` in one line: no cluster answers at `address`, no Ray installed, more
    replicas than GPUs, workers that cannot import streamdream, a replica that fails to start.
    """
    ray = import_ray()
    started = connect(ray, address)
    try:
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        count, options, threads = placement(ray.cluster_resources(), max(1, nodes), count)
        replicas = LiveReplicas(ray, build=build, options=options, threads=threads, capacity=capacity, started=started, clock=clock)
        replicas.add(count)
    except BaseException:
        if started:
            ray.shutdown()
        raise
    return replicas
