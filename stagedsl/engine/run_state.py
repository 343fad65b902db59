"""`RunState`: every mutable fact about a run, in one plain attrs object.

The engine keeps *all* of its counters and decisions here (and nowhere else), so a
checkpoint can save the run whole with `RunState.to_dict()` and a resume can rebuild it
with `RunState.from_dict()`. Live objects (model, optimizer, ...) are not state: they
sit in the transient `live` field, which is never serialised.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import cattrs


@attrs.define
class StageRecord:
    """What happened in one stage: the stage's entry of ``summary.json``."""

    name: str
    index: int
    status: str = "pending"  # pending | running | completed | early_stopped | gate_goto | stopped | failed | skipped | stopped_by_callback
    steps: int = 0  # optimizer steps taken in the final attempt
    planned_steps: int = 0
    epochs: int = 0  # epochs started in the final attempt (the first is epoch 0)
    wall_time_s: float = 0.0
    steps_per_s: Optional[float] = None
    attempts: int = 0
    monitor: Optional[str] = None
    mode: Optional[str] = None
    best_value: Optional[float] = None
    best_step: Optional[int] = None  # stage step of the best evaluation
    early_stopped: bool = False
    skipped_steps: int = 0  # steps skipped for a non-finite loss (on_nonfinite = "skip")
    nonfinite_evals: int = 0  # evaluations whose val/loss or monitor was non-finite (on_nonfinite = "skip")
    last_values: dict = attrs.field(factory=dict)
    gate: Optional[dict] = None  # the final gate decision
    gate_decisions: list = attrs.field(factory=list)
    auto_loss_args: dict = attrs.field(factory=dict)  # term -> {arg: value}
    init: Optional[dict] = None  # {"path", "missing", "unexpected"}
    checkpoints: dict = attrs.field(factory=dict)  # "best"/"last" -> path relative to the run dir
    reused: Optional[dict] = None  # {"from", "stage", "hash"}: adopted from another run instead of trained


@attrs.define
class RunState:
    """All mutable run state. Counters are optimizer steps unless named otherwise."""

    run_name: str = ""
    plan_hash: str = ""
    seed: int = 0
    world_size: int = 1
    device: str = "cpu"
    precision: str = "32"
    status: str = "pending"  # pending | running | completed | stopped_by_gate | failed | interrupted
    # where the run is
    stage_index: int = 0
    stage_name: Optional[str] = None
    attempt: int = 0  # 0 for the first try of a stage, +1 per gate retry
    global_step: int = 0
    stage_step: int = 0
    epoch: int = 0  # epoch within the stage, from 0
    batch_in_epoch: int = 0  # micro-batches drawn in the current epoch
    # what the stage has seen
    values: dict = attrs.field(factory=dict)  # latest metric values: train/loss, val/*
    best_value: Optional[float] = None
    best_step: Optional[int] = None
    early_stop_best: Optional[float] = None
    early_stop_bad_evals: int = 0
    nonfinite_steps: int = 0  # steps of this attempt skipped for a non-finite loss (on_nonfinite = "skip")
    nonfinite_in_row: int = 0  # ... of them in a row, up to the latest step
    nonfinite_evals: int = 0  # evaluations of this attempt whose val/loss or monitor was non-finite
    attempt_elapsed_s: float = 0.0  # training time of this attempt so far (carried over a resume)
    attempt_end: Optional[dict] = None  # how the attempt ended {"reason", "decision"}; set before its last checkpoint
    last_checkpoint: Optional[str] = None  # the file or folder written last
    last_resume_point: Optional[str] = None  # the newest trainer checkpoint (relative to the run dir)
    checkpoint_seq: int = 0  # trainer checkpoints written by the run
    # decisions
    gate_decisions: list = attrs.field(factory=list)
    retries: dict = attrs.field(factory=dict)  # stage -> retries used
    auto_loss_args: dict = attrs.field(factory=dict)  # loss name -> {arg: resolved value (JSON form)}
    stopped_by_gate: Optional[dict] = None
    stopped_by: Optional[dict] = None  # {"code", "message"} of the `RunStopped` a callback raised
    resumes: list = attrs.field(factory=list)  # one record per `staged resume`: where, and the --set changes
    stages: dict[str, StageRecord] = attrs.field(factory=dict)  # stage name -> record, in plan order
    wall_time_s: float = 0.0
    # live objects of the running stage, for callbacks; never serialised
    live: Any = attrs.field(default=None, eq=False, repr=False)

    def record(self, name: str) -> StageRecord:
        """The record of stage `name`."""
        return self.stages[name]

    def reset_stage_counters(self) -> None:
        """Zero the per-attempt counters before a stage (or a retry of it) starts."""
        self.stage_step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_value = None
        self.best_step = None
        self.early_stop_best = None
        self.early_stop_bad_evals = 0
        self.nonfinite_steps = 0
        self.nonfinite_in_row = 0
        self.nonfinite_evals = 0
        self.attempt_elapsed_s = 0.0
        self.attempt_end = None
        self.values = {}

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-ready data (without `live`)."""
        data = _converter.unstructure(attrs.evolve(self, live=None))
        del data["live"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunState":
        """Rebuild a state from `to_dict` output."""
        data = {k: v for k, v in data.items() if k != "live"}
        return _converter.structure(data, cls)


_converter = cattrs.Converter()
