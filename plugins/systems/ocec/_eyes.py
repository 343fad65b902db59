"""Procedurally drawn grayscale eye crops, open (label 1) or closed (label 0).

An eye is drawn in its own rotated, scaled frame: the opening between the lids is an
ellipse whose height is the eye's *openness*; inside it the bright sclera, a dark iris
and a darker pupil (clipped by the lids); around it lid lines and lashes. A closed eye
has openness near zero, leaving a thin curved line with lashes. The label is
``openness > THRESHOLD``; a fraction of samples is drawn close to the threshold (and
low-contrast, blurred or noisy), so the task has genuinely ambiguous cases.
Everything is vectorised over the batch with numpy and deterministic given the
generator.
"""

from __future__ import annotations

import numpy as np

THRESHOLD = 0.3
"""Openness above which an eye counts as open."""


def _soft(distance: np.ndarray, sharpness: np.ndarray) -> np.ndarray:
    """Anti-aliased indicator of ``distance < 0`` (1 inside, 0 outside)."""
    return 1.0 / (1.0 + np.exp(np.clip(distance * sharpness, -30.0, 30.0)))


def _gaussian_blur(images: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Blur each image [N, H, W] with its own Gaussian sigma (separable, wrap-free)."""
    radius = 3
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets[None, :] / np.maximum(sigma[:, None], 1e-3)) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)  # [N, 2r+1]
    padded = np.pad(images, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
    size_h, size_w = images.shape[1:]
    rows = sum(weights[:, i, None, None] * padded[:, i : i + size_h, :] for i in range(2 * radius + 1))
    return sum(weights[:, i, None, None] * rows[:, :, i : i + size_w] for i in range(2 * radius + 1))


def col(values) -> np.ndarray:
    """Per-sample values [N] as [N, 1, 1], to broadcast against images [N, H, W]."""
    return np.asarray(values, dtype=np.float64)[:, None, None]


def draw_eyes(
    count: int, size: int, rng: np.random.Generator, noise: float = 0.05, hard_fraction: float = 0.25
) -> tuple[np.ndarray, np.ndarray]:
    """`count` crops as float32 [count, 1, size, size] in about [0, 1], and int64 labels [count]."""
    # openness: half open, half closed, a fraction drawn near the threshold
    open_eye = rng.random(count) < 0.5
    openness = np.where(open_eye, rng.uniform(0.38, 1.0, count), rng.uniform(0.0, 0.22, count))
    hard = rng.random(count) < hard_fraction
    openness = np.where(hard, rng.uniform(THRESHOLD - 0.12, THRESHOLD + 0.12, count), openness)
    labels = (openness > THRESHOLD).astype(np.int64)

    # pose and appearance
    centre_x = rng.normal(0.0, 0.08, count) * size
    centre_y = rng.normal(0.0, 0.08, count) * size
    half_width = rng.uniform(0.28, 0.42, count) * size
    angle = rng.normal(0.0, 0.25, count)
    skin = rng.uniform(0.35, 0.75, count)
    contrast = np.where(hard, rng.uniform(0.25, 0.6, count), rng.uniform(0.4, 1.0, count))
    gaze = rng.uniform(-0.35, 0.35, count)

    grid = np.arange(size) - (size - 1) / 2.0
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    dx, dy = xs[None] - col(centre_x), ys[None] - col(centre_y)
    cos, sin = col(np.cos(angle)), col(np.sin(angle))
    u = (cos * dx + sin * dy) / col(half_width)  # along the eye, -1..1 at the corners
    v = (-sin * dx + cos * dy) / col(half_width)  # across, positive downwards
    edge = col(half_width) * 1.2  # about one pixel of anti-aliasing

    height = col(0.55 * openness + 0.02)  # half-height of the opening, in half-widths
    sag = col(rng.uniform(0.0, 0.15, count))  # lids curve down at the corners
    centre_line = sag * u * u - sag / 2
    across = (v - centre_line) / height
    level = u * u + across * across - 1.0
    ellipse = level / (2.0 * np.sqrt(u * u + (across / height) ** 2) + 1e-6)  # ~signed distance to the lids
    opening = _soft(ellipse, edge)  # inside the lids

    iris_r, pupil_r = col(rng.uniform(0.38, 0.5, count)), col(rng.uniform(0.35, 0.5, count))
    iris_d = np.sqrt((u - col(gaze)) ** 2 + (v - centre_line) ** 2)
    iris = _soft(iris_d - iris_r, edge) * opening
    pupil = _soft(iris_d - iris_r * pupil_r, edge) * opening

    lid_line = _soft(np.abs(ellipse) - 0.045, edge) * _soft(np.abs(u) - 1.05, edge)
    upper = v < centre_line
    lashes = np.zeros_like(u)
    for position in np.linspace(-0.7, 0.7, 6):
        along = _soft(np.abs(u - position - 0.3 * (centre_line - v)) - 0.04, edge)
        reach = _soft(np.abs(v - centre_line + height + 0.12) - 0.12, edge)
        lashes = np.maximum(lashes, along * reach * upper)
    brow = _soft(np.abs(v + col(rng.uniform(0.9, 1.3, count))) - 0.1, edge) * col(rng.random(count) < 0.5)

    image = col(skin) + 0.08 * col(rng.normal(0, 1, count)) * u  # skin with a shading gradient
    image = image + col(contrast) * (
        0.4 * opening - 0.55 * iris - 0.3 * pupil - 0.45 * lid_line - 0.35 * lashes - 0.25 * brow
    )
    image = _gaussian_blur(image, np.where(hard, rng.uniform(0.6, 1.4, count), rng.uniform(0.0, 0.9, count)))
    image = image + rng.normal(0.0, 1.0, image.shape) * noise * col(rng.uniform(0.5, 1.5, count))
    return np.clip(image, 0.0, 1.0)[:, None].astype(np.float32), labels
