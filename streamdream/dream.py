"""DeepDream: amplify what a layer of a frozen ImageNet CNN sees in a picture.

`Dreamer` holds a model, an objective and the optimizer settings; it is built once and reused for
stills, video frames and live streams. `dream()` is the one-call API for a single picture.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import torch

from .convert import to_rgb, to_tensor
from .cuda_graphs import GraphCache
from .errors import StreamdreamError
from .carry import WarmStartMode
from .io.images import from_rgb_like, resize_max_side, to_picture
from .models import Backbone, create_model, resolve_device
from .objectives import Objective, guide, parse_objective
from .optimize import NormalizedAscent, Octaves, Progress, evaluate, make_generator
from .runtime import on_own_thread
from .scheduler import OptimizeCall
from .settings import DEFAULT_MODEL, DreamSettings, TemporalSettings

GUIDE_MAX_SIDE = 512
# `Dreamer.still_effect` dreams a thumbnail this large. A still's effect hardly depends on the
# picture or its size from here up: 0.064-0.067 on four skimage photos at 160 and 320 px (0.040-0.057
# at 64 px), with the default settings, on the 2-core CPU in about 1 s.
EFFECT_PROBE_SIDE = 160


def noise_image(width: int, height: int, seed: int | None = 0) -> np.ndarray:
    """A grey start image with faint uniform noise, the classic blank canvas for dreams from nothing."""
    if width < 1 or height < 1:
        raise StreamdreamError(f"noise size must be positive, got {width}x{height}")
    noise = torch.rand(height, width, 3, generator=make_generator(seed))
    return (100.0 + 20.0 * noise).round().to(torch.uint8).numpy()


class Dreamer(WarmStartMode):
    """A reusable DeepDream: model + objective + optimizer settings.

    Options (all keyword, with defaults tuned for the embedded EfficientNet-Lite0):
      objective     string such as "blocks.4:39 + 0.5*blocks.5" or an Objective; default: the model's dream layer
      guide_image   picture whose features the dream should match, on the objective's single layer
                    (default: the model's guide layer)
      octaves, octave_scale, iterations, step, strength, jitter, tile, lapnorm: the fields of
                    `settings.DreamSettings` (their defaults and ranges are written there); strength
                    multiplies the step, as the web UI's and `streamdream live`'s slider sets it
      cuda_graphs   on CUDA, replay the optimizer step of sizes seen before as captured graphs (the
                    real-time fast path, `streamdream.cuda_graphs`); False runs every step eagerly
    """

    def __init__(
        self,
        model: str | Backbone = DEFAULT_MODEL,
        objective: str | Objective | None = None,
        *,
        guide_image=None,
        device: str | torch.device = "auto",
        weights: str | None = None,
        cuda_graphs: bool = True,
        **options,
    ) -> None:
        settings = DreamSettings().with_(**options)  # unknown names raise TypeError, values out of range a StreamdreamError
        self.device = resolve_device(device)
        self.model = model if isinstance(model, Backbone) else create_model(model, weights=weights, device=self.device)
        if not isinstance(objective, Objective):
            default = (self.model.defaults.guide if guide_image is not None else "") or self.model.defaults.dream
            objective = parse_objective(objective or default, self.model)
        if guide_image is not None:
            objective = self._guide_objective(objective, guide_image)
        self.objective = objective
        self.rule = NormalizedAscent(step=(settings.step or self.model.defaults.dream_step) * settings.strength, jitter=settings.jitter, tile=settings.tile, lapnorm=settings.lapnorm)
        self.iterations, self.octaves, self.octave_scale = settings.iterations, settings.octaves, settings.octave_scale
        self.graphs = GraphCache() if cuda_graphs and self.device.type == "cuda" else None
        self._still_effects: dict[tuple[int, int], float] = {}  # by thumbnail size; see still_effect
        self._probe_lock = threading.Lock()

    def _guide_objective(self, objective: Objective, guide_image) -> Objective:
        layers = sorted(objective.layers)
        if len(layers) != 1:
            raise StreamdreamError(f"a guide image needs an objective on one layer, got {', '.join(layers)}")
        rgb = resize_max_side(to_picture(guide_image).rgb, GUIDE_MAX_SIDE)
        # on a thread of its own: the caller (a web request, the live source) would keep its OpenMP team
        return guide(layers[0], on_own_thread(self._features, rgb, layers[0]))

    @torch.no_grad()
    def _features(self, rgb: np.ndarray, layer: str) -> torch.Tensor:
        return self.model(to_tensor(rgb, self.device), [layer])[layer]

    def steps(self, height: int, width: int, octaves: int | None = None) -> int:
        """How many optimizer steps a picture of this size takes (for progress bars)."""
        return len(Octaves(octaves or self.octaves, self.octave_scale).sizes(height, width)) * self.iterations

    def call(
        self,
        image: torch.Tensor,
        *,
        generator: torch.Generator,
        residual: torch.Tensor | None = None,
        octaves: int | None = None,
        iterations: int | None = None,
        step: float = 1.0,
    ) -> OptimizeCall:
        """The optimizer call that dreams a 1 x 3 x H x W tensor in [0, 1], planned (see `dream_tensor`);
        `step` scales the rule's step size."""
        return OptimizeCall(
            image.to(self.device),
            self.model,
            self.objective,
            self.rule if step == 1.0 else replace(self.rule, step=self.rule.step * step),
            steps=self.iterations if iterations is None else iterations,
            schedule=Octaves(self.octaves if octaves is None else octaves, self.octave_scale),
            residual=residual,
            generator=generator,
            graphs=self.graphs,
        )

    def dream_tensor(self, image: torch.Tensor, *, generator: torch.Generator, progress: Progress | None = None, **options) -> torch.Tensor:
        """Dream a 1 x 3 x H x W tensor in [0, 1]: `call(image, generator=..., **options)` run now.

        `residual` warm-starts it (see `optimize`); `iterations` may be 0 (the warm start alone).
        """
        return self.call(image, generator=generator, **options).run(progress)

    def first_frame(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.plan_first_frame(image, generator).run()

    def plan_first_frame(self, image: torch.Tensor, generator: torch.Generator) -> OptimizeCall:
        """A stream's first frame gets the full still dream."""
        return self.call(image, generator=generator)

    def still_effect(self, image: torch.Tensor) -> float:
        """The effect (mean |dream - picture|) of this dreamer's still dream, measured once on a
        thumbnail of `image` (at most `EFFECT_PROBE_SIDE` px) and kept for pictures of that size.

        A stream that grows its dream from nothing (`fresh_start="frame"`, the live preset on a CPU)
        holds it at this effect (`carry.EffectHold`): it depends on the settings (steps, step
        size, objective), hardly on the picture, so one thumbnail dream answers for every frame. It
        runs eagerly, outside the captured steps, so it may run beside a batch of live frames.
        """
        size = self._probe_size(image)
        with self._probe_lock:
            if size not in self._still_effects:
                thumbnail = torch.nn.functional.interpolate(image.to(self.device), size=size, mode="area")
                call = replace(self.call(thumbnail, generator=make_generator(0)), graphs=None)
                self._still_effects[size] = float((call.run() - thumbnail).abs().mean())
            return self._still_effects[size]

    def knows_still_effect(self, image: torch.Tensor) -> bool:
        """Whether the thumbnail dream of pictures like `image` is measured and kept (read without the
        probe's lock, which a measurement holds for the whole dream)."""
        return self._probe_size(image) in self._still_effects

    @staticmethod
    def _probe_size(image: torch.Tensor) -> tuple[int, int]:
        """The size of `still_effect`'s thumbnail of `image`: at most `EFFECT_PROBE_SIDE` px."""
        height, width = image.shape[-2:]
        scale = min(1.0, EFFECT_PROBE_SIDE / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    def carried(self, previous_input: torch.Tensor, previous_output: torch.Tensor) -> torch.Tensor:
        """The dream's residual: re-anchored on the new frame, it keeps the dream and follows the picture."""
        return previous_output - previous_input

    def warm_work(self, image: torch.Tensor, carried: torch.Tensor, trust: torch.Tensor, settings: TemporalSettings, generator: torch.Generator) -> OptimizeCall:
        """The trusted residual on the new frame, then a few iterations at reduced octaves, at the
        frame step: with the carry near 1, smaller steps change each frame less at the same strength."""
        return self.call(image, generator=generator, residual=carried * trust, octaves=settings.frame_octaves,
                         iterations=settings.frame_iterations, step=settings.frame_step)

    def dream(self, image, *, seed: int | None = 0, progress: Progress | None = None):
        """Dream a numpy array or PIL image; returns the same type (alpha, if any, is kept as it was)."""
        picture = to_picture(image)
        out = self.dream_tensor(to_tensor(picture.rgb, self.device), generator=make_generator(seed), progress=progress)
        return from_rgb_like(to_rgb(out), image, picture.alpha)

    def objective_value(self, image) -> float:
        """The objective's value for a picture, as the optimizer measures it."""
        return evaluate(self.model, self.objective, to_tensor(to_picture(image).rgb, self.device), self.rule.tile)


def dream(image, *, seed: int | None = 0, **options):
    """Dream one picture (numpy array or PIL image in, the same type out). Options as for `Dreamer`."""
    return Dreamer(**options).dream(image, seed=seed)
