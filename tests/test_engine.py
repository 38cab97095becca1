"""The live engine: every open session is served, the newest frame wins, closing stops a session,
other model work takes turns on the same lock. Deterministic: frames wait at gates the tests open."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from streamdream.dream import Dreamer
from streamdream import engine as engine_module
from streamdream.engine import FairLock, FrameLost, LiveEngine
from streamdream.errors import StreamdreamError
from streamdream.carry import FrameMode
from streamdream.samples.make import camera_frames
from streamdream.settings import LIVE_OOM_SHRINK, TemporalSettings, preset

from .conftest import until

CARRY_IN_PLACE = TemporalSettings(flow="none")  # no optical flow: frames are flat test patterns


def frame(value: int) -> np.ndarray:
    """A flat frame whose pixel value names it."""
    return np.full((8, 8, 3), value, np.uint8)


class Gated(FrameMode):
    """A pass-through mode that records the frames it sees; with `gated`, each waits at a gate."""

    device = torch.device("cpu")

    def __init__(self, gated: bool = True) -> None:
        self.gated = gated
        self.seen: list[tuple[str, int, float | None]] = []  # kind, frame value, carry
        self.entered = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)

    def _frame(self, kind: str, image: torch.Tensor, carry: float | None) -> torch.Tensor:
        self.entered.release()
        if self.gated:
            assert self.gate.acquire(timeout=30), "the test never opened the gate"
        self.seen.append((kind, round(float(image[0, 0, 0, 0]) * 255), carry))
        return image

    def first_frame(self, image, generator):
        return self._frame("first", image, None)

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        return self._frame("next", image, settings.carry)

    def busy(self) -> None:
        """Wait until a frame has started (and is held at the gate, when gated)."""
        assert self.entered.acquire(timeout=30), "no frame started"

    def values(self) -> list[int]:
        return [value for _, value, _ in self.seen]




@pytest.fixture
def engine():
    with LiveEngine() as engine:
        yield engine


def test_every_session_is_served_and_a_busy_one_cannot_starve_a_quiet_one(engine):
    mode = Gated()
    busy, quiet = engine.open(mode, CARRY_IN_PLACE), engine.open(mode, CARRY_IN_PLACE)
    busy.submit(frame(1))
    mode.busy()  # frame 1 of the busy session is being processed
    busy.submit(frame(2))
    quiet.submit(frame(101))
    mode.gate.release()
    mode.busy()  # the next tick has gathered both waiting frames
    busy.submit(frame(3))  # the busy session keeps sending
    mode.gate.release(3)
    assert busy.wait().image[0, 0, 0] == 3 and quiet.wait().image[0, 0, 0] == 101
    assert mode.values() == [1, 101, 2, 3]  # the quiet session's frame went first in the tick after the busy one was served
    assert (busy.processed, busy.dropped, quiet.processed, quiet.dropped) == (3, 0, 1, 0)


def test_the_newest_frame_wins_and_stale_ones_are_counted_per_session(engine):
    mode = Gated()
    camera, other = engine.open(mode, CARRY_IN_PLACE), engine.open(mode, CARRY_IN_PLACE)
    other.submit(frame(200))
    mode.busy()  # the worker is held on the other session's frame
    numbers = [camera.submit(frame(v)) for v in (10, 11, 12, 13)]
    mode.gate.release(2)
    result = camera.wait(numbers[0])  # asking for frame 10 gets the newest one that replaced it
    assert result.image[0, 0, 0] == 13 and result.frame == numbers[-1] == 4
    assert (camera.processed, camera.dropped, other.dropped) == (1, 3, 0)
    assert mode.values() == [200, 13]


def test_closing_a_session_stops_it(engine):
    mode = Gated()
    closing = engine.open(mode, CARRY_IN_PLACE)
    closing.submit(frame(1))
    mode.busy()
    closing.submit(frame(2))  # waiting when the session closes: never processed
    closing.close()
    assert engine.sessions == ()
    with pytest.raises(StreamdreamError, match="closed"):
        closing.submit(frame(3))
    mode.gate.release()  # frame 1, already started, finishes
    staying = engine.open(mode, CARRY_IN_PLACE)
    staying.submit(frame(50))
    mode.gate.release()
    staying.wait()
    assert mode.values() == [1, 50]  # frame 2 was dropped with its session
    assert closing.dropped == 1


def test_a_failing_session_reports_its_error_and_the_others_keep_going(engine):
    class Broken(Gated):
        def first_frame(self, image, generator):
            raise RuntimeError("boom")

    broken, fine = engine.open(Broken(gated=False), CARRY_IN_PLACE), engine.open(Gated(gated=False), CARRY_IN_PLACE)
    broken.submit(frame(1))
    with pytest.raises(RuntimeError, match="boom"):
        broken.wait()
    with pytest.raises(RuntimeError, match="boom"):
        broken.submit(frame(2))
    fine.submit(frame(3))
    assert fine.wait().image[0, 0, 0] == 3
    assert engine.sessions == (fine,)


def test_settings_mode_and_reset_apply_from_the_next_frame(engine):
    first, second = Gated(gated=False), Gated(gated=False)
    live = engine.open(first, CARRY_IN_PLACE)
    live.wait(live.submit(frame(1)))
    live.settings = CARRY_IN_PLACE.with_(carry=0.5)
    live.wait(live.submit(frame(2)))
    live.mode = second  # e.g. a new strength: the warm state carries over
    live.wait(live.submit(frame(3)))
    live.reset()  # e.g. a new objective: start afresh
    live.wait(live.submit(frame(4)))
    assert first.seen == [("first", 1, None), ("next", 2, 0.5)]
    assert second.seen == [("next", 3, 0.5), ("first", 4, None)]
    assert live.settings.carry == 0.5 and live.stream.frames == 4


def test_exclusive_work_holds_live_frames_back(engine):
    mode = Gated(gated=False)
    live = engine.open(mode, CARRY_IN_PLACE)
    with engine.exclusive():  # a still being dreamed
        number = live.submit(frame(7))
        until(lambda: engine.waiting == 1)  # the live worker waits for the lock
        assert mode.seen == []
    assert live.wait(number).image[0, 0, 0] == 7


def test_run_works_on_a_thread_that_ends_with_the_work(engine):
    """A web request's thread must not run model work itself: it would keep an OpenMP team beside the
    live worker's for good, and every live frame after it would slow down (`LiveEngine.run`)."""
    ran_on = engine.run(threading.current_thread)
    assert ran_on is not threading.current_thread()
    ran_on.join(timeout=30)
    assert not ran_on.is_alive()  # its thread (and any OpenMP team it started) is gone


