"""ImageNet class names, from the metadata torchvision ships (no download involved)."""

from functools import cache


@cache
def imagenet_labels() -> list[str]:
    import torchvision.models as tvm  # here, not above: most commands never need the names (see `efficientnet`)

    return list(tvm.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])
