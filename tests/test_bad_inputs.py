"""Nothing lost: every command, given bad input, answers one line and a non-zero exit, and harms no file.

Each case of the table runs the CLI in-process on small generated media and checks what a user
would see and what they would lose: the exit status, exactly one stderr line (no traceback) that
says what is wrong, every input file byte for byte as before (SHA-256), and an output folder that
holds what it held before, plus at most the partial result the message names. The output folder of
every case starts with two files that must survive: `existing.png` (a file the user did not ask to
replace) and `hard.png` (a hard link to the input photo).
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamdream.apps.cli import main
from streamdream.samples.make import make_clip
from streamdream.io.paths import hidden_sibling
from streamdream.io.video import read_frames

from .test_video_io import _zero_frames

ROOT = Path(__file__).resolve().parents[1]
DREAM = ["--octaves", "1", "--iterations", "1", "--frame-octaves", "1", "--frame-iterations", "1", "--device", "cpu", "-q"]
STYLE = ["--octaves", "1", "--iterations", "2", "--frame-iterations", "1", "--device", "cpu", "-q"]
GRAD = ["--device", "cpu"]
TOO_LONG_NAME = "n" * 300 + ".png"  # most file systems allow 255 bytes


@pytest.fixture(scope="module")
def media(tmp_path_factory, astronaut_96) -> Path:
    """Good and bad inputs, made once: photos, a clip with audio, and damaged or odd files."""
    folder = tmp_path_factory.mktemp("media")
    Image.fromarray(astronaut_96).save(folder / "photo.png")
    Image.fromarray(astronaut_96[:64, :64]).save(folder / "style.png")
    clip = make_clip("pan", folder / "clip.mp4", size=(96, 64), fps=24, seconds=20 / 24)
    data = clip.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) * 2 // 5])  # the index is at the front (faststart)
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle : middle + 3000] = np.random.default_rng(0).integers(0, 256, 3000, np.uint8).tobytes()
    (folder / "corrupt.mp4").write_bytes(bytes(damaged))
    (folder / "junk.mp4").write_bytes(np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes())
    (folder / "notes.jpg").write_text("not a picture")
    (folder / "empty.png").write_bytes(b"")
    (folder / "cut.png").write_bytes((folder / "photo.png").read_bytes()[:300])
    (folder / "folder.png").mkdir()
    os.symlink("loop-b.png", folder / "loop-a.png")
    os.symlink("loop-a.png", folder / "loop-b.png")
    os.mkfifo(folder / "fifo.png")
    _zero_frames(folder)  # empty.mkv
    return folder


def sha256s(folder: Path) -> dict[str, str]:
    """Digest of every regular file in `folder` (links and FIFOs are not read)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()}


def case(argv: str, code: int, message: str, kept: str | None = None, **kw):
    """One row: the command line ({m} = media folder, {o} = output folder), exit status, a piece of the message, a kept partial."""
    return pytest.param(argv, code, message, kept, **kw)


