"""Live seats: capacity, a queue in arrival order with visible places, idle seats freed, a measured capacity;
the live room on an engine: one session per seated visitor, closed whichever way the visitor goes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamdream.admission import LiveRoom, Queued, QueueFull, Seats, probe_capacity
from streamdream.carry import FrameMode
from streamdream.dream import Dreamer
from streamdream.engine import LiveEngine
from streamdream.errors import StreamdreamError
from streamdream.settings import TemporalSettings, preset


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def seats(capacity: int = 2, queue_limit: int = 3):
    clock, freed = Clock(), []
    return Seats(capacity, idle_s=2.0, queue_limit=queue_limit, on_free=freed.append, clock=clock), clock, freed


def test_visitors_past_capacity_queue_in_arrival_order_and_take_freed_seats():
    room, clock, _ = seats()
    assert [room.visit(v) for v in "abcd"] == [0, 0, 1, 2]
    assert room.visit("d") == 2 and room.visit("c") == 1  # asking again keeps one's place
    room.leave("a")
    assert room.visit("c") == 0 and room.visit("d") == 1  # c got a's seat, d moved up
    assert room.seated() == ["b", "c"] and room.waiting() == ["d"]


def test_a_seat_without_frames_for_the_idle_time_is_freed():
    room, clock, freed = seats()
    room.visit("a"), room.visit("b"), room.visit("c")
    clock.now = 1.5
    room.visit("b"), room.visit("c")  # a closed its tab; b and c keep sending
    clock.now = 2.1
    assert room.visit("c") == 0 and freed == ["a"]
    assert room.seated() == ["b", "c"]


def test_a_seat_is_held_while_its_frame_is_made():
    room, clock, freed = seats(capacity=1)
    room.visit("a")
    with room.serving("a"):
        clock.now = 10.0  # a slow first frame
        assert room.visit("b") == 1 and freed == []
    clock.now = 11.0
    assert room.visit("b") == 1  # a's frame finished at 10.0: still within the idle time
    clock.now = 12.5
    assert room.visit("b") == 0 and freed == ["a"]


def test_a_full_queue_says_so_in_one_line():
    room, _, _ = seats(capacity=1, queue_limit=1)
    room.visit("a"), room.visit("b")
    with pytest.raises(QueueFull, match="all 1 live seats are taken and 1 visitors wait"):
        room.visit("c")


def test_capacity_must_be_positive():
    with pytest.raises(StreamdreamError):
        Seats(0, idle_s=2.0, queue_limit=1)


def test_probe_measures_streams_sharing_the_model_and_reads_off_a_capacity():
    mode = Dreamer(device="cpu")
    probe = probe_capacity(mode, preset("fast"), (48, 64), min_fps=1e-6, most=4, ticks=2)
    assert sorted(probe.fps) == [1, 2, 4] and probe.capacity == 4  # everything fits below `most`
    assert all(fps > 0 for fps in probe.fps.values())
    assert probe_capacity(mode, preset("fast"), (48, 64), min_fps=1e9, most=4, ticks=1).capacity == 1  # one is always served


# ---- the live room

STILL = TemporalSettings(flow="none")  # no optical flow: the frames are flat test patterns


class Negative(FrameMode):
    """A stream's first frame is the camera's negative, every later one the camera as it is: a served
    first frame is told from the camera's, and a stream that starts afresh from one that goes on."""

    device = torch.device("cpu")

    def first_frame(self, image, generator):
        return 1 - image

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        return image


def camera(value: int = 10) -> np.ndarray:
    return np.full((8, 8, 3), value, np.uint8)


@pytest.fixture
def engine():
    with LiveEngine() as engine:
        yield engine


def live_room(engine, capacity: int = 2, queue_limit: int = 3):
    clock = Clock()
    return LiveRoom(engine, capacity, idle_s=2.0, queue_limit=queue_limit, clock=clock), clock


