"""`streamdream live` when a source or an output fails: on loopback only, against servers the tests start.

Sources are MPEG-TS streams that a test feeds over TCP frame by frame, so it decides when a stream
pauses, changes resolution or goes away; outputs are a raw TCP "player" that can drop its first
connection, a port that refuses and a server that never answers. Nothing depends on timing luck:
each step waits for the state it needs (a frame handed to the dreamer, a connection accepted) with
a generous safety timeout, and a pause that must be reported is three times the threshold.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from streamdream.apps.cli import main
from streamdream.io.live import LiveSource
from streamdream.io.video import read_frames
from streamdream.samples.make import camera_frames, make_clip
from streamdream.settings import LIVE_STALL_NOTICE_S

from .conftest import until
from .test_live import _listening

LIVE = ["--device", "cpu", "--temporal-preset", "fast"]
# Runs that stream paint with the style network: one pass a frame, where a dream would spend seconds
# on a still after each jump of the picture; what is tested here is the same for both.
RUN = [*LIVE, "-s", "builtin:0"]
SIZE = (96, 64)  # below every --max-side: frames reach the outputs at the size the source sends
WAIT = 60.0  # safety timeout for a state another thread must reach; never a timing assumption


# --- what the tests serve -------------------------------------------------------------------------


def ts_frames(size: tuple[int, int], n: int) -> list[bytes]:
    """An H.264 MPEG-TS stream of `n` frames of a moving camera, as the bytes each frame adds (the first carries the headers)."""
    buffer = io.BytesIO()
    chunks: list[bytes] = []
    with av.open(buffer, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "24"}
        for i, image in enumerate(camera_frames("pan", size, n)[0]):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
            chunks.append(buffer.getvalue()[sum(map(len, chunks)) :])
        container.mux(stream.encode(None))
    chunks[-1] += buffer.getvalue()[sum(map(len, chunks)) :]
    return chunks


@pytest.fixture(scope="module")
def stream() -> list[bytes]:
    return ts_frames(SIZE, 24)


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    make_clip("pan", folder / "clip.mp4", size=SIZE, fps=24, seconds=12 / 24, audio=False)
    (folder / "junk.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes())
    return folder


class Handed:
    """Counts the frames the source hands to the dreamer: the handshake that says a run is streaming."""

    def __init__(self) -> None:
        self.count = 0

    def wait(self, n: int) -> None:
        until(lambda: self.count >= n, WAIT)


@pytest.fixture
def handed(monkeypatch) -> Handed:
    spy, frames = Handed(), LiveSource.frames

    def counted(self, stop, notify):
        for rgb in frames(self, stop, notify):
            spy.count += 1
            yield rgb

    monkeypatch.setattr(LiveSource, "frames", counted)
    return spy


class Feeder:
    """A TCP server that is the CLI's source: `script(send)` runs once a client connects, then the connection closes.

    `reset=True` closes it with a TCP reset (the sender crashed) instead of an orderly end of stream.
    """

    def __init__(self, script: Callable[[Callable[[bytes], None]], None], *, reset: bool = False) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.errors: list[BaseException] = []
        self._script, self._reset = script, reset
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                self._script(conn.sendall)
                if self._reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except BaseException as error:  # noqa: BLE001 - the test asserts there were none
            self.errors.append(error)
        finally:
            self.server.close()

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive() and not self.errors, self.errors


def endless(stream: list[bytes], done: threading.Event) -> Callable[[Callable[[bytes], None]], None]:
    """A source script: the stream over and over until `done` is set or the CLI hangs up (as it does when its run ends)."""

    def feed(send) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for i in range(5000):
                if done.is_set():
                    return
                send(stream[i % len(stream)])
                time.sleep(0.02)

    return feed


class Player:
    """A TCP server that is the CLI's network output: it keeps each connection's bytes and can reset the first one."""

    def __init__(self, *, drop_first: bool = False) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self.server.getsockname()[1]}"
        self.received: list[bytearray] = []
        self.ended: list[threading.Event] = []
        self._drop_first = drop_first
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with self.server:
            while True:
                try:
                    conn, _ = self.server.accept()
                except OSError:  # closed by the test
                    return
                self.ended.append(threading.Event())
                self.received.append(bytearray())
                drop = len(self.received) == 1 and self._drop_first
                threading.Thread(target=self._read, args=(conn, self.received[-1], self.ended[-1], drop), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket, into: bytearray, ended: threading.Event, drop: bool) -> None:
        with conn:
            while data := conn.recv(65536):
                into += data
                if drop:  # the first bytes are in: reset the connection, as a crashed server would
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
        ended.set()

    def frames(self, index: int) -> list[tuple[int, int]]:
        """The (width, height) of each frame that connection `index` carried (once it ended), decoded as a player would."""
        until(self.ended[index].is_set, WAIT)
        with av.open(io.BytesIO(bytes(self.received[index])), format="mpegts") as container:
            return [(frame.width, frame.height) for frame in container.decode(video=0)]

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def refusing_port():
    """A TCP port bound by this test and not listening: every connection to it is refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


