"""Random 2D triangulations with a diffusion problem solved on each (the `mesh_fields` dataset).

A sample is a jittered ``n x n`` grid on the unit square whose cells are split into two
triangles along a random diagonal. Every sample has the same node count ``N = n²`` and
edge count ``E = 2n(n-1) + (n-1)²``, so batches are plain tensors; edges keep a fixed
*position* (row-major horizontal edges, then vertical ones, then one diagonal per cell)
and point right / up (a flipped diagonal points up-left), whatever the flips.

On each mesh the P1 finite-element system of

    -div(kappa grad u) = f   in the unit square,   u = g   on its boundary

is solved exactly (dense LU, batched): ``K u = M f`` at interior nodes, with ``K`` the
stiffness matrix (cotangent weights times kappa at the triangle's centroid) and ``M``
the lumped mass (a third of the area of each triangle at a node). The conductivity
kappa is a smooth random field, the source f a few Gaussian bumps, g a random plane.

Per-edge targets, for an edge ``i -> j`` of length ``l``:

- ``potential_difference``: ``u_j - u_i``;
- ``gradient``: ``(u_j - u_i) / l``, the directional derivative along the edge;
- ``flux``: ``w_ij (u_i - u_j)`` with ``w_ij = -K_ij``, the finite-volume flux from i to j
  through the dual face of the edge. At an interior node the outgoing fluxes sum to
  ``(M f)_n``: the discrete conservation law.
- ``potential_mean``: ``(u_i + u_j) / 2``.

Node features: ``x, y, source, conductivity, boundary, boundary_value`` (the last is g on
the boundary, 0 inside), then ``2 * fourier_features`` random Fourier features of the
coordinates (seed 001's Fourier feature mapper). Edge features: ``length, dir_x, dir_y``.
"""

from __future__ import annotations

import numpy as np

NODE_FEATURES = ("x", "y", "source", "conductivity", "boundary", "boundary_value")
EDGE_FEATURES = ("length", "dir_x", "dir_y")
TARGETS = ("potential_difference", "gradient", "flux", "potential_mean")
WAVES = 3
"""Cosine waves in the log-conductivity of a sample."""
BUMPS = 4
"""Gaussian bumps in the source of a sample."""
FOURIER_STREAM = 2
"""Random stream of the Fourier frequencies (0 and 1 draw the train and validation meshes)."""
CHUNK = 256
"""Samples generated at once (the dense stiffness matrices of a chunk are CHUNK x N x N)."""
FOURIER_SCALE = 2.0
"""Standard deviation of the random Fourier frequencies (cycles per unit length)."""


# -- topology -------------------------------------------------------------------------
def counts(nodes_per_side: int) -> tuple[int, int]:
    """``(N, E)``: nodes and edges of every mesh with `nodes_per_side` nodes per side."""
    n = nodes_per_side
    return n * n, 2 * n * (n - 1) + (n - 1) ** 2


