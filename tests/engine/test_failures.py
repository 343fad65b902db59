"""Whatever fails under a run — the validation data, the disk, a checkpoint, the dtype of a batch — it
ends as one error with a hint, nothing half-written, and the last good checkpoint intact and named."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from stagedsl import DataSplits, TensorSplit, hookimpl
from stagedsl.api import resume_run
from stagedsl.engine.checkpointing import trainer_checkpoints
from stagedsl.engine.runner import run_plan
from stagedsl.errors import CheckpointError, RunError, StagedError
from stagedsl.plan.model import CheckpointPlan, EvalPlan, InitPlan, LossPlan, LossTerm
from stagedsl.run_dir import RunDir

from .conftest import make_plan, make_stage, read_summary, toy_regression
from .test_resume import Stop


class NanOnEval(torch.nn.Module):
    """MSE in training; NaN in every evaluation after the first `finite_evals` (gradients off: an evaluation)."""

    def __init__(self, finite_evals: int = 0):
        super().__init__()
        self.finite_evals, self.evals = finite_evals, 0

    def forward(self, output, target):
        loss = torch.nn.functional.mse_loss(output, target)
        if torch.is_grad_enabled():
            return loss
        self.evals += 1
        return loss if self.evals <= self.finite_evals else loss * float("nan")


def int_inputs():
    """The toy data with int64 inputs, as a dataset of integer codes would give them."""
    splits = toy_regression()
    return DataSplits(train=TensorSplit(splits.train.inputs.round().long(), splits.train.target), val=None)


class FailurePieces:
    @hookimpl
    def register_losses(self, register):
        register("nan_on_eval", NanOnEval)

    @hookimpl
    def register_datasets(self, register):
        register("int_inputs", int_inputs)


@pytest.fixture
def pieces(engine_registry, register_plugin):
    register_plugin(FailurePieces(), name="failure-pieces")
    return engine_registry


def _nan_eval_stage(name="a", index=0, finite_evals=0, **fields):
    loss = LossPlan("sum", (LossTerm("nan_on_eval", {"finite_evals": finite_evals}),))
    defaults = dict(steps=12, loss=loss, eval=EvalPlan(every=4), checkpoint=CheckpointPlan(every=4))
    return make_stage(name, index, **{**defaults, **fields})


# -- non-finite validation ------------------------------------------------------------------------
def test_a_nan_validation_stops_the_run_naming_the_last_good_checkpoint_and_writes_no_best(pieces, tmp_path):
    with pytest.raises(RunError) as caught:
        run_plan(make_plan(_nan_eval_stage(finite_evals=1), out=tmp_path), registry=pieces)
    problem = caught.value.problems[0]
    assert problem.code == "E446" and "`val/loss` = nan at step 8" in problem.message
    assert "the last good checkpoint is `stages/a/state/step_000000004`" in problem.message
    assert "on_nonfinite = \"skip\"" in problem.message
    best = RunDir(tmp_path).weights("a", "best")
    assert best.exists() and read_summary(tmp_path)["stages"]["a"]["status"] == "failed"
    assert trainer_checkpoints.verify_state(tmp_path / "stages/a/state/step_000000004") is None

    with pytest.raises(RunError):  # NaN from the first evaluation: no best at all, never the last weights called best
        run_plan(make_plan(_nan_eval_stage(), out=tmp_path / "first"), registry=pieces)
    assert not RunDir(tmp_path / "first").weights("a", "best").exists()


def test_skip_warns_once_keeps_the_previous_best_and_a_stage_with_none_has_no_best_to_init_from(pieces, tmp_path, capsys):
    plan = make_plan(_nan_eval_stage(finite_evals=1, on_nonfinite="skip"), out=tmp_path)
    result = run_plan(plan, registry=pieces)
    record = result.stages["a"]
    assert record["best_step"] == 4 and record["nonfinite_evals"] == 2 and record["status"] == "completed"
    err = capsys.readouterr().err
    assert err.count("warning[W010]") == 1 and "the best stays the one of step 4" in err

    never = make_plan(_nan_eval_stage(on_nonfinite="skip"),
                      make_stage("b", steps=2, init=InitPlan("stage", "a", "best")), out=tmp_path / "never")
    with pytest.raises(CheckpointError) as caught:
        run_plan(never, registry=pieces)
    assert caught.value.problems[0].code == "E410" and "non-finite" in caught.value.problems[0].hint
    assert read_summary(tmp_path / "never")["stages"]["a"]["best_value"] is None
    assert not RunDir(tmp_path / "never").weights("a", "best").exists()


# -- the disk -----------------------------------------------------------------------------------
def _fail_writes(monkeypatch, match: str, code: int, *, after: int = 0):
    """Make `safetensors` writes of a path containing `match` fail with `code` (after `after` good ones), half-way."""
    import safetensors.torch

    original = safetensors.torch.save_file
    seen = {"n": 0}

    def save_file(tensors, filename, metadata=None):
        if match in str(filename):
            seen["n"] += 1
            if seen["n"] > after:
                Path(filename).write_bytes(b"half a file")
                raise OSError(code, os.strerror(code), str(filename))
        return original(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


def _leftovers(run_dir: Path) -> list[str]:
    return [p.name for p in run_dir.rglob(".*") if p.name != ".lock"]


def test_a_full_disk_at_a_best_write_is_an_error_with_a_hint_and_the_last_checkpoint_is_intact(engine_registry, tmp_path,
                                                                                                monkeypatch):
    plan = make_plan(make_stage("a", steps=12, eval=EvalPlan(every=4), checkpoint=CheckpointPlan(every=2)), out=tmp_path)
    _fail_writes(monkeypatch, "best.safetensors", errno.ENOSPC, after=1)  # the second best write
    with pytest.raises(RunError) as caught:
        run_plan(plan, registry=engine_registry)
    problem = caught.value.problems[0]
    assert problem.code == "E445" and "No space left on device (ENOSPC)" in problem.message
    assert "best.safetensors" in problem.message and "stage `a` at step 8" in problem.message
    assert "the disk is full" in problem.hint and "the last good checkpoint is `stages/a/state/step_000000006`" in problem.hint
    assert trainer_checkpoints.verify_state(tmp_path / "stages/a/state/step_000000006") is None
    assert _leftovers(tmp_path) == [], "a half-written file was left"
    monkeypatch.undo()
    result = resume_run(tmp_path, registry=engine_registry)  # space again: it continues where it was
    assert result.status == "completed" and result.summary["resumes"][0]["at"]["stage_step"] == 6


def test_a_full_disk_at_a_checkpoint_write_names_the_checkpoint_and_keeps_the_previous(engine_registry, tmp_path, monkeypatch):
    plan = make_plan(make_stage("a", steps=12, checkpoint=CheckpointPlan(every=4)), out=tmp_path)
    _fail_writes(monkeypatch, "step_000000008", errno.ENOSPC)
    with pytest.raises(CheckpointError) as caught:
        run_plan(plan, registry=engine_registry)
    problem = caught.value.problems[0]
    assert problem.code == "E416" and "step_000000008" in problem.message
    assert "the disk is full" in problem.hint and "the previous checkpoints are intact" in problem.hint
    assert [p.name for p in (tmp_path / "stages/a/state").iterdir()] == ["step_000000004"]
    assert trainer_checkpoints.verify_state(tmp_path / "stages/a/state/step_000000004") is None


def test_a_full_disk_while_setting_up_is_an_error_with_a_hint(engine_registry, tmp_path, monkeypatch):
    import stagedsl.engine.outputs as outputs

    def refuse(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(outputs, "open", refuse, raising=False)  # metrics.jsonl cannot be opened
    with pytest.raises(RunError) as caught:
        run_plan(make_plan(make_stage("a", steps=2), out=tmp_path), registry=engine_registry)
    problem = caught.value.problems[0]
    assert problem.code == "E445" and "metrics.jsonl" in problem.message and "the disk is full" in problem.hint


READ_ONLY = errno.EROFS


def _read_only(monkeypatch, root: Path):
    """Below `root`, every way a file is created, changed or removed fails as on a read-only file system."""
    import builtins
    import io

    root = str(root.resolve())

    def under(path) -> bool:
        try:
            return os.path.realpath(os.fspath(path)).startswith(root)
        except TypeError:
            return False

    def guard(original, writes=lambda *a, **k: True):
        def wrapped(path, *args, **kwargs):
            if under(path) and writes(*args, **kwargs):
                raise OSError(READ_ONLY, os.strerror(READ_ONLY), os.fspath(path))
            return original(path, *args, **kwargs)
        return wrapped

    def writing_mode(mode="r", *args, **kwargs):
        return any(c in mode for c in "wax+")

    def writing_flags(flags, *args, **kwargs):
        return bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))

    monkeypatch.setattr(builtins, "open", guard(builtins.open, writing_mode))
    monkeypatch.setattr(io, "open", guard(io.open, writing_mode))
    monkeypatch.setattr(os, "open", guard(os.open, writing_flags))
    for name in ("mkdir", "unlink", "remove", "rmdir", "replace", "rename", "link"):
        monkeypatch.setattr(os, name, guard(getattr(os, name)))
    monkeypatch.setattr(shutil, "rmtree", guard(shutil.rmtree))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_read_only_file_system_is_an_error_with_a_hint_for_run_run_overwrite_and_resume(engine_registry, tmp_path,
                                                                                          monkeypatch, capsys):
    from stagedsl.cli.app import run_cli

    spec = tmp_path / "spec.toml"
    spec.write_text('[run]\nname = "ro"\ndevice = "cpu"\n[model]\nuse = "mlp"\nin_features = 8\nhidden = [4]\nout_features = 2\n'
                    '[data]\nuse = "toy_regression"\nbatch_size = 16\n[[stage]]\nname = "a"\nsteps = 8\nlr = 1e-2\nloss = "mse"\n'
                    'checkpoint = { every = 4 }\n')
    with pytest.raises(KeyboardInterrupt):
        run_plan(make_plan(make_stage("a", steps=8, log_every=1, checkpoint=CheckpointPlan(every=4)), out=tmp_path / "run"),
                 registry=engine_registry, callbacks=[Stop("step_end", "a", 6)])
    before = _files(tmp_path / "run")
    _read_only(monkeypatch, tmp_path)
    for argv in (["run", str(spec), "--out", str(tmp_path / "new")], ["run", str(spec), "--out", str(tmp_path / "run"), "--overwrite"],
                 ["resume", str(tmp_path / "run")]):
        assert run_cli(argv) == 1, argv
        err = capsys.readouterr().err
        assert "error[E445]" in err and "Read-only file system (EROFS)" in err and "Traceback" not in err, err
        assert "the file system is read-only" in err
    monkeypatch.undo()
    assert _files(tmp_path / "run") == before and not (tmp_path / "new").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through a folder's permissions: simulated by the test above instead")
def test_a_folder_without_write_permission_is_an_error_with_a_hint(engine_registry, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(RunError) as caught:
            run_plan(make_plan(make_stage("a", steps=2), out=locked / "run"), registry=engine_registry)
    finally:
        locked.chmod(0o755)
    assert caught.value.problems[0].code == "E445" and "permission denied" in caught.value.problems[0].hint


def test_a_path_too_long_for_the_file_system_is_an_error_with_a_hint(engine_registry, tmp_path, capsys):
    with pytest.raises(RunError) as caught:
        run_plan(make_plan(make_stage("a", steps=2), out=tmp_path / ("x" * 300)), registry=engine_registry)
    problem = caught.value.problems[0]
    assert problem.code == "E445" and "ENAMETOOLONG" in problem.message and "shorter --out" in problem.hint


# -- checkpoints that cannot be trusted ------------------------------------------------------------
def _stopped(registry, run_dir: Path) -> None:
    """A run with checkpoints at steps 4 and 8 of 12, stopped at step 10."""
    plan = make_plan(make_stage("a", steps=12, log_every=1, checkpoint=CheckpointPlan(every=4, keep_last=3)), out=run_dir)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, registry=registry, callbacks=[Stop("step_end", "a", 10)])


def test_a_manifest_edited_to_list_no_files_is_passed_over_for_the_checkpoint_before_it(engine_registry, tmp_path):
    _stopped(engine_registry, tmp_path)
    manifest = tmp_path / "stages/a/state/step_000000008/manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "files": {}}))
    warnings = []
    result = resume_run(tmp_path, registry=engine_registry, warn=warnings.append)
    assert result.summary["resumes"][0]["at"]["stage_step"] == 4
    assert any("step_000000008" in w and "does not list `model.safetensors`" in w for w in warnings), warnings


def test_an_unreadable_manifest_is_skipped_with_a_warning_naming_it(engine_registry, tmp_path):
    _stopped(engine_registry, tmp_path)
    (tmp_path / "stages/a/state/step_000000008/manifest.json").write_bytes(b"\x00 not json")
    warnings = []
    result = resume_run(tmp_path, registry=engine_registry, warn=warnings.append)
    assert result.summary["resumes"][0]["at"]["stage_step"] == 4
    assert any("step_000000008" in w and "was skipped" in w and "W011" in w for w in warnings), warnings


def test_a_pickle_in_run_state_json_is_refused_unread_with_a_hint(engine_registry, tmp_path):
    import pickle

    _stopped(engine_registry, tmp_path)
    folder = tmp_path / "stages/a/state/step_000000008"
    (folder / "run_state.json").write_bytes(pickle.dumps({"boom": os.system}))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["run_state.json"] = trainer_checkpoints._file_record(folder / "run_state.json")  # a matching manifest
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as caught:
        resume_run(tmp_path, registry=engine_registry, warn=lambda message: None)
    problem = caught.value.problems[0]
    assert problem.code == "E413" and "`posix.system`" in problem.message and problem.hint and "do not load" in problem.hint


# -- records and hints ---------------------------------------------------------------------------
def test_a_deleted_best_is_not_listed_in_the_summary(engine_registry, tmp_path):
    plan = make_plan(make_stage("a", steps=4), make_stage("b", steps=12, log_every=1, checkpoint=CheckpointPlan(every=4)),
                     out=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run_plan(plan, registry=engine_registry, callbacks=[Stop("step_end", "b", 6)])
    assert read_summary(tmp_path)["stages"]["a"]["checkpoints"]["best"] == "stages/a/best.safetensors"
    (tmp_path / "stages/a/best.safetensors").unlink()
    summary = resume_run(tmp_path, registry=engine_registry).summary
    assert "best" not in summary["stages"]["a"]["checkpoints"] and summary["stages"]["a"]["checkpoints"]["last"]
    assert read_summary(tmp_path) == json.loads(json.dumps(summary, default=str))


def test_integer_inputs_to_a_float_model_say_which_dtypes_and_what_to_change(pieces, tmp_path):
    with pytest.raises(StagedError) as caught:
        run_plan(make_plan(make_stage("a", steps=2, metrics=()), out=tmp_path, data={"name": "int_inputs"}), registry=pieces)
    problem = caught.value.problems[0]
    assert problem.code == "E400" and problem.hint
    assert "inputs of dtype int64 but the model's weights are float32" in problem.hint and "x.to(torch.float32)" in problem.hint
