"""An eye open/closed classifier: CNN backbone, embedding head and a CosFace cosine classifier.

``backbone`` blocks are registered front to back, so "the last 50 % of the backbone"
selects its later blocks. ``margin_head`` returns ``scale * cos(theta)`` logits; the
CosFace margin is applied by the ``cosface`` loss during training only, so evaluation
and exported models see plain logits.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_block(channels_in: int, channels_out: int, stride: int) -> nn.Sequential:
    """3x3 convolution (no bias), BatchNorm2d, ReLU."""
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(inplace=True),
    )


class CosineClassifier(nn.Module):
    """``scale * cos`` between the L2-normalised embedding and L2-normalised class weights."""

    def __init__(self, embed: int, num_classes: int, scale: float):
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, embed))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """[B, embed] -> [B, num_classes] scaled cosine logits."""
        return self.scale * F.linear(F.normalize(embedding, dim=1), F.normalize(self.weight, dim=1))


class OCECNet(nn.Module):
    """[B, in_channels, size, size] crop -> [B, num_classes] scaled cosine logits."""

    def __init__(self, in_channels: int = 1, size: int = 24, width: int = 16, embed: int = 32, num_classes: int = 2, scale: float = 16.0):
        super().__init__()
        del size  # the backbone pools globally; `size` documents the expected input only
        self.backbone = nn.Sequential(
            conv_block(in_channels, width, stride=1),
            conv_block(width, 2 * width, stride=2),
            conv_block(2 * width, 2 * width, stride=1),
            conv_block(2 * width, 4 * width, stride=2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(4 * width, embed, bias=False),
            nn.BatchNorm1d(embed),
            nn.ReLU(inplace=True),
            nn.Linear(embed, embed),
        )
        self.margin_head = CosineClassifier(embed, num_classes, scale)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """The embedding the classifier compares with its class weights."""
        return self.head(self.backbone(image))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Backbone, embedding head, cosine classifier."""
        return self.margin_head(self.embed(image))
