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
