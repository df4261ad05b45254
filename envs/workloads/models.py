"""Network architectures: the embedded digits CNN, CIFAR-style nets, torchvision models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DigitsCNN(nn.Module):
    """A small VGG-style CNN: pairs of 3x3 conv + BatchNorm + ReLU, then max-pooling.

    Default widths ``(8, 8, 16, 16, 32, 32)`` and a pool after every pair (``pools``: the
    indices of the convs a pool follows): six conv layers, three pooling stages,
    global average pooling and one linear classifier (about 18k parameters). On 16x16
    digits a forward pass of a few hundred images takes a few milliseconds on a CPU.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (8, 8, 16, 16, 32, 32),
        pools: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if pools is None:  # one pool after every pair of convs
            if len(widths) % 2:
                raise ValueError(f"widths must come in pairs (one pool per pair), got {widths}")
            pools = range(1, len(widths), 2)
        after = set(pools)
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            if i in after:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)``."""
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


#: fashion-cnn: the digits CNN at twice the width (about 72k parameters).
FASHION_CNN_WIDTHS = (16, 16, 32, 32, 64, 64)


class _ShortcutA(nn.Module):
    """He et al.'s CIFAR "option A" shortcut: subsample and zero-pad channels (no weights)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers with an identity (or option-A) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = (
            _ShortcutA(in_planes, planes, stride)
            if stride != 1 or in_planes != planes
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block output."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 inputs (He et al. 2016, section 4.2): depth = 6n + 2.

    Three stages of ``n`` basic blocks with 16, 32, 64 channels; ``resnet20`` has n=3,
    ``resnet56`` n=9 (the AMC CIFAR-10 benchmark).
    """

    def __init__(self, *, depth: int = 20, in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages: list[nn.Module] = []
        planes_in = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(planes_in, planes, stride))
                planes_in = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(torch.flatten(out, 1))


VGG_CFG: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
}


class CifarVGG(nn.Module):
    """VGG with BatchNorm for 32x32 inputs and a single linear classifier."""

    def __init__(
        self, *, config: str = "vgg11", in_channels: int = 3, num_classes: int = 10
    ) -> None:
        super().__init__()
        if config not in VGG_CFG:
            raise KeyError(f"unknown VGG config {config!r}; valid: {', '.join(VGG_CFG)}")
        layers: list[nn.Module] = []
        c = in_channels
        for v in VGG_CFG[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v))]
                layers.append(nn.ReLU())
                c = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)``."""
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


#: fashion-vgg: VGG-11's eight 3x3 convs at a sixth of its widths (about 1.17 M parameters).
FASHION_VGG_WIDTHS = (16, 32, 64, 64, 128, 128, 256, 256)
#: After which convs (0-based) fashion-vgg max-pools: 28 -> 14 -> 7 -> 3. VGG-11's fourth and
#: fifth pools are left out so that no 3x3 conv runs on a 1x1 map, where 8 of its 9 taps would
#: only ever see padding (dead weights that would make pruning look easier than it is).
FASHION_VGG_POOLS = (0, 1, 3)


class FashionVGG(DigitsCNN):
    """VGG-11 layout with BatchNorm for 28x28 inputs: an over-parameterised pruning workload.

    Eight 3x3 conv + BatchNorm + ReLU layers of widths :data:`FASHION_VGG_WIDTHS`, max-pooling
    after the convs in :data:`FASHION_VGG_POOLS`, global average pooling and one linear
    classifier: 1.17 M parameters and 13.7 M multiply-accumulates per 28x28 image.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = FASHION_VGG_WIDTHS,
        pools: Sequence[int] = FASHION_VGG_POOLS,
    ) -> None:
        super().__init__(
            in_channels=in_channels, num_classes=num_classes, widths=widths, pools=pools
        )


#: CIFAR-style architectures: name -> builder(in_channels, num_classes).
CIFAR_MODELS = {
    "resnet20": lambda c, k: CifarResNet(depth=20, in_channels=c, num_classes=k),
    "resnet56": lambda c, k: CifarResNet(depth=56, in_channels=c, num_classes=k),
    "vgg11-cifar": lambda c, k: CifarVGG(config="vgg11", in_channels=c, num_classes=k),
}

#: Input sizes torchvision models need (others default to 224).
TORCHVISION_INPUT_SIZE = {"inception_v3": 299}


def torchvision_models() -> list[str]:
    """Every classification model name in ``torchvision.models``."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_torchvision(name: str, *, num_classes: int = 1000) -> nn.Module:
    """A torchvision classification model with random weights (``weights=None``).

    Never downloads: pretrained weights are not requested. Auxiliary classifiers
    (GoogLeNet, Inception v3) are disabled so the forward pass returns plain logits.
    """
    import torchvision

    valid = torchvision_models()
    if name not in valid:
        raise KeyError(f"unknown torchvision model {name!r}; valid: {', '.join(valid)}")
    kwargs: dict[str, object] = {"weights": None, "num_classes": num_classes}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    return torchvision.models.get_model(name, **kwargs)
