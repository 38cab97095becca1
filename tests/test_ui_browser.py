"""The web UI end to end in a real headless Chromium with a fake webcam playing a generated clip.

Skipped (with the reason) where /usr/bin/chromium or Playwright is missing; CI installs both. The
Live tab served by live engine replicas on a local Ray (`streamdream ui --ray`) is skipped without Ray.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.browser import CHROMIUM, chromium, free_port, open_live, start_webcam

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (CI installs the Debian chromium package)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytest.importorskip("gradio")

from PIL import Image  # noqa: E402

CLIP_SIZE = (160, 120)


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory) -> tuple[Path, list[np.ndarray]]:
    from streamdream.samples.make import camera_frames, make_clip

    path = make_clip("pan", tmp_path_factory.mktemp("cam") / "cam.y4m", size=CLIP_SIZE, fps=15, seconds=2)
    frames, _ = camera_frames("pan", CLIP_SIZE, 30)
    return path.resolve(), frames


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from streamdream.apps.ui import build_app, launch
    from streamdream.engine import LiveEngine

    with LiveEngine() as engine:
        demo = build_app(tmp_path_factory.mktemp("ui"), live_time_limit=120, max_live=2, engine=engine)
        launch("127.0.0.1", free_port(), demo=demo, prevent_thread_lock=True, quiet=True)
        yield demo
        demo.close()


@pytest.fixture(scope="module")
def app_url(app):
    return app.local_url


@pytest.fixture(scope="module")
def browser(camera_clip):
    with chromium(camera_clip[0]) as browser:
        yield browser


def set_slider(page, elem_id: str, value: float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def output_image(page) -> np.ndarray | None:
    """The dream the Live tab shows, which reaches the page inline: a JPEG data URL, no file to fetch (`ui_styles.InlinePicture`)."""
    img = page.locator("#live-output img")
    if img.count() == 0:
        return None
    src = img.first.get_attribute("src")
    if not src:
        return None
    assert src.startswith("data:image/jpeg;base64,"), src[:100]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2]))).convert("RGB"))


def readout(page) -> str:
    return page.locator("#live-readout textarea").input_value()


def count_toasts(page) -> None:
    """From now on, count the toasts (Gradio's error and info pop-ups) the page shows: `toasts(page)`."""
    page.evaluate("""() => { window.streamdreamToasts = 0; new MutationObserver(changes => changes.forEach(change => change.addedNodes.forEach(node => {
        if (node.nodeType === 1 && (node.matches('.toast-body') || node.querySelector('.toast-body'))) window.streamdreamToasts++; })))
        .observe(document.body, {childList: true, subtree: true}); }""")


def toasts(page) -> int:
    return page.evaluate("window.streamdreamToasts")


def switch_to_style(page) -> None:
    page.locator("#live-mode").get_by_text("style", exact=True).click()
    sync_api.expect(page.locator("#live-styles")).to_be_visible()


def wait_for_readout(page, text: str, timeout: float = 90_000) -> None:
    """Until the readout contains `text` (a safety timeout; the stream's pace is the machine's)."""
    page.wait_for_function("text => document.querySelector('#live-readout textarea').value.includes(text)", arg=text, timeout=timeout)


def distance_to_camera(image: np.ndarray, frames: list[np.ndarray]) -> float:
    """Mean absolute difference to the closest camera frame (mirrored or not), at the output's size."""
    h, w = image.shape[:2]
    best = np.inf
    for frame in frames:
        ref = np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR)).astype(np.float32)
        for candidate in (ref, ref[:, ::-1]):
            best = min(best, float(np.abs(candidate - image.astype(np.float32)).mean()))
    return best


