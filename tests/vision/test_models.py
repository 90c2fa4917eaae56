"""lamina.vision.models against torchvision's architectures.

torchvision is not installable here, so each architecture is rebuilt below in plain torch from
torch.nn layers with torchvision's attribute names (the oracle), and checked two ways: the
state-dict keys and shapes equal both the twin's and a list written down from torchvision's
published architecture (spot checks and key counts), and the twin's state dict loads into
Lamina's model and gives the same forward output in float64.
"""
import numpy as np
import pytest
import torch
import torch.nn as tnn

import lamina
from lamina.vision import models

# ---- the torch twins (torchvision's layer names and structure) ------------------------------

class TBasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.relu = tnn.ReLU()
        self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + idt)


class TBottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = tnn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class TResNet(tnn.Module):
    def __init__(self, block, layers, num_classes):
        super().__init__()
        self.inplanes = 64
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU()
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or self.inplanes != planes * block.expansion:
                down = tnn.Sequential(tnn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                      tnn.BatchNorm2d(planes * block.expansion))
            blocks = [block(self.inplanes, planes, stride, down)]
            self.inplanes = planes * block.expansion
            blocks += [block(self.inplanes, planes) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512 * block.expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def t_vgg(cfg, batch_norm, num_classes):
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2))
        else:
            layers += [tnn.Conv2d(c, v, 3, padding=1)] + ([tnn.BatchNorm2d(v)] if batch_norm else []) + [tnn.ReLU()]
            c = v
    m = tnn.Module()
    m.features = tnn.Sequential(*layers)
    m.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
    m.classifier = tnn.Sequential(tnn.Linear(25088, 4096), tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, 4096),
                                  tnn.ReLU(), tnn.Dropout(), tnn.Linear(4096, num_classes))
    m.forward = lambda x: m.classifier(torch.flatten(m.avgpool(m.features(x)), 1))
    return m


def t_conv_bn_relu6(cin, cout, k=3, stride=1, groups=1):
    return tnn.Sequential(tnn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                          tnn.BatchNorm2d(cout), tnn.ReLU6())


class TInvertedResidual(tnn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = inp * t
        self.res = stride == 1 and inp == oup
        layers = [t_conv_bn_relu6(inp, hidden, 1)] if t != 1 else []
        layers += [t_conv_bn_relu6(hidden, hidden, 3, stride, hidden), tnn.Conv2d(hidden, oup, 1, bias=False),
                   tnn.BatchNorm2d(oup)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.res else self.conv(x)


class TMobileNetV2(tnn.Module):
    def __init__(self, num_classes):
        super().__init__()
        feats, c = [t_conv_bn_relu6(3, 32, 3, 2)], 32
        for t, oc, n, s in [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
                            [6, 160, 3, 2], [6, 320, 1, 1]]:
            for i in range(n):
                feats.append(TInvertedResidual(c, oc, s if i == 0 else 1, t))
                c = oc
        feats.append(t_conv_bn_relu6(c, 1280, 1))
        self.features = tnn.Sequential(*feats)
        self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, num_classes))

    def forward(self, x):
        x = tnn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


VGG_A = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
VGG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

TWINS = {
    "resnet18": lambda n: TResNet(TBasicBlock, [2, 2, 2, 2], n),
    "resnet34": lambda n: TResNet(TBasicBlock, [3, 4, 6, 3], n),
    "resnet50": lambda n: TResNet(TBottleneck, [3, 4, 6, 3], n),
    "mobilenet_v2": TMobileNetV2,
    "vgg11": lambda n: t_vgg(VGG_A, False, n),
    "vgg11_bn": lambda n: t_vgg(VGG_A, True, n),
    "vgg16": lambda n: t_vgg(VGG_D, False, n),
    "vgg16_bn": lambda n: t_vgg(VGG_D, True, n),
}

# Written down from torchvision's architectures (1000 classes): the number of state-dict entries
# and some (key, shape) pairs that pin the naming of each kind of block.
TORCHVISION_KEYS = {
    "resnet18": (122, {"conv1.weight": (64, 3, 7, 7), "bn1.running_mean": (64,),
                       "layer1.0.conv1.weight": (64, 64, 3, 3), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                       "layer2.0.downsample.1.num_batches_tracked": (), "layer4.1.bn2.weight": (512,),
                       "fc.weight": (1000, 512), "fc.bias": (1000,)}),
    "resnet34": (218, {"layer3.5.conv2.weight": (256, 256, 3, 3), "layer4.0.downsample.0.weight": (512, 256, 1, 1),
                       "fc.weight": (1000, 512)}),
    "resnet50": (320, {"layer1.0.conv1.weight": (64, 64, 1, 1), "layer1.0.conv3.weight": (256, 64, 1, 1),
                       "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer2.0.conv2.weight": (128, 128, 3, 3),
                       "layer4.2.bn3.weight": (2048,), "fc.weight": (1000, 2048)}),
    "mobilenet_v2": (314, {"features.0.0.weight": (32, 3, 3, 3), "features.0.1.running_var": (32,),
                           "features.1.conv.0.0.weight": (32, 1, 3, 3), "features.1.conv.1.weight": (16, 32, 1, 1),
                           "features.1.conv.2.weight": (16,), "features.2.conv.0.0.weight": (96, 16, 1, 1),
                           "features.2.conv.1.0.weight": (96, 1, 3, 3), "features.2.conv.2.weight": (24, 96, 1, 1),
                           "features.2.conv.3.running_mean": (24,), "features.17.conv.2.weight": (320, 960, 1, 1),
                           "features.18.0.weight": (1280, 320, 1, 1), "classifier.1.weight": (1000, 1280)}),
    "vgg11": (22, {"features.0.weight": (64, 3, 3, 3), "features.3.weight": (128, 64, 3, 3),
                   "features.18.weight": (512, 512, 3, 3), "features.18.bias": (512,),
                   "classifier.0.weight": (4096, 25088), "classifier.3.weight": (4096, 4096),
                   "classifier.6.weight": (1000, 4096)}),
    "vgg11_bn": (62, {"features.1.running_var": (64,), "features.4.weight": (128, 64, 3, 3),
                      "features.26.weight": (512,), "classifier.6.bias": (1000,)}),
    "vgg16": (32, {"features.28.weight": (512, 512, 3, 3), "classifier.0.weight": (4096, 25088)}),
    "vgg16_bn": (97, {"features.41.weight": (512,), "features.40.weight": (512, 512, 3, 3)}),
}