@pytest.fixture
def mute_port():
    """A TCP port that accepts connections and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@pytest.fixture
def silent_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def results_of(err: str) -> int:
    """The result count of the final status line, e.g. "live: 57 results, 3 frames dropped; ..."."""
    return int(re.findall(r"live: (\d+) results", err)[-1])


def sha256s(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


# --- refused at start: one line, exit 2, nothing written -----------------------------------------------

def case(argv: str, message: str, name: str):
    """One row: the command line after `live` ({m} media, {o} output folder, {clip}, ports) and the whole reason."""
    return pytest.param(argv, message, id=name)


CASES = [
    # outputs
    case("{clip} -o udp://256.1.1.1:5000", "cannot stream to udp://256.1.1.1:5000: unknown host 256.1.1.1", "output-bad-host"),
    case("{clip} -o rtmp://127.0.0.1:{refusing}/live", "cannot stream to rtmp://127.0.0.1:{refusing}/live: connection refused", "rtmp-refused"),
    case("{clip} -o tcp://127.0.0.1:{refusing}", "cannot stream to tcp://127.0.0.1:{refusing}: connection refused", "tcp-refused"),
    case("{clip} -o {o}/live.mp4 -o tcp://127.0.0.1:{refusing}", "cannot stream to tcp://127.0.0.1:{refusing}: connection refused", "refused-beside-a-file"),
    case("{clip} -o rtmp://127.0.0.1:{mute}/live --timeout 1", "cannot stream to rtmp://127.0.0.1:{mute}/live: no answer in 1 s", "rtmp-never-answers"),
    case("{clip} -o ftp://127.0.0.1/live", "cannot stream to ftp://127.0.0.1/live: use one of udp://", "unknown-scheme"),
    case("{clip} -o udp://127.0.0.1", "cannot stream to udp://127.0.0.1: give a host and a port", "no-port"),
    case("{clip} -o udp://127.0.0.1:99999", "cannot stream to udp://127.0.0.1:99999: the port must be a number", "bad-port"),
    case("{clip} -o udp://127.0.0.1:5000 -o udp://127.0.0.1:5000", "two outputs name the same stream: udp://127.0.0.1:5000", "same-stream-twice"),
    case("{clip} -o {o}/live.mp4 -o {o}/./live.mp4", "two outputs name the same file", "same-file-twice"),
    case("{clip} -o {o}/existing.mp4", "output file {o}/existing.mp4 exists; pass --overwrite", "existing-file"),
    case("{clip} -o {o}/live.txt", "cannot write live.txt: unsupported extension", "not-a-video-name"),
    case("{clip} -o {clip} --overwrite", "is the input", "output-is-the-input"),
    # sources
    case("udp://127.0.0.1:{udp} -o {o}/live.mp4 --timeout 1", "no data from udp://127.0.0.1:{udp} in 1 s", "udp-sends-nothing"),
    case("tcp://127.0.0.1:{mute} -o {o}/live.mp4 --timeout 1", "no data from tcp://127.0.0.1:{mute} in 1 s", "tcp-sends-nothing"),
    case("tcp://127.0.0.1:{refusing} -o {o}/live.mp4", "cannot open tcp://127.0.0.1:{refusing}: connection refused", "source-refused"),
    case("udp://256.1.1.1:5000 -o {o}/live.mp4", "cannot open udp://256.1.1.1:5000: unknown host 256.1.1.1", "source-bad-host"),
    case("{m}/missing.mp4 -o {o}/live.mp4", "no such file: {m}/missing.mp4", "missing-file"),
    case("{m}/junk.mp4 -o {o}/live.mp4", "cannot open {m}/junk.mp4: invalid data", "not-a-video"),
    case("{m} -o {o}/live.mp4", "is a folder, not a video file", "source-is-a-folder"),
    # options
    case("{clip} -o {o}/live.mp4 --timeout 0", "--timeout: expected a number above 0", "timeout-zero"),
    case("{clip} -o {o}/live.mp4 --timeout nan", "--timeout: expected a number above 0", "timeout-nan"),
    case("{clip} -o {o}/live.mp4 --style x.png --objective blocks.3", "--objective is for dreams", "style-and-objective"),
]


@pytest.mark.parametrize("argv, message", CASES)
def test_refused_at_start_costs_one_line_and_no_file(media, tmp_path, capsys, refusing_port, mute_port, silent_udp_port, argv, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "existing.png").write_bytes(b"keep me")
    shutil.copy(media / "clip.mp4", out / "existing.mp4")
    before_inputs, before_outputs = sha256s(media), sha256s(out)
    places = {"m": media, "o": out, "clip": media / "clip.mp4", "refusing": refusing_port, "mute": mute_port, "udp": silent_udp_port}

    started = time.monotonic()
    status = main(["live", *argv.format(**places).split(), *LIVE])

    err = capsys.readouterr().err.strip()
    assert status == 2
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("streamdream: error:") and message.format(**places) in err, err
    assert time.monotonic() - started < 20  # the longest wait is a --timeout of 1 s
    assert sha256s(media) == before_inputs
    assert sha256s(out) == before_outputs and sorted(p.name for p in out.iterdir()) == ["existing.mp4", "existing.png"]


# --- mid-stream: the outputs keep going, the files play ------------------------------------------------


def test_a_dropped_network_output_is_reopened_and_the_file_beside_it_keeps_every_frame(stream, handed, tmp_path, capsys):
    player = Player(drop_first=True)

    def feed(send) -> None:  # frames until the output is back, then a few more and the end of the stream
        for i in range(2000):
            send(stream[i % len(stream)])
            if len(player.received) >= 2:
                break
            time.sleep(0.02)
        assert len(player.received) >= 2, "the output was never reopened"
        for chunk in stream[:4]:
            send(chunk)

    source = Feeder(feed)
    out = tmp_path / "live.mp4"
    try:
        assert main(["live", source.url, "-o", str(out), "-o", player.url, *RUN]) == 0
    finally:
        player.close()
    source.join()
    err = capsys.readouterr().err
    assert len(re.findall(rf"live: lost {player.url}: (connection reset by peer|broken pipe); reconnecting", err)) == 1, err
    assert err.count(f"live: reconnected to {player.url}") == 1, err
    frames = [frame.image.shape for frame in read_frames(out)]
    assert len(frames) == results_of(err) and set(frames) == {(64, 96, 3)}
    assert player.frames(1) and set(player.frames(1)) == {SIZE}  # the reopened stream plays


def test_without_reconnect_a_dropped_output_ends_the_run_and_the_file_plays(stream, handed, tmp_path, capsys):
    player, done = Player(drop_first=True), threading.Event()
    source = Feeder(endless(stream, done))
    out = tmp_path / "live.mp4"
    try:
        status = main(["live", source.url, "-o", str(out), "-o", player.url, "--no-reconnect", *RUN, "-q"])
    finally:
        done.set()
        player.close()
    source.join()
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert len(err.splitlines()) == 1 and re.fullmatch(rf"streamdream: error: lost {player.url}: (connection reset by peer|broken pipe); kept the (\d+) frames done in {out}", err), err
    kept = int(re.search(r"kept the (\d+) frames", err).group(1))
    assert len(list(read_frames(out))) == kept >= 1
    assert len(player.received) == 1


def test_a_short_stall_is_reported_and_the_run_goes_on(stream, handed, tmp_path, capsys):
    pause = 3 * LIVE_STALL_NOTICE_S

    def feed(send) -> None:
        for chunk in stream[:12]:
            send(chunk)
        handed.wait(1)  # the dreamer is taking frames: what follows is a stall of a running stream
        time.sleep(pause)
        for chunk in stream[12:]:
            send(chunk)

    source = Feeder(feed)
    out = tmp_path / "live.mp4"
    assert main(["live", source.url, "-o", str(out), "--timeout", str(4 * pause), *RUN]) == 0
    source.join()
    err = capsys.readouterr().err
    stalls = [float(s) for s in re.findall(rf"live: {source.url} sent nothing for ([\d.]+) s", err)]
    assert stalls and LIVE_STALL_NOTICE_S <= max(stalls) <= 4 * pause, err
    assert len(list(read_frames(out))) == results_of(err)


def test_a_new_resolution_is_scaled_to_the_first(stream, handed, tmp_path, capsys):
    bigger = ts_frames((128, 96), 12)

    def feed(send) -> None:
        for chunk in [*stream[:12], *bigger]:
            send(chunk)

    source = Feeder(feed)
    out = tmp_path / "live.mp4"
    assert main(["live", source.url, "-o", str(out), *RUN]) == 0
    source.join()
    err = capsys.readouterr().err
    assert err.count(f"live: {source.url} changed resolution 96x64 → 128x96; scaled to 96x64") == 1, err
    frames = [frame.image.shape for frame in read_frames(out)]
    assert len(frames) == results_of(err) and set(frames) == {(64, 96, 3)}


def test_a_source_that_ends_ends_the_run_with_playable_files(stream, handed, tmp_path, capsys):
    source = Feeder(lambda send: [send(chunk) for chunk in stream])
    out = tmp_path / "live.mp4"
    assert main(["live", source.url, "-o", str(out), *RUN]) == 0
    source.join()
    captured = capsys.readouterr()
    assert captured.out.split() == [str(out)]
    assert len(list(read_frames(out))) == results_of(captured.err) >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.mp4"]


def test_a_source_that_goes_silent_is_lost_and_the_file_plays(stream, handed, tmp_path, capsys):
    done = threading.Event()

    def feed(send) -> None:  # some frames, then nothing (the connection stays open) until the run has ended
        for chunk in stream[:12]:
            send(chunk)
        done.wait(WAIT)

    source = Feeder(feed)
    out = tmp_path / "live.mp4"
    try:
        status = main(["live", source.url, "-o", str(out), "--timeout", "1.5", *RUN, "-q"])
    finally:
        done.set()
    source.join()
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert re.fullmatch(rf"streamdream: error: lost {source.url}: no data for 1.5 s; kept the (\d+) frames done in {out}", err), err
    assert len(list(read_frames(out))) == int(re.search(r"kept the (\d+)", err).group(1)) >= 1


def test_a_source_that_crashes_is_lost_and_the_file_plays(stream, handed, tmp_path, capsys):
    def feed(send) -> None:
        for chunk in stream[:12]:
            send(chunk)
        handed.wait(1)

    source = Feeder(feed, reset=True)
    out = tmp_path / "live.mp4"
    status = main(["live", source.url, "-o", str(out), *RUN, "-q"])
    source.join()
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert re.fullmatch(rf"streamdream: error: lost {source.url}: connection reset by peer; kept the (\d+) frames done in {out}", err), err
    assert len(list(read_frames(out))) == int(re.search(r"kept the (\d+)", err).group(1)) >= 1


def test_ctrl_c_finishes_every_output(stream, tmp_path, capsys):
    player, done = Player(), threading.Event()

    def interrupt() -> None:  # once a result went out (the player holds no bytes before), the run is in its loop
        until(lambda: player.received and player.received[0], WAIT)
        os.kill(os.getpid(), signal.SIGINT)

    source = Feeder(endless(stream, done))
    out = tmp_path / "live.mp4"
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        status = main(["live", source.url, "-o", str(out), "-o", player.url, *RUN])
    finally:
        done.set()
        player.close()
    source.join()
    captured = capsys.readouterr()
    assert status == 0
    assert "live: stopped" in captured.err
    assert captured.out.split() == [str(out), player.url]
    results = results_of(captured.err)
    assert len(list(read_frames(out))) in (results, results + 1)  # Ctrl-C may land between the file's frame and the count
    assert player.frames(0) and set(player.frames(0)) == {SIZE}


def test_ctrl_c_while_waiting_for_a_silent_source_stops_at_once(tmp_path, capsys, silent_udp_port):
    def interrupt() -> None:  # once the CLI has bound the port, it is waiting for the source
        until(lambda: _listening(silent_udp_port), WAIT)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    started = time.monotonic()
    status = main(["live", f"udp://127.0.0.1:{silent_udp_port}", "-o", str(tmp_path / "live.mp4"), "--timeout", "60", *LIVE])
    assert status == 130 and time.monotonic() - started < 30  # not at the end of the 60 s timeout
    assert capsys.readouterr().err == "streamdream: interrupted\n"
    assert list(tmp_path.iterdir()) == []
