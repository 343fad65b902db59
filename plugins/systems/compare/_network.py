"""Seed 002's siamese pair classifier: a ResNet encoder with SE attention, shared by both
images, and a fusion head that compares the two embeddings.

``fusion = true`` is the team's six-way fusion: difference, concatenation, product,
cosine similarity, L2 distance and a residual block over the difference, each projected
to `feat_dim` and combined with input-dependent softmax weights (adaptive weighting).
``fusion = false`` is their plain ResNet head over ``[|a - b|, a * b]``. Both end in
``classifier``, two logits (different, same).

Parameter names: ``encoder.stem``, ``encoder.layer<i>`` (one per entry of `layers`),
``encoder.embed``, ``fusion.**``, ``classifier.**``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck MLP, sigmoid gate per channel."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x * gate(mean over H, W)."""
        return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convolutions) with SE attention before the residual sum."""

    def __init__(self, channels_in: int, channels_out: int, stride: int, se_reduction: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.se = SqueezeExcite(channels_out, se_reduction)
        self.shortcut = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False), nn.BatchNorm2d(channels_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(se(bn(conv(relu(bn(conv(x)))))) + shortcut(x))."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + self.shortcut(x))


class ResNetEncoder(nn.Module):
    """Image [B, C, H, W] -> embedding [B, feat_dim]; stage i has width * 2^i channels, stride 2 after the first."""

    def __init__(self, in_channels: int, width: int, layers: list[int], feat_dim: int, se_reduction: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        channels = width
        for index, blocks in enumerate(layers):
            out = width * 2**index
            stage = [BasicBlock(channels if b == 0 else out, out, 2 if (index > 0 and b == 0) else 1, se_reduction) for b in range(blocks)]
            self.add_module(f"layer{index + 1}", nn.Sequential(*stage))
            channels = out
        self.depth = len(layers)
        self.embed = nn.Linear(channels, feat_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, the ResNet stages, global average pool, linear embedding."""
        x = self.stem(x)
        for index in range(self.depth):
            x = getattr(self, f"layer{index + 1}")(x)
        return self.embed(x.mean(dim=(2, 3)))


class AdaptiveFusion(nn.Module):
    """Six comparisons of two embeddings, projected and mixed with input-dependent softmax weights."""

    HEADS = ("difference", "concatenation", "product", "cosine", "distance", "residual")

    def __init__(self, feat_dim: int):
        super().__init__()
        sizes = {"difference": feat_dim, "concatenation": 2 * feat_dim, "product": feat_dim, "cosine": 1, "distance": 1, "residual": feat_dim}
        self.project = nn.ModuleDict({name: nn.Sequential(nn.Linear(sizes[name], feat_dim), nn.ReLU(inplace=True)) for name in self.HEADS})
        self.residual = nn.Sequential(nn.Linear(feat_dim, feat_dim), nn.ReLU(inplace=True), nn.Linear(feat_dim, feat_dim))
        self.attention = nn.Linear(len(self.HEADS) * feat_dim, len(self.HEADS))

    def comparisons(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The six raw comparisons of embeddings a and b."""
        difference = (a - b).abs()
        return {
            "difference": difference,
            "concatenation": torch.cat([a, b], dim=1),
            "product": a * b,
            "cosine": F.cosine_similarity(a, b, dim=1, eps=1e-6)[:, None],
            "distance": torch.sqrt(((a - b) ** 2).sum(dim=1, keepdim=True) + 1e-6),
            "residual": difference + self.residual(difference),
        }

    def weights(self, projected: list[torch.Tensor]) -> torch.Tensor:
        """Softmax weights [B, 6] of the heads for each pair."""
        return self.attention(torch.cat(projected, dim=1)).softmax(dim=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Σ_h w_h(a, b) · project_h(comparison_h(a, b))."""
        raw = self.comparisons(a, b)
        projected = [self.project[name](raw[name]) for name in self.HEADS]
        weights = self.weights(projected)
        return (torch.stack(projected, dim=1) * weights[:, :, None]).sum(dim=1)


class PlainFusion(nn.Module):
    """The plain head: ``relu(linear([|a - b|, a * b]))``."""

    def __init__(self, feat_dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * feat_dim, feat_dim), nn.ReLU(inplace=True))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Project the absolute difference and the product."""
        return self.project(torch.cat([(a - b).abs(), a * b], dim=1))


class PairClassifier(nn.Module):
    """(image a, image b) -> two logits: different (0) or the same digit (1)."""

    def __init__(self, in_channels: int = 1, width: int = 16, layers: tuple[int, ...] = (2, 2, 2), feat_dim: int = 64,
                 fusion: bool = False, se_reduction: int = 4, dropout: float = 0.1):
        super().__init__()
        self.encoder = ResNetEncoder(in_channels, width, list(layers), feat_dim, se_reduction)
        self.fusion = AdaptiveFusion(feat_dim) if fusion else PlainFusion(feat_dim)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(feat_dim, feat_dim // 2 or 1), nn.ReLU(inplace=True),
                                        nn.Linear(feat_dim // 2 or 1, 2))

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """Both images through the one encoder (as one batch), fused, classified."""
        if xa.dim() == 3:
            xa, xb = xa[:, None], xb[:, None]
        embeddings = self.encoder(torch.cat([xa, xb], dim=0))
        count = xa.shape[0]
        a, b = embeddings[:count], embeddings[count:]
        return self.classifier(self.fusion(a, b))
