"""A small spatio-temporal forecaster for a road-sensor graph (METR-LA style).

Input ``[B, history, num_nodes]`` speeds in their own units, with 0 meaning "missing"
(as METR-LA stores it). The model derives the observation mask itself (``x != 0``),
standardises each window by the mean and standard deviation of its observed readings
(reversible instance normalisation, so it needs no dataset statistics), and returns
``[B, horizon, num_nodes]`` in the input's units.

Parts: ``temporal`` (a GRU over each node's history of [value, observed] pairs),
``spatial`` (graph mixing over an adjacency learned from node embeddings, as Graph
WaveNet's adaptive adjacency) and ``readout`` (hidden state -> horizon values).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class AdaptiveGraphMixing(nn.Module):
    """Mix node states over ``softmax(relu(E E^T))``, a graph learned from node embeddings."""

    def __init__(self, num_nodes: int, hidden: int, node_embed: int):
        super().__init__()
        self.nodes = nn.Parameter(torch.randn(num_nodes, node_embed) * 0.1)
        self.mix = nn.Linear(2 * hidden, hidden)

    def adjacency(self) -> torch.Tensor:
        """The learned row-normalised adjacency [num_nodes, num_nodes]."""
        return torch.softmax(F.relu(self.nodes @ self.nodes.T), dim=1)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """[B, N, hidden] node states -> [B, N, hidden], with a residual connection."""
        neighbours = torch.einsum("nm,bmh->bnh", self.adjacency(), states)
        return states + F.gelu(self.mix(torch.cat([states, neighbours], dim=-1)))


class METRForecaster(nn.Module):
    """[B, history, num_nodes] readings (0 = missing) -> [B, horizon, num_nodes] forecasts."""

    def __init__(self, num_nodes: int = 16, history: int = 12, horizon: int = 3, hidden: int = 32, node_embed: int = 8, eps: float = 1e-3):
        super().__init__()
        self.history, self.horizon, self.eps = history, horizon, eps
        self.temporal = nn.GRU(input_size=2, hidden_size=hidden, batch_first=True)
        self.spatial = AdaptiveGraphMixing(num_nodes, hidden, node_embed)
        self.readout = nn.Linear(hidden, horizon)

    def forward(self, readings: torch.Tensor) -> torch.Tensor:
        """Normalise by the window's observed readings, encode, mix, read out, denormalise."""
        batch, steps, nodes = readings.shape
        observed = (readings != 0).to(readings.dtype)
        count = observed.sum(dim=(1, 2), keepdim=True)
        mean = (readings * observed).sum(dim=(1, 2), keepdim=True) / count.clamp_min(1.0)
        var = (((readings - mean) * observed) ** 2).sum(dim=(1, 2), keepdim=True) / count.clamp_min(1.0)
        std = torch.sqrt(var + self.eps)
        values = (readings - mean) / std * observed
        pairs = torch.stack([values, observed], dim=-1)  # [B, T, N, 2]
        pairs = pairs.permute(0, 2, 1, 3).reshape(batch * nodes, steps, 2)
        _, last = self.temporal(pairs)  # [1, B*N, hidden]
        states = self.spatial(last[0].reshape(batch, nodes, -1))
        forecast = self.readout(states).transpose(1, 2)  # [B, horizon, N]
        return forecast * std + mean