def test_run_hands_the_memory_of_its_work_back_after_it(engine, monkeypatch):
    """The CPU keeps what a step frees for the next (`runtime.keep_freed_memory`); a one-off render
    (a web app's still) gives it back, whether it succeeded or not."""
    released = []
    monkeypatch.setattr(engine_module, "release_memory", lambda: released.append(True))
    assert engine.run(lambda: len(released)) == 0 and released == [True]
    with pytest.raises(ZeroDivisionError):
        engine.run(lambda: 1 / 0)
    assert released == [True, True]


def test_a_serialized_mode_takes_turns_with_live_frames(engine):
    render = Gated(gated=False)
    serialized = engine.serialized(render)
    assert serialized.device == render.device
    done = threading.Event()
    with engine.exclusive():
        worker = threading.Thread(target=lambda: (serialized.first_frame(torch.zeros(1, 3, 4, 4), None), done.set()))
        worker.start()
        until(lambda: engine.waiting == 1)
        assert not done.is_set() and render.seen == []
    worker.join(timeout=30)
    assert done.is_set() and render.seen == [("first", 0, None)]
    assert engine.run(lambda a, b=0: a + b, 2, b=3) == 5


def test_the_compute_lock_is_granted_in_arrival_order():
    lock, order = FairLock(), []

    def take(name: str) -> None:
        with lock:
            order.append(name)

    with lock:
        threads = []
        for name in ("first", "second", "third"):
            threads.append(threading.Thread(target=take, args=(name,)))
            threads[-1].start()
            until(lambda: lock.waiting == len(threads))
    for thread in threads:
        thread.join(timeout=30)
    assert order == ["first", "second", "third"]
    assert lock.waiting == 0


