"""streamdream: DeepDream and neural style for webcams, videos and photos.

Python API:
    streamdream.dream(image, **options)       one picture (numpy array or PIL image), same type back
    streamdream.Dreamer(**options)            reusable; .dream(image), .dream_tensor(tensor, ...)
    streamdream.create_model(name)            frozen ImageNet backbone from the registry
    streamdream.parse_objective(text, model)  objectives such as "blocks.4:39 + 0.5*blocks.5"
    streamdream.process_video(src, dst, mode, streamdream.RenderOptions(...))  a whole video, warm-started along optical flow, audio kept
    streamdream.StreamSession(mode)           one stream's warm state, frame by frame (webcams, custom loops)
    streamdream.create_stylizer(method, styles, **options)  a style mode: "net" (NetStylizer, a pretrained
                                              network; "builtin:N" styles), "refine" or "optimize" (Stylizer)
"""

import os
import sys
import types

# PyTorch's CPU build runs its parallel loops on GNU OpenMP, whose idle workers spin for a while before
# they sleep. A model step is hundreds of small loops: workers that sleep at once (OMP_WAIT_POLICY=PASSIVE,
# this package's setting until 2026-12-05) have to be woken for each, and the step took twice as long;
# workers that spin long (the default) steal the cores of anything else that needs them, and a second
# PyTorch process beside this one slowed both by 3.6x. A short spin is the middle: a lite0 step at
# 320x240 on the 2-core Xeon took 50 ms spinning long, 57 ms spinning short, 97 ms sleeping; with a
# second such process running, 307-324, 139-141 and 80-90 ms. It must be set before torch is first
# imported; an explicit setting by the user wins. What starves a step even so is OpenMP teams on
# several threads of one process: `runtime.on_own_thread` says how that is avoided.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

# PyTorch's CPU convolutions (oneDNN) keep what they set up for each input size in two caches, oneDNN's
# own and ideep's, of 1024 entries each. A live server meets many camera sizes, each a new set of
# entries (a live frame ~45, a stream's first still ~90 more), and never gives them back: dreaming
# 30 streams of random sizes (`benchmarks/soak.py`'s churn sizes) one after another, the process
# kept 78 MB more, memory freed since handed back; with 512 entries each, 36 MB. 512 still hold
# the live frames of about ten sizes at once: a round of 8 streams of 8 sizes took no more CPU
# time than with 1024 (with 256, a quarter more: they were set up again every round). Read when
# torch sets up its first convolution; an explicit setting wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "512")
os.environ.setdefault("LRU_CACHE_CAPACITY", "512")

# The public names load on first use (PEP 562), so `import streamdream.errors` or the CLI's
# `--help` does not pay for importing torch.
_EXPORTS = {
    "DEFAULT_MODEL": ".models", "create_model": ".models", "list_models": ".models",
    "Dreamer": ".dream", "dream": ".dream", "noise_image": ".dream",
    "StreamdreamError": ".errors",
    "Objective": ".objectives", "parse_objective": ".objectives",
    "StreamSession": ".session", "TemporalSettings": ".settings", "FrameMode": ".carry",
    "Stylizer": ".style", "stylize": ".style", "NetStylizer": ".style_net", "create_stylizer": ".style_net",
    "process_video": ".video", "RenderOptions": ".video",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'streamdream' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


class _Package(types.ModuleType):
    """Keeps `streamdream.dream` the function: importing the submodule of that name would rebind it."""

    def __setattr__(self, name: str, value: object) -> None:
        if not (name in _EXPORTS and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
