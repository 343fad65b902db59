"""The built-in plugins register through the public hooks, cheaply and with usable signatures."""

import inspect
import subprocess
import sys
import typing

import pytest

from stagedsl import Registry, Steps
from stagedsl.registry.manager import BUILTIN_MODULES

EXPECTED = {
    "models": {"mlp", "pde_transformer", "ocec_net", "metr_forecaster"},
    "datasets": {"pde_synthetic", "npz", "image_folder", "ocec_eyes", "metr_synthetic"},
    "losses": {
        "mse", "l1", "huber", "smooth_l1", "cross_entropy", "bce_with_logits", "focal", "cosface",
        "relative_l1", "masked_mae", "nrmse",
    },
    "metrics": {"accuracy", "f1", "precision", "recall", "auroc", "mae", "mse", "rmse", "masked_mae", "nrmse"},
    "optimizers": {"adamw", "adam", "sgd", "rmsprop"},
    "schedulers": {"constant", "multistep", "cosine", "linear", "onecycle", "plateau"},
    "freeze_strategies": {"glob", "regex", "fraction", "modules_of_type", "children"},
    "callbacks": set(),
}
LEADING = {"optimizers": ["param_groups"], "schedulers": ["optimizer", "total_steps"], "freeze_strategies": ["names"]}


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


def test_every_builtin_name_is_registered(registry):
    for kind, names in EXPECTED.items():
        assert names <= set(registry.names(kind)), kind  # other built-ins may join them
        assert all(registry.get(kind, n).plugin.startswith("stagedsl_plugins.") for n in names)


def test_importing_the_builtin_modules_and_loading_the_registry_imports_no_heavy_library():
    code = (
        "import sys\n"
        f"for name in {list(BUILTIN_MODULES)!r}: __import__(name)\n"
        "from stagedsl import Registry\n"
        "Registry.load(autoload=False)\n"
        "heavy = [m for m in ('torch', 'torchmetrics', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_factories_are_documented_and_take_explicit_annotated_arguments(registry):
    for entry in registry.entries():
        assert entry.doc, f"{entry.kind} {entry.name} has no docstring"
        signature = entry.signature()
        params = list(signature.parameters.values())
        leading = LEADING.get(entry.kind, [])
        assert [p.name for p in params[: len(leading)]] == leading, entry.name
        for param in params[len(leading):]:
            assert param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL), f"{entry.name}: *{param.name}"
            assert param.annotation is not inspect.Parameter.empty, f"{entry.name}.{param.name} has no type"
            assert not isinstance(param.annotation, str), f"{entry.name}.{param.name}: unresolved annotation"


def test_dataset_sizes_accept_whatever_the_factory_takes(registry):
    # the planner calls sizes(**args) with the dataset's arguments; it names those it needs (as the
    # factory types them) and may take the rest as **kwargs instead of repeating the whole signature
    for name in EXPECTED["datasets"]:
        entry = registry.get("datasets", name)
        sizes = inspect.signature(entry.meta["sizes"], eval_str=True).parameters
        factory = inspect.signature(entry.factory, eval_str=True).parameters
        named = {n: p for n, p in sizes.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        assert all(n in factory and p.annotation == factory[n].annotation and p.default == factory[n].default
                   for n, p in named.items()), name
        assert set(factory) <= set(named) or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sizes.values()), name


def test_registration_metadata(registry):
    from stagedsl_plugins.losses import per_channel_std
    from stagedsl_plugins.schedulers import plateau_worst_case

    assert registry.get("losses", "nrmse").meta.auto == {"sigma": per_channel_std}
    modes = {name: registry.get("metrics", name).meta.mode for name in EXPECTED["metrics"]}
    assert {n for n, m in modes.items() if m == "max"} == {"accuracy", "f1", "precision", "recall", "auroc"}
    plateau = registry.get("schedulers", "plateau").meta
    assert plateau.monitored and plateau.worst_case is plateau_worst_case
    assert all(not registry.get("schedulers", n).meta.monitored for n in EXPECTED["schedulers"] - {"plateau"})
    # what a spec gets when it names nothing: the plugins say it, the core names no piece
    assert [registry.default(kind).name for kind in ("optimizers", "schedulers", "freeze_strategies")] == ["adamw", "constant", "glob"]
    assert registry.by_prefix("freeze_strategies", "re:a.*") == (registry.get("freeze_strategies", "regex"), "a.*")


def test_duration_arguments_are_annotated_as_steps(registry):
    def annotation(scheduler, arg):
        return registry.get("schedulers", scheduler).signature().parameters[arg].annotation

    for name in ("constant", "cosine", "linear"):
        assert annotation(name, "warmup") is Steps
    milestones = annotation("multistep", "milestones")
    assert typing.get_origin(milestones) is list and typing.get_args(milestones) == (Steps,)
