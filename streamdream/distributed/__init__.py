"""Segment-parallel rendering on Ray (the optional extra `streamdream[ray]`).

A long video is planned into segments at key frames (`segments`), rendered by Ray actors that each
load the model once and run the serial `process_video` on a span with warm-up frames
(`ray_render`), cross-faded at the seams and joined by stream copy with the source's audio (`join`). Many clips are one task
each. `ray` itself is imported only when a render starts.

Live visitors past one machine (`live_replicas`, imported from there: it builds models): live
engine replicas as Ray actors behind the web app's seats, `start_replicas`.
"""

from .join import cross_fade, join_segments
from .ray_render import JOINABLE, ClusterOptions, JobReport, TaskFailed, render_files, render_video
from .segments import Segment, Timeline, choose_boundaries, plan_segments, read_timeline, scene_cut_keyframes

__all__ = [
    "JOINABLE",
    "ClusterOptions",
    "JobReport",
    "Segment",
    "TaskFailed",
    "Timeline",
    "choose_boundaries",
    "cross_fade",
    "join_segments",
    "plan_segments",
    "read_timeline",
    "render_files",
    "render_video",
    "scene_cut_keyframes",
]
