"""Where keys and values are written: the scanner's spans, and `--set` arguments over the files."""

import pytest

from stagedsl.spec.locate import ScannedText, SourceMap
from stagedsl.spec.overrides import Override, written_overrides

TEXT = '''\
[run]
seed = "zero"  # a comment
"quoted key" = 'x'

[[stage]]
name = "a"
steps = 4.5
freeze = ["enc.**", "re:dec\\\\..*",
  "x"]
optimizer = { use = "adamw", betas = [0.9, 0.99] }
eval.every = "ten steps"

[[stage]]
name = "b"
notes = """one
two"""
lr = 1e-3
'''


def shown(scan: ScannedText, path, on_key=False):
    start, end = scan.span(path, on_key=on_key)
    return scan.text[start:end]


@pytest.mark.parametrize("path, value", [
    (("run", "seed"), '"zero"'),
    (("run", "quoted key"), "'x'"),
    (("stage", 0, "steps"), "4.5"),
    (("stage", 0, "freeze"), '["enc.**", "re:dec\\\\..*",\n  "x"]'),
    (("stage", 0, "freeze", 1), '"re:dec\\\\..*"'),
    (("stage", 0, "freeze", 2), '"x"'),
    (("stage", 0, "optimizer"), '{ use = "adamw", betas = [0.9, 0.99] }'),
    (("stage", 0, "optimizer", "use"), '"adamw"'),
    (("stage", 0, "optimizer", "betas", 1), "0.99"),
    (("stage", 0, "eval", "every"), '"ten steps"'),
    (("stage", 1, "notes"), '"""one\ntwo"""'),
    (("stage", 1, "lr"), "1e-3"),
])
def test_the_scanner_records_every_value(path, value):
    assert shown(ScannedText(TEXT), path) == value


@pytest.mark.parametrize("path, key, line", [
    (("run",), "[run]", 1),
    (("run", "quoted key"), '"quoted key"', 3),
    (("stage", 1), "[[stage]]", 13),
    (("stage", 0, "eval"), "eval", 11),
    (("stage", 0, "optimizer", "betas"), "betas", 10),
])
def test_the_scanner_records_every_key(path, key, line):
    scan = ScannedText(TEXT)
    assert shown(scan, path, on_key=True) == key
    assert scan.position(scan.keys[path][0])[0] == line


def test_a_table_header_has_no_value_of_its_own():
    assert shown(ScannedText(TEXT), ("stage", 0)) == "[[stage]]"


def test_locations_carry_the_whole_span():
    where = SourceMap([("s.toml", TEXT)]).where("stage[0].freeze")
    assert (where.file, where.line, where.column, where.end_line, where.end_column) == ("s.toml", 8, 10, 9, 7)
    assert SourceMap([("s.toml", TEXT)]).where("stage[0].steps", on_key=True).fields()["end_column"] == 6


def test_an_override_points_at_its_argument():
    sources = [("s.toml", TEXT)]
    document = {"stage": [{"name": "a"}, {"name": "b"}]}
    overrides = written_overrides(["run.seed=1", "stage.b.optimizer={ use = 'sgd', momentum = 0.9 }"], document)
    where = SourceMap(sources, overrides=overrides).where("stage[1].optimizer.momentum")
    assert where.argument == "--set stage.b.optimizer={ use = 'sgd', momentum = 0.9 }" and where.argument_index == 1
    assert where.argument[where.column - 1 : where.end_column - 1] == "0.9"
    assert where.line is None and where.file == "s.toml"
    key = SourceMap(sources, overrides=overrides).where("stage[1].optimizer.momentum", on_key=True)
    assert key.argument[key.column - 1 : key.end_column - 1] == "momentum"
    assert SourceMap(sources, overrides=overrides).where("run.seed").argument_index == 0
    assert SourceMap(sources, overrides=overrides).where("stage[0].steps").line == 7  # not overridden: in the file


def test_a_set_under_defaults_points_at_the_argument_unless_the_stage_writes_the_key():
    sources = [("s.toml", TEXT)]
    overrides = written_overrides(["defaults.lr=3", "defaults.steps=2"], {})
    source_map = SourceMap(sources, overrides=overrides)
    assert source_map.where("stage[0].lr").argument == "--set defaults.lr=3"
    assert source_map.where("stage[1].lr").argument is None  # stage b writes its own lr
    assert source_map.where("stage[0].steps").argument is None


def test_override_spans():
    override = Override.parse(" stage[0].steps = ten", 2)
    assert [override.text[a:b] for a, b in override.part_spans] == ["stage", "[0]", "steps"]
    assert override.text[slice(*override.value_span)] == "ten" and override.value == "ten" and override.index == 2
