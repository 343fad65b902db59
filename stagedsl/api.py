"""The Python faces of what the `staged` commands do across rooms: `plan` and `run` a spec (from
a notebook or a script, with a live model or data if wanted), and resume a run with changes.

Each room does one thing (the spec room reads text, the plan room compiles, the engine
runs a plan it is handed); what chains them lives here, above all of them, so the CLI
and a Python user call the same functions and the engine never re-runs the front end::

    import stagedsl

    plan = stagedsl.plan("specs/ocec.toml", profile="tiny")
    result = stagedsl.run("train.toml", model=MyNet(), set=["stage.head.lr=3e-4"], out="runs/try1")
    result.run_dir, result.summary["status"], result.best   # best value per stage, as summary.json has it

Errors are the typed errors the CLI renders (`SpecError`, `PlanError`, `RunError`, ...);
``str(error)`` is the text the CLI prints.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Sequence

from stagedsl.diagnostics import render_problems
from stagedsl.errors import Problem, UsageError
from stagedsl.registry import Registry, get_registry
from stagedsl.registry.import_path import live_name
from stagedsl.run_dir import RunDir
from stagedsl.spec.loader import effective_spec_text

if TYPE_CHECKING:  # pragma: no cover
    from stagedsl.engine.events import Callback
    from stagedsl.engine.runner import RunResult
    from stagedsl.plan.model import Plan
    from stagedsl.spec.model import Spec


def _live(model: Any, data: Any) -> dict[str, str]:
    live = {}
    if model is not None:
        live["model"] = live_name(model)
    if data is not None:
        live["data"] = live_name(data)
    return live


def load(spec: "str | Path | Spec", *, profile: Optional[str] = None, overrides: Sequence[str] = (), model: Any = None,
         data: Any = None, registry: Optional[Registry] = None) -> "Spec":
    """The checked `Spec` of `spec` (a path, or a loaded `Spec`, read again from its file when `profile`,
    `overrides` or a live `model` / `data` change it); a live object takes its section's place."""
    from stagedsl.spec.loader import load_spec
    from stagedsl.spec.model import Spec

    registry = registry if registry is not None else get_registry()
    live = _live(model, data)
    if not isinstance(spec, Spec):
        return load_spec(spec, profile=profile, overrides=overrides, registry=registry, live=live)
    as_loaded = {"model": spec.model.use, "data": spec.data.use}
    if not profile and not overrides and all(as_loaded[section] == name for section, name in live.items()):
        return spec
    if spec.file is None or not Path(spec.file).is_file():
        raise UsageError([Problem(code="E087", message="this Spec was not read from a file, so a profile, --set overrides or a live "
                                  "model / data cannot be layered on it", hint="load it with stagedsl.load_spec(path, ...) and pass "
                                  "the path, or pass them to loads_spec(text, ...) yourself")])
    return load_spec(spec.file, profile=profile or spec.profile, overrides=(*spec.overrides, *overrides), registry=registry, live=live)


def plan(spec: "str | Path | Spec", *, profile: Optional[str] = None, set: Sequence[str] = (), model: Any = None,
         data: Any = None, registry: Optional[Registry] = None) -> "Plan":
    """The `Plan` of `spec` (what `staged plan` shows): a path or a loaded `Spec`, with `profile` and
    `set` (``["stage.finetune.lr=1e-5", ...]``) applied; a live ``nn.Module`` as `model` and / or a
    `stagedsl.DataSplits` as `data` take the place of the spec's ``[model]`` / ``[data]`` (the plan
    records ``<live:ClassName>`` and the parameter names / split lengths read from them). Raises
    `SpecError` / `PlanError` as the CLI does."""
    from stagedsl.plan.compile import compile_plan

    registry = registry if registry is not None else get_registry()
    loaded = load(spec, profile=profile, overrides=tuple(set or ()), model=model, data=data, registry=registry)
    _refuse_matrix(loaded, "stagedsl.plan")
    return compile_plan(loaded, registry, model=model, data=data)


