"""streamdream: DeepDream and neural style for webcams, videos and photos.

Python API:
    streamdream.dream(image, **options)       one picture (numpy array or PIL image), same type back
    streamdream.Dreamer(**options)            reusable; .dream(image), .dream_tensor(tensor, ...)
    streamdream.create_model(name)            frozen ImageNet backbone from the registry
    streamdream.parse_objective(text, model)  objectives such as "blocks.4:39 + 0.5*blocks.5"
    streamdream.process_video(src, dst, mode) a whole video, warm-started along optical flow, audio kept
    streamdream.StreamSession(mode)           one stream's warm state, frame by frame (webcams, custom loops)
"""

import os

# PyTorch's CPU build uses GNU OpenMP, whose worker threads spin while waiting. When anything else
# needs a core (our own decode/flow/encode threads, a browser, another process), the spinning
# threads starve it and a step gets ~20x slower (measured: 1.3 s instead of 50 ms for 160x120 on
# 2 cores). Passive waiting costs almost nothing when the machine is idle. It must be set before
# torch is first imported; an explicit setting by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .dream import Dreamer, dream, noise_image
from .errors import StreamdreamError
from .models import DEFAULT_MODEL, create_model, list_models
from .objectives import Objective, parse_objective
from .session import StreamSession, TemporalSettings
from .style import Stylizer, stylize
from .video import process_video

__all__ = [
    "DEFAULT_MODEL", "Dreamer", "Objective", "StreamdreamError", "create_model", "dream", "list_models",
    "StreamSession", "Stylizer", "TemporalSettings", "noise_image", "parse_objective", "process_video", "stylize",
]
__version__ = "0.1.0"
