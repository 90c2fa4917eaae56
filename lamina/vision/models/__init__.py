"""Image classification architectures with torchvision's names, constructors and parameter names,
so state dicts published for torchvision load with ``load_state_dict``: ResNet-18/34/50, VGG-11/16
(with and without batch norm), MobileNetV2, and LeNet-5. No pretrained weights are shipped:
``weights`` must be None."""
from ...models.lenet import LeNet5
from ._utils import Conv2dNormActivation, ReLU6  # noqa: F401
from .mobilenetv2 import InvertedResidual, MobileNetV2, mobilenet_v2  # noqa: F401
from .resnet import BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50  # noqa: F401
from .vgg import VGG, vgg11, vgg11_bn, vgg16, vgg16_bn  # noqa: F401

LeNet = LeNet5

_BUILDERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "vgg11": vgg11,
             "vgg11_bn": vgg11_bn, "vgg16": vgg16, "vgg16_bn": vgg16_bn, "mobilenet_v2": mobilenet_v2}


def list_models() -> list:
    """The names ``get_model`` accepts, sorted."""
    return sorted(_BUILDERS)


def get_model(name: str, **config):
    """Build the model called ``name`` (see ``list_models``) with keyword arguments ``config``."""
    builder = _BUILDERS.get(name.lower())
    if builder is None:
        raise ValueError(f"get_model: unknown model {name!r}; known: {', '.join(list_models())}")
    return builder(**config)