def watch(pages, seconds: float, enough: int | None = None) -> dict[int, list[tuple[float, str, np.ndarray]]]:
    """Poll each page's output image; keep every distinct one with its arrival time, for `seconds`, or
    until every page has shown `enough` of them (then `seconds` is only a safety timeout)."""
    seen = {i: [] for i in range(len(pages))}
    stop = time.monotonic() + seconds
    while time.monotonic() < stop and not (enough and all(len(frames) >= enough for frames in seen.values())):
        for i, page in enumerate(pages):
            src = page.locator("#live-output img").first.get_attribute("src") if page.locator("#live-output img").count() else None
            if src and (not seen[i] or seen[i][-1][1] != src):
                image = output_image(page)
                if image is not None:
                    seen[i].append((time.monotonic(), src, image))
        time.sleep(0.05)
    return seen


def displayed_fps(frames) -> float:
    if len(frames) < 2:
        return 0.0
    return (len(frames) - 1) / (frames[-1][0] - frames[0][0])


def test_live_tab_streams_dreamed_frames(browser, app_url, camera_clip, tmp_path_factory):
    context, page = open_live(browser, app_url)
    try:  # the tab's default strength: a new visitor sees a plain dream without touching a control
        start_webcam(page)
        page.wait_for_function("() => document.querySelector('#live-readout textarea').value.startsWith('fps')", timeout=90_000)
        frames = watch([page], 12)[0]
        shown, camera = page.locator("#live-output img").first.bounding_box(), page.locator("#live-input video").first.bounding_box()
        shot = tmp_path_factory.mktemp("artifacts") / "live.png"
        page.screenshot(path=str(shot))
        text = readout(page)
        print(f"\nscreenshot: {shot}\nreadout: {text}\ndisplayed fps in the browser: {displayed_fps(frames):.2f} ({len(frames)} distinct frames)")
    finally:
        context.close()
    assert len(frames) >= 3, f"only {len(frames)} processed frames arrived"
    images = [f[2] for f in frames]
    assert any(np.abs(a.astype(int) - b.astype(int)).mean() > 0.5 for a, b in zip(images, images[1:])), "the output does not change"
    assert distance_to_camera(images[-1], camera_clip[1]) > 4.0, "the output looks like the camera frame: no dream"
    assert text.startswith("fps ")
    assert shown["height"] >= camera["height"] - 2, (shown, camera)  # the dream is shown as large as the camera preview


def test_two_sessions_keep_separate_state(browser, app, app_url, camera_clip):
    engine = app.streamdream_app.engine
    earlier = set(engine.sessions)  # a session of an earlier test may still be open (closed when idle)
    dreaming, dreamer_page = open_live(browser, app_url)
    plain, plain_page = open_live(browser, app_url)
    try:
        set_slider(dreamer_page, "live-strength", 4)
        set_slider(plain_page, "live-iterations", 0)  # no dream steps: this session shows the camera as it is
        start_webcam(dreamer_page)
        start_webcam(plain_page)
        for page in (dreamer_page, plain_page):
            page.wait_for_function("() => document.querySelector('#live-readout textarea').value.startsWith('fps')", timeout=90_000)
        seen = watch([dreamer_page, plain_page], 10)
        texts = readout(dreamer_page), readout(plain_page)
        served = [s.processed for s in engine.sessions if s not in earlier]
        print(f"\nreadouts: {texts}\nframes served by the live engine per session: {served}")
    finally:
        dreaming.close()
        plain.close()
    assert len(seen[0]) >= 2 and len(seen[1]) >= 2
    assert len(served) == 2 and min(served) >= 2, "both browser sessions are streams on the app's live engine"
    assert all(text.startswith("fps ") for text in texts)
    dreamed = distance_to_camera(seen[0][-1][2], camera_clip[1])
    untouched = distance_to_camera(seen[1][-1][2], camera_clip[1])
    print(f"distance to the camera: dreaming session {dreamed:.1f}, plain session {untouched:.1f}")
    assert untouched < dreamed / 2, (dreamed, untouched)


