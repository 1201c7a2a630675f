"""Every registry architecture builds, runs forward and backward, and names a Grad-CAM layer; bad names and
arguments raise ModelError."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pneumoscope.errors import ModelError
from pneumoscope.models import create_model, get_spec, list_models
from pneumoscope.models.spec import NORMALISATIONS

EXPECTED = {
    "resnet18", "resnet50", "densenet121", "densenet201", "vgg16", "resnext50_32x4d", "googlenet", "inception_v3",
    "inception_resnet_v2", "xception", "efficientnet_b0", "efficientnet_lite0", "efficientnet_lite1",
    "efficientnet_lite2", "xraychestnet_v1", "alrelu_cnn", "simple_cnn", "feedforward", "logistic_regression",
}


def test_registry_holds_every_architecture_of_the_research() -> None:
    assert EXPECTED <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_on_a_tiny_batch(name: str) -> None:
    spec = get_spec(name)
    size = max(spec.min_image_size, 32)
    torch.manual_seed(0)
    model = create_model(name, num_classes=3).train()
    cam_outputs: list[torch.Tensor] = []
    hook = model.cam_target_layer().register_forward_hook(lambda _m, _i, out: cam_outputs.append(out))
    images = torch.rand(2, 1, size, size)

    logits = model(images)
    hook.remove()
    F.cross_entropy(logits, torch.tensor([0, 2])).backward()

    assert logits.shape == (2, 3)
    assert torch.isfinite(logits).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "a parameter got no or a NaN gradient"
    assert model.head_parameters()[-1].grad.abs().sum() > 0
    if model.backbone_parameters():
        assert any(p.grad.abs().sum() > 0 for p in model.backbone_parameters()), "no gradient reaches the backbone"
    assert len(cam_outputs) == 1 and cam_outputs[0].dim() == 4  # a spatial map for Grad-CAM


@pytest.mark.parametrize("name", list_models())
def test_spec_is_consistent(name: str) -> None:
    spec = get_spec(name)
    assert spec.name == name
    assert spec.min_image_size <= spec.default_image_size
    assert spec.normalisation in NORMALISATIONS
    assert len(spec.mean) in (1, spec.in_channels)
    assert spec.description


@pytest.mark.parametrize("name", [n for n in list_models() if get_spec(n).family in ("timm", "efficientnet_lite")])
def test_normalisation_matches_the_pretrained_weights_of_timm(name: str) -> None:
    import timm

    spec = get_spec(name)
    cfg = timm.models.get_pretrained_cfg(spec.source)
    assert tuple(cfg.mean) == pytest.approx(spec.mean)
    assert tuple(cfg.std) == pytest.approx(spec.std)


def test_googlenet_uses_the_input_range_of_its_torchvision_weights() -> None:
    # torchvision's ImageNet GoogLeNet (transform_input=True) turns ImageNet-normalised input back into (x - 0.5) / 0.5
    assert get_spec("googlenet").normalisation == "inception"


@pytest.mark.parametrize(("typo", "suggestion"), [("resnet5", "resnet50"), ("efficientnet_lite", "efficientnet_lite0"),
                                                  ("DenseNet121", "densenet121"), ("xceptoin", "xception")])
def test_unknown_name_suggests_close_names(typo: str, suggestion: str) -> None:
    with pytest.raises(ModelError, match=suggestion):
        get_spec(typo)
    with pytest.raises(ModelError, match="unknown model"):
        create_model(typo, 2)


def test_unknown_name_without_close_match_lists_the_registry() -> None:
    with pytest.raises(ModelError, match="unknown model 'zzzz'. Fix: use one of the known models: resnet18, ") as error:
        get_spec("zzzz")
    assert "Did you mean" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 3, "sigmoid_binary": True}, "sigmoid_binary"),
        ({"num_classes": 2, "head": "mlp"}, "unknown head"),
        ({"num_classes": 2, "dropout": 1.0}, "dropout"),
        ({"num_classes": 2, "hidden_units": 0}, "hidden_units"),
        ({"num_classes": 2, "pixels_": 8}, "does not accept"),
    ],
)
def test_bad_arguments_raise_model_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_model("simple_cnn", **kwargs)


def test_architecture_options_are_passed_to_the_builder() -> None:
    model = create_model("feedforward", 2, pixels=16, hidden=(20, 10))
    assert model.backbone.downsample.pixels == 16
    assert model.backbone.num_features == 10
    assert model(torch.rand(3, 1, 40, 40)).shape == (3, 2)
    with pytest.raises(ModelError, match="invalid options"):
        create_model("simple_cnn", 2, channels=(8,))
