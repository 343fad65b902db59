"""Your own model: a plain nn.Module, named in the spec by import path ("./model.py:BlobNet").

Nothing here knows stagedsl. Its constructor's arguments are the keys of the spec's [model]
table, checked against this signature before anything runs (a misspelt `widht` is a spec
error with a did-you-mean).
"""

from torch import nn


class BlobNet(nn.Module):
    """encoder (Linear, BatchNorm1d, ReLU, Linear, ReLU) -> head (Linear): features -> class logits."""

    def __init__(self, features: int = 16, width: int = 32, classes: int = 3, dropout: float = 0.0):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(features, width), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout),
        )
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(self.encoder(x))
