"""Generate sample clips with known camera motion: `python -m samples.make [--out samples] ...`.

Each clip is a virtual camera moving over a real photograph (skimage's astronaut), so the video
has natural texture while the motion is exact: every frame is rendered through a 2x3 affine
matrix that maps frame pixels to photo pixels. From two such matrices `true_backward_flow` gives
the true optical flow, which lets benchmarks measure warping error without estimating flow.

Kinds (motion per frame, independent of clip length):
  pan     constant translation of PAN_PX_PER_FRAME frame pixels
  zoom    zoom in by ZOOM_PER_FRAME about the frame centre
  rotate  rotation by ROTATE_DEG_PER_FRAME about the frame centre

Clips are H.264 .mp4 files with a synthesized stereo AAC chord; `pan` also gets a raw 4:2:0
`pan.y4m` for use as a browser's fake webcam.
"""

from __future__ import annotations

import argparse
import fractions
import functools
import math
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data

from streamdream.apps.options import size_arg
from streamdream.errors import StreamdreamError
from streamdream.io.paths import atomic_output
from streamdream.io.video import VideoInfo, VideoWriter

KINDS = ("pan", "zoom", "rotate")
PAN_PX_PER_FRAME = (3.0, 1.0)  # (dx, dy) the camera moves right/down, in frame pixels
ZOOM_PER_FRAME = 1.005  # scene magnification factor between consecutive frames
ROTATE_DEG_PER_FRAME = 0.25  # camera turns clockwise, so the scene turns counter-clockwise on screen
AUDIO_RATE = 48000
# A major chord split across the channels, so a swapped or mono-mixed track is audible.
CHORD_HZ = ((220.0, 277.18), (329.63, 440.0))  # (left, right) pairs
_MARGIN = 0.98  # keeps interpolation away from the photo's border


@functools.cache
def _photo() -> np.ndarray:
    """The source photograph, H x W x 3 uint8 RGB (cached: skimage decodes a PNG on every call)."""
    return skimage.data.astronaut()


