"""Weights from elsewhere: a Lightning `.ckpt` (its `state_dict` under `model.`), a `.pt` state dict with a
wrapper's prefix, safetensors; `strip_prefix`, `rename` and `add_prefix` map their keys; `strict = false`
reports exactly which keys were missing and unexpected; a shape mismatch names the tensor and both shapes."""

from __future__ import annotations

import pytest
import torch

from stagedsl.engine.runner import run_plan
from stagedsl.errors import CheckpointError
from stagedsl.plan.model import InitPlan

from ..conftest import Recorder, make_plan, make_stage


def _mlp():
    from stagedsl_plugins._mlp import MLP

    torch.manual_seed(7)
    return MLP(8, [16], 2)


def _init(path, **fields):
    return make_stage("s", steps=1, init=InitPlan(source="path", path=str(path), **fields))


def _loaded(engine_registry, stage, out):
    recorder = Recorder()
    result = run_plan(make_plan(stage, out=out), registry=engine_registry, callbacks=[recorder])
    return result, recorder.snapshots["s"]


def test_a_lightning_checkpoint_loads_with_strip_prefix(engine_registry, tmp_path):
    source = _mlp()
    ckpt = {
        "epoch": 4, "global_step": 120, "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1, 2, 3]}]}],
        "lr_schedulers": [], "callbacks": {}, "hyper_parameters": {"width": 16},
    }
    torch.save(ckpt, tmp_path / "edge_gnn_epoch200.ckpt")
    with pytest.raises(CheckpointError) as caught:  # as the file names them, none of its keys is the model's
        _loaded(engine_registry, _init(tmp_path / "edge_gnn_epoch200.ckpt"), tmp_path / "strict")
    assert caught.value.problems[0].code == "E411"
    assert caught.value.problems[0].hint == 'the file\'s keys carry a prefix: strip_prefix = "model."'
    result, loaded = _loaded(engine_registry, _init(tmp_path / "edge_gnn_epoch200.ckpt", strip_prefix="model."), tmp_path / "run")
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    assert result.stages["s"]["init"] == {"path": str(tmp_path / "edge_gnn_epoch200.ckpt"), "missing": [], "unexpected": []}


def test_a_pt_state_dict_with_a_prefix_loads_with_strip_prefix_and_rename(engine_registry, tmp_path):
    source = _mlp()
    state = {f"net.{k}".replace("net.layers.2.", "net.classifier."): v for k, v in source.state_dict().items()}
    torch.save(state, tmp_path / "ocec_best_epoch12.pt")
    stage = _init(tmp_path / "ocec_best_epoch*.pt", strip_prefix="net.", rename={"classifier": "layers.2"})
    _, loaded = _loaded(engine_registry, stage, tmp_path / "run")
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())


def test_a_backbone_only_safetensors_file_loads_with_add_prefix_and_reports_every_key(engine_registry, tmp_path):
    from safetensors.torch import save_file

    source = _mlp()
    first = {k.removeprefix("layers."): v.clone() for k, v in source.state_dict().items() if k.startswith("layers.0.")}
    first["0.running_extra"] = torch.zeros(3)
    save_file(first, tmp_path / "backbone.safetensors")
    stage = _init(tmp_path / "backbone.safetensors", add_prefix="layers.", strict=False)
    result, loaded = _loaded(engine_registry, stage, tmp_path / "run")
    assert torch.equal(loaded["layers.0.weight"], source.state_dict()["layers.0.weight"])
    assert result.stages["s"]["init"]["missing"] == ["layers.2.bias", "layers.2.weight"]
    assert result.stages["s"]["init"]["unexpected"] == ["layers.0.running_extra"]


def test_a_shape_mismatch_names_the_tensor_and_both_shapes_even_when_not_strict(engine_registry, tmp_path):
    from stagedsl_plugins._mlp import MLP

    torch.save(MLP(8, [16], 5).state_dict(), tmp_path / "other_head.pt")
    with pytest.raises(CheckpointError) as caught:
        _loaded(engine_registry, _init(tmp_path / "other_head.pt", strict=False), tmp_path / "run")
    problem = caught.value.problems[0]
    assert problem.code == "E473"
    assert "`layers.2.weight` is [5, 16] in the file but [2, 16] in the model" in problem.message
    assert "`layers.2.bias` is [5] in the file but [2] in the model" in problem.message


@pytest.mark.parametrize(("fields", "code", "needle"), [
    ({"strip_prefix": "module."}, "E471", "no key of"),
    ({"rename": {"classifier": "head"}}, "E471", "rename `classifier`"),
    ({"rename": {"layers.0": "layers.2"}}, "E472", "both become `layers.2.weight`"),
])
def test_a_mapping_that_matches_nothing_or_collides_is_an_error(engine_registry, tmp_path, fields, code, needle):
    torch.save(_mlp().state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as caught:
        _loaded(engine_registry, _init(tmp_path / "w.pt", **fields), tmp_path / "run")
    assert caught.value.problems[0].code == code and needle in caught.value.problems[0].message


def test_the_spec_writes_the_mapping_and_the_plan_carries_it(registry):
    from stagedsl.errors import SpecError
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import loads_spec

    text = ('[model]\nuse = "mlp"\nin_features = 8\nhidden = [16]\nout_features = 2\n\n[data]\nuse = "pde_synthetic"\n\n'
            '[[stage]]\nname = "a"\nsteps = 2\nlr = 0.1\nloss = "mse"\n'
            'init = { path = "edge.ckpt", strip_prefix = "model.", rename = { fc = "layers.2" }, strict = false }\n')
    init = compile_plan(loads_spec(text, registry=registry), registry).stages[0].init
    assert (init.strip_prefix, init.rename, init.add_prefix, init.strict) == ("model.", {"fc": "layers.2"}, None, False)
    with pytest.raises(SpecError) as caught:
        loads_spec(text + '\n[[stage]]\nname = "b"\nsteps = 2\nlr = 0.1\nloss = "mse"\ninit = { stage = "a", add_prefix = "x." }\n',
                   registry=registry)
    assert caught.value.problems[0].code == "E470" and caught.value.problems[0].path == "stage[1].init"
