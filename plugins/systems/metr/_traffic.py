"""Synthetic road-sensor speeds with the structure of METR-LA.

``num_nodes`` sensors sit at random points of a unit square; each is linked to its
nearest neighbours, and traffic flows along those links. Speeds (mph) are a
free-flow speed per sensor minus

- daily rush-hour dips (morning and evening, sensor-specific depth and timing),
  lighter on weekends (weekly periodicity);
- incidents: random drops at one sensor that spread to its neighbours hop by hop,
  later and weaker with each hop, and recover slowly;
- AR(1) noise.

Readings are then dropped at random (``missing``) and in occasional outage blocks, and
stored as 0, as METR-LA stores missing readings.
"""

from __future__ import annotations

import numpy as np

NEIGHBOURS = 3
"""Each sensor links to this many nearest sensors."""


def sensor_graph(num_nodes: int, rng: np.random.Generator) -> np.ndarray:
    """A symmetric 0/1 adjacency [N, N] linking each random sensor to its nearest neighbours."""
    points = rng.random((num_nodes, 2))
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    adjacency = np.zeros((num_nodes, num_nodes))
    nearest = np.argsort(distance, axis=1)[:, : min(NEIGHBOURS, num_nodes - 1)]
    adjacency[np.arange(num_nodes)[:, None], nearest] = 1.0
    return np.maximum(adjacency, adjacency.T)


def hop_distances(adjacency: np.ndarray) -> np.ndarray:
    """Shortest hop counts [N, N] between sensors (a large number where unreachable)."""
    count = len(adjacency)
    hops = np.full((count, count), 10**6)
    np.fill_diagonal(hops, 0)
    frontier = np.eye(count, dtype=bool)
    for hop in range(1, count):
        frontier = (frontier.astype(float) @ adjacency > 0) & (hops > hop)
        if not frontier.any():
            break
        hops[frontier] = hop
    return hops


def speeds(num_nodes: int, steps: int, interval_minutes: int, missing: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Speed readings [steps, num_nodes] as float32 (0 = missing) and the sensor adjacency."""
    adjacency = sensor_graph(num_nodes, rng)
    hops = hop_distances(adjacency)
    minutes = np.arange(steps) * interval_minutes
    hour = (minutes / 60.0) % 24.0
    weekend = ((minutes // (24 * 60)) % 7 >= 5)[:, None]

    free_flow = rng.uniform(55.0, 70.0, num_nodes)
    morning, evening = rng.uniform(5.0, 30.0, num_nodes), rng.uniform(5.0, 30.0, num_nodes)
    peak_am, peak_pm = rng.normal(8.0, 0.4, num_nodes), rng.normal(17.5, 0.5, num_nodes)
    dip = morning * np.exp(-0.5 * ((hour[:, None] - peak_am) / 1.0) ** 2)
    dip += evening * np.exp(-0.5 * ((hour[:, None] - peak_pm) / 1.3) ** 2)
    speed = free_flow - dip * np.where(weekend, 0.3, 1.0)

    # incidents: a drop at one sensor spreading along the graph, delayed and weaker per hop
    per_step = interval_minutes / 60.0
    incident = np.zeros_like(speed)
    for _ in range(rng.poisson(0.5 * steps * per_step / 24.0 * num_nodes)):
        start, origin = rng.integers(0, steps), rng.integers(0, num_nodes)
        depth, duration = rng.uniform(10.0, 35.0), rng.uniform(0.3, 2.0) / per_step
        for node in np.flatnonzero(hops[origin] <= 3):
            hop = hops[origin, node]
            onset = start + int(hop * rng.uniform(1.0, 3.0))
            span = np.arange(onset, min(steps, onset + int(duration * 2.5) + 1))
            shape = np.exp(-np.maximum(span - onset - duration, 0.0) / (0.5 * duration))
            incident[span, node] = np.maximum(incident[span, node], depth * 0.55**hop * shape)
    speed -= incident

    noise = np.zeros_like(speed)
    shocks = rng.normal(0.0, 1.2, speed.shape)
    for step in range(1, steps):
        noise[step] = 0.8 * noise[step - 1] + shocks[step]
    speed = np.clip(speed + noise, 3.0, 75.0)

    dropped = rng.random(speed.shape) < missing
    for _ in range(rng.poisson(steps / 2000.0 * num_nodes * missing / 0.05)):  # sensor outages
        node, start = rng.integers(0, num_nodes), rng.integers(0, steps)
        dropped[start : start + rng.integers(6, 60), node] = True
    speed[dropped] = 0.0
    return speed.astype(np.float32), adjacency.astype(np.float32)


def split_lengths(days: int, history: int, horizon: int, interval_minutes: int, val_fraction: float) -> tuple[int, int, int, int]:
    """(train steps, val steps, train windows, val windows) of a chronological split.

    The series is cut in time first and each part windowed on its own, so no training
    window sees a reading of the validation period.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), found {val_fraction}")
    if (24 * 60) % interval_minutes:
        raise ValueError(f"interval_minutes must divide a day (1440 minutes), found {interval_minutes}")
    steps = days * (24 * 60) // interval_minutes
    val_steps = int(round(steps * val_fraction))
    train_steps = steps - val_steps
    window = history + horizon
    train_windows, val_windows = train_steps - window + 1, val_steps - window + 1
    if train_windows < 1 or val_windows < 1:
        raise ValueError(
            f"{days} days at {interval_minutes}-minute intervals split {1 - val_fraction:.0%}/{val_fraction:.0%} "
            f"leave {train_steps}/{val_steps} readings, too few for windows of {window}"
        )
    return train_steps, val_steps, train_windows, val_windows


def windows(series: np.ndarray, history: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Sliding (history -> horizon) windows of a series [T, N]: [W, history, N] and [W, horizon, N]."""
    view = np.lib.stride_tricks.sliding_window_view(series, history + horizon, axis=0)  # [W, N, window]
    view = view.transpose(0, 2, 1)
    return np.ascontiguousarray(view[:, :history]), np.ascontiguousarray(view[:, history:])
