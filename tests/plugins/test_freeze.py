"""Freeze strategies select parameter names: glob semantics, regex, fraction from the end."""

import pytest
import torch

from stagedsl import Registry

NAMES = [
    "encoder_2d.weight",
    "encoder_2d.bias",
    "transformer.position",
    "transformer.layers.layers.0.self_attn.in_proj_weight",
    "transformer.layers.layers.0.linear1.bias",
    "transformer.norm.weight",
    "decoder_2d.weight",
    "decoder_2d.bias",
    "head.0.weight",
    "head.weight",
]


@pytest.fixture(scope="module")
def registry():
    return Registry.load(autoload=False)


def select(registry, name, names=NAMES, **args):
    return registry.get("freeze_strategies", name).factory(names, **args)


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("transformer.**", [n for n in NAMES if n.startswith("transformer.")]),
        ("encoder_2d.**", ["encoder_2d.weight", "encoder_2d.bias"]),
        ("**.bias", ["encoder_2d.bias", "transformer.layers.layers.0.linear1.bias", "decoder_2d.bias"]),
        ("transformer.*", ["transformer.position"]),  # * never crosses a dot
        ("transformer.*.weight", ["transformer.norm.weight"]),
        ("transformer.**.weight", ["transformer.norm.weight"]),  # whole segments: not in_proj_weight
        ("*.weight", ["encoder_2d.weight", "decoder_2d.weight", "head.weight"]),
        ("head.?.weight", ["head.0.weight"]),
        ("[ed]*_2d.bias", ["encoder_2d.bias", "decoder_2d.bias"]),
        ("[!e]*_2d.bias", ["decoder_2d.bias"]),
        ("**", NAMES),
        ("transformer", []),  # anchored: a module name alone selects nothing
        ("encoder", []),
        ("weight", []),
        ("head.weight", ["head.weight"]),
    ],
)
def test_glob_semantics(registry, pattern, expected):
    assert select(registry, "glob", pattern=pattern) == expected


def test_glob_double_star_matches_zero_segments_and_rejects_malformed_patterns(registry):
    from stagedsl_plugins.freeze import _compile_glob as compile_glob

    assert select(registry, "glob", names=["a.b", "a.x.y.b", "ab"], pattern="a.**.b") == ["a.b", "a.x.y.b"]
    assert compile_glob("head.**") is compile_glob("head.**")  # compiled once
    for bad in ("enc**.weight", "a..b", ".a", ""):
        with pytest.raises(ValueError):
            select(registry, "glob", pattern=bad)


def test_regex_matches_whole_names(registry):
    assert select(registry, "regex", pattern=r"(en|de)coder_2d\.bias") == ["encoder_2d.bias", "decoder_2d.bias"]
    assert select(registry, "regex", pattern="head") == []
    with pytest.raises(ValueError, match="invalid regular expression"):
        select(registry, "regex", pattern="(")


def test_fraction_takes_the_last_half_of_the_backbone_in_registration_order(registry):
    with torch.device("meta"):
        model = registry.get("models", "ocec_net").factory()
    names = [n for n, _ in model.named_parameters()]
    backbone = [n for n in names if n.startswith("backbone.")]
    assert len(backbone) == 12
    last_half = select(registry, "fraction", names=names, module="backbone", fraction=0.5)
    assert last_half == backbone[6:]
    assert {n.split(".")[1] for n in last_half} == {"2", "3"}  # the later conv blocks
    assert select(registry, "fraction", names=names, module="backbone", fraction=0.25, end="first") == backbone[:3]
    assert select(registry, "fraction", names=names, module="backbone", fraction=0.3) == backbone[-4:]  # ceil(3.6)
    assert select(registry, "fraction", names=names, module="backbone", fraction=1.0) == backbone


@pytest.mark.parametrize(
    "args, message",
    [
        ({"module": "backbone", "fraction": 0.0}, "fraction must be in"),
        ({"module": "backbone", "fraction": 1.5}, "fraction must be in"),
        ({"module": "backbone", "fraction": 0.5, "end": "middle"}, "end must be"),
        ({"module": "backbon", "fraction": 0.5}, 'did you mean "backbone"'),
    ],
)
def test_fraction_validates_its_arguments(registry, args, message):
    with pytest.raises(ValueError, match=message):
        select(registry, "fraction", names=["backbone.0.weight", "head.weight"], **args)


# -- strategies over the module tree: modules_of_type, children ------------------------------
class _ResNetLike(torch.nn.Module):
    """conv1, bn1, relu, maxpool (no parameters), layer1, layer2, avgpool (no parameters), fc: ResNet's top level."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.conv1, self.bn1, self.relu, self.maxpool = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2)
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))
        self.layer2 = nn.Sequential(nn.Conv2d(4, 4, 3), nn.LayerNorm(4))
        self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 2)


@pytest.fixture
def tree_registry(register_plugin):
    import types

    from stagedsl import hookimpl

    return register_plugin(types.SimpleNamespace(register_models=hookimpl(lambda register: register("resnet_like", _ResNetLike))))


def _tree_plan(registry, *selectors):
    from stagedsl.plan.compile import compile_plan
    from stagedsl.spec.loader import loads_spec

    freeze = ", ".join(selectors)
    text = ('[model]\nuse = "resnet_like"\n\n[data]\nuse = "pde_synthetic"\n\n'
            f'[[stage]]\nname = "a"\nsteps = 1\nlr = 0.1\nloss = "mse"\nfreeze = [{freeze}]\n')
    return compile_plan(loads_spec(text, registry=registry), registry).stages[0].frozen


def test_modules_of_type_selects_every_norm_layer_by_class_or_base(tree_registry):
    assert _tree_plan(tree_registry, '{ use = "modules_of_type", type = "BatchNorm2d" }') == (
        "bn1.weight", "bn1.bias", "layer1.1.weight", "layer1.1.bias")
    assert _tree_plan(tree_registry, '{ use = "modules_of_type", type = ["_NormBase", "LayerNorm"], module = "layer2" }') == (
        "layer2.1.weight", "layer2.1.bias")


def test_children_counts_parameterless_children_like_relu_and_maxpool(tree_registry):
    # conv1, bn1, relu, maxpool: the first four children hold only conv1's and bn1's parameters
    assert _tree_plan(tree_registry, '{ use = "children", first = 4 }') == ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias")
    assert _tree_plan(tree_registry, '{ use = "children", first = 3, parameterless = false }') == (
        "conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "layer1.0.weight", "layer1.0.bias", "layer1.1.weight", "layer1.1.bias")
    assert _tree_plan(tree_registry, '{ use = "children", last = 2 }') == ("fc.weight", "fc.bias")  # avgpool, fc
    assert _tree_plan(tree_registry, '{ use = "children", module = "layer2", last = 1 }') == ("layer2.1.weight", "layer2.1.bias")


@pytest.mark.parametrize(("selector", "needle"), [
    ('{ use = "modules_of_type", type = "BatchNorm" }', 'did you mean "BatchNorm2d"?'),
    ('{ use = "children", module = "layr2", first = 1 }', 'did you mean "layer2"?'),
    ('{ use = "children", first = 1, last = 1 }', "exactly one of `first` or `last`"),
])
def test_tree_strategies_say_what_the_model_has(tree_registry, selector, needle):
    from stagedsl.errors import PlanError

    with pytest.raises(PlanError) as caught:
        _tree_plan(tree_registry, selector)
    assert caught.value.problems[0].code == "E024" and needle in caught.value.problems[0].message
