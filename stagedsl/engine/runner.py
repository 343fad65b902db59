"""`run_plan`: run a `Plan`, stage after stage, with gates deciding what comes next.

The runner builds the run once (placement, model, data, loaders, outputs, callbacks),
then runs each stage (`attempts.run_stage`: build, drive, last weights, end gate) and
follows the decision (`engine.gates`). It writes ``summary.json`` at every stage end and
when the run stops, fails, is interrupted or ends. `execute` also continues a run from a
trainer checkpoint (`resuming.resume_plan` prepares it): the checkpoint's `RunState` is
carried over to the plan, and the stage it was taken in is rebuilt and loaded.
SIGINT / SIGTERM are handled while it runs (`signals`).

Under torchrun every process runs `execute` on the same plan (checked by its hash): rank
0 alone reads and writes the run directory (`Placement.is_writer`); what the others need
of what it read comes to them through a collective (`distributed.from_writer`) or with
the model's weights, which each stage's DDP wrapper takes from rank 0.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Optional

import attrs
import torch

from stagedsl.engine import distributed
from stagedsl.engine.attempts import run_stage
from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.checkpointing.resume_point import ResumePoint
from stagedsl.engine.checkpointing.trainer_payload import auto_values
from stagedsl.engine.checkpointing.weights import LAST, read_weights
from stagedsl.engine.context import RunContext
from stagedsl.engine.events import Callback, CallbackList, Event
from stagedsl.engine.gates import GOTO, STOP, GateDecision
from stagedsl.engine.loaders import build_loaders
from stagedsl.engine.objective import AutoArgs
from stagedsl.engine.outputs import RunOutputs, read_summary
from stagedsl.engine.placement import Placement
from stagedsl.engine.progress import Progress
from stagedsl.engine.run_state import RunState, StageRecord
from stagedsl.engine.seeding import seed_everything
from stagedsl.engine.failures import describe_failure, where
from stagedsl.engine.signals import RunInterrupted, StoppedAtOnce, handle_stop_signals
from stagedsl.engine.start import StartAt, adopt, check_start, from_own_run, in_place
from stagedsl.engine.threads import AUTO, choose_threads
from stagedsl.errors import GateStopped, Problem, RunError, RunStopped, StagedError, UsageError, os_failure
from stagedsl.plan.model import Plan
from stagedsl.registry import Registry, did_you_mean, get_registry
from stagedsl.registry.import_path import importable, is_live, names_import_paths
from stagedsl.run_dir import RunDir

_TORCH_THREADS = torch.get_num_threads()  # torch's own default, before any run of this process changed it


STOPPED_BY_CALLBACK = "stopped_by_callback"
"""The status of a run (and of its running stage) that a callback ended by raising `RunStopped`."""


@attrs.frozen
class RunResult:
    """What a run produced: where, how it ended, and each stage's summary."""

    run_dir: Path
    status: str  # completed | stopped_by_gate
    stages: dict  # stage name -> summary record (as in summary.json)
    stopped_by_gate: Optional[dict]  # the decision that stopped the run, or None
    summary: dict  # summary.json's content
    state: RunState = attrs.field(repr=False)
    export: Any = attrs.field(default=None, repr=False)  # the ExportReport when the spec's [export] ran after training
    already_complete: bool = False  # `resume_run` of a finished run: nothing was trained

    @property
    def best(self) -> dict[str, dict]:
        """Per stage that evaluated: its monitored metric, the best value and the stage step it came at."""
        return {name: {"monitor": record.get("monitor"), "value": record.get("best_value"), "step": record.get("best_step")}
                for name, record in self.stages.items() if record.get("best_value") is not None}


