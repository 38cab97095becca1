"""ImageNet class names, from the metadata torchvision ships (no download involved)."""

from functools import cache

import torchvision.models as tvm


@cache
def imagenet_labels() -> list[str]:
    return list(tvm.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