def run(spec: "str | Path | Spec", *, profile: Optional[str] = None, set: Sequence[str] = (), out: str | Path | None = None,
        model: Any = None, data: Any = None, device: Optional[str] = None, from_stage: Optional[str] = None,
        overwrite: bool = False, export: bool = True, registry: Optional[Registry] = None,
        callbacks: Iterable["Callback"] = (), warn: Optional[Callable[[str], None]] = None) -> "RunResult":
    """Run `spec` as `staged run` does and return its `RunResult` (``run_dir``, ``status``,
    ``summary``, ``best`` per stage, ``export``), writing the same run directory.

    `spec`, `profile`, `set`, `model` and `data` as for `plan`; a live `model` is trained in
    place. `out` is the run directory (default the spec's ``run.out``); one that is not empty
    is refused (E091, E442, E443) unless `overwrite` (see `prepare_run_dir`). The spec's ``[export]`` runs at the end when
    `export` (not for a live model or data: they cannot be rebuilt from the plan). The plan's lint warnings go to `warn` (default: printed to stderr as the CLI
    does). Raises the typed errors the CLI renders; `GateStopped` (its ``result`` holds the
    `RunResult`) when a gate stops the run. In a script torchrun started (``torchrun
    --nproc-per-node 2 train.py``) the plan is for its processes and rank 0 alone writes the run
    directory and exports (docs/distributed.md).
    """
    from stagedsl.engine import distributed
    from stagedsl.engine.runner import run_plan
    from stagedsl.plan.compile import compile_plan

    registry = registry if registry is not None else get_registry()
    loaded = load(spec, profile=profile, overrides=tuple(set or ()), model=model, data=data, registry=registry)
    _refuse_matrix(loaded, "stagedsl.run")
    processes = distributed.from_environment()  # a script torchrun started: one of its processes
    compiled = compile_plan(loaded, registry, model=model, data=data, world_size=processes.world_size)
    if compiled.warnings and processes.is_writer:
        (warn or _stderr)(render_problems([Problem(**w) for w in compiled.warnings]))
    run_dir = Path(out if out is not None else compiled.run.out)
    distributed.join(processes)
    with own_run_dir(run_dir, overwrite=overwrite, from_stage=from_stage, say=warn or _stderr, distributed=processes.distributed):
        result = run_plan(compiled, registry=registry, out=run_dir, from_stage=from_stage, device=device, callbacks=callbacks,
                          spec_text=effective_spec_text(loaded), model=model, data=data)
        if export and compiled.export is not None and processes.is_writer:
            if model is not None or data is not None:
                (warn or _stderr)("note: the spec's [export] is skipped: a live model or data exists only in this process, so the run "
                                  "cannot be rebuilt from its plan; name them by import path (use = \"./model.py:Net\") to export")
            else:
                import attrs

                from stagedsl.export.runner import export_run

                result = attrs.evolve(result, export=export_run(result.run_dir, registry=registry))
    return result


def _stderr(text: str) -> None:
    print(text, file=sys.stderr)


def _refuse_matrix(spec: "Spec", what: str) -> None:
    if spec.matrix is not None:
        raise UsageError([Problem(code="E088", message=f"{what} takes a single run; this spec has a [matrix]",
                                  hint="run it with `staged run SPEC` or stagedsl.run_matrix(spec, ...); plan one member with --set")])


@contextlib.contextmanager
def own_run_dir(run_dir: Path, *, overwrite: bool, from_stage: Optional[str], say: Optional[Callable[[str], None]] = None,
                distributed: bool = False) -> Iterator[RunDir]:
    """Own `run_dir` for a new run while the block runs: its lock held (E441 while another process
    writes it), and a folder that is not empty refused (E091 a run, E442 a run killed before its
    first stage ended, E443 other files) unless `overwrite`, which deletes exactly what a run wrote
    there, telling `say` what first (`RunDir.prepare_new_run`). With `from_stage` the earlier
    stages' files are the point: nothing is refused or deleted.

    A `distributed` run (one of torchrun's processes) has rank 0 prepare the folder for all
    (`prepare_run_dir`); the engine's rank 0 then holds the lock while it trains.
    """
    layout = RunDir(run_dir)
    if distributed:
        from stagedsl.engine import distributed as processes

        processes.from_writer(lambda: prepare_run_dir(run_dir, overwrite=overwrite, from_stage=from_stage, say=say))
        yield layout
        return
    if from_stage is None:
        layout.prepare_new_run(overwrite=overwrite, check_only=True)  # a refused run leaves nothing behind, not even a lock
    with layout.lock("run"):  # one owner from the first file deleted to the last one exported
        if from_stage is None:
            layout.prepare_new_run(overwrite=overwrite, say=say)
        yield layout


