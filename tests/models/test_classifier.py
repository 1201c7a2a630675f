"""Classifier behaviour: freezing helpers, heads, sigmoid binary output and class probabilities."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pneumoscope.models import create_model
from pneumoscope.models.heads import GapFcHead, ReplaceHead


def trainable(params) -> list[bool]:
    return [p.requires_grad for p in params]


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("resnet18", 2)


def test_head_and_backbone_parameters_partition_the_model(resnet) -> None:
    head_ids = {id(p) for p in resnet.head_parameters()}
    backbone_ids = {id(p) for p in resnet.backbone_parameters()}
    assert head_ids and backbone_ids and not head_ids & backbone_ids
    assert head_ids | backbone_ids == {id(p) for p in resnet.parameters()}


def test_freeze_backbone_trains_only_the_head(resnet) -> None:
    resnet.freeze_backbone()
    assert not any(trainable(resnet.backbone_parameters()))
    assert all(trainable(resnet.head_parameters()))
    resnet.zero_grad()
    resnet(torch.rand(2, 1, 32, 32)).sum().backward()
    assert all(p.grad is None for p in resnet.backbone_parameters())
    assert all(p.grad is not None for p in resnet.head_parameters())
    resnet.unfreeze_all()
    assert all(trainable(resnet.parameters()))


@pytest.mark.parametrize("n", [0, 1, 3, 10])
def test_unfreeze_last_n_layers(resnet, n: int) -> None:
    resnet.unfreeze_last(n)
    layers = resnet.backbone_layers()
    for i, layer in enumerate(layers):
        expected = i >= len(layers) - n
        assert all(p.requires_grad == expected for p in layer.parameters(recurse=False)), (i, layer)
    assert all(trainable(resnet.head_parameters()))
    trainable_layers = [m for m in layers if all(p.requires_grad for p in m.parameters(recurse=False))]
    assert len(trainable_layers) == n
    if n:  # the last layers are the end of the network: resnet's layer4
        assert trainable_layers[-1] is resnet.backbone.net.layer4[-1].bn2
    resnet.unfreeze_all()


def test_unfreeze_last_more_than_all_layers_unfreezes_the_whole_backbone(resnet) -> None:
    resnet.unfreeze_last(10_000)
    assert all(trainable(resnet.parameters()))


def test_replace_head_is_one_linear_after_dropout() -> None:
    model = create_model("resnet18", 3, head="replace", dropout=0.3)
    assert isinstance(model.head, ReplaceHead)
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(512, 3)]
    assert model.head.drop.p == 0.3


def test_gap_fc_head_has_hidden_layer_and_dropout() -> None:
    model = create_model("efficientnet_lite0", 4, head="gap_fc", hidden_units=64, dropout=0.5)
    assert isinstance(model.head, GapFcHead)
    linears = [m for m in model.head.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(1280, 64), (64, 4)]
    assert model.head.drop.p == 0.5
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 4)


def test_dropout_before_the_head_is_active_only_in_training() -> None:
    torch.manual_seed(0)
    model = create_model("simple_cnn", 2, dropout=0.5)
    x = torch.rand(4, 1, 16, 16)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_custom_networks_keep_their_own_head_unless_gap_fc_is_asked() -> None:
    native = create_model("xraychestnet_v1", 3)
    assert [m.out_features for m in native.head.modules() if isinstance(m, nn.Linear)] == [50, 3]
    generic = create_model("xraychestnet_v1", 3, head="gap_fc", hidden_units=32)
    assert [m.out_features for m in generic.head.modules() if isinstance(m, nn.Linear)] == [32, 3]


@pytest.mark.parametrize("kwargs", [{"num_classes": 2, "sigmoid_binary": True}, {"num_classes": 1}])
def test_sigmoid_binary_has_one_logit_and_two_class_probabilities(kwargs: dict) -> None:
    torch.manual_seed(0)
    model = create_model("simple_cnn", **kwargs).eval()
    logits = model(torch.rand(5, 1, 24, 24))
    assert logits.shape == (5, 1)
    assert model.sigmoid_binary and model.num_classes == 2 and model.num_outputs == 1
    probs = model.probabilities(logits)
    assert probs.shape == (5, 2)
    torch.testing.assert_close(probs[:, 1], torch.sigmoid(logits[:, 0]))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(5))


def test_softmax_probabilities_for_several_classes() -> None:
    model = create_model("simple_cnn", 3).eval()
    logits = model(torch.rand(4, 1, 24, 24))
    torch.testing.assert_close(model.probabilities(logits), torch.softmax(logits, dim=1))
    assert not model.sigmoid_binary


def test_model_kwargs_rebuild_the_same_architecture() -> None:
    model = create_model("feedforward", 2, head="gap_fc", dropout=0.2, hidden_units=16, standardize=True, pixels=12)
    again = create_model("feedforward", **model.model_kwargs)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [(k, v.shape) for k, v in again.state_dict().items()]
    assert again.adapter.standardize


@pytest.mark.parametrize("name", ["efficientnet_lite0", "logistic_regression"])
def test_onnx_export_takes_grey_zero_one_images(name: str, tmp_path) -> None:
    """The adapter is part of the graph: onnxruntime on (B, 1, H, W) [0, 1] input gives the torch logits."""
    import warnings

    import numpy as np
    import onnxruntime as ort

    torch.manual_seed(0)
    model = create_model(name, 2, standardize=True).eval()
    path = tmp_path / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's own notice
        warnings.simplefilter("error", torch.jit.TracerWarning)  # no shape-dependent Python branches in the trace
        torch.onnx.export(model, torch.rand(1, 1, 64, 64), str(path), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}}, dynamo=False)
    x = np.random.default_rng(0).random((3, 1, 64, 64), dtype=np.float32)
    (onnx_logits,) = ort.InferenceSession(str(path)).run(None, {"image": x})
    np.testing.assert_allclose(onnx_logits, model(torch.from_numpy(x)).detach().numpy(), atol=1e-4)
