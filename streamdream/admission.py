"""Who is served live: a fixed number of seats, a visible queue, and a capacity measured at start-up.

A live demo serves a room from one model. Every seated visitor gets a frame per engine tick, so
each extra visitor slows everyone down; past some number nobody sees a moving picture. `Seats`
admits visitors up to a capacity and queues the rest in arrival order, telling each their place;
a seat whose visitor sent no frame for `idle_s` seconds (a closed tab, a stopped camera) is freed
and the first in the queue takes it. `probe_capacity` measures that capacity on this machine: how
many streams can share the model while each still gets `min_fps` frames per second. `LiveRoom`
puts the seats in front of a `LiveEngine`: one engine session per seated visitor, closed when the
visitor goes, so every front end (the web app, `benchmarks/soak.py`'s churn) admits and frees alike.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from .carry import FrameMode
from .engine import LiveEngine, LiveResult, LiveSession
from .errors import StreamdreamError
from .runtime import on_own_thread, release_memory
from .scheduler import tick
from .session import StreamSession
from .settings import LIVE_QUEUE_LIMIT, LIVE_SEAT_IDLE_S, TemporalSettings

T = TypeVar("T")
Opener = Callable[..., LiveSession]
"""`(mode, settings, look=None) -> LiveSession`: a seated visitor's session, as `LiveRoom.session` gives it."""


class QueueFull(StreamdreamError):
    """Every seat is taken and the queue is at its limit."""


