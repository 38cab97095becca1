"""Where a long video is cut into segments that render independently, and how each one starts.

A segment is a run of output frames [start, stop) plus `warmup` frames before `start` that the
worker renders only to rebuild the warm state (the dream carried along the flow) a serial render
would have there; they are discarded. (Measured, they do little for the seam: two renderings of the
same frame keep different dream patterns. Each segment therefore also renders the first frames of
the next one, and those are cross-faded: `Segment.fade`, `Segment.tail`.)

Boundaries are taken at key frames where there is one near the ideal place, because a worker
decodes from the key frame at or before its first frame: at a key frame that costs nothing,
elsewhere up to a GOP of extra decoding. Among key frames, those the encoder placed off its
regular interval are preferred: encoders such as x264 put them at scene cuts, where the serial
render starts afresh anyway, so a seam there cannot show. Planning only demuxes packets (no
decoding), so it takes seconds even for an hour of video.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass

import av

from ..errors import StreamdreamError
from ..io.video import check_input_file
from ..video import Span


@dataclass(frozen=True)
class Segment:
    """Output frames [start, stop) of a clip (indices in presentation order), after `warmup` discarded frames.

    Its first `fade` frames are cross-faded with the `tail` frames the segment before it rendered
    past its own stop (the same frames, from the other side of the seam); the segment file holds
    [start, stop + tail), with closed GOPs from start + fade and from stop, so the part it
    contributes alone, [start + fade, stop), is cut out of it by stream copy.
    """

    index: int
    start: int
    stop: int
    warmup: int
    first_pts: int  # pts of the first frame decoded, frame `start - warmup`
    fade: int = 0
    tail: int = 0
    cuts: tuple[int, ...] = ()  # pts where the file must start a closed GOP

    @property
    def frames(self) -> int:
        """Frames in the segment file."""
        return self.stop - self.start + self.tail

    @property
    def body(self) -> range:
        """Positions in the segment file of the frames that go to the output as they are."""
        return range(self.fade, self.stop - self.start)

    @property
    def span(self) -> Span:
        return Span(start_pts=self.first_pts, warmup=self.warmup, frames=self.frames, keyframes=self.cuts)

    def describe(self) -> str:
        return f"segment {self.index} (frames {self.start}-{self.stop - 1})"


@dataclass(frozen=True)
class Timeline:
    """The video stream's frames as the demuxer sees them: pts in presentation order and the key frames."""

    pts: list[int]
    keyframes: list[int]  # frame indices

    @property
    def frames(self) -> int:
        return len(self.pts)


def read_timeline(path: str | os.PathLike) -> Timeline:
    """Demux (without decoding) the first video stream's packets: every frame's pts and the key frames."""
    src = check_input_file(path, "video")
    try:
        with av.open(str(src)) as container:
            if not container.streams.video:
                raise StreamdreamError(f"{src} has no video stream")
            stream = container.streams.video[0]
            packets = [(packet.pts, packet.is_keyframe) for packet in container.demux(stream) if packet.size]
    except av.FFmpegError as e:
        raise StreamdreamError(f"cannot read {src}: {e.strerror}") from None
    if not packets:
        raise StreamdreamError(f"{src} has a video stream but no frames")
    if any(pts is None for pts, _ in packets):
        raise StreamdreamError(f"{src} cannot be split into segments: its video packets carry no timestamps; render it without --ray")
    ordered = sorted(pts for pts, _ in packets)
    rank = {pts: i for i, pts in enumerate(ordered)}
    return Timeline(ordered, sorted(rank[pts] for pts, key in packets if key))


def scene_cut_keyframes(keyframes: list[int]) -> set[int]:
    """Key frames that come sooner after the previous one than the encoder's usual interval.

    An encoder places key frames at a fixed interval (x264: every 250 frames) and also at scene
    cuts it detects, restarting the count there, so the key frames closer to their predecessor
    than the most common gap are its scene cuts. With fewer than three key frames nothing tells.
    """
    gaps = [b - a for a, b in zip(keyframes, keyframes[1:], strict=False)]
    if len(gaps) < 2:
        return set()
    usual = collections.Counter(gaps).most_common(1)[0][0]
    return {b for a, b in zip(keyframes, keyframes[1:], strict=False) if b - a < usual}


def choose_boundaries(frames: int, length: int, keyframes: list[int], cuts: set[int] = frozenset()) -> list[int]:
    """Segment starts after the first: about every `length` frames, moved to a key frame within half a length.

    A scene cut (`cuts`) wins over a plain key frame, and the nearest to the ideal place wins
    among equals; with no key frame in reach the boundary stays at the ideal place. The last
    segment is never shorter than half a length.
    """
    boundaries: list[int] = []
    start = 0
    while frames - start >= length + (length + 1) // 2:
        ideal = start + length
        low, high = start + (length + 1) // 2, min(start + length + length // 2, frames - (length + 1) // 2)
        near = [k for k in keyframes if low <= k <= high]
        preferred = [k for k in near if k in cuts] or near
        start = min(preferred, key=lambda k: (abs(k - ideal), k)) if preferred else ideal
        boundaries.append(start)
    return boundaries


def plan_segments(timeline: Timeline, length: int, overlap: int, fade: int = 0) -> list[Segment]:
    """The segments of a clip: about `length` output frames each, each warmed up on `overlap` frames
    before it, and cross-faded with the one before over `fade` frames (at most half a segment)."""
    starts = [0, *choose_boundaries(timeline.frames, length, timeline.keyframes, scene_cut_keyframes(timeline.keyframes))]
    stops = [*starts[1:], timeline.frames]
    fades = [0, *(min(fade, (stop - start) // 2) for start, stop in zip(starts[1:], stops[1:], strict=True))]
    tails = [*fades[1:], 0]
    segments = []
    for index, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        warmup, head, tail = min(overlap, start), fades[index], tails[index]
        cuts = tuple(timeline.pts[i] for i, wanted in ((start + head, head), (stop, tail)) if wanted)
        segments.append(Segment(index, start, stop, warmup, timeline.pts[start - warmup], head, tail, cuts))
    return segments


def segment_length(frames: int, workers: int, extra: int, per_worker: int, min_multiple: int) -> int:
    """The default segment length: `per_worker` segments per worker, but at least `min_multiple` times
    the `extra` frames each segment renders besides its own (warm-up, the tail for the next seam)."""
    return max(1, -(-frames // (workers * per_worker)), min_multiple * extra)
