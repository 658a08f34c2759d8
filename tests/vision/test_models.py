import pytest
import torch
from torch import nn

from nft_core.errors import NFTInputError
from nft_core.testing import check_every_mask_matters, check_fold_equivalence, check_identity_at_one
from nft_vision import VGG16, Normalize, PreActResNet18, SmallCNN, create_model


def tiny_net(num_classes=3):
    """For the ``package.module:callable`` spec."""
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def _randomize_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return model


@pytest.mark.parametrize("cls", [PreActResNet18, VGG16, SmallCNN])
def test_forward_shape(cls):
    model = cls(num_classes=7, width=4)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_full_width_parameter_counts():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 11.1e6 < n(PreActResNet18()) < 11.3e6  # the standard CIFAR PreActResNet-18
    assert 14.7e6 < n(VGG16()) < 14.8e6  # 13 conv layers with BN + a 512-feature linear head


def test_normalize_is_part_of_the_model():
    m = create_model("smallcnn", 10, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), width=4)
    assert isinstance(next(iter(m.children())), Normalize)
    assert torch.allclose(m.state_dict()["normalize.mean"].flatten(), torch.tensor([0.5, 0.4, 0.3]))
    x = torch.full((1, 3, 2, 2), 0.5)
    assert torch.allclose(m.normalize(x)[0, :, 0, 0], torch.tensor([0.0, 0.5, 1.0]))


@pytest.mark.parametrize("spec", ["preactresnet18", "vgg16", "smallcnn", "torchvision:resnet18",
                                  "timm:resnet10t", "tests.vision.test_models:tiny_net"])
def test_create_model_specs(spec):
    kwargs = {"width": 4} if ":" not in spec else {}
    model = create_model(spec, 5, **kwargs)
    assert model.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 5)
    normed = create_model(spec, 5, mean=(0.5,) * 3, std=(0.25,) * 3, **kwargs)
    if ":" not in spec:
        assert isinstance(next(iter(normed.children())), Normalize)
    else:  # external: same state_dict keys as the user's model, normalization applied as a pre-hook
        assert normed.state_dict().keys() == model.state_dict().keys()
        normed.load_state_dict(model.state_dict())
        x = torch.rand(2, 3, 32, 32)
        assert torch.allclose(normed.eval()(x), model.eval()((x - 0.5) / 0.25), atol=1e-5)


@pytest.mark.parametrize("spec,match", [
    ("resnet9000", "unknown model 'resnet9000'"), ("torchvision:nope", "unknown torchvision model"),
    ("timm:nope", "unknown timm model"), ("no_such_pkg.mod:fn", "cannot import fn"), (":x", "unknown model"),
])
def test_create_model_errors(spec, match):
    with pytest.raises(NFTInputError, match=match) as e:
        create_model(spec, 10)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("cls", [PreActResNet18, VGG16])
@pytest.mark.parametrize("placement", ["bn", "weight"])
def test_mask_conformance(cls, placement):
    torch.manual_seed(0)
    model = _randomize_bn(cls(num_classes=10, width=4))
    x = torch.rand(4, 3, 32, 32)
    check_identity_at_one(model, x, placement=placement)
    check_every_mask_matters(model, x, placement=placement, min_fraction=0.5)
    model.eval()
    check_fold_equivalence(model, x, atol=1e-5, placement=placement)
    assert not model.training
