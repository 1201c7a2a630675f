"""The training configuration: one validated object holding everything a run needs, so that it can be repeated.

A config is resolved in layers, each overriding the one before: the built-in defaults, a preset
(``pneumoscope.training.presets``), a YAML file, then command-line overrides. Every section forbids unknown keys,
so that a typo in a YAML file is a ``ConfigError`` naming the key and the file instead of a silently ignored setting.
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pneumoscope.errors import ConfigError
from pneumoscope.files import read_yaml

DEFAULT_PRESET = "recommended"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Section):
    """Where the images come from and how they are prepared."""

    paths: list[str] = Field(default_factory=list, description="data set folders or manifest files")
    image_size: int = Field(224, ge=16, le=2048)
    clahe: bool = False
    val_fraction: float = Field(0.15, gt=0.0, lt=0.9, description="patients carved out of train for validation")
    max_images: int | None = Field(None, ge=4, description="patient-grouped subsample for quick runs")
    split_seed: int | None = Field(None, description="seed of the validation split (default: the run's seed); "
                                   "fix it to compare seeds on one split")
    num_workers: int | Literal["auto"] = "auto"

    @field_validator("num_workers")
    @classmethod
    def _non_negative(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be 'auto' or >= 0")
        return value


class ModelConfig(_Section):
    """Which network, with which weights and head (arguments of ``pneumoscope.models.create_model``)."""

    name: str = "efficientnet_lite0"
    pretrained: bool = True
    weights: str | None = Field(None, description="local weights file for the backbone")
    head: str = "replace"
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout before the head")
    standardize: bool = Field(False, description="per-image intensity standardisation in the input adapter")
    sigmoid_binary: bool = Field(False, description="one sigmoid output for the binary task instead of softmax")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="further create_model arguments")


class AugmentConfig(_Section):
    """Online augmentation, applied to whole batches on the training device (``training.augment``)."""

    enabled: bool = True
    # geometric
    rotation: float = Field(0.0, ge=0.0, le=180.0, description="degrees, +-")
    shift: float = Field(0.0, ge=0.0, lt=0.5, description="fraction of the side, +-")
    scale: tuple[float, float] = Field((1.0, 1.0), description="zoom factor range")
    crop_scale: tuple[float, float] | None = Field(None, description="random resized crop: area fraction range")
    crop_ratio: tuple[float, float] = (0.85, 1.15)
    hflip: bool = False
    vflip: bool = False
    skew: float = Field(0.0, ge=0.0, lt=1.0, description="perspective skew: largest corner shift, fraction of the side")
    skew_p: float = Field(0.5, ge=0.0, le=1.0)
    distortion: float = Field(0.0, ge=0.0, lt=0.25,
                              description="smooth grid distortion: largest shift of a grid point, fraction of the side")
    distortion_p: float = Field(0.5, ge=0.0, le=1.0)
    distortion_grid: int = Field(4, ge=2, le=16, description="grid cells per side of the distortion")
    # photometric
    photometric_p: float = Field(0.8, ge=0.0, le=1.0, description="probability of each of brightness/contrast/gamma")
    brightness: float = Field(0.0, ge=0.0, lt=1.0, description="additive, +-")
    contrast: float = Field(0.0, ge=0.0, lt=1.0, description="multiplicative about the mean, +-")
    gamma: tuple[float, float] | None = None
    blur_p: float = Field(0.0, ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = (0.1, 1.5)
    sharpen_p: float = Field(0.0, ge=0.0, le=1.0, description="probability of an unsharp mask (edge enhancement)")
    sharpen_amount: tuple[float, float] = Field((0.25, 1.5), description="unsharp-mask amount range")
    sharpen_sigma: float = Field(2.0, gt=0.0, le=10.0, description="unsharp-mask blur sigma, pixels of the input")
    noise_p: float = Field(0.0, ge=0.0, le=1.0)
    noise_std: float = Field(0.03, ge=0.0, lt=1.0, description="largest Gaussian noise std (image in [0, 1])")
    resolution_p: float = Field(0.0, ge=0.0, le=1.0, description="probability of down- then up-sampling")
    resolution_scale: tuple[float, float] = Field((0.4, 1.0), description="down-sampling factor range")

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        for name in ("scale", "crop_scale", "crop_ratio", "gamma", "blur_sigma", "sharpen_amount", "resolution_scale"):
            pair = getattr(self, name)
            if pair is not None and not 0.0 < pair[0] <= pair[1]:
                raise ValueError(f"{name} must be a range [low, high] with 0 < low <= high, got {list(pair)}")
        if self.crop_scale is not None and self.crop_scale[1] > 1.0:
            raise ValueError(f"crop_scale must lie in (0, 1], got {list(self.crop_scale)}")
        if self.resolution_scale[1] > 1.0:
            raise ValueError(f"resolution_scale must lie in (0, 1], got {list(self.resolution_scale)}")
        return self


class BalanceConfig(_Section):
    """How the class imbalance is handled (``training.balance``)."""

    method: Literal["none", "class_weights", "weighted_sampler", "oversample"] = "class_weights"
    target_count: int | None = Field(
        None, ge=1, description="oversample: augmented copies of each smaller class up to this count (default: the largest class)"
    )
    augment: AugmentConfig | None = Field(
        None, description="oversample: augmentation that makes the copies (default: the online augmentation)"
    )


class OptimConfig(_Section):
    """Optimizer and learning-rate schedule."""

    optimizer: Literal["sgd", "adam", "adamw", "adagrad"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    eps: float | None = Field(None, gt=0.0, description="Adam / AdamW / AdaGrad epsilon (default: the optimizer's own)")
    scheduler: Literal["none", "cosine", "plateau"] = "cosine"
    plateau_factor: float = Field(0.1, gt=0.0, lt=1.0)
    plateau_patience: int = Field(2, ge=0)
    min_lr: float = Field(1e-7, ge=0.0)


class LossConfig(_Section):
    """Loss options."""

    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    mixup_alpha: float = Field(0.0, ge=0.0, description="0 = off")


class StrategyConfig(_Section):
    """What is trained when (``training.strategies``)."""

    kind: Literal["end_to_end", "two_stage", "unfreeze_last"] = "end_to_end"
    stage1_epochs: int = Field(2, ge=1, description="two_stage: epochs with the backbone frozen")
    stage1_lr: float = Field(1e-3, gt=0.0)
    stage2_lr: float = Field(1e-5, gt=0.0)
    unfreeze_last: int = Field(2, ge=0, description="unfreeze_last: number of trainable backbone layers (from the end); "
                               "0 trains the head only (a frozen backbone)")


class TrainerConfig(_Section):
    """Epochs, batch size, devices, precision (passed on to ``lightning.Trainer``)."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    devices: int | Literal["auto"] = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = Field("auto", description="Lightning strategy, e.g. ddp (use torchrun for several processes)")
    precision: Literal["auto", "32", "bf16", "16"] = Field(
        "auto", description="auto: bf16 autocast on GPUs and on CPUs with bf16 instructions, fp16 autocast on older "
                            "GPUs, else fp32")
    channels_last: bool | Literal["auto"] = Field("auto", description="NHWC memory format; auto: on (CPU and GPU)")
    compile: bool = False
    deterministic: bool | Literal["warn"] = "warn"
    early_stopping_patience: int | None = Field(None, ge=1)
    gradient_clip: float | None = Field(None, gt=0.0)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        """``--set trainer.precision=32`` (or ``precision: 16`` in YAML) arrives as a number; the choices are text."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class EvaluationConfig(_Section):
    """What is chosen on the validation split after training."""

    threshold_method: Literal["youden", "sensitivity", "fixed"] = "youden"
    target_sensitivity: float = Field(0.95, gt=0.0, le=1.0)
    fixed_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    temperature: bool = True


class TrackingConfig(_Section):
    """Experiment tracking (``training.tracking``): metrics.csv is always written; TensorBoard and MLflow on request."""

    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = Field(
        default_factory=lambda: ["csv"], description="csv (the run folder's metrics.csv, always written), "
                                                     "tensorboard (RUN_DIR/tensorboard/), mlflow")
    mlflow_uri: str | None = Field(None, description="MLflow: a local folder (its file store) or a tracking URI; "
                                                     "default $MLFLOW_TRACKING_URI, else ./mlruns")
    experiment: str = Field("pneumoscope", min_length=1, description="MLflow experiment name")
    run_name: str | None = Field(None, description="MLflow run name (default: the run folder's name)")
    evaluate: bool = Field(True, description="after training, score the validation split (bootstrap CIs, report) "
                                             "and log it with the model card")
    proxies: bool = Field(True, description="that evaluation runs the generalisation proxies and the stress test")

    @field_validator("loggers")
    @classmethod
    def _csv_always(cls, value: list[str]) -> list[str]:
        return ["csv", *dict.fromkeys(name for name in value if name != "csv")]


class TrainConfig(_Section):
    """The whole configuration of one training run."""

    preset: str = DEFAULT_PRESET
    task: Literal["binary", "3class", "4class"] = "binary"
    seed: int = 42
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    balance: BalanceConfig = Field(default_factory=BalanceConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.strategy.kind == "two_stage" and self.strategy.stage1_epochs >= self.trainer.epochs:
            raise ValueError(
                f"strategy.stage1_epochs ({self.strategy.stage1_epochs}) must be smaller than trainer.epochs "
                f"({self.trainer.epochs}) so that stage 2 has at least one epoch"
            )
        if self.model.sigmoid_binary and self.task != "binary":
            raise ValueError("model.sigmoid_binary applies only to task 'binary'")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-ready values."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------------------------------------------
# resolving: defaults < preset < YAML file < overrides


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``update`` (neither is modified)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=3e-4"`` → ``{"optim": {"lr": 0.0003}}`` (the value is read as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE.", fix="write e.g. --set optim.lr=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    nested: dict[str, Any] = {}
    cursor = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def resolve_config(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    preset: str | None = None,
) -> TrainConfig:
    """Build and validate a config: defaults, then the preset, then ``config_file``, then ``overrides``.

    The preset is ``preset`` if given, else the file's ``preset:`` key, else ``recommended``.
    """
    from pneumoscope.training.presets import preset_values

    from_file = read_yaml(config_file) if config_file is not None else {}
    overrides = overrides or {}
    name = preset or overrides.get("preset") or from_file.get("preset") or DEFAULT_PRESET
    values = deep_merge(preset_values(name), from_file)
    values = deep_merge(values, overrides)
    values["preset"] = name
    return validate_config(values, source=config_file)


def override_notes(config_file: str | Path | None, overrides: dict[str, Any], preset: str | None = None) -> list[str]:
    """One note for each setting of ``config_file`` that ``overrides`` or ``preset`` (the command line) replace, for
    the command line to print: a value written in a file is never replaced silently."""
    if config_file is None:
        return []
    given = {**overrides, "preset": preset} if preset else overrides
    return [f"note: {key} is {_shown(in_file)} in {config_file} and {_shown(instead)} on the command line; the "
            "command line's value is used." for key, in_file, instead in overridden_settings(read_yaml(config_file),
                                                                                           given)]


def overridden_settings(base: dict[str, Any], update: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in base, value in update)`` for each setting both give, with different values."""
    found = []
    for key, value in update.items():
        if key not in base:
            continue
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base[key], dict):
            found += overridden_settings(base[key], value, f"{dotted}.")
        elif value != base[key]:
            found.append((dotted, base[key], value))
    return found