def grid_topology(nodes_per_side: int, flips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``[S, 2, E]`` and triangles ``[S, 2(n-1)², 3]`` (counter-clockwise) of the meshes.

    `flips` is a boolean ``[S, (n-1)²]``: False splits cell (i, j) along its ↗ diagonal
    (lower-left to upper-right), True along its ↖ one. Node ``(i, j)`` (column i, row j)
    has index ``j * n + i``.
    """
    n = nodes_per_side
    samples = flips.shape[0]
    i, j = np.meshgrid(np.arange(n - 1), np.arange(n - 1), indexing="xy")
    a = (j * n + i).ravel()  # lower-left corner of each cell, row-major
    b, c, d = a + 1, a + n + 1, a + n  # lower-right, upper-right, upper-left

    rows = np.arange(n)[:, None] * n + np.arange(n - 1)[None, :]
    horizontal = np.stack([rows.ravel(), rows.ravel() + 1])  # [2, n(n-1)], pointing +x
    columns = np.arange(n - 1)[:, None] * n + np.arange(n)[None, :]
    vertical = np.stack([columns.ravel(), columns.ravel() + n])  # [2, n(n-1)], pointing +y
    fixed = np.concatenate([horizontal, vertical], axis=1)

    flip = flips.astype(bool)
    diagonal = np.stack([np.where(flip, b, a), np.where(flip, d, c)], axis=1)  # [S, 2, cells]
    edges = np.concatenate([np.broadcast_to(fixed, (samples, *fixed.shape)), diagonal], axis=2)

    first = np.where(flip[..., None], np.stack([a, b, d], 1), np.stack([a, b, c], 1))
    second = np.where(flip[..., None], np.stack([b, c, d], 1), np.stack([a, c, d], 1))
    triangles = np.concatenate([first, second], axis=1)
    return edges.astype(np.int64), triangles.astype(np.int64)


def boundary_mask(nodes_per_side: int) -> np.ndarray:
    """Boolean ``[N]``: nodes on the square's boundary."""
    n = nodes_per_side
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    return ((i == 0) | (j == 0) | (i == n - 1) | (j == n - 1)).ravel()


def jittered_points(nodes_per_side: int, samples: int, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Grid points ``[S, N, 2]`` moved by up to ``jitter * h`` per axis; boundary nodes slide along the boundary only.

    With ``jitter < 1/4`` every triangle of either diagonal keeps a positive area (at
    least ``(1 - 4 jitter) h² / 2``; the worst case moves the three corners apart by
    ``jitter * h`` on both axes).
    """
    n = nodes_per_side
    h = 1.0 / (n - 1)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="xy")
    base = np.stack([i.ravel(), j.ravel()], axis=1) * h
    shift = rng.uniform(-jitter * h, jitter * h, size=(samples, n * n, 2))
    on_x_side = ((i == 0) | (i == n - 1)).ravel()  # x fixed on the left and right sides
    on_y_side = ((j == 0) | (j == n - 1)).ravel()
    shift[:, on_x_side, 0] = 0.0
    shift[:, on_y_side, 1] = 0.0
    return base[None] + shift


# -- finite elements ------------------------------------------------------------------
def triangle_geometry(points: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signed areas ``[S, T]`` and barycentric gradients ``[S, T, 3, 2]`` of every triangle."""
    corners = np.take_along_axis(points[:, None, :, :], triangles[..., None], axis=2)  # [S, T, 3, 2]
    p0, p1, p2 = corners[:, :, 0], corners[:, :, 1], corners[:, :, 2]
    e1, e2 = p1 - p0, p2 - p0
    area = 0.5 * (e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0])
    opposite = np.stack([p2 - p1, p0 - p2, p1 - p0], axis=2)  # edge opposite each corner
    # grad(lambda_k) = rot90(opposite_k) / (2A), rot90(x, y) = (-y, x) for counter-clockwise triangles
    gradients = np.stack([-opposite[..., 1], opposite[..., 0]], axis=-1) / (2.0 * area[..., None, None])
    return area, gradients


def stiffness(points: np.ndarray, triangles: np.ndarray, kappa_triangle: np.ndarray) -> np.ndarray:
    """Dense P1 stiffness matrices ``[S, N, N]`` of ``-div(kappa grad u)``, kappa constant per triangle."""
    samples, nodes = points.shape[:2]
    area, gradients = triangle_geometry(points, triangles)
    local = np.einsum("stad,stbd->stab", gradients, gradients) * (kappa_triangle * area)[..., None, None]
    matrix = np.zeros((samples, nodes * nodes))
    flat = triangles[..., :, None] * nodes + triangles[..., None, :]  # [S, T, 3, 3]
    offsets = (np.arange(samples) * nodes * nodes)[:, None, None, None]
    np.add.at(matrix.reshape(-1), (flat + offsets).ravel(), local.ravel())
    return matrix.reshape(samples, nodes, nodes)


def lumped_mass(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Lumped mass ``[S, N]``: a third of the area of every triangle touching the node."""
    samples, nodes = points.shape[:2]
    area, _ = triangle_geometry(points, triangles)
    mass = np.zeros(samples * nodes)
    offsets = (np.arange(samples) * nodes)[:, None, None]
    np.add.at(mass, (triangles + offsets).ravel(), np.repeat(area / 3.0, 3, axis=1).ravel())
    return mass.reshape(samples, nodes)


def solve_dirichlet(matrix: np.ndarray, load: np.ndarray, boundary: np.ndarray, boundary_values: np.ndarray) -> np.ndarray:
    """``u [S, N]`` with ``u = boundary_values`` on `boundary` and ``(K u)_n = load_n`` at every other node."""
    inner = ~boundary
    u = np.where(boundary[None], boundary_values, 0.0)
    rhs = load[:, inner] - np.einsum("sib,sb->si", matrix[:, inner][:, :, boundary], u[:, boundary])
    import torch  # its batched LU is several times faster than numpy's loop of small solves

    system = torch.from_numpy(np.ascontiguousarray(matrix[:, inner][:, :, inner]))
    u[:, inner] = torch.linalg.solve(system, torch.from_numpy(rhs)[..., None])[..., 0].numpy()
    return u


# -- random coefficients --------------------------------------------------------------
def _conductivity(xy: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """``exp(sum_k a_k cos(2pi k.x + phase_k))``: a smooth positive field at points ``[S, P, 2]``."""
    amplitude, kx, ky, phase = (waves[..., c][:, None, :] for c in range(4))
    angle = 2 * np.pi * (kx * xy[..., 0:1] + ky * xy[..., 1:2]) + phase
    return np.exp((amplitude * np.cos(angle)).sum(-1))


def _source(xy: np.ndarray, bumps: np.ndarray) -> np.ndarray:
    """Sum of Gaussian bumps ``a exp(-|x - c|² / 2w²)`` at points ``[S, P, 2]``."""
    amplitude, cx, cy, width = (bumps[..., c][:, None, :] for c in range(4))
    distance2 = (xy[..., 0:1] - cx) ** 2 + (xy[..., 1:2] - cy) ** 2
    return (amplitude * np.exp(-distance2 / (2 * width**2))).sum(-1)


def _coefficients(samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random conductivity waves ``[S, WAVES, 4]``, source bumps ``[S, BUMPS, 4]`` and boundary planes ``[S, 3]``."""
    waves = np.stack(
        [
            rng.uniform(0.1, 0.5, (samples, WAVES)),  # amplitude of log kappa
            rng.normal(0.0, 1.0, (samples, WAVES)),  # wave vector, cycles per unit length
            rng.normal(0.0, 1.0, (samples, WAVES)),
            rng.uniform(0.0, 2 * np.pi, (samples, WAVES)),  # phase
        ],
        axis=-1,
    )
    bumps = np.stack(
        [
            rng.choice([-1.0, 1.0], (samples, BUMPS)) * rng.uniform(5.0, 20.0, (samples, BUMPS)),  # amplitude
            rng.uniform(0.15, 0.85, (samples, BUMPS)),  # centre
            rng.uniform(0.15, 0.85, (samples, BUMPS)),
            rng.uniform(0.08, 0.2, (samples, BUMPS)),  # width
        ],
        axis=-1,
    )
    plane = rng.normal(0.0, 0.5, (samples, 3))  # g = c0 + c1 x + c2 y
    return waves, bumps, plane


def generate(samples: int, nodes_per_side: int, jitter: float, rng: np.random.Generator) -> dict:
    """`samples` meshes with their solved fields, unnormalised, as float64 / int64 arrays."""
    n = nodes_per_side
    points = jittered_points(n, samples, jitter, rng)
    edges, triangles = grid_topology(n, rng.random((samples, (n - 1) ** 2)) < 0.5)

    waves, bumps, plane = _coefficients(samples, rng)

    corners = np.take_along_axis(points[:, None, :, :], triangles[..., None], axis=2)
    kappa_triangle = _conductivity(corners.mean(axis=2), waves)
    kappa = _conductivity(points, waves)
    source = _source(points, bumps)
    boundary = boundary_mask(n)
    g = plane[:, 0:1] + plane[:, 1:2] * points[..., 0] + plane[:, 2:3] * points[..., 1]

    matrix = stiffness(points, triangles, kappa_triangle)
    mass = lumped_mass(points, triangles)
    u = solve_dirichlet(matrix, mass * source, boundary, g)

    tail, head = edges[:, 0], edges[:, 1]
    delta = np.take_along_axis(points, head[..., None], 1) - np.take_along_axis(points, tail[..., None], 1)
    length = np.linalg.norm(delta, axis=-1)
    u_tail, u_head = np.take_along_axis(u, tail, 1), np.take_along_axis(u, head, 1)
    weight = -np.take_along_axis(matrix.reshape(samples, -1), tail * n * n + head, 1)  # w_ij = -K_ij
    targets = np.stack([u_head - u_tail, (u_head - u_tail) / length, weight * (u_tail - u_head), 0.5 * (u_tail + u_head)], axis=-1)

    flag = np.broadcast_to(boundary, (samples, n * n)).astype(np.float64)
    nodes = np.stack([points[..., 0], points[..., 1], source, kappa, flag, g * flag], axis=-1)
    edge_features = np.concatenate([length[..., None], delta / length[..., None]], axis=-1)
    return {
        "points": points, "triangles": triangles, "edges": edges, "kappa_triangle": kappa_triangle,
        "source": source, "boundary": boundary, "boundary_values": g, "u": u, "mass": mass,
        "stiffness": matrix, "node_features": nodes, "edge_features": edge_features, "targets": targets,
    }  # fmt: skip


def fourier_frequencies(count: int, seed: int) -> np.ndarray:
    """``[count, 2]`` random frequencies (cycles per unit length) of the coordinates' Fourier features."""
    return np.random.default_rng([seed, FOURIER_STREAM]).normal(0.0, FOURIER_SCALE, (count, 2))


def fourier_encoding(points: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """``[..., 2F]``: ``sin(2pi B x)`` then ``cos(2pi B x)`` for frequencies B ``[F, 2]``."""
    angle = 2 * np.pi * points @ frequencies.T
    return np.concatenate([np.sin(angle), np.cos(angle)], axis=-1)


# -- normalisation --------------------------------------------------------------------
def feature_stats(values: np.ndarray, isotropic: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of the last axis over all others; the first `isotropic` features share one std.

    Coordinates share a std so that lengths measured in normalised coordinates are the
    true lengths times one constant (angles are kept). A constant feature gets std 1.
    """
    flat = values.reshape(-1, values.shape[-1])
    mean, std = flat.mean(0), flat.std(0)
    if isotropic:
        std[:isotropic] = np.sqrt(((flat[:, :isotropic] - mean[:isotropic]) ** 2).mean())
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std


def build_splits(n_train: int, n_val: int, nodes_per_side: int, targets: int, seed: int, jitter: float, fourier_features: int):
    """The `mesh_fields` dataset: normalised `TensorSplit`s and the statistics that undo it."""
    import torch

    from stagedsl import DataSplits, TensorSplit

    check_arguments(n_train, n_val, nodes_per_side, targets, jitter, fourier_features)
    counts_by_split = {"train": n_train, "val": n_val} if n_val else {"train": n_train}
    frequencies = fourier_frequencies(fourier_features, seed)
    raw = {}
    for index, (split, count) in enumerate(counts_by_split.items()):
        rng = np.random.default_rng([seed, index])
        parts = []
        for start in range(0, count, CHUNK):  # bounded memory: the dense stiffness matrices are S x N x N
            sample = generate(min(CHUNK, count - start), nodes_per_side, jitter, rng)
            nodes = sample["node_features"]
            if fourier_features:
                nodes = np.concatenate([nodes, fourier_encoding(sample["points"], frequencies)], axis=-1)
            parts.append((nodes, sample["edge_features"], sample["edges"], sample["targets"][..., :targets]))
        raw[split] = tuple(np.concatenate(arrays) for arrays in zip(*parts))

    node_mean, node_std = feature_stats(raw["train"][0], isotropic=2)
    edge_mean, edge_std = feature_stats(raw["train"][1])
    target_mean, target_std = feature_stats(raw["train"][3])
    splits = {}
    for split, (nodes, edge_features, edges, target) in raw.items():
        inputs = (
            torch.from_numpy(((nodes - node_mean) / node_std).astype(np.float32)),
            torch.from_numpy(((edge_features - edge_mean) / edge_std).astype(np.float32)),
            torch.from_numpy(np.ascontiguousarray(edges)),
        )
        splits[split] = TensorSplit(inputs, torch.from_numpy(((target - target_mean) / target_std).astype(np.float32)))

    node_names = list(NODE_FEATURES) + [f"fourier_{kind}_{k}" for kind in ("sin", "cos") for k in range(fourier_features)]
    nodes_total, edges_total = counts(nodes_per_side)
    stats = {
        "inputs": ["node_features", "edge_features", "edge_index"],
        "node_features": node_names,
        "edge_features": list(EDGE_FEATURES),
        "targets": list(TARGETS[:targets]),
        "node_mean": node_mean.tolist(),
        "node_std": node_std.tolist(),
        "edge_mean": edge_mean.tolist(),
        "edge_std": edge_std.tolist(),
        "target_mean": target_mean.tolist(),
        "target_std": target_std.tolist(),
        "fourier_frequencies": frequencies.tolist(),
        "nodes": nodes_total,
        "edges": edges_total,
        "nodes_per_side": nodes_per_side,
        "normalisation": "(value - mean) / std per feature over the training split; x and y share one std",
        "problem": "-div(kappa grad u) = f in the unit square, u = g on the boundary; P1 finite elements, lumped mass",
    }
    return DataSplits(train=splits["train"], val=splits.get("val"), stats=stats)


def check_arguments(n_train: int, n_val: int, nodes_per_side: int, targets: int, jitter: float, fourier_features: int) -> None:
    """Raise ValueError for arguments `mesh_fields` cannot build (shared with its `sizes`)."""
    if n_train < 1:
        raise ValueError(f"n_train must be at least 1, found {n_train}")
    if n_val < 0:
        raise ValueError(f"n_val cannot be negative, found {n_val}")
    if nodes_per_side < 3:
        raise ValueError(f"nodes_per_side must be at least 3 (one interior node), found {nodes_per_side}")
    if not 1 <= targets <= len(TARGETS):
        raise ValueError(f"targets must be between 1 and {len(TARGETS)} ({', '.join(TARGETS)}), found {targets}")
    if not 0.0 <= jitter < 0.25:
        raise ValueError(f"jitter must be in [0, 0.25) of the grid spacing so every triangle keeps a positive area, found {jitter}")
    if fourier_features < 0:
        raise ValueError(f"fourier_features cannot be negative, found {fourier_features}")
