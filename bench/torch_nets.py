"""PyTorch ResNet-18 (torchvision's layout) and IResNet-18 (insightface arcface_torch's), rebuilt by hand
as tests/test_resnet_convert.py and tests/test_iresnet_convert.py rebuild them (torchvision is not
installed here; :func:`resnet18` uses it when it is), each with a linear classifier on top, as kdface's
``build_classifier`` puts one on the backbone's embedding."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    """torchvision's ``resnet18`` with ``num_classes`` outputs (global average pool, then ``fc``)."""

    def __init__(self, num_classes: int = 7):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, planes in enumerate((64, 128, 256, 512), start=1):
            stride = 1 if i == 1 else 2
            downsample = None
            if stride != 1 or self.inplanes != planes:
                downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                           nn.BatchNorm2d(planes))  # fmt: skip
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(self.inplanes, planes, stride, downsample),
                                                     BasicBlock(planes, planes)))  # fmt: skip
            self.inplanes = planes
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


class IResNet18(nn.Module):
    """insightface's ``iresnet18`` (fc + BatchNorm1d embedding head, its gamma fixed at 1), then a linear
    classifier on the 512-d embedding."""

    def __init__(self, image_size: int = 112, num_classes: int = 7):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        for i, planes in enumerate((64, 128, 256, 512), start=1):
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, 2, bias=False),
                                       nn.BatchNorm2d(planes, eps=1e-05))  # fmt: skip
            setattr(self, f"layer{i}", nn.Sequential(IBasicBlock(self.inplanes, planes, 2, downsample),
                                                     IBasicBlock(planes, planes)))  # fmt: skip
            self.inplanes = planes
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(0.0)
        side = image_size // 16
        self.fc = nn.Linear(512 * side * side, 512)
        self.features = nn.BatchNorm1d(512, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        embedding = self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))
        return self.classifier(embedding)


def resnet18(num_classes: int = 7) -> tuple[nn.Module, str]:
    """torchvision's ``resnet18`` when torchvision is installed, else the hand-built copy."""
    try:
        from torchvision.models import resnet18 as tv_resnet18
    except ImportError:
        return ResNet18(num_classes), "hand-built torchvision layout (torchvision not installed)"
    return tv_resnet18(num_classes=num_classes), "torchvision.models.resnet18"


def build(network: str, image_size: int, num_classes: int = 7) -> tuple[nn.Module, str]:
    if network == "resnet18":
        return resnet18(num_classes)
    if network == "iresnet18":
        return IResNet18(image_size, num_classes), "hand-built insightface layout"
    raise ValueError(f"unknown network {network!r}")
