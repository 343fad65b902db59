"""A model of two inputs fed by a per-sample dataset: ``default_collate`` makes each batch's inputs a
list, and training and evaluation must both call the model with the two tensors."""

from __future__ import annotations

import torch
from torch import nn

import stagedsl

SPEC = """\
[run]
name = "two-inputs"
seed = 0
threads = 1

[model]
use = "unused"

[data]
use = "unused"
batch_size = 8

[defaults]
loss = "mse"
eval = { every = "4 steps", monitor = "val/loss" }

[[stage]]
name = "fit"
steps = 4
lr = 1e-2
"""


class Sum(nn.Module):
    """y = w1·a + w2·b: it takes its two inputs as two arguments."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 1), nn.Linear(3, 1)

    def forward(self, a, b):
        return self.a(a) + self.b(b)


class PerSample(torch.utils.data.Dataset):
    """Samples ``((a, b), y)`` one at a time, as a user's own Dataset returns them."""

    def __init__(self, n: int):
        generator = torch.Generator().manual_seed(n)
        self.a, self.b = torch.randn(n, 3, generator=generator), torch.randn(n, 3, generator=generator)
        self.y = self.a.sum(1, keepdim=True) - self.b.sum(1, keepdim=True)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return (self.a[i], self.b[i]), self.y[i]


def test_a_two_input_model_on_a_per_sample_dataset_trains_and_evaluates(tmp_path, registry):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    data = stagedsl.DataSplits(train=PerSample(32), val=PerSample(16))
    result = stagedsl.run(spec, model=Sum(), data=data, out=tmp_path / "run", registry=registry, warn=lambda _: None)
    assert result.status == "completed"
    assert torch.isfinite(torch.tensor(result.best["fit"]["value"]))