def run_plan(
    plan: Plan,
    *,
    registry: Optional[Registry] = None,
    out: str | Path | None = None,
    from_stage: Optional[str] = None,
    start: Optional[StartAt] = None,
    device: Optional[str] = None,
    callbacks: Iterable[Callback] = (),
    spec_text: Optional[str] = None,
    handle_signals: bool = True,
    model: Any = None,
    data: Any = None,
) -> RunResult:
    """Run `plan` and return its `RunResult`.

    `out` is the run directory (default ``plan.run.out``); `from_stage` starts at that
    stage, reusing the earlier stages' checkpoints in the run directory; `start` starts
    where a `stagedsl.engine.start.StartAt` says, the stages before it adopted from the
    run directories it names (reuse: equal stage hashes, equal outcomes); `device`
    overrides ``plan.run.device``; `callbacks` run after the plan's own; `spec_text` is
    written to ``spec.toml``; `handle_signals`: SIGINT / SIGTERM save a checkpoint and
    raise `RunInterrupted` (main thread only). `model` / `data`: the live ``nn.Module`` /
    `DataSplits` of a plan that names them ``<live:...>`` (trained in place). Raises `GateStopped` (exit code 3) when a
    gate stops the run (after writing ``summary.json``; the exception's `result` holds the
    `RunResult`), `RunStopped` when a callback stops it, `RunError` / `CheckpointError`
    when the run fails.
    """
    registry = registry if registry is not None else get_registry()
    run_dir = Path(out if out is not None else plan.run.out)
    index = _start_index(plan, from_stage)
    if start is not None and from_stage is not None:
        raise UsageError([Problem(code="E430", message="give either from_stage or start, not both")])
    if start is None and index > 0:
        start = from_own_run(plan, run_dir, index, distributed.from_writer(lambda: read_summary(RunDir(run_dir))))
    if start is not None:
        check_start(plan, start)
    return execute(plan, registry=registry, run_dir=run_dir, start=start, device=device, callbacks=callbacks,
                   spec_text=spec_text, handle_signals=handle_signals, live=Live(model, data))


def execute(
    plan: Plan,
    *,
    registry: Registry,
    run_dir: Path,
    start: Optional[StartAt] = None,
    device: Optional[str] = None,
    callbacks: Iterable[Callback] = (),
    spec_text: Optional[str] = None,
    resume: Optional[ResumePoint] = None,
    handle_signals: bool = True,
    restart: Optional[dict] = None,
    live: Optional["Live"] = None,
) -> RunResult:
    """Run `plan` in `run_dir` from `start` (default the first stage), or from the checkpoint `resume` (see `run_plan`).

    `restart`: the record of a resume that found no checkpoint and starts the run over;
    `live`: the live model and data of a plan that names them ``<live:...>``.
    The run directory's lock (`stagedsl.run_lock`) is held throughout: another process
    writing it is refused (E441). An OS failure (a full disk, a read-only file system)
    is E445, with the last good checkpoint intact and named.
    """
    placement = Placement.create(device or plan.run.device, plan.run.precision, pin_memory=plan.data.pin_memory,
                                 world_size=plan.world_size)
    if placement.distributed:
        distributed.check_same(plan.hash, "plan", "every process must compile the same plan: the same spec, code and "
                                              "plugins on every machine")
    layout = RunDir(run_dir)
    command = "resume" if resume is not None or restart is not None else "run"
    try:
        with layout.lock(command):
            return _execute(plan, registry=registry, layout=layout, placement=placement, start=start, callbacks=callbacks,
                            spec_text=spec_text, resume=resume, handle_signals=handle_signals, restart=restart, live=live)
    except OSError as exc:  # taking the lock, opening the run's files
        raise os_failure(exc, f"`staged {command}` in {layout.root}") from None


