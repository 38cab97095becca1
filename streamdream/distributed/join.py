"""Join rendered segments into one video by stream copy, with the source's audio muxed in once.

At each seam the two segments' renderings of the same few frames are cross-faded (`cross_fade`,
the only frames encoded after the workers: a handful per seam, by Ray tasks); everything else is
copied.

Every segment was encoded by `VideoWriter` with the same settings and keeps the source's own
timestamps, so its packets go into the output as they are: no re-encode (the join costs a copy of
the bytes), and the pts of every frame are those a serial render writes. The codec parameters of
the segments are compared first, because packets from encoders configured differently (another
FFmpeg or x264 build on some node) would make a stream no decoder can follow. The audio comes
packet for packet from the source, interleaved by time, exactly as a serial render writes it.
"""

from __future__ import annotations

import collections
import contextlib
import fractions
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

from ..errors import StreamdreamError
from ..io.paths import atomic_output
from ..io.video import AudioTrack, VideoInfo, VideoWriter, encoding_of, read_frames
from ..settings import OutputSettings


def _video_pts(path: str | os.PathLike) -> list[int]:
    """The pts of the file's video frames, in presentation order."""
    with av.open(str(path)) as container:
        return sorted(packet.pts for packet in container.demux(container.streams.video[0]) if packet.size)


def _codec_parameters(stream: av.VideoStream) -> tuple:
    context = stream.codec_context
    return (context.name, context.width, context.height, context.format.name if context.format else None, bytes(context.extradata or b""))


def cross_fade(
    before: str | os.PathLike,
    after: str | os.PathLike,
    dst: str | os.PathLike,
    pts: Sequence[int],
    info: VideoInfo,
    *,
    crf: int = OutputSettings.default("crf"),
    preset: str = OutputSettings.default("preset"),
) -> Path:
    """Blend the last frames of `before` into the first frames of `after`, written at `pts` into `dst`.

    Both files rendered the same len(pts) frames, one coming from the warm state before the seam
    and one from the warm state after it. Two dreams of the same frame differ in their patterns
    (a pattern, once dreamed, is carried and re-amplified for as long as the shot lasts, so a
    warm-up does not make them converge); a linear cross-fade turns that one jump into steps of
    1/(n+1) of it. `info` must be the segments' own (size, time base, rate), so the encoder's
    parameters, and the codec extradata the join compares, are theirs.
    """
    n = len(pts)
    tail = collections.deque((frame.image for frame in read_frames(before)), maxlen=n)
    head = [frame.image for frame in itertools.islice(read_frames(after), n)]
    with VideoWriter(dst, info, crf=crf, preset=preset, overwrite=True) as writer:
        for i, (a, b, stamp) in enumerate(zip(tail, head, pts, strict=True)):
            w = (i + 1) / (n + 1)
            writer.write(np.round((1 - w) * a.astype(np.float32) + w * b.astype(np.float32)).astype(np.uint8), stamp)
    return Path(dst)


def join_segments(
    parts: Sequence[tuple[str | os.PathLike, range | None, int]],
    dst: str | os.PathLike,
    time_base: fractions.Fraction,
    *,
    audio_source: str | os.PathLike | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> int:
    """Write the video packets of `parts`, in order, into `dst` (atomically); returns the frame count.

    Each part is a file, the positions (in presentation order) of the frames to take from it (None:
    all), and the pts, in `time_base` units, the first of them has in the source; a part must start
    and end at closed GOPs (`VideoWriter(keyframes=...)`). That pts is set, not read: MP4 and MOV
    store where a file starts as an edit list in milliseconds, so a segment starting at 0.6667 s
    reads back a fraction of a frame early, and every packet of the file by the same amount.
    `audio_source`: the file whose first audio stream is copied in (re-encoded only where the
    output container cannot hold it, as `VideoWriter` does). The parts must share codec, size and
    codec extradata, and their timestamps must follow each other.
    """
    segments = [path for path, _, _ in parts]
    out = Path(dst)
    encoding = encoding_of(out)
    frames = 0
    with contextlib.ExitStack() as files:
        pending = files.enter_context(atomic_output(out, overwrite=overwrite, inputs=(*inputs, *segments)))
        output = files.enter_context(encoding.open(pending.tmp))
        first = files.enter_context(av.open(str(segments[0])))
        template = first.streams.video[0]
        expected = _codec_parameters(template)
        video = output.add_stream_from_template(template)
        audio = None
        if audio_source is not None and encoding.audio_codec is not None:
            source = files.enter_context(av.open(str(audio_source)))
            if source.streams.audio:
                audio = AudioTrack(source, output, encoding.audio_codec)
        last_dts = None
        for path, keep, first_pts in parts:
            kept = _video_pts(path)[keep.start : keep.stop] if keep is not None else _video_pts(path)
            wanted = set(kept)
            with av.open(str(path)) as segment:
                stream = segment.streams.video[0]
                if _codec_parameters(stream) != expected:
                    raise StreamdreamError(f"cannot join {path}: encoded with other codec parameters than {segments[0]} (workers with different FFmpeg builds?)")
                shift = round(fractions.Fraction(first_pts) * time_base / stream.time_base) - kept[0]
                for packet in segment.demux(stream):
                    if packet.size == 0 or packet.pts not in wanted:  # the demuxer's closing empty packet, or a frame left out
                        continue
                    packet.pts += shift
                    packet.dts += shift
                    if last_dts is not None and packet.dts <= last_dts:
                        raise StreamdreamError(f"cannot join {path}: its timestamps overlap the segment before it")
                    last_dts = packet.dts
                    if audio is not None:
                        audio.mux_until(fractions.Fraction(packet.dts) * packet.time_base)
                    packet.stream = video
                    output.mux(packet)
                    frames += 1
        if audio is not None:
            audio.finish(None)
    return frames
