"""Video reading and writing: timestamps, audio, odd sizes, rotation, interruption, bad input.

Inputs are built here with PyAV directly (not with the code under test), small and short.
"""

from __future__ import annotations

import fractions
import logging
import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamdream.samples import make
from streamdream.errors import StreamdreamError
from streamdream.io.paths import is_video_path
from streamdream.io.video import VideoInfo, VideoWriter, probe_video, read_frames

W, H = 96, 64
MS = fractions.Fraction(1, 1000)
CFR_PTS = list(range(20))  # with time base 1/25
VFR_PTS = [0, 40, 70, 150, 160, 300, 310, 333, 500, 530, 560, 700, 720, 900, 910]  # milliseconds


def _image(i: int, w: int = W, h: int = H) -> np.ndarray:
    """A smooth gradient with a bright square whose position encodes the frame number."""
    y, x = np.mgrid[0:h, 0:w]
    image = np.stack([x * 255 // w, y * 255 // h, np.full_like(x, 96)], axis=-1).astype(np.uint8)
    left = (i * 5) % (w - 16)
    image[8:24, left : left + 16] = 255
    return image


def _tone(seconds: float, rate: int = 44100) -> av.AudioFrame:
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.3 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
    frame.sample_rate = rate
    frame.pts = 0
    return frame


def _make_video(
    path: Path,
    pts: list[int],
    time_base: fractions.Fraction = MS,
    *,
    size: tuple[int, int] = (W, H),
    audio: bool = False,
    rotation: int | None = None,
) -> list[np.ndarray]:
    """Write an H.264 clip with the given pts (and optionally AAC audio); return its frames."""
    w, h = size
    images = [_image(i, w, h) for i in range(len(pts))]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, time_base=time_base)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv444p" if w % 2 or h % 2 else "yuv420p"
        stream.options = {"crf": "10"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        if audio:
            audio_stream = container.add_stream("aac", rate=44100)
        for p, image in zip(pts, images):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = p
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio:
            container.mux(audio_stream.encode(_tone(float((pts[-1] + pts[1]) * time_base))))
            container.mux(audio_stream.encode(None))
    return images


def _times(path: Path) -> tuple[list[float], fractions.Fraction]:
    """Presentation times (seconds) of every video frame in `path`, and the stream time base."""
    frames = list(read_frames(path))
    return [float(f.pts * f.time_base) for f in frames], frames[0].time_base


def _copy(src: Path, dst: Path, **kwargs) -> VideoInfo:
    info = probe_video(src)
    with VideoWriter(dst, info, **kwargs) as writer:
        for frame in read_frames(src):
            writer.write(frame.image, frame.pts)
    return info


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(audio=0) if p.size]


def _leftovers(folder: Path, expected: set[str]) -> set[str]:
    return {p.name for p in folder.iterdir()} - expected


# --- reading ---------------------------------------------------------------------------------


def test_probe_reports_stream_facts(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, CFR_PTS, fractions.Fraction(1, 25), audio=True)
    info = probe_video(src)
    assert (info.width, info.height) == (W, H)
    assert info.frame_count == 20
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(0.8, abs=0.01)
    assert info.rotation == 0
    assert info.has_audio


def test_read_frames_yields_rgb_in_order(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    images = _make_video(src, VFR_PTS)
    frames = list(read_frames(src))
    assert [f.index for f in frames] == list(range(len(VFR_PTS)))
    assert [float(f.pts * f.time_base) for f in frames] == pytest.approx([p / 1000 for p in VFR_PTS], abs=1e-4)
    for frame, image in zip(frames, images):
        assert frame.image.shape == (H, W, 3) and frame.image.dtype == np.uint8
        assert np.abs(frame.image.astype(int) - image).mean() < 3


def test_rotation_is_applied_when_reading(tmp_path: Path) -> None:
    src = tmp_path / "rotated.mp4"
    images = _make_video(src, CFR_PTS[:5], fractions.Fraction(1, 25), rotation=90)
    info = probe_video(src)
    assert info.rotation == 90
    assert (info.width, info.height) == (H, W)  # displayed size
    frames = list(read_frames(src))
    upright = np.rot90(images[0])  # 90 degrees counter-clockwise, as FFmpeg's players show it
    assert frames[0].image.shape == upright.shape == (W, H, 3)
    assert np.abs(frames[0].image.astype(int) - upright).mean() < 3
    # Written back, the upright frames make an upright file that needs no rotation.
    out = tmp_path / "out.mp4"
    _copy(src, out)
    assert probe_video(out).rotation == 0
    assert np.abs(next(read_frames(out)).image.astype(int) - upright).mean() < 3


def _corrupt(path: Path) -> Path:
    path = path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path


def _audio_only(path: Path, ext: str) -> Path:
    path = path / f"sound.{ext}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac" if ext == "m4a" else "pcm_s16le", rate=44100)
        container.mux(stream.encode(_tone(0.3)))
        container.mux(stream.encode(None))
    return path


def _zero_frames(path: Path) -> Path:
    """A Matroska file whose video stream has no frames (MP4 would drop the empty track)."""
    path = path / "empty.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height = W, H
        audio = container.add_stream("aac", rate=44100)
        container.mux(audio.encode(_tone(0.3)))
        container.mux(audio.encode(None))
    return path


@pytest.mark.parametrize(
    "make_bad",
    [
        pytest.param(lambda d: d / "missing.mp4", id="missing"),
        pytest.param(lambda d: d, id="directory"),
        pytest.param(_corrupt, id="corrupt"),
        pytest.param(lambda d: _audio_only(d, "m4a"), id="audio-only-m4a"),
        pytest.param(lambda d: _audio_only(d, "wav"), id="audio-only-wav"),
        pytest.param(_zero_frames, id="zero-frames"),
    ],
)
def test_bad_input_raises_one_line_error(tmp_path: Path, make_bad) -> None:
    bad = make_bad(tmp_path)
    for read in (probe_video, lambda p: list(read_frames(p))):
        with pytest.raises(StreamdreamError) as excinfo:
            read(bad)
        message = str(excinfo.value)
        assert message and "\n" not in message and str(bad.name) in message


def test_is_video_path() -> None:
    assert all(is_video_path(f"clip{ext}") for ext in (".mp4", ".MOV", ".mkv", ".webm", ".avi", ".gif", ".m4v"))
    assert not any(is_video_path(name) for name in ("photo.jpg", "clip.mp4.png", "video"))


# --- writing: timestamps ---------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv", "webm"])
@pytest.mark.parametrize(
    ("pts", "time_base"),
    [(CFR_PTS, fractions.Fraction(1, 25)), (VFR_PTS, MS)],
    ids=["cfr", "vfr"],
)
def test_frames_and_pts_survive_a_copy(tmp_path: Path, ext: str, pts: list[int], time_base) -> None:
    src = tmp_path / "in.mp4"
    images = _make_video(src, pts, time_base)
    out = tmp_path / f"out.{ext}"
    _copy(src, out)
    before, tb_in = _times(src)
    after, tb_out = _times(out)
    assert len(after) == len(pts)
    tolerance = float(max(tb_in, tb_out)) / 2  # half a tick of the coarser time base
    assert after == pytest.approx(before, abs=tolerance)
    assert np.diff(after).min() > 0
    decoded = [f.image for f in read_frames(out)]
    assert all(np.abs(d.astype(int) - i).mean() < 4 for d, i in zip(decoded, images))
    assert _leftovers(tmp_path, {"in.mp4", f"out.{ext}"}) == set()


def test_gif_keeps_frames_and_colours(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    images = _make_video(src, CFR_PTS[:10], fractions.Fraction(1, 25), audio=True)
    out = tmp_path / "out.gif"
    _copy(src, out, audio_source=src)  # GIF has no audio; it is dropped, not an error
    with av.open(str(out)) as container:
        assert not container.streams.audio
    after, tb_out = _times(out)
    assert after == pytest.approx([i / 25 for i in range(10)], abs=float(tb_out) / 2)
    decoded = [f.image for f in read_frames(out)]
    assert all(d.shape == (H, W, 3) for d in decoded)
    assert all(np.abs(d.astype(int) - i).mean() < 6 for d, i in zip(decoded, images))


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm"])
def test_odd_size_is_kept(tmp_path: Path, ext: str, caplog: pytest.LogCaptureFixture) -> None:
    src = tmp_path / "odd.mp4"
    images = _make_video(src, CFR_PTS[:8], fractions.Fraction(1, 25), size=(33, 21))
    out = tmp_path / f"out.{ext}"
    with caplog.at_level(logging.INFO, logger="streamdream.io.video"):
        _copy(src, out)
    decoded = [f.image for f in read_frames(out)]
    assert len(decoded) == 8
    assert all(d.shape == (21, 33, 3) for d in decoded)
    assert all(np.abs(d.astype(int) - i).mean() < 6 for d, i in zip(decoded, images))
    assert ("odd frame size" in caplog.text) == (ext != "webm")  # VP9 needs no 4:4:4 fallback


# --- writing: audio --------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_audio_packets_are_copied_unchanged(tmp_path: Path, ext: str) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, VFR_PTS, audio=True)
    out = tmp_path / f"out.{ext}"
    _copy(src, out, audio_source=src)
    packets = _audio_packets(src)
    assert len(packets) > 10
    assert _audio_packets(out) == packets
    # AAC's priming packet has a negative pts; the video timeline must not shift to make room.
    assert _times(out)[0] == pytest.approx([p / 1000 for p in VFR_PTS], abs=1e-4)
    # Interleaved: audio does not all sit after the video in the file.
    with av.open(str(out)) as container:
        kinds = [p.stream.type for p in container.demux() if p.size]
    first_half = kinds[: len(kinds) // 2]
    assert "audio" in first_half and "video" in first_half


def test_audio_packets_without_dts_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A demuxed packet may lack a dts (PTS-only containers); only the empty flush packet is skipped."""
    import streamdream.io.video as video

    def without_dts(packets):
        for i, packet in enumerate(packets):
            if packet.size and i % 2:
                packet.dts = None
            yield packet

    init = video.AudioTrack.__init__

    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._packets = without_dts(self._packets)

    monkeypatch.setattr(video.AudioTrack, "__init__", patched)
    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    _make_video(src, VFR_PTS, audio=True)
    _copy(src, out, audio_source=src)
    assert _audio_packets(out) == _audio_packets(src)
    with av.open(str(out)) as container:  # still interleaved by time, not appended at the end
        kinds = [p.stream.type for p in container.demux() if p.size]
    assert "audio" in kinds[: len(kinds) // 2]


def test_no_audio_source_means_no_audio(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, CFR_PTS, fractions.Fraction(1, 25), audio=True)
    out = tmp_path / "out.mp4"
    _copy(src, out, audio_source=None)
    assert not probe_video(out).has_audio


def test_webm_reencodes_aac_to_opus(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, VFR_PTS, audio=True)
    out = tmp_path / "out.webm"
    _copy(src, out, audio_source=src)

    def audio_seconds(path: Path) -> tuple[str, float]:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            return stream.codec_context.name, sum(f.samples / f.sample_rate for f in container.decode(stream))

    codec, seconds = audio_seconds(out)
    assert codec == "opus"
    assert seconds == pytest.approx(audio_seconds(src)[1], abs=0.05)
    assert len(list(read_frames(out))) == len(VFR_PTS)


def test_wav_audio_is_reencoded_where_the_container_needs_it(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, CFR_PTS, fractions.Fraction(1, 25))
    wav = _audio_only(tmp_path, "wav")
    for ext, codec in (("mkv", "pcm_s16le"), ("webm", "opus")):
        out = tmp_path / f"out.{ext}"
        _copy(src, out, audio_source=wav)
        with av.open(str(out)) as container:
            assert container.streams.audio[0].codec_context.name == codec


# --- writing: failures -----------------------------------------------------------------------


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_interrupted_render_keeps_playable_partial_file(tmp_path: Path, error: type[BaseException]) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, VFR_PTS, audio=True)
    out = tmp_path / "out.mp4"
    info = probe_video(src)
    done = 6
    with pytest.raises(error) as caught:
        with VideoWriter(out, info, audio_source=src) as writer:
            for frame in read_frames(src):
                if frame.index == done:
                    raise error()
                writer.write(frame.image, frame.pts)
    assert writer.frames_written == done
    assert _leftovers(tmp_path, {"in.mp4", "out.mp4"}) == set()
    after, _ = _times(out)
    assert after == pytest.approx([p / 1000 for p in VFR_PTS[:done]], abs=1e-4)
    assert caught.value.__notes__ == [f"kept the {done} frames done in {out}"]
    # Audio stops about where the video stops, instead of running on for the whole source.
    with av.open(str(out)) as container:
        audio = [p for p in container.demux(audio=0) if p.size]
        assert audio
        assert float(audio[-1].pts * audio[-1].time_base) < VFR_PTS[done] / 1000 + 0.05


def test_zero_frames_leave_nothing(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, CFR_PTS, fractions.Fraction(1, 25), audio=True)
    info = probe_video(src)
    out = tmp_path / "out.mp4"
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(out, info, audio_source=src):
            raise KeyboardInterrupt
    with pytest.raises(StreamdreamError, match="no frames"):
        with VideoWriter(out, info):
            pass
    assert _leftovers(tmp_path, {"in.mp4"}) == set()


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, CFR_PTS, fractions.Fraction(1, 25))
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    with pytest.raises(StreamdreamError, match="exists"):
        _copy(src, out)
    assert out.read_bytes() == b"keep me"
    _copy(src, out, overwrite=True)
    assert len(list(read_frames(out))) == len(CFR_PTS)
    assert _leftovers(tmp_path, {"in.mp4", "out.mp4"}) == set()


def test_unusable_output_paths_fail_before_writing(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, CFR_PTS, fractions.Fraction(1, 25))
    info = probe_video(src)
    with pytest.raises(StreamdreamError, match="does not exist"):
        VideoWriter(tmp_path / "no such folder" / "out.mp4", info)
    with pytest.raises(StreamdreamError, match=r"\.mp4.*\.webm"):
        VideoWriter(tmp_path / "out.flv", info)
    with pytest.raises(StreamdreamError, match="does not exist"):
        with VideoWriter(tmp_path / "out.mp4", info, audio_source=tmp_path / "nope.m4a"):
            pass
    with pytest.raises(StreamdreamError, match="cannot write"):
        with VideoWriter(tmp_path / "out.mp4", info, preset="no-such-preset"):
            pass
    assert _leftovers(tmp_path, {"in.mp4"}) == set()


def test_write_checks_the_frame_shape(tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    _make_video(src, CFR_PTS, fractions.Fraction(1, 25))
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "out.mp4", probe_video(src)) as writer:
            writer.write(np.zeros((H, W + 1, 3), np.uint8), 0)
    assert _leftovers(tmp_path, {"in.mp4"}) == set()


# --- samples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", make.KINDS)
def test_camera_frames_shapes(kind: str) -> None:
    frames, affines = make.camera_frames(kind, (W, H), 5)
    assert len(frames) == len(affines) == 5
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    assert all(a.shape == (2, 3) for a in affines)
    assert not np.array_equal(frames[0], frames[-1])  # the camera moves


def _warp_error(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray) -> float:
    """Mean error of predicting `cur` by sampling `prev` along the backward flow, in the interior."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    warped = cv2.remap(prev, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR)
    m = 16
    return float(np.abs(warped.astype(float) - cur)[m:-m, m:-m].mean())


def test_true_backward_flow_of_a_pan_is_the_shift() -> None:
    size = (160, 120)
    frames, affines = make.camera_frames("pan", size, 4)
    flow = make.true_backward_flow(affines[2], affines[3], size)
    assert flow.shape == (120, 160, 2) and flow.dtype == np.float32
    # The camera moves right/down, so a scene point was further right/down in the previous frame.
    assert np.allclose(flow, np.array(make.PAN_PX_PER_FRAME, np.float32), atol=1e-4)
    error = _warp_error(frames[2], frames[3], flow)
    assert error < 2.0
    assert _warp_error(frames[2], frames[3], -flow) > 4 * error  # the sign matters


@pytest.mark.parametrize("kind", ["zoom", "rotate"])
def test_true_backward_flow_predicts_the_next_frame(kind: str) -> None:
    size = (160, 120)
    frames, affines = make.camera_frames(kind, size, 8)
    flow = make.true_backward_flow(affines[0], affines[7], size)  # a big step makes a clear signal
    still = np.zeros_like(flow)
    error = _warp_error(frames[0], frames[7], flow)
    assert error < 3.0
    assert _warp_error(frames[0], frames[7], still) > 3 * error


def test_make_clip_writes_video_audio_and_y4m(tmp_path: Path) -> None:
    mp4 = make.make_clip("pan", tmp_path / "pan.mp4", size=(W, H), fps=10, seconds=1.0)
    info = probe_video(mp4)
    assert (info.width, info.height, info.frame_count, info.fps) == (W, H, 10, 10.0)
    with av.open(str(mp4)) as container:
        audio = container.streams.audio[0]
        assert (audio.codec_context.name, audio.channels) == ("aac", 2)
    y4m = make.make_clip("pan", tmp_path / "pan.y4m", size=(W, H), fps=10, seconds=1.0)
    assert y4m.read_bytes().startswith(b"YUV4MPEG2 W96 H64 F10:1")
    with av.open(str(y4m)) as container:
        assert container.streams.video[0].format.name == "yuv420p"
    frames = [f.image for f in read_frames(y4m)]
    expected, _ = make.camera_frames("pan", (W, H), 10)
    assert len(frames) == 10
    assert np.abs(frames[4].astype(int) - expected[4]).mean() < 4
    assert _leftovers(tmp_path, {"pan.mp4", "pan.y4m"}) == set()


def test_samples_cli_writes_only_into_out(tmp_path: Path) -> None:
    out = tmp_path / "s"
    make.main(["--out", str(out), "--size", "64x48", "--fps", "5", "--seconds", "1", "--kinds", "pan,rotate"])
    assert sorted(os.listdir(out)) == ["pan.mp4", "pan.y4m", "rotate.mp4"]
    assert sorted(os.listdir(tmp_path)) == ["s"]