def _execute(plan: Plan, *, registry: Registry, layout: RunDir, placement: Placement, start: Optional[StartAt],
             callbacks: Iterable[Callback], spec_text: Optional[str], resume: Optional[ResumePoint], handle_signals: bool,
             restart: Optional[dict], live: Optional["Live"]) -> RunResult:
    run_dir = layout.root
    if resume is not None:
        outputs = RunOutputs(layout, enabled=placement.is_writer, append=True, metrics_bytes=resume.metrics_bytes,
                             purge_step=resume.state.global_step)
        state = _resumed_state(resume, plan, placement)
    else:
        outputs = RunOutputs(layout, enabled=placement.is_writer, append=start is not None and in_place(start, layout.root))
        state = RunState(run_name=plan.run.name, plan_hash=plan.hash, seed=plan.run.seed, world_size=placement.world_size,
                         device=str(placement.device), precision=placement.precision, status="running")
        for stage in plan.stages:
            state.stages[stage.name] = StageRecord(name=stage.name, index=stage.index, planned_steps=stage.steps)
        if restart is not None:
            state.resumes.append(restart)
    progress = Progress(enabled=placement.is_writer, step=lambda: state.stage_step)
    ctx: Optional[RunContext] = None
    started = time.perf_counter() - (state.wall_time_s if resume is not None else 0.0)
    try:
        with handle_stop_signals(handle_signals):
            for notice in placement.notices:
                progress.notice(notice)
            if resume is None:
                _write_plan(outputs, plan, spec_text)
            else:  # only once the checkpoint fits: a failed resume leaves the run's plan as it was
                resume.on_loaded = lambda: _write_plan(outputs, plan, spec_text)
            first = start.index if start is not None else 0
            if resume is None and placement.is_writer:
                for stage in plan.stages[first:]:  # a run that starts a stage over drops its old resume points
                    trainer_checkpoints.clear_states(layout, stage.name)
            if resume is None and start is not None:  # under torchrun the files are rank 0's, the records everyone's
                adopt(state, start, plan, layout, outputs, files=placement.is_writer)
            ctx = _build_run(plan, registry, layout, placement, outputs, progress, state, callbacks, live or Live(),
                             preset=auto_values(resume.trainer) if resume is not None else None)
            ctx.fire(Event.RUN_START)
            later = resume is None and start is not None and first > 0
            restore = _previous_weights(ctx, start) if later and first < len(plan.stages) else None
            index = _stage_index(plan, state.stage_name, after=-1) if resume is not None else first
            _run_stages(ctx, index, restore, resume, from_stage=later, started=started)
            if state.status == "running":
                state.status = "completed"
            summary = _write_summary(ctx, started)
            ctx.fire(Event.RUN_END)
        result = RunResult(run_dir=run_dir, status=state.status, stages=summary["stages"],
                           stopped_by_gate=state.stopped_by_gate, summary=summary, state=state)
        if state.status == "stopped_by_gate":
            decision = state.stopped_by_gate
            error = GateStopped([Problem(code="E420", message=GateDecision(**decision).describe(),
                                         hint="see summary.json; change the gate's on_fail, or the stage, and run again")])
            error.result = result
            raise error
        return result
    except GateStopped:
        raise
    except RunStopped as exc:
        state.stopped_by = {"code": exc.problems[0].code, "message": exc.problems[0].message}
        _fail(state, outputs, started, STOPPED_BY_CALLBACK)
        raise
    except (KeyboardInterrupt, RunInterrupted) as exc:
        _fail(state, outputs, started, "interrupted")
        if isinstance(exc, StoppedAtOnce):
            raise exc.error(where(state), state.last_resume_point, str(run_dir), processes=placement.world_size) from None
        raise
    except StagedError:
        _fail(state, outputs, started, "failed")
        raise
    except Exception as exc:
        _fail(state, outputs, started, "failed")
        if placement.distributed:  # another process gone, a parameter DDP saw no gradient for
            distributed.raise_failure(exc, where(state), placement.processes)
        raise describe_failure(exc, state, ctx) from exc
    finally:
        if ctx is not None:  # the last checkpoint lands before anything returns; its error only if nothing else failed
            ctx.writer.close(raise_errors=state.status in ("completed", "stopped_by_gate"))
        state.live = None  # break the state <-> context cycle: the model and data go with the last reference
        placement.drop_wrapper()  # a DDP wrapper must go before its process group does
        try:
            outputs.close()
        except OSError:  # a full disk refusing the last flush: the run's error (or E445) is already on its way
            pass
        progress.close()


def _write_plan(outputs: RunOutputs, plan: Plan, spec_text: Optional[str]) -> None:
    outputs.write_plan(plan.to_json())
    outputs.write_plan_version(plan.hash, plan.to_json())
    outputs.write_spec(spec_text)


def _run_stages(ctx: RunContext, index: int, restore: Optional[dict], resume: Optional[ResumePoint], *,
                from_stage: bool, started: float) -> None:
    """The stage sequence from `index`, following the gates' decisions."""
    plan, state = ctx.plan, ctx.state
    while index < len(plan.stages):
        stage = plan.stages[index]
        decision = run_stage(ctx, stage, restore, resume, save_at_start=from_stage)
        restore, resume, from_stage = None, None, False
        _write_summary(ctx, started)
        if decision is not None and decision.action == STOP:
            state.status = "stopped_by_gate"
            state.stopped_by_gate = decision.to_dict()
            for later in plan.stages[index + 1:]:
                state.record(later.name).status = "not_run"
            break
        if decision is not None and decision.action == GOTO:
            target = _stage_index(plan, decision.goto, after=index)
            for skipped in plan.stages[index + 1:target]:
                state.record(skipped.name).status = "skipped"
            index = target
        else:
            index += 1