CASES = [
    # never clobber
    case("dream {m}/photo.png -o {m}/photo.png", 2, "is the input"),
    case("dream {m}/photo.png -o {m}/../{mname}/./photo.png --overwrite", 2, "is the input", id="input-by-another-spelling"),
    case("dream {m}/photo.png -o {o}/hard.png --overwrite", 2, "is the input", id="input-through-a-hard-link"),
    case("dream {m}/photo.png -o {o}/existing.png", 2, "--overwrite"),
    case("dream {m}/clip.mp4 -o {m}/clip.mp4 --overwrite", 2, "is the input"),
    case("dream {m}/clip.mp4 -o {o}/a.png", 2, "unsupported extension for a video"),
    case("style {m}/photo.png -s {m}/style.png -o {m}/style.png --overwrite", 2, "is the input"),
    case("style {m}/photo.png -s {m}/style.png -o {o}/a.png --preview {o}/./a.png", 2, "same file"),
    case("style {m}/photo.png -s {m}/style.png -o {o}/existing.png", 2, "--overwrite"),
    case("saliency {m}/photo.png -o {m}/photo.png --overwrite", 2, "is the input"),
    case("saliency {m}/photo.png -o {o}/existing.png", 2, "--overwrite"),
    case("fool {m}/photo.png --target 1 -o {o}/existing.png", 2, "--overwrite"),
    case("classviz --class 1 -o {o}/existing.png", 2, "--overwrite"),
    case("invert {m}/photo.png --layer blocks.1 -o {o}/existing.png", 2, "--overwrite"),
    # options checked when parsed
    case("dream {m}/photo.png -o {o}/a.png --step nan", 2, "--step"),
    case("dream {m}/photo.png -o {o}/a.png --step inf", 2, "--step"),
    case("dream {m}/photo.png -o {o}/a.png --jitter -5", 2, "--jitter"),
    case("dream {m}/photo.png -o {o}/a.png --octave-scale nan", 2, "--octave-scale"),
    case("dream {m}/photo.png -o {o}/a.png --octaves 0", 2, "--octaves"),
    case("dream {m}/photo.png -o {o}/a.png --max-side 0", 2, "--max-side"),
    case("dream {m}/photo.png -o {o}/a.png --max-side 100000", 2, "--max-side"),
    case("dream --noise --size 100000x100000 -o {o}/a.png", 2, "--size"),
    case("dream {m}/photo.png -o {o}/a.jpg --quality 0", 2, "--quality"),
    case("dream {m}/clip.mp4 -o {o}/a.mp4 --carry 2", 2, "--carry"),
    case("dream {m}/clip.mp4 -o {o}/a.mp4 --flow-scale 0", 2, "--flow-scale"),
    case("dream {m}/clip.mp4 -o {o}/a.mp4 --crf 99", 2, "--crf"),
    case("style {m}/photo.png -s {m}/style.png -o {o}/a.png --lr nan", 2, "--lr"),
    case("style {m}/photo.png -s {m}/style.png -o {o}/a.png --style-weights 0.7,nan", 2, "--style-weights"),
    case("style {m}/photo.png -s {m}/style.png -o {o}/a.png --style-scale 0", 2, "--style-scale"),
    case("fool {m}/photo.png --target 5000 -o {o}/a.png", 2, "--target"),
    case("fool {m}/photo.png --target 1 --epsilon nan -o {o}/a.png", 2, "--epsilon"),
    case("classviz --class 1 --l2 nan -o {o}/a.png", 2, "--l2"),
    case("classviz --class 1 --size 0 -o {o}/a.png", 2, "--size"),
    case("invert {m}/photo.png --layer blocks.1 --tv nan -o {o}/a.png", 2, "--tv"),
    case("classify {m}/photo.png --top 0", 2, "--top"),
    # output paths
    case("dream {m}/photo.png -o {o}/" + TOO_LONG_NAME, 2, "file name is 304 bytes", id="name-too-long"),
    case("dream {m}/photo.png -o {o}/missing/a.png", 2, "does not exist"),
    case("dream {m}/photo.png -o {o}", 2, "is a folder"),
    case("dream {m}/photo.png -o {o}/a.xyz", 2, "unknown extension"),
    # inputs
    case("dream {m}/missing.png -o {o}/a.png", 2, "no such file"),
    case("dream {m}/empty.png -o {o}/a.png", 2, "empty (0 bytes)"),
    case("dream {m}/notes.jpg -o {o}/a.png", 2, "not a readable"),
    case("dream {m}/cut.png -o {o}/a.png", 2, "truncated or corrupt"),
    case("dream {m}/folder.png -o {o}/a.png", 2, "is a folder"),
    case("dream {m}/loop-a.png -o {o}/a.png", 2, "form a loop"),
    case("dream {m}/fifo.png -o {o}/a.png", 2, "FIFO"),
    case("dream {m}/photo.png -o {o}/a.png --guide {m}/missing.png", 2, "no such file"),
    case("dream {m}/photo.png -o {o}/a.png --objective blocks.42", 2, "valid layers"),
    case("dream {m}/junk.mp4 -o {o}/a.mp4", 2, "not a video file"),
    case("dream {m}/empty.mkv -o {o}/a.mp4", 2, "no frames"),
    case("dream {m}/truncated.mp4 -o {o}/a.mp4", 2, "the file ends early", kept="a.mp4"),
    case("dream {m}/corrupt.mp4 -o {o}/a.mp4", 2, "--allow-partial-input", kept="a.mp4"),
    case("style {m}/photo.png -s {m}/missing.png -o {o}/a.png", 2, "no such file"),
    case("style {m}/photo.png -s {m}/fifo.png -o {o}/a.png", 2, "FIFO"),
    case("saliency {m}/notes.jpg -o {o}/a.png", 2, "not a readable"),
    case("invert {m}/photo.png --layer blocks.99 -o {o}/a.png", 2, "unknown layer"),
    case("classify {m}/fifo.png", 2, "FIFO"),
    case("classify {m}/empty.png", 2, "empty"),
    case("evaluate {m}/clip.mp4 {m}/missing.mp4", 2, "no such file"),
    case("evaluate {m}/clip.mp4 {m}/junk.mp4", 2, "not a video file"),
    case("evaluate {m}/clip.mp4 {m}/truncated.mp4", 2, "the file ends early"),
]