def test_the_room_serves_its_seats_queues_the_rest_in_order_and_seats_them_when_one_leaves(engine):
    room, _ = live_room(engine, capacity=2, queue_limit=2)
    mode = Negative()
    answers = {v: room.frame(v, camera(), mode, STILL) for v in "abcd"}
    assert [answers[v].image[0, 0, 0] for v in "ab"] == [245, 245]  # served: the negative of the camera
    assert answers["c"] == Queued(1) and answers["d"] == Queued(2)
    with pytest.raises(QueueFull, match="all 2 live seats are taken and 2 visitors wait"):
        room.frame("e", camera(), mode, STILL)
    ann = room.sessions()["a"]
    assert room.frame("a", camera(20), mode, STILL).image[0, 0, 0] == 20 and room.sessions()["a"] is ann  # its stream goes on
    assert set(room.sessions()) == {"a", "b"} and len(engine.sessions) == 2  # none for the queued

    room.leave("a")
    assert ann.closed and room.frame("d", camera(), mode, STILL) == Queued(1)  # c, first in the queue, took a's seat
    assert room.frame("c", camera(30), mode, STILL).image[0, 0, 0] == 225
    assert set(room.sessions()) == {"b", "c"} and ann not in engine.sessions


def test_a_visitor_who_leaves_with_a_frame_in_flight_gives_back_the_seat_and_the_session(engine):
    room, _ = live_room(engine, capacity=1)
    mode = Negative()
    room.frame("a", camera(), mode, STILL)
    assert room.frame("b", camera(), mode, STILL) == Queued(1)
    ann = room.sessions()["a"]
    room.leave("a", in_flight=camera(40))  # the tab closed right after sending a frame
    assert ann.closed and engine.sessions == () and room.sessions() == {}
    assert room.frame("b", camera(), mode, STILL).image[0, 0, 0] == 245  # b is seated at once


def test_a_seat_freed_for_idleness_closes_its_session(engine):
    room, clock = live_room(engine, capacity=1)
    mode = Negative()
    room.frame("a", camera(), mode, STILL)
    ann = room.sessions()["a"]
    clock.now = 2.5  # a stopped its camera: nothing for longer than the idle time
    assert room.frame("b", camera(), mode, STILL).image[0, 0, 0] == 245  # b's visit frees a's seat and takes it
    assert ann.closed and list(room.sessions()) == ["b"] and len(engine.sessions) == 1


def test_a_session_opened_after_its_visitor_left_mid_frame_is_closed(engine):
    """The tab closed while the visitor's first frame was being made, before its session opened: the
    room's `leave` had nothing to close, so the frame's end must."""
    room, _ = live_room(engine, capacity=1)
    mode = Negative()

    def made(open_session):
        room.leave("a")  # the page's unload, while the frame is made
        session = open_session(mode, STILL)
        return session, session.wait(session.submit(camera()))

    session, result = room.serve("a", made)
    assert result.image[0, 0, 0] == 245  # the frame was made ...
    assert session.closed and room.sessions() == {} and engine.sessions == ()  # ... and nothing is left open
    assert room.seats.seated() == []


def test_a_new_look_starts_the_stream_afresh_and_new_settings_keep_it_going(engine):
    room, _ = live_room(engine)
    mode = Negative()

    def frame(value: int, look: str, settings: TemporalSettings = STILL) -> int:
        def made(open_session):
            session = open_session(mode, settings, look)
            return session.wait(session.submit(camera(value)))

        return int(room.serve("a", made).image[0, 0, 0])

    assert [frame(10, "dream"), frame(20, "dream"), frame(30, "style")] == [245, 20, 225]  # first, next, afresh
    ann = room.sessions()["a"]
    assert frame(40, "style", STILL.with_(carry=0.5)) == 40 and ann.stream.settings.carry == 0.5  # the same stream, going on
    assert room.sessions() == {"a": ann} and engine.sessions == (ann,)
