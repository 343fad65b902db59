"""Batched mesh operators over ``edge_index [B, 2, E]``: gather to edges, scatter to nodes.

Every sample of a batch has the same node and edge counts, so the operators work on
``[B, N, C]`` node tensors and ``[B, E, C]`` edge tensors with `torch.gather` and
`Tensor.scatter_add` along dim 1: no Python loop over samples, no index offsets, and
both export to ONNX (GatherElements, ScatterElements with ``reduction="add"``).
An edge ``e`` points from its *tail* ``edge_index[:, 0, e]`` to its *head* ``edge_index[:, 1, e]``.
"""

from __future__ import annotations

import torch


def gather_nodes(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[B, E, C]``: the node values ``values [B, N, C]`` at ``index [B, E]``."""
    return values.gather(1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


def accumulate(total: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``total [B, N, C]`` plus the edge values ``values [B, E, C]`` summed at node ``index [B, E]`` (out of place)."""
    return total.scatter_add(1, index.unsqueeze(-1).expand(-1, -1, values.shape[-1]), values)


def scatter_to_nodes(values: torch.Tensor, index: torch.Tensor, nodes: int) -> torch.Tensor:
    """``[B, N, C]``: the sum of the edge values ``values [B, E, C]`` at node ``index [B, E]``.

    For exported code prefer ``accumulate(torch.zeros_like(node_tensor), ...)``: ``new_zeros``
    exports as ConstantOfShape, whose value the float16 converter leaves in float32.
    """
    return accumulate(values.new_zeros((values.shape[0], nodes, values.shape[-1])), index, values)


def star_mean(values: torch.Tensor, edge_index: torch.Tensor, nodes: int) -> torch.Tensor:
    """``[B, N, C]``: at each node, the mean of the edge values ``[B, E, C]`` over the edges touching it.

    A node no edge touches gets 0.
    """
    tail, head = edge_index[:, 0], edge_index[:, 1]
    total = scatter_to_nodes(values, tail, nodes) + scatter_to_nodes(values, head, nodes)
    ones = values.new_ones((*values.shape[:2], 1))
    degree = scatter_to_nodes(ones, tail, nodes) + scatter_to_nodes(ones, head, nodes)
    return total / degree.clamp_min(1.0)


def edge_lengths(coordinates: torch.Tensor, edge_index: torch.Tensor, floor: float = 1e-12) -> torch.Tensor:
    """``[B, E, 1]``: Euclidean lengths of the edges for node ``coordinates [B, N, D]`` (at least `floor`)."""
    delta = gather_nodes(coordinates, edge_index[:, 1]) - gather_nodes(coordinates, edge_index[:, 0])
    return delta.pow(2).sum(-1, keepdim=True).sqrt().clamp_min(floor)
