"""Shared fixtures: the embedded model on the CPU and small real photos from scikit-image; `until` for threads."""

from __future__ import annotations

import streamdream  # noqa: F401  (first: sets OpenMP's spin count before torch loads)

import atexit
import os
import shutil
import tempfile
import time

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from streamdream.models import create_model

# The CPU layout and a style network's precision are the machine's faster ones (`streamdream.models.layout`),
# measured by timing: the tests pin them, so that no result depends on a timing, and keep any cache out of the user's home.
os.environ.setdefault("STREAMDREAM_CPU_LAYOUT", "channels_last")
os.environ.setdefault("STREAMDREAM_CPU_DTYPE", "float32")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="streamdream-tests-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], ignore_errors=True)


def until(condition, timeout: float = 30.0) -> None:
    """Wait for another thread to reach a state (a safety timeout, not a timing assumption)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the state was never reached"
        time.sleep(0.001)


def small(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(photo).resize((width, height), Image.Resampling.LANCZOS))


@pytest.fixture(scope="session")
def model():
    return create_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="session")
def astronaut_96() -> np.ndarray:
    return small(skimage.data.astronaut(), 96, 96)


@pytest.fixture(scope="session")
def coffee_odd() -> np.ndarray:
    """An odd, non-square size: catches off-by-one errors in octaves, tiles and pyramids."""
    return small(skimage.data.coffee(), 101, 67)


@pytest.fixture(scope="module")
def ray_local(request):
    """One local Ray for the test module that asks (starting one costs seconds). Its workers are sent
    the module's own classes by value (the stand-in modes), so they need not import `tests/`."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(request.module)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` (`pytest -m cuda` selects them) skip cleanly where there is no GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)
