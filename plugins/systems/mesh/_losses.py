"""Seed 001's mesh losses (smoothness, gradient consistency, curvature) and a relative-L1 metric.

The three losses compare a *mesh operator* of the prediction with the same operator of
the target, for edge fields ``[B, E, T]`` (each of the T channels on its own). They need
the mesh, so each module has ``needs_inputs = True``: the engine calls it as
``loss(prediction, target, inputs)`` with the batch's model inputs
``(node_features [B, N, Fn], edge_features [B, E, Fe], edge_index [B, 2, E])``, as the
`mesh_fields` dataset gives them. Called without inputs they raise a TypeError that says so.

The operators are linear, so ``op(prediction) - op(target) = op(error)`` with
``error = prediction - target``; each loss is the mean absolute value of ``op(error)``.
With ``phi = star_mean(error)`` (at each node, the mean error of the edges touching it):

- ``smoothness``: for each edge and each of its two end nodes, ``error_e - phi_node``:
  how far the edge's error departs from that of the edges sharing the node (the mean of
  the pairwise differences). High-frequency error; zero only for an error constant over
  the (connected) mesh.
- ``gradient_consistency``: the finite-difference gradient along each edge of the
  node-aggregated field, ``(phi_head - phi_tail) / length``. Low-frequency error: it sees
  a ramp that smoothness barely sees; an error whose node means are all equal (such as
  a zero-mean alternation around every node) passes it, and smoothness catches those.
- ``curvature``: the second difference of the node-aggregated field at each node,
  ``mean over neighbours m of (phi_m - phi_n) / length²`` (proportional to its Laplacian
  on a regular mesh).

They are seminorms, meant next to ``l1`` (which sees a constant offset none of them
does): zero when prediction equals target, positive for any error that is not constant
over the mesh (smoothness) or whose node means vary (the other two). Lengths are taken
from the node coordinates, ``node_features[..., coordinates]`` (columns 0 and 1 by
default); `mesh_fields` normalises x and y with one shared std, so these are the true
lengths times one constant.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn
from torchmetrics import Metric

from stagedsl_plugins.systems.mesh._ops import edge_lengths, gather_nodes, scatter_to_nodes, star_mean


class MeshLoss(nn.Module):
    """Base of the mesh losses: ``loss(prediction, target, inputs)``, ``needs_inputs = True``."""

    needs_inputs = True
    """The engine passes the batch's inputs ``(node_features, edge_features, edge_index)`` as a third argument."""

    def __init__(self, coordinates: Sequence[int] = (0, 1)):
        super().__init__()
        self.coordinates = [int(c) for c in coordinates]

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, inputs: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
        """Mean absolute value of the operator applied to ``prediction - target``."""
        if inputs is None:
            raise TypeError(
                f"{type(self).__name__} needs the mesh: call it as loss(prediction, target, inputs) with "
                "inputs = (node_features, edge_features, edge_index) (it sets needs_inputs = True)"
            )
        node_features, edge_index = inputs[0], inputs[-1]
        error = prediction.float() - target.float()
        return self.measure(error, node_features.float(), edge_index)

    def measure(self, error: torch.Tensor, node_features: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def lengths(self, node_features: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """``[B, E, 1]`` edge lengths in the coordinates' units."""
        return edge_lengths(node_features[..., self.coordinates], edge_index)


class Smoothness(MeshLoss):
    """Mean over edges and their end nodes of ``|error_e - mean error of the edges at the node|``."""

    def measure(self, error: torch.Tensor, node_features: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        phi = star_mean(error, edge_index, node_features.shape[1])
        at_tail = error - gather_nodes(phi, edge_index[:, 0])
        at_head = error - gather_nodes(phi, edge_index[:, 1])
        return 0.5 * (at_tail.abs().mean() + at_head.abs().mean())


class GradientConsistency(MeshLoss):
    """Mean over edges of ``|phi_head - phi_tail| / length``, phi the node mean of the error."""

    def measure(self, error: torch.Tensor, node_features: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        phi = star_mean(error, edge_index, node_features.shape[1])
        difference = gather_nodes(phi, edge_index[:, 1]) - gather_nodes(phi, edge_index[:, 0])
        return (difference / self.lengths(node_features, edge_index)).abs().mean()


class Curvature(MeshLoss):
    """Mean over nodes of ``|mean over neighbours m of (phi_m - phi_n) / length²|``, phi the node mean of the error."""

    def measure(self, error: torch.Tensor, node_features: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        count = node_features.shape[1]
        tail, head = edge_index[:, 0], edge_index[:, 1]
        phi = star_mean(error, edge_index, count)
        inverse_square = self.lengths(node_features, edge_index).pow(-2)
        slope = (gather_nodes(phi, head) - gather_nodes(phi, tail)) * inverse_square  # seen from the tail; minus from the head
        total = scatter_to_nodes(slope, tail, count) - scatter_to_nodes(slope, head, count)
        ones = slope.new_ones((*slope.shape[:2], 1))
        degree = scatter_to_nodes(ones, tail, count) + scatter_to_nodes(ones, head, count)
        return (total / degree.clamp_min(1.0)).abs().mean()


class RelativeL1Error(Metric):
    """Mean of ``|prediction - target| / (|target| + eps)`` over every element seen."""

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    def __init__(self, eps: float = 1e-8, **kwargs: Any):
        super().__init__(**kwargs)
        self.eps = eps
        self.add_state("relative_error", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Add the relative errors of a batch."""
        target = target.double()
        self.relative_error += ((preds.double() - target).abs() / (target.abs() + self.eps)).sum()
        self.count += target.numel()

    def compute(self) -> torch.Tensor:
        """Sum of relative errors / number of elements."""
        return (self.relative_error / self.count).float()