def test_a_closed_engine_stops_its_worker_and_refuses_sessions():
    engine = LiveEngine()
    live = engine.open(Gated(gated=False), CARRY_IN_PLACE)
    live.wait(live.submit(frame(1)))
    worker = engine._thread
    engine.close()
    assert not worker.is_alive() and live.closed
    with pytest.raises(StreamdreamError, match="closed"):
        engine.open(Gated(gated=False))


class MemoryCeiling(Gated):
    """A pass-through mode on a machine whose memory holds frames up to `side` pixels a side."""

    def __init__(self, side: int) -> None:
        super().__init__(gated=False)
        self.side = side

    def _frame(self, kind, image, carry):
        if max(image.shape[-2:]) > self.side:
            raise MemoryError
        return super()._frame(kind, image, carry)


def test_running_out_of_memory_costs_a_stream_one_frame_and_shrinks_it(engine):
    mode = MemoryCeiling(side=100)
    big, small = engine.open(mode, CARRY_IN_PLACE), engine.open(mode, CARRY_IN_PLACE)
    camera = np.full((128, 128, 3), 90, np.uint8)
    assert small.wait(small.submit(frame(5))).image.shape == (8, 8, 3)
    with pytest.raises(FrameLost, match="out of memory at 128 px: working at 96 px"):
        big.wait(big.submit(camera))
    assert (big.lost, big.working_side, big.error, big.closed) == (1, 96, None, False)
    result = big.wait(big.submit(camera))  # worked at 96 px, shown at the camera's size
    assert result.image.shape == camera.shape and np.all(result.image == 90)
    assert mode.values() == [5, 90]
    assert small.wait(small.submit(frame(6))).image[0, 0, 0] == 6
    assert (small.lost, small.working_side, small.notice) == (0, None, None)  # the other stream never noticed
    assert "working at 96 px" in big.notice


def test_a_stream_that_cannot_shrink_any_more_ends_with_the_memory_error(engine):
    live = engine.open(MemoryCeiling(side=0), CARRY_IN_PLACE)
    with pytest.raises(FrameLost):
        live.wait(live.submit(np.zeros((100, 100, 3), np.uint8)))  # 100 px -> 75 px
    with pytest.raises(MemoryError):
        live.wait(live.submit(np.zeros((100, 100, 3), np.uint8)))  # 75 px: under the smallest side
    assert live.closed and live.lost == 1


def test_a_batch_out_of_memory_costs_only_its_own_streams_a_frame(engine, model, monkeypatch):
    """Real dreams, batched: frames over 80 px a side do not fit (an injected CUDA-style OOM in the
    optimizer); the two big streams lose one frame each and go on smaller, the small one never notices."""
    import streamdream.scheduler as scheduler

    optimize = scheduler.optimize

    def limited(image, *args, **kwargs):
        if max(image.shape[-2:]) > 80:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return optimize(image, *args, **kwargs)

    monkeypatch.setattr(scheduler, "optimize", limited)
    settings = preset("fast")
    dream = Dreamer(model, device="cpu")
    big = [camera_frames(kind, (96, 64), 3)[0] for kind in ("pan", "zoom")]
    small = camera_frames("pan", (48, 32), 3)[0]
    streams = [engine.open(dream, settings) for _ in range(3)]
    lost, shapes = [0, 0, 0], [[], [], []]
    for t in range(3):
        numbers = [live.submit(clip[t]) for live, clip in zip(streams, [*big, small])]
        for i, (live, number) in enumerate(zip(streams, numbers)):
            try:
                shapes[i].append(live.wait(number).image.shape)
            except FrameLost:
                lost[i] += 1
    assert lost == [1, 1, 0]
    assert shapes == [[(64, 96, 3)] * 2, [(64, 96, 3)] * 2, [(32, 48, 3)] * 3]
    assert [live.working_side for live in streams] == [int(96 * LIVE_OOM_SHRINK)] * 2 + [None]
    assert all(live.error is None for live in streams)


HELD = TemporalSettings(flow="none", fresh_start="frame")  # grown from the frame and held: its second frame asks for the still effect


