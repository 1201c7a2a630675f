"""The research's custom networks: ALReLU and the layer structure each paper describes."""

from __future__ import annotations

import torch
from torch import nn

from pneumoscope.models import create_model
from pneumoscope.models.custom import ALRELU_CHANNELS, ALRELU_DROPOUTS, ALRELU_KERNELS, ALReLU


def modules_of(model: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kind)]


def test_alrelu_is_identity_above_zero_and_absolute_leak_below() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 2.0], requires_grad=True)
    y = ALReLU()(x)
    torch.testing.assert_close(y, torch.tensor([0.03, 0.005, 0.0, 2.0]))
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-0.01, -0.01, -0.0, 1.0]))


def test_xraychestnet_v1_layers() -> None:
    model = create_model("xraychestnet_v1", 2)
    convs = modules_of(model.backbone, nn.Conv2d)
    assert [(c.kernel_size, c.out_channels) for c in convs] == [((5, 5), 10), ((3, 3), 256), ((3, 3), 512)]
    assert len(modules_of(model.backbone, nn.BatchNorm2d)) == 3
    assert [p.kernel_size for p in modules_of(model.backbone, nn.MaxPool2d)] == [2, 2, 2]
    assert [lin.out_features for lin in modules_of(model.head, nn.Linear)] == [50, 2]
    assert 0.2 in [d.p for d in modules_of(model.head, nn.Dropout)]
    assert model(torch.rand(2, 1, 224, 224)).shape == (2, 2)  # its native input size


def test_alrelu_cnn_layers() -> None:
    model = create_model("alrelu_cnn", 3)
    convs = modules_of(model.backbone, nn.Conv2d)
    assert [c.kernel_size[0] for c in convs] == list(ALRELU_KERNELS) == [5, 3, 3, 3, 3]
    assert [c.out_channels for c in convs] == list(ALRELU_CHANNELS) == [32, 64, 128, 256, 512]
    assert [d.p for d in modules_of(model.backbone, nn.Dropout)] == list(ALRELU_DROPOUTS) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert len(modules_of(model.backbone, nn.BatchNorm2d)) == 5 and len(modules_of(model.backbone, ALReLU)) == 5
    assert [lin.out_features for lin in modules_of(model.head, nn.Linear)] == [256, 3]
    assert modules_of(model.head, nn.LayerNorm)[0].normalized_shape == (256,)
    assert 0.4 in [d.p for d in modules_of(model.head, nn.Dropout)]


def test_simple_cnn_has_two_convolutions_and_feedforward_three_layers() -> None:
    assert len(modules_of(create_model("simple_cnn", 2), nn.Conv2d)) == 2
    ff = create_model("feedforward", 2)
    assert [lin.out_features for lin in modules_of(ff, nn.Linear)] == [512, 128, 2]
    assert not modules_of(ff, nn.Conv2d)


def test_custom_networks_accept_any_input_size() -> None:
    for name in ("xraychestnet_v1", "alrelu_cnn", "simple_cnn", "feedforward", "logistic_regression"):
        model = create_model(name, 2).eval()
        for size in (32, 100):
            assert model(torch.rand(1, 1, size, size)).shape == (1, 2), (name, size)
