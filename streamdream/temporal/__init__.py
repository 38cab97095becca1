"""Temporal coherence for video: optical flow, warping, occlusion masks and flicker metrics.

Stylising each video frame on its own makes textures boil from frame to frame. Carrying the
previous output along the optical flow and blending it in where the flow is trustworthy keeps
them still; the metrics here measure how well that works.
"""

from .consistency import in_frame_mask, occlusion_mask
from .flow import FlowEstimator, flow_to_tensor
from .metrics import TemporalStats, strength, video_scores, warping_error
from .motion import Motion, estimate_motion, no_motion
from .warp import warp

__all__ = [
    "FlowEstimator",
    "Motion",
    "TemporalStats",
    "flow_to_tensor",
    "estimate_motion",
    "in_frame_mask",
    "no_motion",
    "occlusion_mask",
    "strength",
    "video_scores",
    "warp",
    "warping_error",
]