def test_live_controls_follow_the_mode(browser, app_url):
    """Style mode: the objective and the iterations go, the built-in styles and the painting upload
    come, strength becomes "style strength" up to 1; and back."""
    expect = sync_api.expect
    context, page = open_live(browser, app_url)
    try:
        expect(page.locator("#live-objective")).to_be_visible()
        expect(page.locator("#live-style")).to_be_hidden()
        expect(page.locator("#live-styles")).to_be_hidden()
        expect(page.locator("#live-strength")).to_contain_text("strength")
        switch_to_style(page)
        expect(page.locator("#live-objective")).to_be_hidden()
        expect(page.locator("#live-iterations")).to_be_hidden()
        expect(page.locator("#live-style")).to_be_visible()
        expect(page.locator("#live-styles .thumbnail-item")).to_have_count(26)
        expect(page.locator("#live-styles .thumbnail-item.selected")).to_have_text("builtin:19")
        expect(page.locator("#live-strength")).to_contain_text("style strength")
        expect(page.locator("#live-strength input[type=range]")).to_have_attribute("max", "1")
        expect(page.locator("#live-output")).to_contain_text("painting")
        page.locator("#live-styles .thumbnail-item").nth(3).click()
        expect(page.locator("#live-builtin input")).to_have_value("builtin:3")
        page.locator("#live-mode").get_by_text("dream", exact=True).click()
        expect(page.locator("#live-objective")).to_be_visible()
        expect(page.locator("#live-iterations")).to_be_visible()
        expect(page.locator("#live-style")).to_be_hidden()
        expect(page.locator("#live-styles")).to_be_hidden()
        expect(page.locator("#live-strength")).not_to_contain_text("style strength")
    finally:
        context.close()


def test_live_style_paints_frames_without_an_upload(browser, app_url, camera_clip):
    """A visitor who switches to style sees the selected built-in style at once: no painting to upload, no toast."""
    context, page = open_live(browser, app_url)
    try:
        count_toasts(page)
        switch_to_style(page)
        start_webcam(page)
        wait_for_readout(page, "fps ")
        frames = watch([page], 90, enough=3)[0]
        text, shown = readout(page), toasts(page)
        print(f"\nreadout: {text}\n{len(frames)} distinct painted frames")
    finally:
        context.close()
    assert len(frames) >= 3, f"only {len(frames)} painted frames arrived"
    assert distance_to_camera(frames[-1][2], camera_clip[1]) > 20, "the output looks like the camera frame: not painted"
    assert text.startswith("fps ") and shown == 0


def test_a_bad_painting_is_one_readout_line_and_the_stream_goes_on(browser, app_url, camera_clip, tmp_path):
    """A file that is no picture, then a flat grey one: each is one line in the readout, the frames keep
    coming, painted with the built-in style, and no toast appears; removing it returns to the readout's figures."""
    text_file, grey = tmp_path / "notes.png", tmp_path / "grey.png"
    text_file.write_text("not a picture")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(grey)
    context, page = open_live(browser, app_url)
    upload, remove = page.locator("#live-style input[type=file]"), page.locator("#live-style button[aria-label='Remove Image']")
    seen = {}
    try:
        count_toasts(page)
        switch_to_style(page)
        start_webcam(page)
        wait_for_readout(page, "fps ")
        for painting, why in ((text_file, "notes.png is not a readable"), (grey, "the painting grey.png is one flat colour")):
            upload.set_input_files(str(painting))
            wait_for_readout(page, f"{why}")
            seen[painting.name] = watch([page], 90, enough=3)[0], readout(page)
            remove.click()
            page.wait_for_function("() => document.querySelector('#live-readout textarea').value.startsWith('fps ')", timeout=90_000)
        shown = toasts(page)
        print(f"\nreadouts: {[text for _, text in seen.values()]}")
    finally:
        context.close()
    for name, (frames, text) in seen.items():
        assert len(frames) >= 3, f"{name}: only {len(frames)} frames arrived"
        assert distance_to_camera(frames[-1][2], camera_clip[1]) > 20, f"{name}: not painted"
        assert "painting with builtin:19 instead · fps " in text and "\n" not in text, text
    assert shown == 0, f"{shown} toasts"


