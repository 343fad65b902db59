"""An encode-process-decode edge GNN for meshes (MeshGraphNets-style), in plain torch.

``MeshGNN(node_features [B, N, Fn], edge_features [B, E, Fe], edge_index [B, 2, E]) -> [B, E, T]``

- ``node_encoder`` / ``edge_encoder``: MLPs to ``hidden`` latents;
- ``processor``: a ModuleList of `InteractionLayer`s. Each updates every edge from its
  latent and its two end nodes (tail and head kept apart, so the direction of an edge
  is known), then every node from its latent, the sum of its incoming edges' latents
  and the sum of its outgoing ones; both updates are residual;
- ``edge_decoder``: an MLP from each edge's latent to its ``targets`` values.

Relabelling the nodes (permuting ``node_features`` and renaming ``edge_index``) leaves
the output unchanged; permuting the edges permutes it. Gathers and scatters are
`_ops` (``torch.gather`` / ``scatter_add`` along dim 1), vectorised over the batch
and exportable to ONNX.
"""

from __future__ import annotations

import torch
from torch import nn

from stagedsl_plugins.systems.mesh._ops import accumulate, gather_nodes


class MLP(nn.Sequential):
    """Linear -> SiLU -> (Dropout) -> Linear, with a LayerNorm on the output when `norm`."""

    def __init__(self, inputs: int, hidden: int, outputs: int, norm: bool = True, dropout: float = 0.0):
        layers: list[nn.Module] = [nn.Linear(inputs, hidden), nn.SiLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(hidden, outputs))
        if norm:
            layers.append(nn.LayerNorm(outputs))
        super().__init__(*layers)


class InteractionLayer(nn.Module):
    """One round of message passing: edges from their end nodes, then nodes from their edges."""

    def __init__(self, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.edge_mlp = MLP(3 * hidden, hidden, hidden, dropout=dropout)
        self.node_mlp = MLP(3 * hidden, hidden, hidden, dropout=dropout)

    def forward(self, nodes: torch.Tensor, edges: torch.Tensor, tail: torch.Tensor, head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated ``(nodes [B, N, H], edges [B, E, H])``."""
        edges = edges + self.edge_mlp(torch.cat([edges, gather_nodes(nodes, tail), gather_nodes(nodes, head)], dim=-1))
        zeros = torch.zeros_like(nodes)  # exports as Expand: float16-convertible, unlike new_zeros' ConstantOfShape
        incoming = accumulate(zeros, head, edges)
        outgoing = accumulate(zeros, tail, edges)
        nodes = nodes + self.node_mlp(torch.cat([nodes, incoming, outgoing], dim=-1))
        return nodes, edges


class MeshGNN(nn.Module):
    """Edge regression on meshes: node_encoder, edge_encoder -> processor (layers) -> edge_decoder."""

    def __init__(self, node_in: int, edge_in: int, hidden: int = 32, layers: int = 3, targets: int = 3, dropout: float = 0.0):
        super().__init__()
        for name, value in (("node_in", node_in), ("edge_in", edge_in), ("hidden", hidden), ("targets", targets)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, found {value}")
        if layers < 0:
            raise ValueError(f"layers cannot be negative, found {layers}")
        self.node_encoder = MLP(node_in, hidden, hidden, dropout=dropout)
        self.edge_encoder = MLP(edge_in, hidden, hidden, dropout=dropout)
        self.processor = nn.ModuleList(InteractionLayer(hidden, dropout) for _ in range(layers))
        self.edge_decoder = MLP(hidden, hidden, targets, norm=False, dropout=dropout)

    def forward(self, node_features: torch.Tensor, edge_features: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """``[B, E, targets]`` for ``node_features [B, N, node_in]``, ``edge_features [B, E, edge_in]``, ``edge_index [B, 2, E]``."""
        tail, head = edge_index[:, 0], edge_index[:, 1]
        nodes = self.node_encoder(node_features)
        edges = self.edge_encoder(edge_features)
        for layer in self.processor:
            nodes, edges = layer(nodes, edges, tail, head)
        return self.edge_decoder(edges)
