"""Live engine replicas on Ray behind one set of seats: affinity, one queue, a replica that dies, the Still and Video tabs, bad input.

Two CPU replicas on one local Ray (`ray.init(num_cpus=2)`), with their seats given (no probe). Their
mode is a stand-in (`Counting`) that makes a stream's history visible: its first frame is grey at
the level its look's objective names, and every later frame one level brighter than the frame it
carries. A result's level says which warm state made it: the visitor's own (the level goes on
rising), a fresh one (back to the visitor's level), or another visitor's (another level). Frames
are 64x48 and carried in place (no flow), so nothing but the warm state moves a level. Two more
stand-ins wait for a file the test writes: `Measuring`'s still effect (what a held stream asks for)
and `Stalling`'s frames after the first (a render that cannot end by itself).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from streamdream.admission import Queued
from streamdream.carry import FrameMode
from streamdream.engine import LiveResult
from streamdream.looks import Look
from streamdream.settings import TemporalSettings

FRAME = np.full((48, 64, 3), 128, np.uint8)
SETTINGS = TemporalSettings(flow="none", hold=0.0)  # carried in place, never held: a level only rises
# Grown from the frame (its first result is the frame one level up) and held: from its second frame on, a stream asks for its mode's still effect.
HELD = TemporalSettings(flow="none", fresh_start="frame")
LEVELS = (20, 60, 100, 140)  # the visitors' first levels


class Counting(FrameMode):
    """A stand-in mode: the first frame grey at `level`, each later one a level above the frame it carries."""

    device = torch.device("cpu")

    def __init__(self, level: int) -> None:
        self.level = level

    def first_frame(self, image, generator):
        return torch.full_like(image, self.level / 255)

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        return previous_output + 1 / 255


class Measuring(Counting):
    """A `Counting` whose still effect (what a held stream asks for) is measured only once the file `done` exists."""

    def __init__(self, level: int, done: str) -> None:
        super().__init__(level)
        self.done = done

    def still_effect(self, image):
        deadline = time.monotonic() + 120  # a safety timeout, not a timing assumption
        while not os.path.exists(self.done) and time.monotonic() < deadline:
            time.sleep(0.01)
        return 0.1


class Stalling(Counting):
    """A `Counting` whose frames after the first wait until the file `go` exists: a render that cannot end by itself."""

    def __init__(self, level: int, go: str) -> None:
        super().__init__(level)
        self.go = go

    def next_frame(self, image, previous_input, previous_output, motion, settings, generator):
        deadline = time.monotonic() + 120  # a safety timeout, not a timing assumption
        while not os.path.exists(self.go) and time.monotonic() < deadline:
            time.sleep(0.01)
        return super().next_frame(image, previous_input, previous_output, motion, settings, generator)


_BUILT: dict[Look, Counting] = {}


def counting(look: Look) -> Counting:
    """A replica's modes: one `Counting` per look, at the level its objective names (as `Look.mode` caches);
    a look with a style is a `Measuring`, whose measurement waits for that file."""
    return _BUILT.setdefault(look, Measuring(int(look.objective), look.style) if look.style else Counting(int(look.objective)))


class Clock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def start(ray_local):
    """`start(capacity)`: two replicas of `capacity` seats each on the module's Ray, and their room (whose
    seats never go idle: the tests' clock moves for the notices only); stopped after the test."""
    from streamdream.distributed.live_replicas import start_replicas

    started = []

    def make(capacity: int, clock: Clock | None = None):
        replicas = start_replicas(None, 2, capacity=capacity, build=counting, clock=clock or Clock())
        started.append(replicas)
        return replicas, replicas.room(idle_s=math.inf)

    yield make
    for replicas in started:
        replicas.close()


def send(room, visitor: str, look: Look, settings: TemporalSettings = SETTINGS) -> LiveResult | Queued:
    """One frame of `visitor` through `room`, as the web app sends it (`live_frame`)."""

    def made(open_session):
        session = open_session(look, settings, look.stream)
        return session.wait(session.submit(FRAME), timeout=60)  # a safety timeout: a frame held up for good fails

    return room.serve(visitor, made)


def level(answer: LiveResult | Queued) -> int:
    assert isinstance(answer, LiveResult), answer
    assert (answer.image == answer.image[0, 0, 0]).all()
    return int(answer.image[0, 0, 0])


def looks(count: int) -> dict[str, Look]:
    return {f"visitor {i}": Look(objective=str(LEVELS[i])) for i in range(count)}