def options_for(argv: list[str]) -> list[str]:
    """Quick settings for the commands that would otherwise render at full quality."""
    return {"dream": DREAM, "style": STYLE, "saliency": GRAD, "fool": GRAD, "classviz": GRAD, "invert": GRAD, "classify": GRAD}.get(argv[0], [])


@pytest.mark.parametrize("argv, code, message, kept", CASES)
def test_bad_input_costs_one_line_and_no_file(media, tmp_path, capsys, argv, code, message, kept):
    out = tmp_path / "out"
    out.mkdir()
    (out / "existing.png").write_bytes(b"keep me")
    os.link(media / "photo.png", out / "hard.png")
    before_inputs, before_outputs = sha256s(media), sha256s(out)
    args = argv.format(m=media, o=out, mname=media.name).split()

    status = main([*args, *options_for(args)])

    err = capsys.readouterr().err.strip()
    assert status == code
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("streamdream: error:") and message in err, err
    assert sha256s(media) == before_inputs
    assert {p.name for p in out.iterdir()} == set(before_outputs) | ({kept} if kept else set())
    after = sha256s(out)
    assert {name: after[name] for name in before_outputs} == before_outputs
    if kept:
        assert "kept the" in err and str(out / kept) in err
        assert len(list(read_frames(out / kept))) >= 1  # the partial plays


def test_long_output_name_within_the_limit_works(media, tmp_path):
    """240 characters fit the file system, though the hidden partial beside it needs a shortened name."""
    out = tmp_path / ("n" * 240 + ".png")
    assert main(["dream", str(media / "photo.png"), "-o", str(out), *DREAM]) == 0
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_allow_partial_input_renders_what_decodes(media, tmp_path, capsys):
    out = tmp_path / "a.mp4"
    assert main(["dream", str(media / "truncated.mp4"), "-o", str(out), "--allow-partial-input", *DREAM]) == 0
    err = capsys.readouterr().err.strip()
    assert "the file ends early" in err and len(err.splitlines()) == 1
    decodable = len(list(read_frames(media / "truncated.mp4", allow_partial=True)))
    assert 0 < decodable < 20
    assert len(list(read_frames(out))) == decodable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]


def test_interrupted_render_never_replaces_an_existing_output(media, tmp_path, capsys):
    """Ctrl-C with --overwrite: the old file stays whole; the frames done go to a new name that the message gives."""
    from streamdream.dream import Dreamer
    from streamdream.video import process_video

    out = tmp_path / "a.mp4"
    out.write_bytes(b"the previous render")

    def stop_after_two(done: int, total: int | None) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        process_video(media / "clip.mp4", out, Dreamer(octaves=1, iterations=1, device="cpu"), overwrite=True, on_frame=stop_after_two)
    partial = tmp_path / "a.partial.mp4"
    assert caught.value.__notes__ == [f"kept the 2 frames done in {partial}"]
    assert out.read_bytes() == b"the previous render"
    assert len(list(read_frames(partial))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "a.partial.mp4"]