@dataclass(eq=False)
class Seats:
    """Live seats: `capacity` visitors served, the others queued first come, first served.

    A visitor (any hashable key: a browser session) calls `visit` with each frame, or holds its seat
    with `serving` while a frame is being made; `leave` gives the seat (or place) up at once. A seat
    whose visitor sent nothing for `idle_s` seconds is freed, and `on_free(key)` runs (outside the
    lock) for each such visitor. `clock`: seconds, monotonic (tests pass their own).
    """

    capacity: int
    idle_s: float = field(kw_only=True)
    queue_limit: int = field(kw_only=True)
    on_free: Callable[[Hashable], None] | None = field(default=None, kw_only=True)
    clock: Callable[[], float] = field(default=time.monotonic, kw_only=True)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _seated: dict[Hashable, float] = field(default_factory=dict, init=False, repr=False)  # key -> last seen
    # key -> frames being made for it now (never idle meanwhile)
    _busy: dict[Hashable, int] = field(default_factory=dict, init=False, repr=False)
    # in arrival order -> last seen
    _waiting: OrderedDict[Hashable, float] = field(default_factory=OrderedDict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise StreamdreamError(f"live capacity must be at least 1, got {self.capacity}")

    def visit(self, key: Hashable) -> int:
        """Note a frame from `key`; 0 when it is seated (now or before), else its place in the queue (1 = next).

        Raises `QueueFull` when it would have to queue behind `queue_limit` others.
        """
        freed = []
        try:
            with self._lock:
                now = self.clock()
                freed = self._expire(now)
                if key in self._seated:
                    self._seated[key] = now
                elif key in self._waiting:
                    self._waiting[key] = now
                elif len(self._waiting) >= self.queue_limit:
                    raise QueueFull(f"all {self.capacity} live seats are taken and {len(self._waiting)} visitors wait; try again later")
                else:
                    self._waiting[key] = now
                self._admit(now)
                return 0 if key in self._seated else list(self._waiting).index(key) + 1
        finally:
            self._notify(freed)

    @contextlib.contextmanager
    def serving(self, key: Hashable) -> Iterator[None]:
        """Hold `key`'s seat while a frame is made for it (a slow first frame must not look like a closed tab)."""
        with self._lock:
            self._busy[key] = self._busy.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._busy[key] -= 1
                if not self._busy[key]:
                    del self._busy[key]
                if key in self._seated:
                    self._seated[key] = self.clock()

    def leave(self, key: Hashable) -> None:
        """`key` is gone (its tab closed): its seat goes to the first in the queue."""
        with self._lock:
            self._seated.pop(key, None)
            self._waiting.pop(key, None)
            self._admit(self.clock())

    def seated(self) -> list[Hashable]:
        with self._lock:
            return list(self._seated)

    def waiting(self) -> list[Hashable]:
        with self._lock:
            return list(self._waiting)

    def _expire(self, now: float) -> list[Hashable]:  # under the lock
        idle = [key for key, seen in self._seated.items() if now - seen > self.idle_s and key not in self._busy]
        for key in idle:
            del self._seated[key]
        for key in [key for key, seen in self._waiting.items() if now - seen > self.idle_s]:
            del self._waiting[key]
        return idle

    def _admit(self, now: float) -> None:  # under the lock
        while self._waiting and len(self._seated) < self.capacity:
            key, _ = self._waiting.popitem(last=False)
            self._seated[key] = now

    def _notify(self, freed: list[Hashable]) -> None:
        if self.on_free is not None:
            for key in freed:
                self.on_free(key)


@dataclass(frozen=True)
class Queued:
    """A visitor's frame that was not served: every seat is taken and this is their place in the queue (1 = next)."""

    place: int


def resume(engine: LiveEngine, session: LiveSession | None, mode: FrameMode, settings: TemporalSettings, *, fresh: bool) -> LiveSession:
    """`session` running `mode` with `settings` from its next frame (a change applies then; the same,
    nothing), its stream started afresh with `fresh`; a new session of `engine` when there is none or it
    was closed (or failed). What a visitor's next frame does to its session, in the app's own process
    (`LiveRoom.session`) and on a Ray replica (`LiveReplica.frame`): `engine` and `session` may be the
    replicas' router and its `RemoteSession`."""
    if session is None or session.closed:
        return engine.open(mode, settings, seed=0)
    if fresh:
        session.reset()
    session.mode, session.settings = mode, settings
    return session


class LiveRoom:
    """Live visitors on one engine: `Seats` (with `idle_s` and `queue_limit`) admit them, and each
    seated visitor (a hashable key) has one `LiveSession`, opened at its first frame.

    A session is closed when its visitor leaves (`leave`), when its seat is freed for idleness
    (the seats' `on_free`), and when the seat was freed while a frame was made for it: nobody else
    would close it then. The policy lives here, not in a front end, so the web app and the churn
    benchmark that checks it do the same thing, and another engine (a Ray one) has one thing to provide.
    """

    def __init__(self, engine: LiveEngine, capacity: int, *, idle_s: float = LIVE_SEAT_IDLE_S, queue_limit: int = LIVE_QUEUE_LIMIT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine = engine
        self.seats = Seats(capacity, idle_s=idle_s, queue_limit=queue_limit, on_free=self.close, clock=clock)
        self._lock = threading.Lock()
        self._sessions: dict[Hashable, tuple[LiveSession, Hashable]] = {}  # key -> its session, and the look of its last frame

    @property
    def capacity(self) -> int:
        return self.seats.capacity

    def sessions(self) -> dict[Hashable, LiveSession]:
        """Each visitor's session, by key (those the room still has to close)."""
        with self._lock:
            return {key: session for key, (session, _) in self._sessions.items()}

    def serve(self, key: Hashable, work: Callable[[Opener], T]) -> T | Queued:
        """A frame of visitor `key`: `work(open)` once it is seated, `open` giving its session
        (`session` for `key`), with the seat held meanwhile (`Seats.serving`); else its place.

        Raises `QueueFull` when it would have to queue behind the queue limit.
        """
        place = self.seats.visit(key)
        if place:
            return Queued(place)
        try:
            with self.seats.serving(key):
                return work(functools.partial(self.session, key))
        finally:
            if key not in self.seats.seated():  # freed while its frame was made: nobody else will close it
                self.close(key)

    def frame(self, key: Hashable, image: np.ndarray, mode: FrameMode, settings: TemporalSettings, *,
              timeout: float | None = None) -> LiveResult | Queued:
        """Visitor `key`'s camera frame through `mode`: its result (or a newer frame's) once seated, else its place."""

        def made(open_session: Opener) -> LiveResult:
            session = open_session(mode, settings)
            return session.wait(session.submit(image), timeout)

        return self.serve(key, made)

    def session(self, key: Hashable, mode: FrameMode, settings: TemporalSettings, look: Hashable = None) -> LiveSession:
        """`key`'s session, running `mode` with `settings` from its next frame: opened when there is none
        or it was closed (or failed); a new `look` (model, objective, style) starts its stream afresh,
        a new strength or settings keep its warm state. For `serve`'s work: the seat is the caller's to hold."""
        with self._lock:
            session, last_look = self._sessions.get(key, (None, None))
            session = resume(self.engine, session, mode, settings, fresh=look != last_look)
            self._sessions[key] = (session, look)
            return session

    def leave(self, key: Hashable, in_flight: np.ndarray | None = None) -> None:
        """`key` is gone (its tab closed), right after sending `in_flight` if given: its seat goes to
        the first in the queue and its session closes, without waiting for that frame."""
        with self._lock:
            session, _ = self._sessions.get(key, (None, None))
        if in_flight is not None and session is not None:
            session.submit(in_flight)
        self.seats.leave(key)
        self.close(key)

    def close(self, key: Hashable) -> None:
        """Close `key`'s session, if it has one (its seat is the seats' business)."""
        with self._lock:
            session, _ = self._sessions.pop(key, (None, None))
        if session is not None:
            session.close()


@dataclass(frozen=True)
class Probe:
    """What `probe_capacity` measured: each tried number of streams -> frames per second each got."""

    capacity: int
    fps: dict[int, float]


def probe_capacity(mode: FrameMode, settings: TemporalSettings, size: tuple[int, int], *, min_fps: float, most: int,
                   ticks: int = 3) -> Probe:
    """How many live streams of `mode` at `size` (height, width) can share the model at `min_fps` each.

    Runs 1, 2, 4, ... identical streams on a moving test picture through the live engine's own
    round (`scheduler.tick`: flow, planning, one batched step) and times their ticks (the last of `ticks`:
    the first frames are cold). Tick time grows about linearly with the streams at this scale, so
    the capacity is read off the line through the last two counts measured, never beyond `most`
    and never below 1 (one visitor is always served). It runs on a thread of its own
    (`runtime.on_own_thread`), so the caller keeps no OpenMP team to slow the live engine's down,
    and the memory its streams took is handed back after (`runtime.release_memory`): the web app's
    probe on the 2-core Xeon (lite0 at 240x180, up to 4 streams) left the process 215 MB larger
    for good (781 -> 996 MB), 33 MB so (-> 814 MB).
    """
    probe = on_own_thread(_probe, mode, settings, size, min_fps, most, ticks)
    release_memory()  # the probe's streams are gone with its thread's work
    return probe


def _probe(mode: FrameMode, settings: TemporalSettings, size: tuple[int, int], min_fps: float, most: int, ticks: int) -> Probe:
    height, width = size
    picture = np.random.default_rng(0).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    picture = np.kron(picture, np.ones((8, 8, 1), np.uint8))  # blocks: texture the flow can follow
    measured: dict[int, float] = {}
    count = 1
    while True:
        streams = [StreamSession(mode, settings, seed=i) for i in range(count)]
        for shift in range(0, 2 * ticks, 2):
            frame = np.ascontiguousarray(np.roll(picture, shift, axis=1)[:height, :width])
            started = time.perf_counter()
            for result in tick([(stream, frame) for stream in streams]).results:
                if isinstance(result, BaseException):
                    raise result
        measured[count] = 1.0 / (time.perf_counter() - started)
        if measured[count] < min_fps or count >= most:
            break
        count = min(2 * count, most)
    counts = sorted(measured)
    if len(counts) == 1:
        return Probe(1, measured)
    (a, fa), (b, fb) = (counts[-2], measured[counts[-2]]), (counts[-1], measured[counts[-1]])
    per_stream = (1 / fb - 1 / fa) / (b - a)  # seconds a tick grows per extra stream
    fixed = 1 / fa - per_stream * a
    fits = int((1 / min_fps - fixed) / per_stream) if per_stream > 0 else most
    return Probe(max(1, min(most, fits)), measured)
