"""`streamdream live`: a clip played at its own pace, dreamed live into a file and onto a loopback UDP stream."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import av
import pytest

from streamdream.apps.cli import main
from streamdream.io.video import read_frames
from streamdream.samples.make import make_clip

LIVE = ["--device", "cpu", "--temporal-preset", "fast", "-q"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip("pan", tmp_path_factory.mktemp("live") / "pan.mp4", size=(96, 64), fps=24, seconds=1.0, audio=False)


def test_live_file_output_is_a_playable_clip_with_increasing_timestamps(clip, tmp_path, capsys):
    out = tmp_path / "live.mp4"
    assert main(["live", str(clip), "--realtime", "-o", str(out), *LIVE]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    frames = list(read_frames(out))
    assert 1 <= len(frames) <= 24  # newest wins: frames the dreamer could not keep up with are dropped
    assert all(frame.image.shape == (64, 96, 3) for frame in frames)
    times = [frame.pts * frame.time_base for frame in frames]
    assert times == sorted(set(times))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.mp4"]


def test_live_refuses_to_overwrite_its_input(clip, capsys):
    assert main(["live", str(clip), "-o", str(clip), "--overwrite", *LIVE]) == 2
    assert "is the input" in capsys.readouterr().err


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> bool:
    """Whether some socket of this machine is bound to UDP `port` (read from the kernel, no guessing)."""
    rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(int(row.split()[1].split(":")[1], 16) == port for row in rows)


def test_live_udp_stream_is_watchable_by_a_player(clip, capsys):
    """Streamed as MPEG-TS to 127.0.0.1 and read back by PyAV, as VLC would: frames of the right size arrive."""
    port = _free_udp_port()
    received: list[tuple[int, int]] = []
    errors: list[BaseException] = []

    def watch() -> None:
        try:
            with av.open(f"udp://127.0.0.1:{port}", format="mpegts", options={"timeout": "5000000"}) as player:
                for frame in player.decode(video=0):
                    received.append((frame.width, frame.height))
        except av.FFmpegError:  # the stream stopped: the read times out
            pass
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    player = threading.Thread(target=watch, daemon=True)
    player.start()
    deadline = time.monotonic() + 30
    while not _listening(port):
        assert time.monotonic() < deadline, "the player never opened its port"
        time.sleep(0.01)
    assert main(["live", str(clip), "--realtime", "-o", f"udp://127.0.0.1:{port}", *LIVE]) == 0
    player.join(timeout=30)
    assert not errors and not player.is_alive()
    assert received and set(received) == {(96, 64)}
