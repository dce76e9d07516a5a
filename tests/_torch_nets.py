"""Small real networks for the torch tests: residual blocks with BatchNorm, and dropout."""

import torch
from torch import nn


class BasicBlock(nn.Module):
    """torchvision's ResNet ``BasicBlock``: one ReLU module used twice, ``out += identity``."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """ResNet-18's layout (stem, four stages of two blocks, global average pool, dropout, fc).

    ``width=64`` and 3 channels is torchvision's ResNet-18 (plus dropout before ``fc``);
    ``stem=False`` replaces the 7x7/2 convolution and max pooling by one 3x3 convolution,
    for small images.
    """

    def __init__(self, n_classes=10, width=64, in_channels=3, stem=True, blocks=(2, 2, 2, 2)):
        super().__init__()
        w = width
        if stem:
            self.conv1 = nn.Conv2d(in_channels, w, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU(inplace=True)
        widths = [w, 2 * w, 4 * w, 8 * w][: len(blocks)]
        c_in = w
        for i, (c_out, n) in enumerate(zip(widths, blocks, strict=True)):
            stage = [BasicBlock(c_in, c_out, 1 if i == 0 else 2)]
            stage += [BasicBlock(c_out, c_out) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            c_in = c_out
        self.n_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(c_in, n_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


def make_resnet(seed, **kwargs):
    """A :class:`ResNet18` initialised from ``seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ResNet18(**kwargs)


def buffers(model):
    """A copy of every buffer (running statistics, ``num_batches_tracked``)."""
    return {name: b.detach().clone() for name, b in model.named_buffers()}


def training_flags(model):
    return {name: m.training for name, m in model.named_modules()}
