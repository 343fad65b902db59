"""Seed 001's mesh edge-GNN system as built-in pieces.

- dataset ``mesh_fields``: a diffusion problem solved by finite elements on random
  triangulations; inputs ``(node_features, edge_features, edge_index)``, per-edge targets;
- model ``mesh_gnn``: an encode-process-decode message-passing GNN over the edges;
- losses ``smoothness``, ``gradient_consistency``, ``curvature``: mesh operators of the
  prediction against the target. They set ``needs_inputs = True``: the engine calls
  them as ``loss(prediction, target, inputs)``;
- metric ``relative_l1``: mean ``|prediction - target| / (|target| + eps)``.

The heavy code lives in ``_data``, ``_network``, ``_ops`` and ``_losses`` and is imported
only when a factory is called.
"""

from stagedsl import hookimpl

NODE_IN = 6
"""Node features of `mesh_fields` without Fourier features (x, y, source, conductivity, boundary, boundary_value)."""
EDGE_IN = 3
"""Edge features of `mesh_fields` (length, dir_x, dir_y)."""


# -- dataset --------------------------------------------------------------------------
def mesh_fields_sizes(
    n_train: int = 128,
    n_val: int = 32,
    nodes_per_side: int = 8,
    targets: int = 3,
    seed: int = 0,
    jitter: float = 0.2,
    fourier_features: int = 0,
) -> dict:
    """Split lengths of `mesh_fields` (nothing solved)."""
    from stagedsl_plugins.systems.mesh._data import check_arguments

    check_arguments(n_train, n_val, nodes_per_side, targets, jitter, fourier_features)
    return {"train": n_train, "val": n_val} if n_val else {"train": n_train}


def mesh_fields(
    n_train: int = 128,
    n_val: int = 32,
    nodes_per_side: int = 8,
    targets: int = 3,
    seed: int = 0,
    jitter: float = 0.2,
    fourier_features: int = 0,
):
    """-div(kappa grad u) = f solved by P1 FEM on random triangulations: (nodes, edges, edge_index) -> [E, targets] edge values.

    Each sample is a ``nodes_per_side²``-node grid on the unit square, jittered by up to
    `jitter` grid spacings, each cell split along a random diagonal (``E = 2n(n-1) +
    (n-1)²`` edges). Inputs ``(node_features [N, 6 + 2 * fourier_features], edge_features
    [E, 3], edge_index [2, E] int64)``; targets per edge, the first `targets` of
    potential difference, gradient along the edge, dual-face flux, mean potential.
    Features and targets are standardised with the training split's statistics, which
    ``stats`` holds as lists (``node_mean``/``node_std``, ``edge_mean``/``edge_std``,
    ``target_mean``/``target_std``) with the feature names. Train and validation meshes
    come from independent streams of `seed`.
    """
    from stagedsl_plugins.systems.mesh._data import build_splits

    return build_splits(n_train, n_val, nodes_per_side, targets, seed, jitter, fourier_features)


# -- model ----------------------------------------------------------------------------
def mesh_gnn(node_in: int = NODE_IN, edge_in: int = EDGE_IN, hidden: int = 32, layers: int = 3, targets: int = 3, dropout: float = 0.0):
    """Edge GNN: node_encoder, edge_encoder -> processor (message-passing layers) -> edge_decoder; [B, E, targets]."""
    from stagedsl_plugins.systems.mesh._network import MeshGNN

    return MeshGNN(node_in, edge_in, hidden, layers, targets, dropout)


# -- losses ---------------------------------------------------------------------------
def smoothness():
    """Mean |error of an edge - mean error of the edges sharing its node| (needs_inputs: called with the mesh)."""
    from stagedsl_plugins.systems.mesh._losses import Smoothness

    return Smoothness()


def gradient_consistency(coordinates: tuple[int, int] = (0, 1)):
    """Mean |finite-difference gradient along each edge| of the node-averaged error (needs_inputs: called with the mesh)."""
    from stagedsl_plugins.systems.mesh._losses import GradientConsistency

    return GradientConsistency(coordinates)


def curvature(coordinates: tuple[int, int] = (0, 1)):
    """Mean |second difference (graph Laplacian / length²)| of the node-averaged error (needs_inputs: called with the mesh)."""
    from stagedsl_plugins.systems.mesh._losses import Curvature

    return Curvature(coordinates)


# -- metric ---------------------------------------------------------------------------
def relative_l1(eps: float = 1e-8):
    """Mean of |prediction - target| / (|target| + eps) over every element."""
    from stagedsl_plugins.systems.mesh._losses import RelativeL1Error

    return RelativeL1Error(eps)


@hookimpl
def register_datasets(register):
    """Register `mesh_fields` with its `sizes` function."""
    register("mesh_fields", mesh_fields, sizes=mesh_fields_sizes)


@hookimpl
def register_models(register):
    """Register `mesh_gnn`."""
    register("mesh_gnn", mesh_gnn)


@hookimpl
def register_losses(register):
    """Register the mesh losses (each needs the batch's inputs)."""
    register("smoothness", smoothness)
    register("gradient_consistency", gradient_consistency)
    register("curvature", curvature)


@hookimpl
def register_metrics(register):
    """Register the `relative_l1` metric."""
    register("relative_l1", relative_l1, mode="min")