def _resumed_state(point: ResumePoint, plan: Plan, placement: Placement) -> RunState:
    """The checkpoint's `RunState`, carried over to `plan` (which may add or drop later stages)."""
    state = point.state
    state.status, state.plan_hash = "running", plan.hash
    state.world_size, state.device, state.precision = placement.world_size, str(placement.device), placement.precision
    records = {}
    for stage in plan.stages:
        record = state.stages.get(stage.name) or StageRecord(name=stage.name, index=stage.index)
        record.index = stage.index
        if record.status in ("pending", "running", "interrupted", "failed", "not_run"):
            record.planned_steps = stage.steps
        records[stage.name] = record
    state.stages = records
    if point.record:
        state.resumes.append(point.record)
    return state


# -- setup -----------------------------------------------------------------------------
def _start_index(plan: Plan, from_stage: Optional[str]) -> int:
    if not plan.stages:
        raise RunError("the plan has no stage", code="E400")
    if from_stage is None:
        return 0
    names = [s.name for s in plan.stages]
    if from_stage not in names:
        raise UsageError([Problem(code="E430", message=f"no stage named `{from_stage}`; stages: {', '.join(names)}",
                                  hint=did_you_mean(from_stage, names))])
    return names.index(from_stage)


def _stage_index(plan: Plan, name: Optional[str], *, after: int) -> int:
    names = [s.name for s in plan.stages]
    if name not in names or names.index(name) <= after:
        raise RunError(f"gate goto `{name}` is not a later stage of the plan", code="E420")
    return names.index(name)


@attrs.frozen
class Live:
    """The live objects a plan names ``<live:ClassName>`` (`stagedsl.run(model=..., data=...)`), handed to the engine."""

    model: Any = None
    data: Any = None


def _piece(kind: str, ref: Any, live: Any, registry: Registry, at: str) -> Any:
    """The live object a ``<live:...>`` name stands for, or the piece built through the registry."""
    if is_live(ref.name):
        if live is None:
            registry.get(kind, ref.name)  # E086: named live, not handed over
        return live
    return registry.build(kind, ref.name, ref.args, at=at)


def _piece_names(plan: Plan) -> list[str]:
    stages = [ref.name for s in plan.stages for ref in (s.optimizer, s.scheduler, *s.metrics, *s.loss.terms)]
    return [plan.model.name, plan.data.name, *(ref.name for ref in plan.callbacks), *stages]


def _build_run(plan: Plan, registry: Registry, run_dir: RunDir, placement: Placement, outputs: RunOutputs,
               progress: Progress, state: RunState, callbacks: Iterable[Callback], live: Live,
               preset: Optional[dict] = None) -> RunContext:
    if plan.root and names_import_paths(_piece_names(plan)):
        importable(plan.root)  # the spec's folder, where its "module:attr" pieces may live (a member's or a resumed process)
    gathered = [registry.build("callbacks", ref.name, ref.args, at=f"callbacks[{i}]") for i, ref in enumerate(plan.callbacks)]
    callback_list = CallbackList([*gathered, *callbacks])

    _apply_threads(plan, placement, progress)
    seed_everything(plan.run.seed)
    model = _piece("models", plan.model, live.model, registry, "model")
    if not isinstance(model, torch.nn.Module):
        raise RunError(f"model `{plan.model.name}` did not return a torch.nn.Module", code="E408")
    if plan.parameters:
        names = [n for n, _ in model.named_parameters()]
        if set(names) != set(plan.parameters):
            extra, lacking = sorted(set(names) - set(plan.parameters)), sorted(set(plan.parameters) - set(names))
            raise RunError(f"the model's parameters differ from the plan's (model only: {extra[:3]}, plan only: {lacking[:3]}); "
                           "compile the plan again", code="E402")
    model, forward = placement.prepare_model(model, compile=plan.run.compile, channels_last=plan.run.channels_last)

    splits = _piece("datasets", plan.data, live.data, registry, "data")
    if getattr(splits, "train", None) is None:
        raise RunError(f"dataset `{plan.data.name}` returned no training split (expected stagedsl.DataSplits)", code="E405")
    loaders = build_loaders(splits, plan.data, placement)
    if loaders.val is None:
        progress.notice(f"dataset `{plan.data.name}` has no validation split: no val/* values, best = last")
    ctx = RunContext(plan=plan, registry=registry, run_dir=run_dir, placement=placement, model=model, forward=forward,
                     splits=splits, loaders=loaders, outputs=outputs, progress=progress, callbacks=callback_list,
                     state=state, auto=AutoArgs(state.auto_loss_args, preset))
    state.live = _Live(ctx)
    return ctx


