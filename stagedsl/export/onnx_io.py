"""Writing ONNX files from a PyTorch model, converting them to float16, and running them.

`export_onnx` uses the torch.export-based exporter (``dynamo=True``, onnxscript) and
falls back to the TorchScript exporter, with a one-line notice, when that fails.
`convert_fp16` rewrites a float32 graph's weights and arithmetic in float16.
`OnnxRunner` runs a file in onnxruntime's CPU provider, casting inputs to what the
graph declares and outputs to float32.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from stagedsl.errors import ExportError, Problem

BATCH_AXIS = "batch"


def io_names(count: int, base: str) -> list[str]:
    """``[base]`` for one tensor, ``[base_0, ..., base_{n-1}]`` for several."""
    return [base] if count == 1 else [f"{base}_{i}" for i in range(count)]


@contextlib.contextmanager
def _quiet_exporter():
    """Keep the exporter's progress off stdout (stdout is the CLI's data) and its
    "torchvision is not installed" log lines out of the way."""
    # "torchvision is not installed" lines, and the version converter's traceback when it
    # cannot reach the requested opset (export_onnx reports that itself, in one line)
    noisy = [logging.getLogger(name) for name in ("torch.onnx._internal.exporter._registration", "onnxscript.version_converter")]
    levels = [logger.level for logger in noisy]
    for logger in noisy:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"The feature will be removed.*")
            warnings.filterwarnings("ignore", message=r".*The axis name: .* will not be used.*")  # several inputs share "batch"
            yield
    finally:
        for logger, level in zip(noisy, levels):
            logger.setLevel(level)


def _first_line(exc: BaseException) -> str:
    """The root cause's type and first line, without terminal colours."""
    while exc.__cause__ is not None:  # the exporters wrap the real reason
        exc = exc.__cause__
    text = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {text[0].strip() if text else ''}"[:300]


def export_onnx(
    model: "torch.nn.Module",  # noqa: F821
    sample: Sequence["torch.Tensor"],  # noqa: F821
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int,
    dynamic_batch: bool,
) -> tuple[str, Optional[str]]:
    """Write `model` called on `sample` to `path`. Returns ``(exporter, notice)``:
    "dynamo" or "torchscript", and a one-line notice when the fallback was used."""
    import torch

    path = Path(path)
    args = tuple(sample)
    try:
        with _quiet_exporter():
            dynamic_shapes = None
            if dynamic_batch:  # keyed by tensor, so `forward(self, *inputs)` signatures fit too
                batch, shapes = torch.export.Dim(BATCH_AXIS), torch.export.ShapesCollection()
                for tensor in args:
                    shapes[tensor] = {0: batch}
                dynamic_shapes = shapes.dynamic_shapes(model, args)
            torch.onnx.export(
                model, args, str(path), dynamo=True, input_names=list(input_names), output_names=list(output_names),
                opset_version=opset, dynamic_shapes=dynamic_shapes, external_data=False, verbose=False,
            )
        written = onnx_opset(path)
        if written == opset:
            return "dynamo", None
        dynamo_error = f"it wrote opset {written}, not the requested {opset}"  # its version converter gives up silently
    except Exception as exc:
        dynamo_error = _first_line(exc)
    path.unlink(missing_ok=True)
    notice = f"the torch.export-based ONNX exporter failed ({dynamo_error}); fell back to the TorchScript exporter"
    try:
        with _quiet_exporter():
            dynamic_axes = None
            if dynamic_batch:
                dynamic_axes = {name: {0: BATCH_AXIS} for name in [*input_names, *output_names]}
            torch.onnx.export(
                model, args, str(path), dynamo=False, input_names=list(input_names), output_names=list(output_names),
                opset_version=opset, dynamic_axes=dynamic_axes, do_constant_folding=True,
            )
    except Exception as exc:
        torchscript_error = _first_line(exc)
    else:
        written = onnx_opset(path)
        if written == opset:
            return "torchscript", notice
        torchscript_error = f"it wrote opset {written}, not the requested {opset}"
    path.unlink(missing_ok=True)
    raise ExportError(
        [Problem(code="E510", message=f"ONNX export failed with both exporters: dynamo: {dynamo_error}; "
                 f"torchscript: {torchscript_error}", hint="is the model traceable? try another `opset`")]
    )


def onnx_opset(path: Path) -> Optional[int]:
    """The default-domain opset an ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def check_onnx(path: Path) -> None:
    """`onnx.checker.check_model` with shape inference; an `ExportError` when it fails."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError([Problem(code="E511", message=f"`{Path(path).name}` fails the ONNX checker: {_first_line(exc)}")]) from None


FP16_KEEP_FLOAT32 = ("LayerNormalization", "ScatterElements")
"""Ops left in float32 by `convert_fp16`, besides the converter's own block list.
ScatterElements: onnxruntime's CPU provider has no float16 kernel for its `add`
reduction (message-passing GNNs such as `mesh_gnn` aggregate with it).
LayerNormalization: its variance overflows float16 easily, and onnxruntime 1.32's CPU
provider crashes (SIGSEGV, in the NchwcTransformer graph pass) creating a session for
the float16 graph of the built-in `pde_transformer`."""


