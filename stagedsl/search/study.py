"""The study: which trial comes next, what each trial's parameters are, and how each ended.

`OptunaStudy` keeps it in an Optuna storage (SQLite in the run directory by default,
readable by ``optuna-dashboard``; any storage URL lets processes on several machines work on
one study). `PlainGridStudy` is the grid sampler without Optuna installed: the points in
order, the trials in ``study.json``.

Asking is done under the run directory's ask lock, so processes sharing the folder never
start more trials than the study has, and never one grid point twice (the grid's points are
queued in the storage when the study is created; each ask takes the next). The sampler is
built afresh for every trial, seeded from the study's seed and the trial's number: a trial's
parameters depend only on the seed, its number and the trials finished before it, so a study
resumed after a kill asks exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Optional

import attrs

from stagedsl.errors import Problem, UsageError
from stagedsl.search.layout import COMPLETE, FAILED, PRUNED, RUNNING, SearchDir, storage_of
from stagedsl.spec.search import Axis, grid_points

FINISHED = (COMPLETE, PRUNED, FAILED)
RESULT_ATTR = "stagedsl"
"""The Optuna user attribute holding a trial's result beside its value (run_dir, reused and trained stages, time, why pruned or failed)."""


@attrs.frozen
class Ticket:
    """A trial the study handed out: its number and parameters."""

    number: int
    params: dict


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial `number` of a study seeded `seed`."""
    return int.from_bytes(hashlib.sha256(f"{seed}/trial/{number}".encode()).digest()[:4], "little")


def needs_optuna(index: dict) -> bool:
    """Whether a study needs Optuna: every sampler but the grid does, and so do a pruner and a storage URL."""
    return not (index["sampler"] == "grid" and not index.get("storage") and not index.get("pruner"))


def check_backend(index: dict) -> None:
    """A `PluginError` (E103, naming the ``search`` extra) when the study needs Optuna and it is not installed."""
    if needs_optuna(index):
        _optuna()


def open_study(search_dir: SearchDir, index: dict, *, create: bool = False):
    """The study of a search run directory: Optuna's when it is installed (or needed), else the plain grid."""
    if not needs_optuna(index) and not _has_optuna():
        return PlainGridStudy(search_dir, index)
    return OptunaStudy(search_dir, index, create=create)


def _has_optuna() -> bool:
    import importlib.util

    return importlib.util.find_spec("optuna") is not None


