"""`compile_search`: a spec's `[search]` made concrete before any compute, and shown.

The axes come checked from the spec room (`stagedsl.spec.search`). Here the trial count,
the sampler's seed, the storage and the study's name are settled into the index
(``search.json``), and representative trials are compiled to plans: every grid point (up
to `SAMPLE_LIMIT`), else the first value of every axis and each other extreme one axis at a
time. Their stage hashes show which stages every trial shares, so trained once, and which
differ (`render_search`, ``staged plan --dry-run``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import attrs

from stagedsl.errors import PlanError, Problem
from stagedsl.plan.model import Plan
from stagedsl.registry import Registry
from stagedsl.search.layout import INDEX_FORMAT, TRIALS_DIR
from stagedsl.spec.model import Spec
from stagedsl.spec.search import Axis, check_search, grid_points, trial_count, trial_spec

SAMPLE_LIMIT = 64
"""Representative trials compiled by `compile_search` at most."""


@attrs.frozen
class SampleTrial:
    """A representative trial: its parameters, plan and the plan's stage hashes."""

    params: dict
    plan: Plan = attrs.field(repr=False)
    hashes: dict = attrs.field(repr=False)


@attrs.frozen
class SearchPlan:
    """A search made concrete: its index (``search.json``), axes and representative trials."""

    index: dict
    axes: tuple[Axis, ...]
    samples: tuple[SampleTrial, ...]

    @property
    def trials(self) -> int:
        """How many trials the study runs."""
        return int(self.index["trials"])

    def shared(self) -> dict[str, int]:
        """Per stage, how many different stage hashes the representative trials have (1: every trial shares it)."""
        names = [s.name for s in self.samples[0].plan.stages]
        return {name: len({sample.hashes[name] for sample in self.samples}) for name in names}

    def depends(self) -> dict[str, list[str]]:
        """Per stage, the axes whose value changes its stage hash (two trials that differ in that axis alone)."""
        out: dict[str, list[str]] = {s.name: [] for s in self.samples[0].plan.stages}
        for axis in self.axes:
            for a in self.samples:
                for b in self.samples:
                    if a.params[axis.key] == b.params[axis.key] or any(a.params[k] != b.params[k] for k in a.params if k != axis.key):
                        continue
                    for name in out:
                        if axis.key not in out[name] and a.hashes[name] != b.hashes[name]:
                            out[name].append(axis.key)
        return out

    def to_json(self) -> str:
        """The search with each representative trial's stage hashes and the first one's plan (`staged plan --json`)."""
        data = dict(self.index)
        data["samples"] = [{"params": s.params, "plan_hash": s.plan.hash, "stage_hashes": s.hashes} for s in self.samples]
        data["shared"] = self.shared()
        data["depends"] = self.depends()
        data["plan"] = json.loads(self.samples[0].plan.to_json())
        return json.dumps(data, indent=2, default=str)


def search_index(spec: Spec, axes: list[Axis], *, trials: Optional[int] = None, storage: Optional[str] = None,
                 reuse: Optional[bool] = None, jobs: Optional[int] = None) -> dict[str, Any]:
    """``search.json``: everything a process of the study needs besides the spec (options override the spec's)."""
    search = spec.search
    count = trial_count(spec, axes, trials)
    pruner = None
    if search.pruner is not None and search.pruner.use != "none":
        pruner = {"use": search.pruner.use, "args": dict(search.pruner.args)}
    return {
        "format": INDEX_FORMAT, "name": spec.run.name, "study": spec.run.name, "spec_file": spec.file, "profile": spec.profile,
        "metric": search.metric, "direction": search.direction, "sampler": search.sampler,
        "seed": search.seed if search.seed is not None else spec.run.seed, "trials": count, "pruner": pruner,
        "storage": storage or search.storage, "reuse": search.reuse if reuse is None else reuse,
        "jobs": jobs or search.jobs, "axes": [a.to_dict() for a in axes],
    }


def samples(axes: list[Axis], sampler: str) -> list[dict]:
    """Representative parameter sets (see the module docstring)."""
    if sampler == "grid":
        return grid_points(axes)[:SAMPLE_LIMIT]
    first = {a.key: (a.choices[0] if a.kind == "categorical" else a.low) for a in axes}
    out = [first]
    for axis in axes:
        others = axis.choices[1:] if axis.kind == "categorical" else (axis.high,)
        out += [{**first, axis.key: value} for value in others]
    return out[:SAMPLE_LIMIT]