def shapes(state):
    return [(k, tuple(v.shape)) for k, v in state.items()]


def randomise_norm_stats(twin):
    """Non-trivial BatchNorm affine and running statistics, so eval-mode outputs test them."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in twin.modules():
            if isinstance(m, tnn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.2, 0.2, generator=g)
                m.running_mean.uniform_(-0.2, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)


def check_model(name, num_classes=10, size=32, batch=1, train_too=False):
    torch.manual_seed(0)
    twin = TWINS[name](num_classes).double()
    randomise_norm_stats(twin)
    model = getattr(models, name)(num_classes=num_classes)
    assert shapes(model.state_dict()) == shapes(twin.state_dict())
    model.double()  # before loading, so the float64 weights arrive unrounded
    model.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size))
    modes = [False, True] if train_too else [False]
    for train in modes:
        twin.train(train)
        model.train(train)
        with torch.no_grad():
            want = twin(torch.tensor(x)).numpy()
        got = model(lamina.tensor(x, dtype=lamina.float64)).detach().numpy()
        assert got.shape == (batch, num_classes)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "mobilenet_v2"])
def test_state_dict_names_are_torchvisions(name):
    count, some = TORCHVISION_KEYS[name]
    state = dict(shapes(getattr(models, name)().state_dict()))
    assert len(state) == count
    for key, shape in some.items():
        assert state[key] == shape, key


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn", "vgg16", "vgg16_bn"])
def test_vgg_state_dict_names_are_torchvisions(name):
    count, some = TORCHVISION_KEYS[name]
    state = dict(shapes(getattr(models, name)().state_dict()))
    assert len(state) == count
    for key, shape in some.items():
        assert state[key] == shape, key


def test_resnet18_matches_twin_in_eval_and_train():
    check_model("resnet18", batch=2, train_too=True)


def test_resnet50_matches_twin():
    check_model("resnet50")


def test_mobilenet_v2_matches_twin():
    check_model("mobilenet_v2", batch=2)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_vgg_features_match_twin(batch_norm):
    """The convolutional part of VGG-11; the full models (a 25088 x 4096 classifier, seconds to
    initialise) are the slow tests below."""
    from lamina.vision.models.vgg import cfgs, make_layers
    torch.manual_seed(0)
    twin = t_vgg(VGG_A, batch_norm, 10).features.double()
    randomise_norm_stats(twin)
    feats = make_layers(cfgs["A"], batch_norm=batch_norm).double()
    assert shapes(feats.state_dict()) == shapes(twin.state_dict())
    feats.load_state_dict({k: v.numpy() for k, v in twin.state_dict().items()})
    feats.eval()
    twin.eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32))
    with torch.no_grad():
        want = twin(torch.tensor(x)).numpy()
    np.testing.assert_allclose(feats(lamina.tensor(x, dtype=lamina.float64)).detach().numpy(), want,
                               rtol=1e-9, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet34", "vgg11", "vgg11_bn", "vgg16", "vgg16_bn"])
def test_more_models_match_twins(name):
    check_model(name)


def test_weights_other_than_none_are_refused():
    with pytest.raises(ValueError, match=r"resnet18: pretrained weights are not shipped with Lamina "
                                         r"\(weights='IMAGENET1K_V1'\); build it with weights=None"):
        models.resnet18(weights="IMAGENET1K_V1")
    with pytest.raises(ValueError, match=r"mobilenet_v2: .*\(pretrained=True\)"):
        models.mobilenet_v2(pretrained=True)
    with pytest.raises(ValueError, match="vgg11: pretrained weights are not shipped"):
        models.vgg11(weights="DEFAULT")


def test_get_model_and_lenet():
    assert "resnet50" in models.list_models()
    m = models.get_model("resnet18", num_classes=3)
    assert m.fc.weight.shape == (3, 512)
    with pytest.raises(ValueError, match="get_model: unknown model 'resnet7'"):
        models.get_model("resnet7")
    assert models.LeNet(num_classes=10)(lamina.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_zero_init_residual_and_torchvision_init():
    m = models.resnet18(zero_init_residual=True)
    assert float(m.layer1[0].bn2.weight.abs().sum()) == 0.0
    assert float(m.layer1[0].bn1.weight.abs().sum()) == 64.0
    # kaiming_normal_(mode="fan_out", relu): std = sqrt(2 / (out_channels * k * k))
    w = m.layer4[0].conv1.weight.detach().numpy()
    assert abs(w.std() - np.sqrt(2 / (512 * 9))) < 0.03 * np.sqrt(2 / (512 * 9))


def test_resnet_rejects_wrong_input():
    with pytest.raises(ValueError, match=r"ResNet: expected input of shape \(N, 3, H, W\), got \(1, 1, 32, 32\)"):
        models.resnet18()(lamina.zeros(1, 1, 32, 32))
