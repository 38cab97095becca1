"""streamdream: DeepDream and neural style for webcams, videos and photos.

Python API:
    streamdream.dream(image, **options)       one picture (numpy array or PIL image), same type back
    streamdream.Dreamer(**options)            reusable; .dream(image), .dream_tensor(tensor, ...)
    streamdream.create_model(name)            frozen ImageNet backbone from the registry
    streamdream.parse_objective(text, model)  objectives such as "blocks.4:39 + 0.5*blocks.5"
    streamdream.process_video(src, dst, mode, streamdream.RenderOptions(...))  a whole video, warm-started along optical flow, audio kept
    streamdream.StreamSession(mode)           one stream's warm state, frame by frame (webcams, custom loops)
"""

import sys
import types

# PyTorch's CPU build runs its parallel loops on GNU OpenMP, left at its default wait policy: a worker
# spins a few milliseconds after each loop before it sleeps. A model step is hundreds of small loops,
# and waking sleeping workers for each made it about twice as slow: measured on the 2-core Xeon with
# OMP_WAIT_POLICY=PASSIVE (this package's setting until 2026-12-05) against the default, a 320x240 live
# dream 6.2 against 12.8 fps, a file render 4.6 against 8.4 fps, a 512 px still 12.6 against 9.0 s end
# to end, with the decoder, flow and encoder threads beside it. What does starve a step is OpenMP
# teams on several threads at once: `runtime.on_own_thread` says how that is avoided.

# The public names load on first use (PEP 562), so `import streamdream.errors` or the CLI's
# `--help` does not pay for importing torch.
_EXPORTS = {
    "DEFAULT_MODEL": ".models", "create_model": ".models", "list_models": ".models",
    "Dreamer": ".dream", "dream": ".dream", "noise_image": ".dream",
    "StreamdreamError": ".errors",
    "Objective": ".objectives", "parse_objective": ".objectives",
    "StreamSession": ".session", "TemporalSettings": ".settings", "FrameMode": ".carry",
    "Stylizer": ".style", "stylize": ".style",
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
