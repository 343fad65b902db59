"""`build_ensembles`: fit and score the ensembles of a matrix run from its cached member predictions.

For each ``[[ensemble]]``: the members its globs select that have predictions (those
that failed are listed as missing), their validation outputs as scores
``[members, samples, width]``, an `EnsembleTask`, then

- **scores**: an ensemble that learns from data (``needs_fit``) is cross-fitted over k
  seeded folds of the validation split (stratified for classification, scikit-learn's
  `StratifiedKFold` / `KFold`): for each fold a fresh ensemble is fitted on the other
  folds and predicts this one, so no sample's prediction comes from a fit that saw it.
  Its validation metrics are those of these out-of-fold predictions, with the monitored
  metric per fold (the CV score). Others are scored on the split directly;
- **the ensemble**: fitted once more on the whole validation split; it predicts the
  test split when every member has one.

Everything is deterministic from the run's seed, so `staged export --ensemble` fits the
same ensemble again instead of storing a pickled one. Results go to
``ensembles/<name>/ensemble.json`` and ``predictions.npz``; one ensemble's failure is
recorded and does not stop the others.
"""

from __future__ import annotations

import fnmatch
import time
from typing import Any, Callable, Optional, Sequence

import attrs
import numpy as np

from stagedsl.ensemble.task import EnsembleTask
from stagedsl.errors import Problem, RunError, StagedError
from stagedsl.matrix.layout import MatrixDir

Report = Callable[[str, dict], None]


@attrs.frozen
class MemberScores:
    """The selected members' scores per split, the targets, and the task."""

    names: tuple[str, ...]
    scores: dict  # split -> [members, samples, width]
    targets: dict  # split -> [samples, ...]
    task: EnsembleTask
    missing: tuple[str, ...] = ()


def select_members(patterns: Sequence[str], names: Sequence[str]) -> list[str]:
    """The members (in matrix order) matched by any of the globs."""
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def load_scores(matrix_dir: MatrixDir, names: Sequence[str], seed: int) -> MemberScores:
    """Scores of the members that have predictions; a `RunError` E704 when none has, E705 when their targets differ."""
    from stagedsl.eval.metrics import scores_of, task_of
    from stagedsl.eval.predictions import RunPredictions

    loaded, missing = {}, []
    for name in names:
        path = matrix_dir.predictions(name)
        if path.is_file():
            loaded[name] = RunPredictions.load(path)
        else:
            missing.append(name)
    if not loaded or not all("val" in p.outputs for p in loaded.values()):
        raise RunError([Problem(code="E704", message=f"no member of {', '.join(names)} has validation predictions",
                                hint="ensembles need finished members; see summary.json for why they failed, then `staged resume`")])
    first = next(iter(loaded.values()))
    task = task_of(first.outputs["val"], first.targets["val"], seed)
    splits = [s for s in ("val", "test") if all(s in p.outputs for p in loaded.values())]
    scores, targets = {}, {}
    for split in splits:
        for name, predictions in loaded.items():
            if predictions.targets[split].shape != first.targets[split].shape or not np.array_equal(predictions.targets[split], first.targets[split]):
                raise RunError([Problem(code="E705", message=f"member `{name}` was scored on other {split} samples than `{next(iter(loaded))}`",
                                        hint="an ensemble combines members evaluated on the same data: variants must not change the dataset's samples")])
        scores[split] = np.stack([scores_of(p.outputs[split], task) for p in loaded.values()])
        targets[split] = first.targets[split]
    return MemberScores(tuple(loaded), scores, targets, task, tuple(missing))