def test_each_visitor_s_frames_build_on_its_own_warm_state_on_one_replica(start):
    _, room = start(capacity=2)
    visitors = looks(4)
    seen = {visitor: [level(send(room, visitor, look)) for _ in range(3)] for visitor, look in visitors.items()}
    assert seen == {visitor: [base, base + 1, base + 2] for visitor, base in zip(visitors, LEVELS)}
    # Interleaved too: the four streams share two replicas, two each (a new visitor goes where most seats are free).
    assert [level(send(room, visitor, look)) for visitor, look in visitors.items()] == [base + 3 for base in LEVELS]
    assert sorted(Counter(session.replica.name for session in room.sessions().values()).values()) == [2, 2]
    # A new strength keeps the warm state; a new objective starts the stream afresh, at its own level.
    first = next(iter(visitors))
    assert level(send(room, first, Look(objective=str(LEVELS[0]), strength=2.0))) == LEVELS[0] + 4
    assert level(send(room, first, Look(objective="200"))) == 200


def test_visitors_past_every_replica_s_seats_wait_in_one_queue_and_are_seated_in_order(start):
    _, room = start(capacity=1)
    look = Look(objective="50")
    assert room.capacity == 2  # one seat on each replica
    answers = {visitor: send(room, visitor, look) for visitor in "abcde"}
    assert [level(answers[v]) for v in "ab"] == [50, 50]
    assert [answers[v] for v in "cde"] == [Queued(1), Queued(2), Queued(3)]
    home = {visitor: room.sessions()[visitor].replica.name for visitor in "ab"}
    assert len(set(home.values())) == 2

    room.leave("a")  # c takes a's seat, on a's replica
    assert send(room, "e", look) == Queued(2)
    assert level(send(room, "c", look)) == 50 and room.sessions()["c"].replica.name == home["a"]
    room.leave("b")
    assert send(room, "e", look) == Queued(1)
    assert level(send(room, "d", look)) == 50 and room.sessions()["d"].replica.name == home["b"]
    assert level(send(room, "c", look)) == 51  # still on its own warm state


def test_a_dead_replica_s_visitors_start_afresh_on_the_other_with_one_readout_line_and_nobody_else_notices_and_a_new_replica_serves(start, ray_local, tmp_path):
    """Through the web app's Live tab (`App.live`, `live_frame`): what each visitor's page shows."""
    from streamdream.apps.ui import App, LiveState, live_frame

    from streamdream.distributed.live_replicas import MOVED, RAY_LIVE_NOTICE_S

    clock = Clock()
    replicas, _ = start(capacity=2, clock=clock)
    app = App(tmp_path, replicas=replicas)
    camera = np.random.default_rng(0).integers(0, 200, (48, 64, 3), np.uint8)  # texture: the flow finds it still, no cut
    states = {visitor: LiveState() for visitor in looks(4)}

    def page(visitor: str) -> tuple[int, str]:
        """How many frames the dream the visitor's page shows has carried, and its readout. The live
        preset on a CPU grows a stream from its first frame (`fresh_start="frame"`), so a fresh
        stream's first dream is the camera one level up."""
        def serve(session):
            return live_frame(camera, "efficientnet_lite0", str(LEVELS[0]), 1.0, 1, 0.9, "fast", states[visitor], session=session, mode_of=app.mode_of)

        out, states[visitor], readout = app.live(camera, states[visitor], SimpleNamespace(session_hash=visitor), serve)
        carried = np.unique(out.astype(int) - camera)
        assert len(carried) == 1, readout
        return int(carried[0]), readout

    for _ in range(2):
        for visitor in states:
            page(visitor)
    doomed, survivor = replicas.replicas
    moved = {visitor for visitor, session in app.room.sessions().items() if session.replica is doomed}
    assert len(moved) == 2

    ray_local.kill(doomed.actor)
    while True:  # until Ray reports it dead: a frame sent now must find it gone
        try:
            ray_local.get(doomed.actor.ready.remote())
        except ray_local.exceptions.RayActorError:
            break

    after = {visitor: page(visitor) for visitor in states}
    assert {v: carried for v, (carried, _) in after.items()} == {v: 1 if v in moved else 3 for v in states}
    assert {v: readout.endswith(f" · {MOVED}") for v, (_, readout) in after.items()} == {v: v in moved for v in states}
    assert all(readout.startswith("fps ") and readout.count(" · ") == 3 + (v in moved) for v, (_, readout) in after.items())  # one line more
    assert {session.replica.name for session in app.room.sessions().values()} == {survivor.name}
    assert app.room.capacity == 2  # the survivor's seats: the four stay seated, a fifth visitor waits
    assert send(app.room, "late", Look(objective="10")) == Queued(1)

    for _ in range(round(RAY_LIVE_NOTICE_S)):  # the notice is said for a while (everyone streaming, as the seats want), then no more
        clock.now += 1
        again = {visitor: page(visitor) for visitor in states}
    steps = round(RAY_LIVE_NOTICE_S)
    assert {v: carried for v, (carried, _) in again.items()} == {v: 1 + steps if v in moved else 3 + steps for v in states}
    assert not any(MOVED in readout for _, readout in again.values())

    replicas.add(1)  # in the dead one's place: it takes the next visitor at once, the survivor being over its seats
    app.room.leave("visitor 1")
    assert app.room.capacity == 4
    assert level(send(app.room, "later", Look(objective="10"))) == 10
    assert app.room.sessions()["later"].replica.name not in {doomed.name, survivor.name}


