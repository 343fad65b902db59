"""The [export] section: defaults, merging, and every bad key or value reported."""

from __future__ import annotations

import pytest

from stagedsl.errors import UsageError
from stagedsl.export.options import BUILTIN_FORMATS, PruneOptions, resolve_options


def test_defaults_are_the_documented_ones():
    options = resolve_options(None)
    assert options.formats == BUILTIN_FORMATS == ("onnx", "onnx-fp16", "package")
    assert (options.which, options.opset, options.check_batches) == ("best", 18, 4)
    assert (options.atol, options.rtol, options.fp16_atol, options.fp16_rtol) == (1e-4, 1e-4, 1e-2, 1e-2)
    assert options.keep_io_types and options.dynamic_batch and options.prune is None


def test_later_sections_win_and_none_is_ignored():
    options = resolve_options({"which": "last", "opset": 17, "formats": ["onnx"]}, {"opset": None, "formats": "onnx,package"})
    assert options.which == "last" and options.opset == 17 and options.formats == ("onnx", "package")


def test_prune_forms():
    assert resolve_options({"prune": {"amount": 0.5}}).prune == PruneOptions(0.5)
    assert resolve_options({"prune": True}).prune == PruneOptions(0.3)
    assert resolve_options({"prune": 0.2}).prune == PruneOptions(0.2)
    assert resolve_options({"prune": False}).prune is None


def test_every_problem_is_reported_at_once_with_a_hint():
    with pytest.raises(UsageError) as caught:
        resolve_options({"atoll": 1e-3, "which": "worst", "opset": "18", "prune": {"amount": 1.5}, "formats": []})
    problems = caught.value.problems
    assert len(problems) == 5
    assert {p.code for p in problems} == {"E530"}
    unknown = next(p for p in problems if "atoll" in p.message)
    assert unknown.path == "export.atoll" and unknown.hint == 'did you mean "atol"?'


def test_a_registered_exporters_arguments_are_a_table_named_after_its_format():
    options = resolve_options({"formats": ["onnx", "npz_weights"], "npz_weights": {"suffix": "w"}})
    assert options.exporters == {"npz_weights": {"suffix": "w"}}
    with pytest.raises(UsageError):  # a table for a format not asked for is a typo, not arguments
        resolve_options({"formats": ["onnx"], "npz_weights": {"suffix": "w"}})