def test_second_writer_of_an_output_is_refused_with_the_first_ones_pid(media, tmp_path, capsys):
    out = tmp_path / "a.png"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from streamdream.io.paths import output_lock\n"
         f"with output_lock(Path({str(out)!r})):\n    print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["dream", str(media / "photo.png"), "-o", str(out), *DREAM]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"streamdream: error: {out} is being written by another streamdream process (pid {holder.pid})"
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    assert main(["dream", str(media / "photo.png"), "-o", str(out), *DREAM]) == 0  # the lock went with its holder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_partial_of_a_killed_render_is_found_and_removed_by_the_next(media, tmp_path, capsys):
    clip = make_clip("pan", tmp_path / "long.mp4", size=(96, 64), fps=24, seconds=4, audio=False)
    out = tmp_path / "out.mp4"
    partial = hidden_sibling(out, "partial", ".mp4")
    render = subprocess.Popen([sys.executable, "-m", "streamdream.apps.cli", "dream", str(clip), "-o", str(out), *DREAM], cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (partial.exists() and partial.stat().st_size > 0) and render.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert render.poll() is None, "the render ended before it could be killed"
    finally:
        render.kill()
        render.wait()
    assert partial.exists() and not out.exists()

    assert main(["dream", str(clip), "-o", str(out), *DREAM, "--frame-iterations", "1"]) == 0
    err = capsys.readouterr().err.strip()
    assert f"removed {partial}" in err and "killed" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4", "out.mp4"]
    assert len(list(read_frames(out))) == 96


def _small_disk() -> None:
    """In the child: any file past 4 kB fails with EFBIG, as a full disk fails with ENOSPC."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))


@pytest.mark.parametrize("source, name", [("clip.mp4", "a.mp4"), ("photo.png", "a.png")])
def test_full_disk_is_one_line_exit_1_and_leaves_nothing(media, tmp_path, source, name):
    result = subprocess.run(
        [sys.executable, "-m", "streamdream.apps.cli", "dream", str(media / source), "-o", str(tmp_path / name), *DREAM],
        cwd=ROOT, preexec_fn=_small_disk, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"streamdream: error: no space left on the device while writing {tmp_path / name}; nothing was written"
    assert list(tmp_path.iterdir()) == []


def test_animated_still_gets_a_notice(tmp_path, astronaut_96, capsys):
    frames = [Image.fromarray(np.roll(astronaut_96, 8 * i, axis=1)) for i in range(3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:], duration=100)
    assert main(["dream", str(tmp_path / "anim.png"), "-o", str(tmp_path / "a.png"), *DREAM]) == 0
    err = capsys.readouterr().err.strip()
    assert err == f"streamdream: {tmp_path / 'anim.png'} is animated (3 frames); only its first frame is used (give it as a video to use every frame)"


def test_dropped_transparency_gets_a_notice(tmp_path, astronaut_96, capsys):
    rgba = np.dstack([astronaut_96, np.full(astronaut_96.shape[:2], 128, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "glass.png")
    assert main(["dream", str(tmp_path / "glass.png"), "-o", str(tmp_path / "a.jpg"), *DREAM]) == 0
    assert capsys.readouterr().err.strip() == "streamdream: a.jpg cannot hold transparency, so it was dropped; save as PNG, WebP or TIFF to keep it"
    assert main(["dream", str(tmp_path / "glass.png"), "-o", str(tmp_path / "a.png"), *DREAM]) == 0
    assert capsys.readouterr().err == ""
    assert np.all(np.asarray(Image.open(tmp_path / "a.png"))[..., 3] == 128)


def test_tiny_video_dreams_every_frame(tmp_path):
    clip = make_clip("pan", tmp_path / "tiny.mp4", size=(16, 12), fps=24, seconds=0.5, audio=False)
    assert main(["dream", str(clip), "-o", str(tmp_path / "out.mp4"), *DREAM]) == 0
    frames = [frame.image for frame in read_frames(tmp_path / "out.mp4")]
    assert len(frames) == 12 and frames[0].shape == (12, 16, 3)


def test_transparent_gif_gets_a_notice(tmp_path, capsys):
    frames = []
    for i in range(3):
        rgba = np.zeros((24, 32, 4), np.uint8)
        rgba[5:15, 5 + 2 * i : 15 + 2 * i] = (255, 0, 0, 255)
        frames.append(Image.fromarray(rgba))
    frames[0].save(tmp_path / "sprite.gif", save_all=True, append_images=frames[1:], duration=100, disposal=2, transparency=0)
    assert main(["dream", str(tmp_path / "sprite.gif"), "-o", str(tmp_path / "out.mp4"), *DREAM]) == 0
    err = capsys.readouterr().err.strip()
    assert err == f"streamdream: {tmp_path / 'sprite.gif'} has transparency; the frames are rendered without it (video outputs hold none)"
    assert len(list(read_frames(tmp_path / "out.mp4"))) == 3


def test_ctrl_c_while_starting_up_is_one_line(monkeypatch, capsys):
    """Ctrl-C while torch and the commands are still importing ends like one during a render."""
    import streamdream.apps.cli

    def interrupted_import():
        raise KeyboardInterrupt

    monkeypatch.setattr(streamdream.apps.cli, "build_parser", interrupted_import)
    assert main(["dream", "photo.png", "-o", "out.png"]) == 130
    assert capsys.readouterr().err == "streamdream: interrupted\n"