def test_a_visitor_past_capacity_sees_the_queue_and_is_served_when_a_page_closes(browser, app, app_url):
    """Three live pages on two seats: two dream, the third shows its place in the queue, then dreams
    once the first page closes (its seat is freed on unload, or after the idle time at the latest)."""
    seats = app.streamdream_app.room.seats
    pages = [open_live(browser, app_url) for _ in range(3)]
    (first, first_page), (_, second_page), (_, third_page) = pages
    try:
        for page in (first_page, second_page):
            start_webcam(page)
            page.wait_for_function("() => document.querySelector('#live-readout textarea').value.startsWith('fps')", timeout=90_000)
        start_webcam(third_page)
        third_page.wait_for_function("() => document.querySelector('#live-readout textarea').value.includes('in the queue')", timeout=60_000)
        queued = readout(third_page)
        assert len(seats.seated()) == 2 and len(seats.waiting()) == 1
        first.close()  # the first visitor leaves
        third_page.wait_for_function("() => document.querySelector('#live-readout textarea').value.startsWith('fps')", timeout=60_000)
        frames = watch([third_page, second_page], 6)
        print(f"\nqueued page said: {queued}\nthen: {readout(third_page)}")
    finally:
        for context, _ in pages[1:]:
            context.close()
    assert "you are number 1 in the queue" in queued
    assert len(frames[0]) >= 2 and len(frames[1]) >= 2, "the admitted page and the one already seated both receive dreamed frames"


@pytest.fixture
def ray_app(ray_local, tmp_path):
    """The app as `streamdream ui --ray --replicas 2 --max-live 1` serves it (the command's own start of the
    replicas, `live_replicas`): its Live tab on two live engine replicas on a local Ray, one seat each (given: no probe)."""
    from streamdream.apps.commands.ui import live_replicas
    from streamdream.apps.ui import build_app, launch
    from streamdream.engine import LiveEngine

    replicas = live_replicas(argparse.Namespace(ray_cluster="local", replicas=2, max_live=1))
    try:
        with LiveEngine() as engine:
            demo = build_app(tmp_path, live_time_limit=120, engine=engine, replicas=replicas)
            launch("127.0.0.1", free_port(), demo=demo, prevent_thread_lock=True, quiet=True)
            yield demo
            demo.close()
    finally:
        replicas.close()


def test_live_tab_served_by_ray_replicas_streams_dreamed_frames(browser, ray_app, camera_clip):
    """The acceptance test of `streamdream ui --ray`: a page's webcam is dreamed by a replica, not by the app's process."""
    replicas = ray_app.streamdream_app.replicas
    context, page = open_live(browser, ray_app.local_url)
    try:
        start_webcam(page)
        page.wait_for_function("() => document.querySelector('#live-readout textarea').value.startsWith('fps')", timeout=180_000)
        frames = watch([page], 90, enough=3)[0]
        serving = {session.replica.name for session in ray_app.streamdream_app.room.sessions().values()}
        text = readout(page)
        print(f"\nreadout: {text}\n{len(frames)} distinct frames from {serving}")
    finally:
        context.close()
    assert len(serving) == 1 and serving <= {replica.name for replica in replicas.replicas}, "the page's stream is on a replica"
    assert len(frames) >= 3, f"only {len(frames)} processed frames arrived"
    images = [f[2] for f in frames]
    assert any(np.abs(a.astype(int) - b.astype(int)).mean() > 0.5 for a, b in itertools.pairwise(images)), "the output does not change"
    assert distance_to_camera(images[-1], camera_clip[1]) > 4.0, "the output looks like the camera frame: no dream"
    assert text.startswith("fps ")
