"""`RunContext`: the live, run-wide objects the stages share (model, data, outputs, callbacks)."""

from __future__ import annotations

from typing import Any, Callable

import attrs
from torch import nn

from stagedsl.engine.checkpointing.background_writer import CheckpointWriter
from stagedsl.engine.events import CallbackList, Event
from stagedsl.engine.loaders import Loaders
from stagedsl.engine.objective import AutoArgs
from stagedsl.engine.outputs import RunOutputs
from stagedsl.engine.placement import Placement
from stagedsl.engine.progress import Progress
from stagedsl.engine.run_state import RunState
from stagedsl.plan.model import Plan
from stagedsl.registry import Registry
from stagedsl.run_dir import RunDir


@attrs.define(eq=False)
class RunContext:
    """Everything a stage needs that lives for the whole run. Not state: nothing here is saved."""

    plan: Plan
    registry: Registry
    run_dir: RunDir  # where every file of the run goes
    placement: Placement
    model: nn.Module  # the plain module: its state_dict names are the checkpoints'
    forward: Callable[..., Any]  # what the step loop calls (maybe compiled)
    splits: Any  # DataSplits
    loaders: Loaders
    outputs: RunOutputs
    progress: Progress
    callbacks: CallbackList
    state: RunState
    auto: AutoArgs
    writer: CheckpointWriter = attrs.field(factory=CheckpointWriter)  # trainer checkpoints, written in the background

    def fire(self, event: Event) -> None:
        """Call the run's callbacks with `event`."""
        if self.callbacks.callbacks:
            self.callbacks.fire(event, self.state)
