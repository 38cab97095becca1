"""Temporal coherence for video: optical flow, warping, occlusion masks and flicker metrics.

Stylising each video frame on its own makes textures boil from frame to frame. Carrying the
previous output along the optical flow and blending it in where the flow is trustworthy keeps
them still; the metrics here measure how well that works.
"""

from .consistency import in_frame_mask, occlusion_mask
from .flow import FlowEstimator, JudgeFlow, flow_to_tensor
from .metrics import TemporalStats, effect, video_scores, warping_error
from .motion import FramePairFlows, Motion, estimate_motion, frame_flows, motion_from_flows, no_motion
from .warp import warp

__all__ = [
    "FlowEstimator",
    "FramePairFlows",
    "JudgeFlow",
    "Motion",
    "TemporalStats",
    "flow_to_tensor",
    "estimate_motion",
    "frame_flows",
    "in_frame_mask",
    "motion_from_flows",
    "no_motion",
    "occlusion_mask",
    "video_scores",
    "warp",
    "warping_error",
]
