"""The Python faces of what the `staged` commands do across rooms: spec text to a plan, and
resuming a run with changes.

Each room does one thing (the spec room reads text, the plan room compiles, the engine
runs a plan it is handed); what chains them lives here, above all of them, so the CLI
and a Python user call the same functions and the engine never re-runs the front end.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

from stagedsl.errors import Problem, UsageError
from stagedsl.registry import Registry, get_registry
from stagedsl.run_dir import RunDir

if TYPE_CHECKING:  # pragma: no cover
    from stagedsl.engine.events import Callback
    from stagedsl.engine.runner import RunResult
    from stagedsl.plan.model import Plan
    from stagedsl.spec.model import Spec


def load_and_compile(
    spec: str | Path,
    *,
    profile: Optional[str] = None,
    overrides: Sequence[str] = (),
    registry: Optional[Registry] = None,
) -> tuple["Spec", "Plan"]:
    """Load the spec at `spec` (with `profile` and ``--set`` `overrides`) and compile it: ``(spec, plan)``."""
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import load_spec

    registry = registry if registry is not None else get_registry()
    loaded = load_spec(spec, profile=profile, overrides=overrides, registry=registry)
    return loaded, compile_plan(loaded, registry)


def effective_spec_text(spec: "Spec", *, note: str = "") -> str:
    """The spec as it runs (extends, the profile and --set applied) as TOML text, for ``spec.toml``."""
    import tomli_w

    header = f"# effective spec of {spec.file}: extends, profile and --set applied{note}\n"
    return header + tomli_w.dumps(spec.document or {})


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
) -> "RunResult":
    """Continue the run in `run_dir` where it stopped (`stagedsl.engine.resuming.resume_plan`).

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
        plan, spec_text = distributed.from_writer(lambda: _recompile(RunDir(run_dir), overrides, registry))
    return resume_plan(run_dir, plan, spec_text=spec_text, overrides=overrides, force=force, device=device,
                       registry=registry, callbacks=callbacks, handle_signals=handle_signals, warn=warn)


def _recompile(run_dir: RunDir, overrides: Sequence[str], registry: Registry) -> tuple["Plan", str]:
    """The run's effective spec with `overrides`, compiled; and its new effective text."""
    from stagedsl.engine.resuming import read_run_plan
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import loads_spec

    running = read_run_plan(run_dir)  # E415 first when this is no run directory at all
    path = run_dir.spec
    if not path.exists():
        raise UsageError([Problem(code="E415", message=f"{run_dir.root} has no {path.name}, so --set has nothing to apply to",
                                  hint="runs started from Python without spec_text cannot take --set; resume without it")])
    loaded = loads_spec(path.read_text(encoding="utf-8"), file=str(path), overrides=overrides, registry=registry)
    # the spec's batch is per process, of as many processes as made the run's global batch of it
    global_batch = running.data.batch_size * running.world_size
    processes = global_batch // loaded.data.batch_size if global_batch % loaded.data.batch_size == 0 else running.world_size
    return (compile_plan(loaded, registry, world_size=max(1, processes)),
            effective_spec_text(loaded, note=f" (resumed with {' '.join(overrides)})"))


__all__ = ["effective_spec_text", "load_and_compile", "resume_run"]