class Measured(FrameMode):
    """A pass-through mode whose still effect (what a held stream asks for on its first carried frame)
    is known once the test sets `known`; with `fails`, measuring it raises instead."""

    device = torch.device("cpu")

    def __init__(self, *, known: bool = False, fails: bool = False) -> None:
        self.known, self.asked, self.fails = threading.Event(), threading.Event(), fails
        if known:
            self.known.set()

    def first_frame(self, image, generator):
        return image

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        return image

    def still_effect(self, image):
        self.asked.set()
        assert self.known.wait(timeout=30), "the test never let the effect be known"
        if self.fails:
            raise StreamdreamError("the still could not be measured")
        return 0.1


def test_a_newcomer_s_still_effect_is_measured_beside_the_rounds_and_holds_up_nobody_else(engine):
    """A held stream asks its mode for the effect of its still from its second frame on; a `Dreamer`
    dreams a thumbnail for it (0.6 s on a 2-core CPU), which inside a round held every visitor up.
    Here it is known only when the test says so: meanwhile the newcomer's second frame waits and the
    settled visitor's frames keep coming."""
    settled, newcomer = Measured(known=True), Measured()
    old, new = engine.open(settled, HELD), engine.open(newcomer, HELD)
    assert [old.wait(old.submit(frame(v)), timeout=30).image[0, 0, 0] for v in (1, 2)] == [1, 2]
    assert new.wait(new.submit(frame(50)), timeout=30).image[0, 0, 0] == 50  # a first frame asks for no effect
    second = new.submit(frame(51))
    assert newcomer.asked.wait(timeout=30)
    assert [old.wait(old.submit(frame(v)), timeout=30).image[0, 0, 0] for v in (3, 4, 5)] == [3, 4, 5]
    assert new.processed == 1
    newcomer.known.set()
    assert new.wait(second, timeout=30).image[0, 0, 0] == 51


def test_a_still_effect_the_mode_knows_already_is_asked_by_the_round_not_a_measuring_thread(engine):
    """A mode that has the answer (a `Dreamer` keeps its thumbnail's effect per size) is asked in the
    round: no measuring thread is started, whose start the stream's carried frame would have had to wait for."""

    class Answered(Measured):
        def __init__(self) -> None:
            super().__init__(known=True)
            self.threads: list[str] = []

        def knows_still_effect(self, image):
            return True

        def still_effect(self, image):
            self.threads.append(threading.current_thread().name)
            return super().still_effect(image)

    answered = Answered()
    live = engine.open(answered, HELD)
    assert [live.wait(live.submit(frame(v)), timeout=30).image[0, 0, 0] for v in (1, 2, 3)] == [1, 2, 3]
    assert answered.threads and not any(name.startswith("streamdream-effect") for name in answered.threads)


def test_a_still_effect_that_cannot_be_measured_fails_its_session_alone(engine):
    broken = Measured(fails=True)
    broken.known.set()
    other, failing = engine.open(Measured(known=True), HELD), engine.open(broken, HELD)
    failing.wait(failing.submit(frame(9)), timeout=30)
    with pytest.raises(StreamdreamError, match="could not be measured"):
        failing.wait(failing.submit(frame(10)), timeout=30)
    assert failing.closed and other.wait(other.submit(frame(7)), timeout=30).image[0, 0, 0] == 7


def test_a_stream_whose_mode_changes_waits_for_the_new_still_effect_alone(engine):
    """A visitor moves the strength slider: a new mode, whose still effect their carried stream is held
    at from the next frame; it is measured beside the rounds while the other visitor goes on."""
    first, moved = Measured(known=True), Measured()
    other, changing = engine.open(Measured(known=True), HELD), engine.open(first, HELD)
    for value in (1, 2):
        changing.wait(changing.submit(frame(value)), timeout=30)
        other.wait(other.submit(frame(100 + value)), timeout=30)
    changing.mode = moved
    waiting = changing.submit(frame(3))
    assert moved.asked.wait(timeout=30)
    assert [other.wait(other.submit(frame(v)), timeout=30).image[0, 0, 0] for v in (103, 104)] == [103, 104]
    assert changing.processed == 2
    moved.known.set()
    assert changing.wait(waiting, timeout=30).image[0, 0, 0] == 3 and changing.processed == 3
