"""Training pairs from a real 2D reaction-diffusion solver (FitzHugh-Nagumo, as PDEBench's 2D diffusion-reaction).

On the periodic square [-1, 1]^2 with an ``size x size`` grid::

    du/dt = Du * lap(u) + u - u^3 - k - v
    dv/dt = Dv * lap(v) + eps * (u - v)

integrated in float32 with explicit Euler steps (``DT`` per solver step) and a
5-point Laplacian. With one
channel the system is Allen-Cahn (the ``u`` equation without ``v``). Initial conditions
are random smooth fields (low-pass filtered noise); ``v`` starts at a tenth of ``u``'s
amplitude and relaxes slowly toward ``u``, so the two channels live on clearly
different scales. Each sample starts at a random point of its own trajectory; the
input is the state then and the target the state ``dt_steps`` solver steps later.
"""

from __future__ import annotations

import numpy as np

DU, DV, K, EPS = 1e-3, 5e-3, 5e-3, 0.1
"""Diffusion coefficients, reaction offset and recovery rate of the system."""

DT = 0.05
"""Time advanced by one solver step (split into stable Euler substeps on fine grids)."""

MAX_WARMUP = 60
"""Samples start uniformly within the first MAX_WARMUP solver steps of their trajectory."""


def smooth_noise(rng: np.random.Generator, count: int, size: int, cutoff: int = 4) -> np.ndarray:
    """`count` random periodic fields [count, size, size] with wavenumbers <= `cutoff`, unit std."""
    noise = rng.standard_normal((count, size, size))
    k = np.fft.fftfreq(size, d=1.0 / size)
    keep = (np.abs(k)[:, None] <= cutoff) & (np.abs(k)[None, :] <= cutoff)
    field = np.fft.ifft2(np.fft.fft2(noise) * keep).real
    return field / field.std(axis=(1, 2), keepdims=True)


def laplacian(field: np.ndarray, dx: float) -> np.ndarray:
    """Periodic 5-point Laplacian over the last two axes."""
    return (
        np.roll(field, 1, -1) + np.roll(field, -1, -1) + np.roll(field, 1, -2) + np.roll(field, -1, -2) - 4.0 * field
    ) / (dx * dx)


def substeps(dx: float) -> int:
    """Explicit Euler substeps per solver step that keep diffusion stable on spacing `dx`."""
    stable = 0.2 * dx * dx / max(DU, DV)
    return max(1, int(np.ceil(DT / stable)))


def euler_step(state: np.ndarray, dx: float, dt: float) -> None:
    """Advance states [B, channels, H, W] in place by one explicit Euler step of `dt`."""
    u = state[:, 0]
    if state.shape[1] == 1:
        u += dt * (DU * laplacian(u, dx) + u - u * u * u)
        return
    v = state[:, 1]
    du = DU * laplacian(u, dx) + u - u * u * u - K - v
    dv = DV * laplacian(v, dx) + EPS * (u - v)
    u += dt * du
    v += dt * dv


def simulate_pairs(count: int, size: int, channels: int, dt_steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` (state at t, state at t + dt_steps) pairs as float32 arrays [count, channels, size, size]."""
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 (Allen-Cahn) or 2 (FitzHugh-Nagumo), found {channels}")
    if dt_steps < 1:
        raise ValueError(f"dt_steps must be at least 1, found {dt_steps}")
    dx = 2.0 / size
    inner = substeps(dx)
    state = np.empty((count, channels, size, size), dtype=np.float32)
    state[:, 0] = 0.5 * smooth_noise(rng, count, size)
    if channels == 2:
        state[:, 1] = 0.05 * smooth_noise(rng, count, size)
    start = rng.integers(0, MAX_WARMUP + 1, size=count)
    inputs = np.empty_like(state)
    targets = np.empty_like(state)
    for step in range(MAX_WARMUP + dt_steps + 1):
        begins = start == step
        ends = start + dt_steps == step
        inputs[begins] = state[begins]
        targets[ends] = state[ends]
        for _ in range(inner):
            euler_step(state, dx, DT / inner)
    return inputs, targets
