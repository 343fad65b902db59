"""The built-in ensembles on arrays small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest

from stagedsl import EnsembleTask

BINARY = EnsembleTask("classification", classes=2, width=2, seed=0)
REGRESSION = EnsembleTask("regression", classes=0, width=1, seed=0)


def _build(registry, name, **args):
    return registry.get("ensembles", name).factory(**args)


def test_mean_is_the_hand_computed_average(builtin_registry):
    # two members, three samples, P(class 1) = 0.9, 0.2, 0.6 and 0.5, 0.4, 0.2
    a = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]])
    b = np.array([[0.5, 0.5], [0.6, 0.4], [0.8, 0.2]])
    mean = _build(builtin_registry, "mean")
    mean.fit(np.stack([a, b]), np.array([1, 0, 1]), BINARY)
    np.testing.assert_allclose(mean.predict(np.stack([a, b])), [[0.3, 0.7], [0.7, 0.3], [0.6, 0.4]])
    assert mean.needs_fit is False and list(mean.weights) == [0.5, 0.5]


def test_given_weights_are_normalised(builtin_registry):
    outputs = np.array([[[1.0]], [[3.0]]])
    weighted = _build(builtin_registry, "weighted", weights=[1, 3])
    weighted.fit(outputs, np.array([[0.0]]), REGRESSION)
    np.testing.assert_allclose(weighted.predict(outputs), [[2.5]])  # 0.25 * 1 + 0.75 * 3
    with pytest.raises(ValueError):
        _build(builtin_registry, "weighted", weights=[-1, 1])


def test_fitted_weights_favour_the_better_member(builtin_registry):
    target = np.array([0.0, 1.0, 2.0, 3.0])[:, None]
    good, bad = target + 0.1, target[::-1].copy()
    weighted = _build(builtin_registry, "weighted")
    weighted.fit(np.stack([bad, good]), target, REGRESSION)
    assert weighted.weights[1] > 0.95 and abs(weighted.weights.sum() - 1) < 1e-12


def test_greedy_matches_the_hand_worked_selection(builtin_registry):
    """Caruana's selection with replacement, mean squared error, y = (1, 0, 1):

    members A = (1, 1, 1), B = (0, 0, 0), C = (1, 0, 1/4). Each round adds the member
    whose addition gives the bag's average the lowest MSE:

    - round 1: A 1/3, B 2/3, C 3/16          -> C
    - round 2 (bag C): A 25/192, B 65/192, C 3/16   -> A
    - round 3 (bag C, A): A 73/432, B 3/16, C 13/108 -> C
    - round 4 (bag C, A, C): A 25/192, B 11/64, C 97/768 -> C
    - round 5 (bag C, A, C, C): A 29/240, B 67/400, C 2/15 -> A

    so the weights are A 2/5, B 0, C 3/5.
    """
    members = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.25]])[:, :, None]
    target = np.array([1.0, 0.0, 1.0])[:, None]
    greedy = _build(builtin_registry, "greedy", rounds=5, metric="mse")
    greedy.fit(members, target, REGRESSION)
    assert greedy.chosen == [2, 0, 2, 2, 0]
    np.testing.assert_allclose(greedy.losses, [3 / 16, 25 / 192, 13 / 108, 97 / 768, 29 / 240])
    np.testing.assert_allclose(greedy.weights, [0.4, 0.0, 0.6])
    np.testing.assert_allclose(greedy.predict(members), 0.4 * members[0] + 0.6 * members[2])


def test_greedy_breaks_ties_towards_the_earlier_member(builtin_registry):
    same = np.array([[[0.2, 0.8]], [[0.2, 0.8]]])
    greedy = _build(builtin_registry, "greedy", rounds=3)
    greedy.fit(same, np.array([1]), BINARY)
    assert greedy.chosen == [0, 0, 0]


def test_vote_takes_the_majority_and_breaks_ties_by_probability(builtin_registry):
    members = np.array([
        [[0.4, 0.6], [0.9, 0.1]],
        [[0.45, 0.55], [0.45, 0.55]],
        [[0.9, 0.1], [0.8, 0.2]],
        [[0.9, 0.1], [0.4, 0.6]],
    ])
    vote = _build(builtin_registry, "vote")
    vote.fit(members, np.array([0, 0]), BINARY)
    combined = vote.predict(members)
    np.testing.assert_allclose(combined.sum(axis=1), 1.0)
    assert combined.argmax(axis=1).tolist() == [0, 0]  # sample 0: 2-2 tie, mean P(0) = 0.6625 > 0.3375
    with pytest.raises(ValueError):
        vote.fit(members[:, :, :1], np.array([0.0, 1.0]), REGRESSION)


def test_stacking_with_a_meta_learner_learns_which_member_to_trust(builtin_registry):
    """Member A is right (mildly) where member B is confidently wrong, and the other way
    round: each alone and their mean are wrong half the time or more; a meta-learner on
    both outputs is right."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    group = rng.integers(0, 2, 400)
    mild = np.where(y == 1, 0.7, 0.3) + rng.normal(0, 0.02, 400)
    wrong = np.where(y == 1, 0.05, 0.95) + rng.normal(0, 0.02, 400)
    p_a, p_b = np.where(group == 0, mild, wrong), np.where(group == 0, wrong, mild)
    outputs = np.stack([np.stack([1 - p, p], axis=1) for p in (p_a, p_b)])
    for meta in ("logistic", "lightgbm"):
        entry = builtin_registry.get("meta_learners", meta)
        stacking = _build(builtin_registry, "stacking", meta=lambda task, entry=entry: entry.factory(task=task))
        stacking.fit(outputs[:, :300], y[:300], BINARY)
        accuracy = (stacking.predict(outputs[:, 300:]).argmax(axis=1) == y[300:]).mean()
        best_member = max((outputs[m, 300:].argmax(axis=1) == y[300:]).mean() for m in range(2))
        assert accuracy > 0.95 > 0.6 > best_member, (meta, accuracy, best_member)