def _camera(scale: float, angle: float, centre: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """Affine mapping frame pixels to photo pixels: frame centre lands on `centre`.

    `scale` is photo pixels per frame pixel (below 1 magnifies the photo), `angle` in radians.
    """
    w, h = size
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    linear = np.array([[c, -s], [s, c]])
    offset = np.asarray(centre) - linear @ np.array([(w - 1) / 2, (h - 1) / 2])
    return np.hstack([linear, offset[:, None]])


def _affines(kind: str, size: tuple[int, int], n: int, photo_shape: tuple[int, ...]) -> list[np.ndarray]:
    """The per-frame camera matrices, with the scale chosen so the view never leaves the photo."""
    w, h = size
    ph, pw = photo_shape[:2]
    centre = ((pw - 1) / 2, (ph - 1) / 2)
    if kind == "pan":
        vx, vy = PAN_PX_PER_FRAME
        travel_x, travel_y = vx * (n - 1), vy * (n - 1)
        scale = _MARGIN * min(pw / (w + travel_x), ph / (h + travel_y))
        start = (centre[0] - scale * travel_x / 2, centre[1] - scale * travel_y / 2)
        return [_camera(scale, 0.0, (start[0] + scale * vx * t, start[1] + scale * vy * t), size) for t in range(n)]
    if kind == "zoom":
        scale = _MARGIN * min(pw / w, ph / h)
        return [_camera(scale / ZOOM_PER_FRAME**t, 0.0, centre, size) for t in range(n)]
    if kind == "rotate":
        scale = _MARGIN * min(pw, ph) / math.hypot(w, h)  # the turning view's diagonal fits
        return [_camera(scale, math.radians(ROTATE_DEG_PER_FRAME * t), centre, size) for t in range(n)]
    raise StreamdreamError(f"unknown sample kind {kind!r}; use one of {', '.join(KINDS)}")


def camera_frames(kind: str, size: tuple[int, int], n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Render `n` frames of size (width, height) for camera move `kind`.

    Returns the RGB frames and, per frame, the 2x3 affine mapping frame pixel (x, y) to
    photo pixel coordinates.
    """
    photo = _photo()
    affines = _affines(kind, size, n, photo.shape)
    # Small frames sample the photo sparsely; blur it first so they do not alias, which would
    # make consecutive frames disagree beyond what the motion explains.
    scale = max(math.sqrt(abs(np.linalg.det(a[:, :2]))) for a in affines)
    if scale > 1:
        photo = cv2.GaussianBlur(photo, (0, 0), 0.5 * scale)
    # Bilinear like the warps the benchmarks apply; the matrix maps output pixels to source pixels.
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    frames = [cv2.warpAffine(photo, a, size, flags=flags, borderMode=cv2.BORDER_REFLECT) for a in affines]
    return frames, affines


def true_backward_flow(affine_prev: np.ndarray, affine_cur: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Exact flow from frame t to frame t-1 (H x W x 2 float32, (dx, dy) per pixel).

    Pixel (x, y) of frame t shows the same scene point as (x + dx, y + dy) of frame t-1, so
    `cv2.remap(prev, x + dx, y + dy)` reproduces frame t wherever that point was in view.
    """
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    points = np.stack([xs, ys, np.ones_like(xs)], axis=-1)  # H x W x 3 homogeneous frame coords
    photo_points = points @ affine_cur.T
    prev_inverse = cv2.invertAffineTransform(affine_prev)
    prev_points = np.concatenate([photo_points, np.ones_like(xs)[..., None]], axis=-1) @ prev_inverse.T
    return (prev_points - points[..., :2]).astype(np.float32)


def _chord(seconds: float) -> np.ndarray:
    """Stereo float32 (2 x samples) chord with a soft attack and a fade-out, to be heard not endured."""
    t = np.arange(round(seconds * AUDIO_RATE)) / AUDIO_RATE
    envelope = np.minimum(t / 0.05, 1.0) * np.minimum((seconds - t) / 0.3, 1.0).clip(0.0)
    channels = [sum(np.sin(2 * np.pi * f * t) for f in pair) for pair in CHORD_HZ]
    return (0.2 * np.stack(channels) * envelope).astype(np.float32)


def _write_audio(path: Path, seconds: float) -> None:
    """Encode the chord as stereo AAC into `path` (a scratch .m4a the video writer remuxes from)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=AUDIO_RATE)
        frame = av.AudioFrame.from_ndarray(_chord(seconds), format="fltp", layout="stereo")
        frame.sample_rate = AUDIO_RATE
        frame.pts = 0
        container.mux(stream.encode(frame))  # PyAV splits it into the encoder's frame size
        container.mux(stream.encode(None))


def _write_y4m(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """Write raw 4:2:0 frames with a YUV4MPEG2 header, the format Chrome's fake webcam reads."""
    with atomic_output(path, overwrite=True) as pending, av.open(str(pending.tmp), "w", format="yuv4mpegpipe") as container:
        h, w = frames[0].shape[:2]
        stream = container.add_stream("rawvideo", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def make_clip(
    kind: str,
    path: str | Path,
    size: tuple[int, int] = (640, 480),
    fps: int = 30,
    seconds: float = 3.0,
    audio: bool = True,
) -> Path:
    """Render camera move `kind` to `path`: .y4m gets raw video, anything else goes through VideoWriter."""
    path = Path(path)
    n = max(1, round(fps * seconds))
    frames, _ = camera_frames(kind, size, n)
    if path.suffix.lower() == ".y4m":
        _write_y4m(frames, path, fps)
        return path
    info = VideoInfo(
        width=size[0],
        height=size[1],
        frame_count=n,
        fps=float(fps),
        duration=n / fps,
        time_base=fractions.Fraction(1, fps),
        rotation=0,
        has_audio=audio,
    )
    # The scratch audio file lives beside the output, so nothing is written outside its folder.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".samples-") as scratch:
        audio_source = Path(scratch) / "chord.m4a" if audio else None
        if audio_source is not None:
            _write_audio(audio_source, n / fps)
        # veryfast at crf 18 is still visually clean and keeps regenerating the samples quick.
        with VideoWriter(path, info, audio_source=audio_source, preset="veryfast", overwrite=True) as writer:
            for i, image in enumerate(frames):
                writer.write(image, i)
    return path


def _kinds(text: str) -> list[str]:
    """Parse a comma-separated list of kinds."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind {', '.join(unknown)}; use {','.join(KINDS)}")
    return kinds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m samples.make", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("samples"), help="folder to write into (created)")
    parser.add_argument("--size", type=size_arg, default=(640, 480), help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--kinds", type=_kinds, default=list(KINDS), help="comma-separated: pan,zoom,rotate")
    args = parser.parse_args(argv)
    if args.fps < 1 or args.seconds <= 0:
        parser.error("--fps and --seconds must be positive")
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds:
        start = time.perf_counter()
        paths = [make_clip(kind, args.out / f"{kind}.mp4", args.size, args.fps, args.seconds)]
        if kind == "pan":
            paths.append(make_clip(kind, args.out / "pan.y4m", args.size, args.fps, args.seconds))
        print(f"{', '.join(map(str, paths))}  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except StreamdreamError as e:
        raise SystemExit(f"error: {e}") from None