def convert_fp16(source: Path, destination: Path, *, keep_io_types: bool) -> Optional[str]:
    """Write a float16 copy of the ONNX file `source` (ops in `FP16_KEEP_FLOAT32` stay
    float32). Returns a notice (values clamped to the float16 range) or None."""
    import onnx

    try:
        from onnxconverter_common.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError:  # onnxruntime.transformers has a copy, but its graphs are not topologically sorted
        raise ExportError([Problem(code="E513", message="float16 conversion needs the `onnxconverter-common` package",
                                   hint="pip install onnxconverter-common, or leave out the onnx-fp16 format")]) from None

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            converted = convert_float_to_float16(
                onnx.load(str(source)), keep_io_types=keep_io_types, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP16_KEEP_FLOAT32]
            )
        _agree_casts(converted)
        onnx.save(converted, str(destination))
    except Exception as exc:
        Path(destination).unlink(missing_ok=True)
        raise ExportError([Problem(code="E513", message=f"float16 conversion failed: {_first_line(exc)}")]) from None
    clamped = [w for w in caught if "truncated" in str(w.message)]
    if clamped:
        return f"float16 conversion clamped weights to the float16 range ({len(clamped)} clamp warning(s))"
    return None


def _agree_casts(model: "onnx.ModelProto") -> None:  # noqa: F821
    """Make each explicit ``Cast(to=float)`` agree with the float16 type the converter gave
    its output. The converter retypes values but not Cast targets, so a model that casts
    to float itself (``x.float()``, an RNN's state) gets a graph the checker rejects."""
    from onnx import TensorProto

    declared = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.value_info, *model.graph.output]}
    for node in model.graph.node:
        if node.op_type != "Cast":
            continue
        for attribute in node.attribute:
            if attribute.name == "to" and attribute.i == TensorProto.FLOAT and declared.get(node.output[0]) == TensorProto.FLOAT16:
                attribute.i = TensorProto.FLOAT16


_PROBE = r"""
import sys
import numpy as np
import onnxruntime as ort
types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(int64)": "int64",
         "tensor(int32)": "int32", "tensor(bool)": "bool"}
model, inputs, outputs = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
data = np.load(inputs)
feed = {i.name: data[i.name].astype(types.get(i.type, data[i.name].dtype)) for i in session.get_inputs()}
results = session.run(None, feed)
assert "torch" not in sys.modules, "the ONNX runtime check imported torch"
np.savez(outputs, **{o.name: r for o, r in zip(session.get_outputs(), results)})
"""


def probe_onnx(path: Path, arrays: Sequence["numpy.ndarray"], *, timeout: float = 300.0) -> list["numpy.ndarray"]:  # noqa: F821
    """Run the ONNX file on one batch in a fresh Python process that imports only numpy
    and onnxruntime, with onnxruntime's default session options, as a consumer would.
    A crash there (onnxruntime has segfaulted on valid graphs) is an `ExportError`
    instead of the end of this process. Returns the outputs, as float32 where floating."""
    import subprocess
    import tempfile

    import numpy as np

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="stagedsl-probe-") as folder:
        inputs, outputs = Path(folder) / "inputs.npz", Path(folder) / "outputs.npz"
        names = OnnxRunner.read_input_names(path)
        np.savez(inputs, **dict(zip(names, arrays)))
        try:
            done = subprocess.run([sys.executable, "-I", "-c", _PROBE, str(path), str(inputs), str(outputs)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ExportError([Problem(code="E514", message=f"onnxruntime did not finish one batch of `{path.name}` in {timeout:g}s")]) from None
        if done.returncode != 0:
            how = f"crashed (signal {-done.returncode})" if done.returncode < 0 else f"failed (exit {done.returncode})"
            tail = " ".join(done.stderr.strip().splitlines()[-1:])[:300]
            raise ExportError([Problem(code="E514", message=f"onnxruntime {how} running `{path.name}` in a fresh process"
                                       + (f": {tail}" if tail else ""), hint="try another `opset`, or leave this format out")])
        with np.load(outputs) as data:
            results = [data[name] for name in data.files]
    return [r.astype(np.float32) if r.dtype == np.float16 else r for r in results]


_ORT_TO_NUMPY = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


class OnnxRunner:
    """An onnxruntime CPU session over one ONNX file: ``runner(arrays) -> [outputs]``."""

    def __init__(self, path: Path | str):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ExportError([Problem(code="E512", message=f"onnxruntime cannot load `{Path(path).name}`: {_first_line(exc)}")]) from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.input_types = [_ORT_TO_NUMPY.get(i.type) for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @staticmethod
    def read_input_names(path: Path) -> list[str]:
        """The graph's input names, read with `onnx` (no session), initializers excluded."""
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        weights = {i.name for i in graph.initializer}
        return [i.name for i in graph.input if i.name not in weights]

    def __call__(self, arrays: Sequence["numpy.ndarray"]) -> list["numpy.ndarray"]:  # noqa: F821
        import numpy as np

        if len(arrays) != len(self.input_names):
            raise ExportError(f"the ONNX model takes {len(self.input_names)} input(s), got {len(arrays)}", code="E512")
        feed = {}
        for name, kind, array in zip(self.input_names, self.input_types, arrays):
            array = np.ascontiguousarray(array)
            feed[name] = array.astype(kind, copy=False) if kind else array
        outputs = self.session.run(None, feed)
        return [o.astype(np.float32) if o.dtype == np.float16 else o for o in outputs]