def fold_indices(target: np.ndarray, folds: int, seed: int, *, stratified: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(fit, held_out)`` index pairs of a seeded (stratified) k-fold."""
    from stagedsl import import_optional

    selection = import_optional("sklearn.model_selection", extra="ensemble", purpose="cross-fitting an ensemble")
    splitter = (selection.StratifiedKFold if stratified else selection.KFold)(n_splits=folds, shuffle=True, random_state=seed)
    labels = target if stratified else np.zeros(len(target))
    try:
        return [(fit, held) for fit, held in splitter.split(np.zeros((len(target), 1)), labels)]
    except ValueError as exc:
        raise RunError([Problem(code="E706", message=f"cannot make {folds} folds of the validation split ({len(target)} samples): {exc}",
                                hint="lower `folds`, or give the validation split more samples of each class")]) from None


def make_ensemble(registry: Any, entry: dict) -> Any:
    """A fresh ensemble object for an index entry; pieces it names (a meta-learner) are supplied as makers."""
    import inspect

    from stagedsl.spec.convert import structure_piece

    plugin = registry.get("ensembles", entry["use"])
    args = dict(entry.get("args") or {})
    for argument, kind in (plugin.meta.get("pieces") or {}).items():
        written = args.get(argument, plugin.signature().parameters.get(argument, inspect.Parameter("_", inspect.Parameter.KEYWORD_ONLY)).default)
        if isinstance(written, (str, dict)):  # the spec's piece, or the factory's default one
            piece = structure_piece(written)
            args[argument] = _maker(registry, kind, piece.use, piece.args)
    return registry.build("ensembles", entry["use"], args, at=f"ensemble `{entry['name']}`")


def _maker(registry: Any, kind: str, name: str, args: dict) -> Callable[[EnsembleTask], Any]:
    registry.get(kind, name)  # an unknown name fails here, not at the first fit

    def make(task: EnsembleTask) -> Any:
        return registry.build(kind, name, args, task=task)

    make.piece = name  # what describe() and the report name
    return make


def cross_fit(make: Callable[[], Any], scores: np.ndarray, target: np.ndarray, task: EnsembleTask,
              folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Out-of-fold predictions: each fold predicted by an ensemble fitted on the other folds only."""
    out: Optional[np.ndarray] = None
    for fit, held in folds:
        ensemble = make()
        ensemble.fit(scores[:, fit], target[fit], task)
        predicted = np.asarray(ensemble.predict(scores[:, held]), dtype=np.float64)
        if out is None:
            out = np.full((len(target), *predicted.shape[1:]), np.nan)
        out[held] = predicted
    return out


def fit_ensemble(registry: Any, entry: dict, scores: MemberScores) -> tuple[Any, dict]:
    """The ensemble fitted on the whole validation split, with its out-of-fold validation predictions and its CV."""
    from stagedsl.eval.metrics import score

    val, target, task = scores.scores["val"], scores.targets["val"], scores.task
    final = _guarded(entry, lambda: make_ensemble(registry, entry))
    cv = None
    if getattr(final, "needs_fit", True):
        folds = fold_indices(target, entry["folds"], task.seed, stratified=task.is_classification)
        oof = _guarded(entry, lambda: cross_fit(lambda: make_ensemble(registry, entry), val, target, task, folds))
        per_fold = [score(oof[held], target[held], task) for _, held in folds]
        cv = {"folds": len(folds), "per_fold": per_fold}
    _guarded(entry, lambda: final.fit(val, target, task))
    if cv is None:
        oof = np.asarray(_guarded(entry, lambda: final.predict(val)), dtype=np.float64)
    predictions = {"val": oof}
    if "test" in scores.scores:
        predictions["test"] = np.asarray(_guarded(entry, lambda: final.predict(scores.scores["test"])), dtype=np.float64)
    return final, {"predictions": predictions, "cv": cv}


def _guarded(entry: dict, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except StagedError:
        raise
    except Exception as exc:
        raise RunError(f"ensemble `{entry['name']}` (`{entry['use']}`) failed: {type(exc).__name__}: {exc}", code="E707") from exc


def build_one(matrix_dir: MatrixDir, index: dict, entry: dict, registry: Any) -> dict:
    """Fit, score and write one ensemble; its record for summary.json (``status`` failed with the error when it fails)."""
    from stagedsl.eval.metrics import monitor_of, score

    started = time.perf_counter()
    names = select_members(entry["members"], [m["name"] for m in index["members"]])
    record: dict[str, Any] = {"use": entry["use"], "args": entry.get("args") or {}, "folds": entry["folds"], "selected": names}
    try:
        scores = load_scores(matrix_dir, names, int(index.get("seed") or 0))
        final, fitted = fit_ensemble(registry, entry, scores)
    except StagedError as exc:
        record.update(status="failed", error=[{"code": p.code, "message": p.message + (f" ({p.hint})" if p.hint else "")} for p in exc.problems])
        matrix_dir.write_json(matrix_dir.ensemble_file(entry["name"], "ensemble.json"), record)
        return record
    task = scores.task
    metric = monitor_of(index.get("monitor"), task)
    record.update(status="completed", members=list(scores.names), missing=list(scores.missing), task=attrs.asdict(task),
                  metrics={split: score(p, scores.targets[split], task) for split, p in fitted["predictions"].items()})
    if fitted["cv"] is not None:
        values = [fold[metric] for fold in fitted["cv"]["per_fold"]]
        record["cv"] = {"folds": fitted["cv"]["folds"], "metric": metric, "mean": float(np.mean(values)), "std": float(np.std(values)),
                        "per_fold": values, "scored_on": "out-of-fold predictions of the validation split"}
    describe = getattr(final, "describe", None)
    record["fitted"] = _json_safe(describe()) if callable(describe) else {}
    record["seconds"] = round(time.perf_counter() - started, 3)
    arrays = {f"{split}_scores": p for split, p in fitted["predictions"].items()}
    arrays.update({f"{split}_target": scores.targets[split] for split in fitted["predictions"]})
    path = matrix_dir.ensemble_file(entry["name"], "predictions.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    matrix_dir.write_json(matrix_dir.ensemble_file(entry["name"], "ensemble.json"), record)
    return record


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def build_ensembles(run_dir: Any, *, registry: Any = None, names: Optional[Sequence[str]] = None,
                    report: Optional[Report] = None) -> dict[str, dict]:
    """Build every ensemble of the matrix run in `run_dir` (or those in `names`); their records by name."""
    if registry is None:
        from stagedsl.registry import get_registry

        registry = get_registry()
    matrix_dir = MatrixDir(run_dir)
    index = matrix_dir.read_index()
    entries = index.get("ensembles") or []
    if names:
        known = [e["name"] for e in entries]
        unknown = [n for n in names if n not in known]
        if unknown:
            from stagedsl.errors import UsageError
            from stagedsl.registry import did_you_mean

            raise UsageError([Problem(code="E708", message=f"the run has no ensemble `{n}` (ensembles: {', '.join(known) or 'none'})",
                                      hint=did_you_mean(n, known)) for n in unknown])
        entries = [e for e in entries if e["name"] in names]
    records = {}
    for entry in entries:
        records[entry["name"]] = build_one(matrix_dir, index, entry, registry)
        if report:
            report(entry["name"], records[entry["name"]])
    return records


__all__ = ["MemberScores", "build_ensembles", "build_one", "cross_fit", "fit_ensemble", "fold_indices", "load_scores",
           "make_ensemble", "select_members"]