def _optuna():
    from stagedsl.extras import import_optional

    optuna = import_optional("optuna", extra="search", purpose="a search with the random or tpe sampler, a pruner or a storage URL")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sqlite_connector(url: str):
    """Connections to a SQLite study that wait for each other (120 s) and commit without an fsync each:
    write-ahead log, ``synchronous = NORMAL`` (a killed process loses nothing; a power cut at most the
    last trials, which a resumed study runs again)."""
    import sqlite3

    path = url[len("sqlite:///"):]

    def connect():
        connection = sqlite3.connect(path, timeout=120, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    return connect


def _encode(axis: Axis) -> tuple[list, bool]:
    """Optuna's choices of a categorical axis (JSON text for values that are not scalars) and whether they are encoded."""
    scalar = all(v is None or isinstance(v, (bool, int, float, str)) for v in axis.choices)
    return (list(axis.choices), False) if scalar else ([json.dumps(v) for v in axis.choices], True)


class OptunaStudy:
    """A study in an Optuna storage (see the module docstring)."""

    def __init__(self, search_dir: SearchDir, index: dict, *, create: bool = False):
        self.optuna = _optuna()
        self.search_dir, self.index = search_dir, index
        self.axes = [Axis.from_dict(a) for a in index["axes"]]
        self.url = storage_of(search_dir, index)
        name = index["study"]
        try:
            self.storage = self._storage(self.url)
            if create:
                self.study = self.optuna.create_study(study_name=name, storage=self.storage, direction=index["direction"],
                                                      sampler=self._sampler(0), pruner=self._pruner(), load_if_exists=True)
                if index["sampler"] == "grid" and not self.study.get_trials(deepcopy=False):
                    for point in grid_points(self.axes):  # every point, in order: `trials` says how many run
                        self.study.enqueue_trial(self._suggestable(point))
            else:
                self.study = self.optuna.load_study(study_name=name, storage=self.storage, sampler=self._sampler(0), pruner=self._pruner())
        except UsageError:
            raise
        except Exception as exc:  # a bad URL, a missing driver, an unreachable database: the storage's problem, said once
            raise UsageError([Problem(code="E804", message=f"cannot open study `{name}` in {self.url}: {type(exc).__name__}: {exc}",
                                      hint="check the storage URL; `staged search RUN_DIR` opens the study its search.json names")]) from None
        wanted = self.optuna.study.StudyDirection.MAXIMIZE if index["direction"] == "maximize" else self.optuna.study.StudyDirection.MINIMIZE
        if self.study.direction != wanted:
            raise UsageError([Problem(code="E804", message=f"study `{name}` in {self.url} already exists and {self.study.direction.name.lower()}s, "
                                      f"this search {index['direction']}s", hint="pick another run name or storage")])
        self.study_id = self.storage.get_study_id_from_name(name)

    def _storage(self, url: str):
        engine = {"creator": _sqlite_connector(url)} if url.startswith("sqlite:///") else {}
        return self.optuna.storages.RDBStorage(url, engine_kwargs=engine)

    def _sampler(self, number: int):
        samplers = self.optuna.samplers
        seed = trial_seed(int(self.index["seed"]), number)
        return samplers.TPESampler(seed=seed) if self.index["sampler"] == "tpe" else samplers.RandomSampler(seed=seed)

    def _pruner(self):
        pruner = self.index.get("pruner")
        pruners = self.optuna.pruners
        if not pruner or pruner["use"] == "none":
            return pruners.NopPruner()
        classes = {"median": pruners.MedianPruner, "percentile": pruners.PercentilePruner, "hyperband": pruners.HyperbandPruner,
                   "successive_halving": pruners.SuccessiveHalvingPruner, "threshold": pruners.ThresholdPruner,
                   "wilcoxon": pruners.WilcoxonPruner}
        try:
            return classes[pruner["use"]](**pruner.get("args", {}))
        except (TypeError, ValueError) as exc:
            raise UsageError([Problem(code="E804", message=f"pruner `{pruner['use']}` does not take {pruner.get('args')}: {exc}",
                                      path="search.pruner", hint="see Optuna's documentation of the pruner's arguments")]) from None

    def _suggestable(self, point: dict) -> dict:
        out = {}
        for axis in self.axes:
            _, encoded = _encode(axis)
            out[axis.key] = json.dumps(point[axis.key]) if encoded else point[axis.key]
        return out

    # -- the study's life --------------------------------------------------------------
    def ask(self, target: int) -> Optional[Ticket]:
        """The next trial, or None when `target` trials have been handed out."""
        with self.search_dir.ask_lock():
            trials = self.study.get_trials(deepcopy=False)
            waiting = [t.number for t in trials if t.state == self.optuna.trial.TrialState.WAITING]
            if len(trials) - len(waiting) >= target:
                return None
            self.study.sampler = self._sampler(min(waiting) if waiting else len(trials))  # the number it will get
            trial = self.study.ask()
            return Ticket(trial.number, self._suggest(trial))

    def _suggest(self, trial) -> dict:
        """The trial's parameters, sampled by a sampler seeded with its number (see the module docstring)."""
        self.study.sampler = self._sampler(trial.number)
        params = {}
        for axis in self.axes:
            if axis.kind == "categorical":
                choices, encoded = _encode(axis)
                value = trial.suggest_categorical(axis.key, choices)
                params[axis.key] = json.loads(value) if encoded else value
            elif axis.kind == "int":
                params[axis.key] = trial.suggest_int(axis.key, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
            else:
                params[axis.key] = trial.suggest_float(axis.key, axis.low, axis.high, step=axis.step, log=axis.log)
        return params

    def _trial(self, number: int):
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        return self.optuna.trial.Trial(self.study, trial_id)

    def tell(self, number: int, state: str, value: Optional[float] = None, attrs_: Optional[dict] = None) -> None:
        """Record how trial `number` ended (its attributes as Optuna user attributes)."""
        trial = self._trial(number)
        if attrs_:
            trial.set_user_attr(RESULT_ATTR, attrs_)  # one attribute, one commit
        states = self.optuna.trial.TrialState
        if state == COMPLETE:
            self.study.tell(number, value, skip_if_finished=True)
        else:
            self.study.tell(number, state=states.PRUNED if state == PRUNED else states.FAIL, skip_if_finished=True)

    def reporter(self, number: int) -> "OptunaReporter":
        """What a trial's pruning callback reports its evaluations to."""
        return OptunaReporter(self._trial(number))

    def records(self) -> list[dict]:
        """Every trial handed out, as plain data, by number."""
        states = self.optuna.trial.TrialState
        names = {states.COMPLETE: COMPLETE, states.PRUNED: PRUNED, states.FAIL: FAILED, states.RUNNING: RUNNING}
        out = []
        for trial in self.study.get_trials(deepcopy=False):
            if trial.state not in names:
                continue
            params = {}
            for axis in self.axes:
                raw = trial.params.get(axis.key)
                params[axis.key] = json.loads(raw) if raw is not None and _encode(axis)[1] else raw
            out.append({"number": trial.number, "state": names[trial.state], "value": trial.value, "params": params,
                        "attrs": dict(trial.user_attrs.get(RESULT_ATTR) or {})})
        return sorted(out, key=lambda r: r["number"])

    def running(self) -> list[Ticket]:
        """The trials the storage holds as running (one stopped before its parameters were all drawn gets the rest now)."""
        tickets = []
        for record in self.records():
            if record["state"] != RUNNING:
                continue
            params = record["params"]
            if any(params.get(a.key) is None for a in self.axes):
                with self.search_dir.ask_lock():
                    params = self._suggest(self._trial(record["number"]))
            tickets.append(Ticket(record["number"], params))
        return tickets


class OptunaReporter:
    """Intermediate values of one trial, for Optuna's pruner."""

    def __init__(self, trial):
        self.trial = trial

    def report(self, value: float, step: int) -> bool:
        """Report `value` at `step`; whether the pruner says to stop the trial."""
        if not math.isfinite(value):
            return False
        self.trial.report(value, step)
        return self.trial.should_prune()


class NoReporter:
    """A study without a pruner: nothing is reported, nothing pruned."""

    def report(self, value: float, step: int) -> bool:
        """Never prune."""
        return False


class PlainGridStudy:
    """The grid sampler without Optuna: its points in order, the trials in ``study.json`` (under the ask lock)."""

    def __init__(self, search_dir: SearchDir, index: dict):
        self.search_dir, self.index = search_dir, index
        self.axes = [Axis.from_dict(a) for a in index["axes"]]
        self.points = grid_points(self.axes)

    def _read(self) -> list[dict]:
        data = self.search_dir.read_json(self.search_dir.plain_study)
        return list(data.get("trials") or []) if isinstance(data, dict) else []

    def _write(self, trials: list[dict]) -> None:
        self.search_dir.write_json(self.search_dir.plain_study, {"format": 1, "sampler": "grid", "trials": trials})

    def ask(self, target: int) -> Optional[Ticket]:
        """The next grid point, or None when `target` trials have been handed out."""
        with self.search_dir.ask_lock():
            trials = self._read()
            number = len(trials)
            if number >= min(target, len(self.points)):
                return None
            trials.append({"number": number, "state": RUNNING, "value": None, "params": self.points[number], "attrs": {}})
            self._write(trials)
            return Ticket(number, dict(self.points[number]))

    def tell(self, number: int, state: str, value: Optional[float] = None, attrs_: Optional[dict] = None) -> None:
        """Record how trial `number` ended."""
        with self.search_dir.ask_lock():
            trials = self._read()
            trials[number].update({"state": state, "value": value, "attrs": dict(attrs_ or {})})
            self._write(trials)

    def reporter(self, number: int) -> NoReporter:
        """No pruner without Optuna."""
        return NoReporter()

    def records(self) -> list[dict]:
        """Every trial handed out, by number."""
        return self._read()

    def running(self) -> list[Ticket]:
        """The trials recorded as running."""
        return [Ticket(r["number"], r["params"]) for r in self._read() if r["state"] == RUNNING]


__all__ = ["COMPLETE", "FAILED", "FINISHED", "PRUNED", "RUNNING", "OptunaStudy", "check_backend", "needs_optuna", "PlainGridStudy", "Ticket", "open_study", "trial_seed"]