def test_a_frame_in_flight_to_a_dead_replica_comes_from_the_other_which_lives_on(start, ray_local):
    """A visitor's frame that went to its replica once it was dead, waited for after another visitor's
    frame found the replica dead and moved them both: the frame comes from the survivor, which serves on."""
    replicas, room = start(capacity=2)
    visitors = looks(4)
    for visitor, look in visitors.items():
        send(room, visitor, look)
    doomed, survivor = replicas.replicas
    first, second = (visitor for visitor, session in room.sessions().items() if session.replica is doomed)

    def sent(open_session):  # the frame goes out; its visitor's page waits for it later
        session = open_session(visitors[first], SETTINGS, visitors[first].stream)
        return session, session.submit(FRAME)

    ray_local.kill(doomed.actor)
    while True:
        try:
            ray_local.get(doomed.actor.ready.remote())
        except ray_local.exceptions.RayActorError:
            break
    session, frame = room.serve(first, sent)  # to the dead replica: nobody has noticed yet
    base = dict(zip(visitors, LEVELS))
    assert level(send(room, second, visitors[second])) == base[second]  # moved both of them
    assert level(session.wait(frame)) == base[first]
    assert replicas.replicas == [survivor]
    assert [level(send(room, v, look)) for v, look in visitors.items()] == [base[v] + 1 for v in visitors]  # all warm, on the survivor


def test_a_newcomer_s_mode_is_measured_beside_the_replica_s_live_frames_and_holds_up_nobody_else(start, tmp_path):
    """A stream held at its mode's still effect (the live preset on a CPU) asks for it from its second
    frame on; a `Dreamer` measures it with a thumbnail dream (0.64 s on the 2-core Xeon), once per mode.
    Measured in the replica's round, it held up every visitor of the replica, as it did those of the
    replica that took a dead one's visitors. Here the measurement lasts until a file appears: the
    newcomer's first frame comes at once, its second waits for it, and the others' frames go on."""
    _, room = start(capacity=2)
    measured = tmp_path / "measured"
    settled, newcomer = Look(objective="20"), Look(objective="80", style=str(measured))
    assert level(send(room, "settled", settled, HELD)) == 129
    assert level(send(room, "elsewhere", Look(objective="50"), HELD)) == 129  # on the other replica: the newcomer joins "settled"
    assert level(send(room, "newcomer", newcomer, HELD)) == 129  # a stream's first frame needs no effect
    assert room.sessions()["newcomer"].replica is room.sessions()["settled"].replica

    def sent(open_session):  # the newcomer's second frame goes out; it waits for the measurement
        session = open_session(newcomer, HELD, newcomer.stream)
        return session, session.submit(FRAME)

    session, frame = room.serve("newcomer", sent)
    assert [level(send(room, "settled", settled, HELD)) for _ in range(3)] == [130, 131, 132]
    Path(measured).touch()
    assert level(session.wait(frame, timeout=60)) == 130


def one_gpu(monkeypatch, ray, tmp_path) -> None:
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})


