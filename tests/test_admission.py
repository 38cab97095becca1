"""Live seats: capacity, a queue in arrival order with visible places, idle seats freed, a measured capacity."""

from __future__ import annotations

import pytest

from streamdream.admission import QueueFull, Seats, probe_capacity
from streamdream.dream import Dreamer
from streamdream.errors import StreamdreamError
from streamdream.settings import preset


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