def compile_search(spec: Spec, registry: Registry, *, out: Path | str, trials: Optional[int] = None, storage: Optional[str] = None,
                   reuse: Optional[bool] = None, jobs: Optional[int] = None) -> SearchPlan:
    """The search of `spec` (a `PlanError` when a representative trial does not compile, naming its parameters)."""
    from stagedsl.errors import SpecError
    from stagedsl.plan.compile import compile_plan

    axes, rows = check_search(spec, registry)
    if rows:  # the loader reported them already when it loaded `spec`; a spec built by hand gets them here
        from stagedsl.spec.search import space_path

        raise SpecError([Problem(code, message, file=spec.file, path=space_path(path), hint=hint) for path, message, hint, code in rows])
    index = search_index(spec, axes, trials=trials, storage=storage, reuse=reuse, jobs=jobs)
    compiled, problems = [], []
    for number, params in enumerate(samples(axes, spec.search.sampler)):
        trial = trial_spec(spec, params, registry, name=f"{spec.run.name}-t{number}", out=str(Path(out) / TRIALS_DIR / str(number)))
        try:
            plan = compile_plan(trial, registry)
            compiled.append(SampleTrial(params, plan, plan.stage_hashes))
        except PlanError as exc:
            shown = ", ".join(f"{k} = {v!r}" for k, v in params.items())
            problems += [attrs.evolve(p, message=f"trial ({shown}): {p.message}") for p in exc.problems]
    if problems:
        raise PlanError(problems)
    unmeasured = _objective_never_measured(spec, compiled[0].plan, index["metric"]) if compiled else None
    if unmeasured is not None:
        raise PlanError([unmeasured])
    return SearchPlan(index, tuple(axes), tuple(compiled))


def _objective_never_measured(spec: Spec, plan: Plan, metric: str) -> "Optional[Problem]":
    """E809 when the objective is a validation metric and the dataset, whose split lengths the plan
    knows, has no validation split: every trial would fail with E805 after training."""
    from stagedsl.spec.locate import SourceMap

    sizes = plan.data.sizes
    if not metric.startswith("val/") or not sizes or sizes.get("val"):
        return None
    problem = Problem("E809", f"`search.metric = \"{metric}\"` is measured on the validation split, and dataset "
                      f"`{plan.data.name}` has none (splits: {', '.join(f'{k} {v}' for k, v in sizes.items())})",
                      file=spec.file, path="search.metric",
                      hint="give the dataset a validation split, or search on `train/loss`")
    if not spec.sources:
        return problem
    where = SourceMap(list(spec.sources), profile=spec.profile, stage_names=tuple(s.name for s in spec.stages)).where("search.metric")
    return attrs.evolve(problem, **where.fields())


def render_search(search: SearchPlan) -> str:
    """The search as text: the study, the axes, which stages the trials share, then the first trial's plan."""
    from stagedsl.plan.render import render_plan

    index = search.index
    storage = index["storage"] or "sqlite:///<run dir>/study.db"
    lines = [f"search {index['name']}: {index['sampler']} over {len(search.axes)} key{'s' if len(search.axes) != 1 else ''}, "
             f"{search.trials} trials, {index['direction']} {index['metric']}, seed {index['seed']}, jobs {index['jobs']}, "
             f"storage {storage}" + (f", pruner {index['pruner']['use']}" if index.get("pruner") else "")]
    width = max(len(a.key) for a in search.axes)
    lines += [f"  {a.key:<{width}}  {a.describe()}" for a in search.axes]
    lines.append(f"stages over {len(search.samples)} representative trial{'s' if len(search.samples) != 1 else ''}"
                 + (" (stage reuse off)" if not index["reuse"] else "") + ":")
    shared, grid = search.shared(), index["sampler"] == "grid"
    for name, keys in search.depends().items():
        if not keys:
            note = "the same in every trial" + (": trained once" if index["reuse"] else "")
        elif grid and index["reuse"] and shared[name] < search.trials:
            note = f"{shared[name]} different plans over {search.trials} trials (by {', '.join(keys)}): trained {shared[name]} times"
        else:
            note = f"differs by {', '.join(keys)}: trained in every trial"
        lines.append(f"  {name:<16} {note}")
    lines += ["", f"first trial ({', '.join(f'{k} = {v!r}' for k, v in search.samples[0].params.items())}):"]
    return "\n".join(lines) + "\n" + render_plan(search.samples[0].plan)


__all__ = ["SAMPLE_LIMIT", "SampleTrial", "SearchPlan", "compile_search", "render_search", "samples", "search_index"]
