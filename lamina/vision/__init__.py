"""Computer vision on Lamina, what torchvision is to PyTorch: ``datasets`` (MNIST, FashionMNIST,
ImageFolder, FakeData), ``transforms`` (PIL images and tensors), ``utils`` (``make_grid``,
``save_image``) and ``models`` (ResNet, VGG, MobileNetV2, LeNet architectures)."""
from . import datasets, models, transforms, utils  # noqa: F401