def _apply_threads(plan: Plan, placement: Placement, progress: Progress) -> None:
    """Set torch's intra-op threads as `run.threads` says (a CPU run only; the rule is `engine.threads`)."""
    if plan.run.threads == AUTO and placement.device.type != "cpu":
        return
    choice = choose_threads(plan.run.threads, sum(plan.parameters.values()), torch_default=_TORCH_THREADS)
    if choice.threads is not None:
        torch.set_num_threads(choice.threads)
        progress.notice(f"{choice.threads} CPU thread{'s' if choice.threads != 1 else ''} ({choice.reason})")


@attrs.define(eq=False)
class _Live:
    """`RunState.live`: the live objects callbacks may use."""

    ctx: RunContext
    stage: Any = None  # StageObjects of the running stage

    @property
    def model(self) -> torch.nn.Module:
        return self.ctx.model

    @property
    def rank(self) -> int:
        """This process's rank (0 in one process; only rank 0 writes the run directory)."""
        return self.ctx.placement.rank

    @property
    def run_dir(self) -> Path:
        return self.ctx.run_dir.root

    @property
    def optimizer(self) -> Any:
        return self.stage.optimizer if self.stage else None

    @property
    def scheduler(self) -> Any:
        return self.stage.scheduler if self.stage else None


def _previous_weights(ctx: RunContext, start: StartAt) -> Optional[dict]:
    """For a run started at a later stage without an init: the last weights of the last stage that ran before it
    (read by rank 0 alone; the stage's DDP wrapper gives them to the other processes)."""
    stage = ctx.plan.stages[start.index]
    ran = [a.name for a in start.adopted if (a.record.get("status") or "completed") not in ("skipped", "not_run", "pending")]
    if stage.init is not None or not ran or not ctx.placement.is_writer:
        return None
    path = ctx.run_dir.weights(ran[-1], LAST)
    ctx.progress.notice(f"starting at stage {stage.name} from `{path}`")
    return read_weights(path)


# -- summary -----------------------------------------------------------------------------
def _summary(state: RunState, started: float, run_dir: Optional[RunDir] = None) -> dict[str, Any]:
    state.wall_time_s = round(time.perf_counter() - started, 4)
    if run_dir is not None:  # a checkpoint deleted since it was written (by a resume, or by hand) is not listed
        for record in state.stages.values():
            record.checkpoints = {which: path for which, path in record.checkpoints.items() if (run_dir.root / path).exists()}
    return {
        "run": state.run_name,
        "status": state.status,
        "plan_hash": state.plan_hash,
        "world_size": state.world_size,
        "device": state.device,
        "precision": state.precision,
        "seed": state.seed,
        "global_steps": state.global_step,
        "wall_time_s": state.wall_time_s,
        "stopped_by_gate": state.stopped_by_gate,
        "stopped_by": state.stopped_by,
        "auto_loss_args": state.auto_loss_args,
        "gate_decisions": state.gate_decisions,
        "resumes": state.resumes,
        "last_checkpoint": state.last_resume_point,
        "stages": {name: attrs.asdict(record) for name, record in state.stages.items()},
    }


def _write_summary(ctx: RunContext, started: float) -> dict[str, Any]:
    summary = _summary(ctx.state, started, ctx.run_dir)
    ctx.outputs.write_summary(summary)
    return summary


def _fail(state: RunState, outputs: RunOutputs, started: float, status: str) -> None:
    """Record how the run ended in ``summary.json``, if the disk still takes it (the old summary stays otherwise)."""
    state.status = status
    if state.stage_name and state.stages.get(state.stage_name) and state.stages[state.stage_name].status == "running":
        state.stages[state.stage_name].status = status
    try:
        outputs.write_summary(_summary(state, started, outputs.run_dir))
    except Exception:  # noqa: BLE001 - the failure being reported matters more than this record of it
        pass