def prepare_run_dir(run_dir: Path, *, overwrite: bool, from_stage: Optional[str], say: Optional[Callable[[str], None]] = None) -> None:
    """`own_run_dir` for a moment: the folder refused or made ready for a new run, the lock held while
    anything is deleted and released at once (for a launcher whose workers then take it)."""
    with own_run_dir(run_dir, overwrite=overwrite, from_stage=from_stage, say=say):
        pass


def resume_run(
    run_dir: str | Path,
    *,
    overrides: Sequence[str] = (),
    force: bool = False,
    device: Optional[str] = None,
    registry: Optional[Registry] = None,
    callbacks: Iterable["Callback"] = (),
    handle_signals: bool = True,
    warn: Optional[Callable[[str], None]] = None,
    model: Any = None,
    data: Any = None,
) -> "RunResult":
    """Continue the run in `run_dir` where it stopped (`stagedsl.engine.resuming.resume_plan`).

    `model` / `data`: the live objects a run started by `stagedsl.run(model=..., data=...)` trained.

    `overrides` are ``--set key.path=value`` changes to the run's effective spec
    (``spec.toml``), compiled here into the plan the run resumes with; `force` accepts
    changes that touch what has already run (recorded as forced); `device` overrides the
    plan's device. Raises `UsageError` (E415 not a run directory or no spec.toml to
    change, E431 a refused change), `CheckpointError` (E413, E414), and whatever
    `run_plan` raises.
    """
    from stagedsl.engine import distributed
    from stagedsl.engine.resuming import resume_plan

    registry = registry if registry is not None else get_registry()
    plan, spec_text = None, None
    if overrides:  # under torchrun rank 0 alone reads the run directory
        distributed.join(distributed.from_environment())
        plan, spec_text = distributed.from_writer(lambda: _recompile(RunDir(run_dir), overrides, registry, model, data))
    return resume_plan(run_dir, plan, spec_text=spec_text, overrides=overrides, force=force, device=device,
                       registry=registry, callbacks=callbacks, handle_signals=handle_signals, warn=warn, model=model, data=data)


def _recompile(run_dir: RunDir, overrides: Sequence[str], registry: Registry, model: Any = None,
               data: Any = None) -> tuple["Plan", str]:
    """The run's effective spec with `overrides`, compiled; and its new effective text."""
    from stagedsl.engine.resuming import read_run_plan
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import loads_spec

    running = read_run_plan(run_dir)  # E415 first when this is no run directory at all
    path = run_dir.spec
    if not path.exists():
        raise UsageError([Problem(code="E415", message=f"{run_dir.root} has no {path.name}, so --set has nothing to apply to",
                                  hint="runs started from Python without spec_text cannot take --set; resume without it")])
    loaded = loads_spec(path.read_text(encoding="utf-8"), file=str(path), overrides=overrides, registry=registry,
                        root=running.root)  # import paths and data paths are read from the original spec's folder
    # the spec's batch is per process, of as many processes as made the run's global batch of it
    global_batch = running.data.batch_size * running.world_size
    processes = global_batch // loaded.data.batch_size if global_batch % loaded.data.batch_size == 0 else running.world_size
    return (compile_plan(loaded, registry, model=model, data=data, world_size=max(1, processes)),
            effective_spec_text(loaded, note=f" (resumed with {' '.join(overrides)})"))


__all__ = ["effective_spec_text", "load", "own_run_dir", "plan", "prepare_run_dir", "resume_run", "run"]
