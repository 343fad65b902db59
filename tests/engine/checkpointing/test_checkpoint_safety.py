"""Loading never runs code from a file; a checkpoint carries checksums; a corrupt newest one is passed over.

The payload: a pickle that opens (creates) a marker file when unpickled. In every place a
file is loaded from (a stage's init in each torch suffix and as .safetensors, an earlier
stage's weights, a checkpoint's trainer state and weights) it is refused with E413,
saying why and what to do, and the marker never appears.
"""

from __future__ import annotations

import json

import pytest
import torch

from stagedsl.api import resume_run
from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.checkpointing.safe_io import sha256_file
from stagedsl.engine.checkpointing.weights import read_weights, save_weights
from stagedsl.engine.events import Callback
from stagedsl.engine.runner import run_plan
from stagedsl.errors import CheckpointError
from stagedsl.plan.model import CheckpointPlan, EvalPlan, InitPlan

from ..conftest import make_plan, make_stage


class Payload:
    """Unpickling this creates `marker`: code from the file running."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _poisoned(path, marker, tensors=None):
    """A torch file holding a state_dict (or `tensors`) and the payload."""
    state = tensors if tensors is not None else torch.nn.Linear(2, 2).state_dict()
    torch.save({"state_dict": state, "callbacks": Payload(marker)}, path)
    return path


def _refused(caught, marker):
    problem = caught.value.problems[0]
    assert problem.code == "E413", problem
    assert "could run code" in problem.message and "`io.open`" in problem.message
    assert "safetensors" in problem.hint and "do not load this file" in problem.hint
    assert "weights_only=False" not in problem.hint  # never advice to unpickle what was just refused
    assert not marker.exists(), "the payload ran"


def test_the_payload_is_live(tmp_path):
    """(What the other tests refuse would run if loaded the unsafe way.)"""
    marker = tmp_path / "ran"
    torch.load(_poisoned(tmp_path / "x.pt", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".bin", ".safetensors"])
def test_an_init_file_with_a_pickle_payload_is_refused_and_never_runs(engine_registry, tmp_path, suffix):
    marker = tmp_path / "ran"
    path = _poisoned(tmp_path / f"weights{suffix}", marker)
    stage = make_stage("s", steps=1, init=InitPlan(source="path", path=str(path)))
    with pytest.raises(CheckpointError) as caught:
        run_plan(make_plan(stage, out=tmp_path / "run"), registry=engine_registry)
    if suffix == ".safetensors":
        assert caught.value.problems[0].code == "E413" and "named .safetensors" in caught.value.problems[0].message
        assert not marker.exists()
    else:
        _refused(caught, marker)


def test_an_earlier_stages_weights_replaced_by_a_pickle_are_refused(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=2), make_stage("b", steps=2, init=InitPlan(source="stage", stage="a", which="last")),
                     out=tmp_path)
    run_plan(plan, registry=engine_registry)
    marker = tmp_path / "ran"
    _poisoned(tmp_path / "stages/a/last.safetensors", marker)
    with pytest.raises(CheckpointError, match="refused unread") as caught:
        run_plan(plan, registry=engine_registry, from_stage="b")
    assert caught.value.problems[0].code == "E413" and not marker.exists()


class Halt(Callback):
    def __init__(self, step):
        self.step = step

    def step_end(self, state):
        if state.stage_step == self.step:
            raise KeyboardInterrupt


def _stopped_run(engine_registry, out, halt_at=9):
    plan = make_plan(make_stage("a", steps=12, checkpoint=CheckpointPlan(every=4), log_every=1), out=out)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, registry=engine_registry, callbacks=[Halt(halt_at)])
    return plan


def _rewrite_manifest(folder, name):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = {"bytes": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["trainer.safetensors", "model.safetensors"])
def test_a_checkpoint_file_carrying_a_pickle_payload_is_refused_and_never_runs(engine_registry, tmp_path, name):
    _stopped_run(engine_registry, tmp_path)
    newest = tmp_path / "stages/a/state/step_000000008"
    marker = tmp_path / "ran"
    tensors = {k: v.clone() for k, v in read_weights(newest / "model.safetensors").items()}  # not the mapped file
    _poisoned(newest / name, marker, tensors)
    _rewrite_manifest(newest, name)  # the checksums match: only the loader stands in the way
    with pytest.raises(CheckpointError) as caught:
        resume_run(tmp_path, registry=engine_registry)
    assert caught.value.problems[0].code == "E413" and not marker.exists()
    with pytest.raises(CheckpointError, match="E413"):
        trainer_checkpoints.load_state(newest)
    assert not marker.exists()


def test_a_truncated_newest_checkpoint_is_detected_and_the_previous_one_used(engine_registry, tmp_path):
    plan = _stopped_run(engine_registry, tmp_path / "run")
    run_plan(make_plan(*plan.stages, out=tmp_path / "ref"), registry=engine_registry)
    newest = tmp_path / "run/stages/a/state/step_000000008"
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "truncated" in trainer_checkpoints.verify_state(newest)
    warnings = []
    result = resume_run(tmp_path / "run", registry=engine_registry, warn=warnings.append)
    assert len(warnings) == 1 and "step_000000008" in warnings[0] and "falling back" in warnings[0]
    assert result.summary["resumes"][0]["checkpoint"] == "stages/a/state/step_000000004"
    ours, theirs = (read_weights(tmp_path / r / "stages/a/last.safetensors") for r in ("run", "ref"))
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_changed_file_fails_its_checksum_and_is_passed_over_without_being_loaded(engine_registry, tmp_path):
    _stopped_run(engine_registry, tmp_path)
    newest = tmp_path / "stages/a/state/step_000000008"
    marker = tmp_path / "ran"
    _poisoned(newest / "trainer.safetensors", marker)  # manifest left as it was
    assert "checksum" in trainer_checkpoints.verify_state(newest) or "bytes" in trainer_checkpoints.verify_state(newest)
    warnings = []
    resume_run(tmp_path, registry=engine_registry, warn=warnings.append)
    assert warnings and not marker.exists()


def test_no_usable_checkpoint_is_an_error_and_half_written_ones_are_cleaned(engine_registry, tmp_path):
    _stopped_run(engine_registry, tmp_path, halt_at=5)  # one checkpoint: step 4
    only = tmp_path / "stages/a/state/step_000000004"
    (only / "run_state.json").write_text("{}")
    leftover = tmp_path / "stages/a/state/.step_000000008.abc.tmp"
    leftover.mkdir()
    with pytest.raises(CheckpointError, match="no usable trainer checkpoint") as caught:
        resume_run(tmp_path, registry=engine_registry, warn=lambda message: None)
    assert caught.value.problems[0].code == "E414"
    assert not leftover.exists()


def test_checkpoints_are_complete_checked_folders_with_the_best_weights_linked(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=8, checkpoint=CheckpointPlan(every=4), eval=EvalPlan(every=4)),
                     out=tmp_path)
    run_plan(plan, registry=engine_registry)
    folder = tmp_path / "stages/a/state/step_000000004"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "trainer.safetensors", "run_state.json", "best.safetensors"}
    assert manifest["stage"] == "a" and manifest["stage_step"] == 4 and manifest["phase"] == "train"
    assert manifest["plan_hash"] == plan.hash and manifest["metrics_bytes"] > 0
    assert trainer_checkpoints.verify_state(folder) is None
    end = json.loads((tmp_path / "stages/a/state/step_000000008/manifest.json").read_text())
    assert end["phase"] == "end"
    # the trainer state is safetensors: tensors, and JSON for the rest; no pickle
    from safetensors import safe_open

    with safe_open(str(folder / "trainer.safetensors"), "pt") as handle:
        assert set(handle.metadata()) == {"stagedsl.trainer"}
    trainer = trainer_checkpoints.load_state(folder)["trainer"]
    assert {"optimizer", "optimizer_params", "scheduler", "scaler", "rng", "data", "loss_window", "auto"} <= set(trainer)


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")
    before = path.read_bytes()

    def broken(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half")
        raise OSError("disk full")

    from stagedsl.engine.checkpointing.safe_io import atomic_write

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


def test_a_checkpoint_write_that_fails_in_the_background_fails_the_run(engine_registry, tmp_path, monkeypatch):
    from stagedsl.engine.checkpointing import trainer_payload

    def full_disk(path, skeleton, tensors):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(trainer_payload, "write_packed", full_disk)
    plan = make_plan(make_stage("a", steps=8, checkpoint=CheckpointPlan(every=4)), out=tmp_path)
    with pytest.raises(CheckpointError) as caught:
        run_plan(plan, registry=engine_registry)
    problem = caught.value.problems[0]
    assert problem.code == "E416" and "No space left on device" in problem.message and "step_000000004" in problem.message
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "failed"
    assert not list((tmp_path / "stages/a/state").iterdir())  # nothing half-written left in place
