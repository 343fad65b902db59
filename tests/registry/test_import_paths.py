"""Pieces named by import path ("pkg.module:attr", "./file.py:attr") enter through the registry's door:
resolved against the spec's folder, adapted to the core's calling convention, and every way of
naming nothing is an error that says what there is."""

from __future__ import annotations

import textwrap

import pytest
import torch

from stagedsl.errors import PluginError

pytestmark = pytest.mark.usefixtures("isolated_imports")


def write(folder, name, source):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def problem(excinfo):
    return excinfo.value.problems[0]


def test_a_class_in_a_file_beside_the_spec_is_a_model(registry, tmp_path):
    write(tmp_path, "net.py", """
        from torch import nn

        class Net(nn.Module):
            '''Two layers.'''
            def __init__(self, width: int = 4, classes: int = 2):
                super().__init__()
                self.body, self.head = nn.Linear(3, width), nn.Linear(width, classes)
    """)
    entry = registry.get("models", "./net.py:Net", root=str(tmp_path))
    assert entry.doc == "Two layers." and entry.origin == str(tmp_path / "net.py")
    assert [a.name for a in entry.arguments()] == ["width", "classes"]
    model = registry.build("models", "./net.py:Net", {"width": 5}, root=str(tmp_path))
    assert model.head.in_features == 5
    # the absolute path names the same piece wherever the process runs (a member's, a resume)
    assert registry.build("models", f"{tmp_path}/net.py:Net").head.in_features == 4


def test_a_module_in_the_spec_folder_imports_by_name(registry, tmp_path):
    write(tmp_path, "zoo_h13/__init__.py", "")
    write(tmp_path, "zoo_h13/heads.py", "def make(size: int = 3):\n    '''A head.'''\n    import torch\n    return torch.nn.Linear(size, 1)\n")
    assert registry.build("models", "zoo_h13.heads:make", {"size": 6}, root=str(tmp_path)).in_features == 6


def test_a_generic_factory_takes_its_keyword_arguments_like_timm_create_model(registry, tmp_path):
    write(tmp_path, "fakezoo_h13.py", """
        from torch import nn

        def create_model(model_name: str, pretrained: bool = False, num_classes: int = 1000, **kwargs):
            '''A stand-in for timm.create_model.'''
            if model_name != "resnet18":
                raise ValueError(f"unknown model {model_name!r}")
            return nn.Linear(8, num_classes)
    """)
    model = registry.build("models", "fakezoo_h13:create_model", {"model_name": "resnet18", "num_classes": 3}, root=str(tmp_path))
    assert model.out_features == 3


def test_torch_optimizer_and_scheduler_classes_need_no_adapter(registry):
    sgd = registry.get("optimizers", "torch.optim:SGD")
    assert [a.name for a in sgd.arguments() if a.supplied] == ["param_groups", "lr"]
    assert "params" not in [a.name for a in sgd.arguments()]
    weights = torch.nn.Parameter(torch.zeros(2))
    groups = [{"params": [weights], "lr": 0.5, "name": "default"}]
    optimizer = registry.build("optimizers", "torch.optim:SGD", {"momentum": 0.9}, param_groups=groups, lr=0.5)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["momentum"] == 0.9
    assert optimizer.param_groups[0]["name"] == "default"
    scheduler = registry.build("schedulers", "torch.optim.lr_scheduler:StepLR", {"step_size": 2, "gamma": 0.1},
                               optimizer=optimizer, total_steps=10)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert registry.get("schedulers", "torch.optim.lr_scheduler:ReduceLROnPlateau").meta.monitored


def test_a_torchmetrics_class_takes_its_mode_from_higher_is_better(registry):
    assert registry.get("metrics", "torchmetrics.regression:MeanSquaredError").meta.mode == "min"
    assert registry.get("metrics", "torchmetrics.classification:MulticlassAccuracy").meta.mode == "max"


def test_a_missing_attribute_names_what_the_module_defines(registry, tmp_path):
    write(tmp_path, "net.py", "class Net:\n    pass\n\ndef build():\n    return Net()\n")
    with pytest.raises(PluginError) as caught:
        registry.get("models", "./net.py:Nett", root=str(tmp_path))
    assert problem(caught).code == "E084"
    assert problem(caught).message == "module `./net.py` has no attribute `Nett`"
    assert problem(caught).hint == 'did you mean "Net"? it defines: Net, build'


def test_a_missing_file_or_module_says_what_is_there(registry, tmp_path):
    write(tmp_path, "model.py", "class Net:\n    pass\n")
    with pytest.raises(PluginError) as caught:
        registry.get("models", "./modle.py:Net", root=str(tmp_path))
    assert problem(caught).code == "E082" and problem(caught).hint == 'did you mean "model.py"?'
    with pytest.raises(PluginError) as caught:
        registry.get("optimizers", "torch.optimm:SGD")
    assert problem(caught).code == "E081" and problem(caught).hint == 'did you mean "torch.optim"?'
    with pytest.raises(PluginError) as caught:
        registry.get("models", "./model.py", root=str(tmp_path))
    assert problem(caught).code == "E080"


def test_a_module_that_fails_to_import_is_named_with_its_error(registry, tmp_path):
    write(tmp_path, "broken.py", "import timm_not_here_h13\n")
    with pytest.raises(PluginError) as caught:
        registry.get("models", "./broken.py:Net", root=str(tmp_path))
    assert problem(caught).code == "E083"
    assert "timm_not_here_h13" in problem(caught).hint and "Traceback" in problem(caught).trace
    write(tmp_path, "raises.py", "1 / 0\n")
    with pytest.raises(PluginError) as caught:
        registry.get("models", "./raises.py:Net", root=str(tmp_path))
    assert problem(caught).code == "E083" and "ZeroDivisionError" in problem(caught).message


def test_what_cannot_be_a_piece_is_refused(registry, tmp_path):
    write(tmp_path, "things.py", "WIDTH = 4\n\ndef pick(depth: int = 1):\n    return []\n")
    with pytest.raises(PluginError) as caught:
        registry.get("models", "./things.py:WIDTH", root=str(tmp_path))
    assert problem(caught).code == "E085" and problem(caught).message.startswith("`./things.py:WIDTH` is an int, not a class")
    with pytest.raises(PluginError) as caught:  # a freeze strategy must take names or modules
        registry.get("freeze_strategies", "./things.py:pick", root=str(tmp_path))
    assert problem(caught).code == "E085"