def streamdream_missing_on_workers(monkeypatch, ray, tmp_path) -> None:
    """The replicas' class from a module only this process can import, as streamdream is on a node without it."""
    from streamdream.distributed import live_replicas

    (tmp_path / "elsewhere_replica.py").write_text("from streamdream.distributed.live_replicas import LiveReplica\n\n"
                                                    "class Replica(LiveReplica):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "elsewhere_replica", raising=False)  # gone again after the test
    import elsewhere_replica  # in sys.modules, so the class goes to the workers by reference, as streamdream's does

    monkeypatch.setattr(live_replicas, "LiveReplica", elsewhere_replica.Replica)


@pytest.mark.parametrize(("argv", "setup", "said"), [
    (["--ray=127.0.0.1:1"], None, "no Ray cluster answers at 127.0.0.1:1 (connection refused)"),
    (["--replicas", "2"], None, "--replicas applies to --ray only"),
    (["--ray", "--replicas", "2"], one_gpu, "2 live replicas need a GPU each, and the Ray cluster has 1"),
    (["--ray", "--replicas", "1", "--max-live", "1"], streamdream_missing_on_workers,
     "the Ray workers cannot import elsewhere_replica: install streamdream"),
])
def test_bad_ray_input_to_the_web_app_is_one_line_and_exit_2(argv, setup, said, ray_local, monkeypatch, tmp_path, capsys):
    from streamdream.apps import ui
    from streamdream.apps.cli import main

    def never(*args, **kwargs):
        raise AssertionError("the app must not start")

    monkeypatch.setattr(ui, "build_app", never)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    if setup is not None:
        setup(monkeypatch, ray_local, tmp_path)
    assert main(["ui", *argv]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("streamdream:")]
    assert "Traceback" not in err and len(errors) == 1 and errors[0].startswith(f"streamdream: error: {said}")


def test_the_web_app_s_stills_and_videos_are_made_on_a_replica_and_kept_in_the_app_s_folder(start, tmp_path):
    """With --ray, the Still and Video tabs' model work runs on a replica (its status line names it), the
    picture and the video travel by value, and the results land in the app's own output folder, the
    only one it serves."""
    from streamdream.apps.ui import App, dream_still, dream_video
    from streamdream.samples.make import make_clip

    from streamdream.io.video import probe_video

    replicas, _ = start(capacity=2)
    app = App(tmp_path / "app", replicas=replicas)
    names = {replica.name for replica in replicas.replicas}
    picture = tmp_path / "picture.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)).save(picture)

    (before, after), _, status = dream_still(str(picture), "efficientnet_lite0", "blocks.3", 1.0, 1, 2, 64, 0, app)
    assert Path(after).parent.parent == app.outputs
    assert np.abs(np.asarray(Image.open(after), int) - np.asarray(Image.open(before), int)).mean() > 1  # dreamed
    assert any(status.endswith(f" on {name}") for name in names), status

    clip = make_clip("pan", tmp_path / "pan.mp4", size=(64, 48), fps=10, seconds=1)
    shown, _, status = dream_video(str(clip), "efficientnet_lite0", "blocks.3", 1.0, 0.9, 1, "fast", 64, app, None, lambda *a, **k: None)
    assert Path(shown).parent.parent == app.outputs and probe_video(shown).frame_count == probe_video(clip).frame_count
    assert any(status.endswith(f" on {name}") for name in names), status


def test_a_render_on_a_replica_is_cancelled_from_the_app_while_it_runs(start, tmp_path, monkeypatch):
    """The visitor presses Cancel while their video renders on a replica: the app says so without
    waiting for the render (here it cannot end by itself), and nothing is left in the app's folder."""
    import gradio as gr
    from streamdream.apps import ui
    from streamdream.samples.make import make_clip

    replicas, _ = start(capacity=2)
    app = ui.App(tmp_path / "app", replicas=replicas)
    go = tmp_path / "go"
    monkeypatch.setattr(ui, "video_recipe", lambda *args: functools.partial(Stalling, 90, str(go)))  # built on the replica
    clip = make_clip("pan", tmp_path / "pan.mp4", size=(64, 48), fps=10, seconds=1)

    def progress(done, *args, **kwargs):  # the visitor presses Cancel once the first frame is reported
        if done and done[0]:
            app.cancel_event(None).set()

    with pytest.raises(gr.Error, match="render cancelled"):
        ui.dream_video(str(clip), "efficientnet_lite0", "", 1.0, 0.9, 1, "balanced", 64, app, None, progress)
    go.touch()  # the replica's render goes on to its next frame, where it finds itself cancelled
    assert not list(app.outputs.glob("*/*.mp4"))


def test_a_render_whose_replica_dies_is_made_on_the_other(start, ray_local, tmp_path, monkeypatch):
    """The replica rendering a visitor's video dies after its first frame: the render is made again on
    the replica left, and the visitor gets the whole video, its status line naming that replica."""
    from streamdream.apps import ui
    from streamdream.io.video import probe_video
    from streamdream.samples.make import make_clip

    replicas, _ = start(capacity=2)
    app = ui.App(tmp_path / "app", replicas=replicas)
    go = tmp_path / "go"
    monkeypatch.setattr(ui, "video_recipe", lambda *args: functools.partial(Stalling, 90, str(go)))  # built on the replica
    clip = make_clip("pan", tmp_path / "pan.mp4", size=(64, 48), fps=10, seconds=1)
    doomed, survivor = replicas.replicas  # no visitor is seated: the render goes to the first of the roomiest

    def progress(done, *args, **kwargs):  # the first frame is made (the next waits for `go`): its replica dies
        if done and done[0] and not go.exists():
            ray_local.kill(doomed.actor)
            go.touch()

    shown, _, status = ui.dream_video(str(clip), "efficientnet_lite0", "", 1.0, 0.9, 1, "balanced", 64, app, None, progress)
    assert go.exists(), "the render reported no frame before it ended"
    assert probe_video(shown).frame_count == probe_video(clip).frame_count
    assert status.endswith(f" on {survivor.name}") and not doomed.alive