def _shown(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def validate_config(values: dict[str, Any], source: str | Path | None = None) -> TrainConfig:
    """``TrainConfig`` from plain values; errors become one ``ConfigError`` naming the key (and the file)."""
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as error:
        raise _config_error(error, source) from None


def _config_error(error: ValidationError, source: str | Path | None) -> ConfigError:
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        section = _section_model(loc[:-1])
        known = list(section.model_fields) if section is not None else []
        close = difflib.get_close_matches(loc[-1], known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else f"known keys: {', '.join(known)}."
        message = f"unknown config key {key!r}."
        fix = hint
    else:
        message = f"config key {key!r}: {first['msg']}."
        fix = "correct the value."
    more = len(error.errors()) - 1
    if more:
        message += f" ({more} more problem{'s' if more > 1 else ''})"
    return ConfigError(message, path=source, fix=fix)


def _section_model(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = TrainConfig
    for part in loc:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved config as YAML text (loading it with ``resolve_config`` repeats the run)."""
    stream = io.StringIO()
    yaml.safe_dump(config.to_dict(), stream, sort_keys=False, default_flow_style=None)
    return stream.getvalue()


def save_config(config: TrainConfig, path: str | Path) -> Path:
    """Write the resolved config to ``path`` atomically."""
    from pneumoscope.files import atomic_write_text

    return atomic_write_text(Path(path), config_to_yaml(config))


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config saved in a run folder."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError("no config.yaml: this folder is not a pneumoscope run folder.", path=Path(run_dir),
                          fix="give the folder that `pneumoscope train --out` wrote.")
    return validate_config(read_yaml(path), source=path)
