"""The model package: a folder that rebuilds the trained model without the spec or run.

Layout (seed 001's "model package", with safetensors instead of pickles)::

    package/
      config.json          model plugin name and args, stagedsl version, input and output
                           specs (names, dtypes, shapes with the batch axis as null),
                           sha256 of every file, where it came from
      model.safetensors    the weights (the only way weights are loaded)
      preprocessing.json   the dataset's `stats` (normalisation statistics ...) as lists
      metrics.json         the stage's metrics from the run's summary.json
      model.onnx           the verified ONNX files, when they were exported
      model.fp16.onnx

`load_package(path)` needs only the folder and the model plugin registered (the
process-wide registry by default). `Package.predict` takes the model's inputs as the
dataset gives them, i.e. already preprocessed (`preprocessing.json` says how).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import attrs

from stagedsl.errors import CheckpointError, Problem, UsageError

PACKAGE_FORMAT = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
PREPROCESSING = "preprocessing.json"
METRICS = "metrics.json"
ONNX_FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}


def sha256(path: Path) -> str:
    """Hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_plain(value: Any) -> Any:
    """JSON-ready data: tensors and arrays become (nested) lists, tuples lists."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist") and hasattr(value, "dtype"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def tensor_specs(names: Sequence[str], tensors: Sequence[Any]) -> list[dict]:
    """``[{"name", "dtype", "shape"}]`` with the batch axis (the first) as None."""
    return [
        {"name": name, "dtype": str(t.dtype).replace("torch.", ""), "shape": [None, *[int(d) for d in t.shape[1:]]]}
        for name, t in zip(names, tensors)
    ]


def write_package(
    folder: Path,
    *,
    model: Any,
    config: dict,
    preprocessing: dict,
    metrics: dict,
    onnx_files: Mapping[str, Path],
) -> list[Path]:
    """Write the package into `folder` (created). `config` holds the model, input and
    output entries; the file table (names and sha256) is added here. Returns the files."""
    import shutil

    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / WEIGHTS
    save_model(model, str(weights), metadata={"format": "pt"})
    files = {"weights": {"file": WEIGHTS, "sha256": sha256(weights)}}
    for kind, source in onnx_files.items():
        target = folder / ONNX_FILES[kind]
        shutil.copyfile(source, target)
        files[f"onnx_{kind}"] = {"file": target.name, "sha256": sha256(target)}
    config = {"format": PACKAGE_FORMAT, **config, "files": files}
    _write_json(folder / CONFIG, config)
    _write_json(folder / PREPROCESSING, to_plain(preprocessing))
    _write_json(folder / METRICS, to_plain(metrics))
    return [folder / CONFIG, weights, folder / PREPROCESSING, folder / METRICS, *(folder / f["file"] for k, f in files.items() if k != "weights")]


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError([Problem(code="E520", message=f"the package has no {path.name}", file=str(path))]) from None
    except (OSError, ValueError) as exc:
        raise CheckpointError([Problem(code="E520", message=f"cannot read {path.name}: {exc}", file=str(path))]) from None


def _missing_package(path: Path) -> Problem:
    """No package folder at `path`: when an export report sits beside it, say what the export did instead."""
    report_path = path.parent / "report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        result = report["formats"]["package"]
    except (OSError, ValueError, KeyError, TypeError):
        what = "does not exist" if not path.exists() else "is not a folder"
        return Problem(code="E520", message=f"`{path}` is not a model package folder (it {what})",
                       hint="`staged export RUN_DIR` writes one to RUN_DIR/export/package")
    run_dir = report.get("run_dir", "RUN_DIR")
    formats = ",".join(name for name, r in report["formats"].items() if r.get("passed") or name == "package")
    return Problem(code="E520", message=f"`{path}` does not exist: the export {result.get('status', 'did not write it')} "
                                        f"the package ({result.get('error') or 'see its report'})",
                   file=str(report_path),
                   hint=f"export the package again: `staged export {run_dir} --format {formats}` "
                        "(or loosen the failed check with --set export.<key>=...)")


@attrs.define
class Package:
    """A loaded model package: the model (eval mode, CPU) and its documents."""

    path: Path
    model: Any
    config: dict
    preprocessing: dict
    metrics: dict
    _runners: dict = attrs.field(factory=dict, repr=False)

    @property
    def input_names(self) -> list[str]:
        return [spec["name"] for spec in self.config.get("inputs", [])]

    @property
    def output_names(self) -> list[str]:
        return [spec["name"] for spec in self.config.get("outputs", [])]

    def onnx_path(self, *, fp16: bool = False) -> Path:
        """The package's ONNX file (fp32, or fp16); a `UsageError` when it has none."""
        entry = self.config.get("files", {}).get("onnx_fp16" if fp16 else "onnx_fp32")
        if entry is None:
            kind = "onnx-fp16" if fp16 else "onnx"
            raise UsageError([Problem(code="E523", message=f"the package `{self.path}` has no {kind} model",
                                      hint=f"export it with the `{kind}` format")])
        return self.path / entry["file"]

    def predict(self, inputs: Any, *, onnx: bool = False, fp16: bool = False, batch_size: Optional[int] = None) -> Any:
        """Run the model. `inputs`: an array or tensor, a tuple/list of them (several
        inputs, in order), or a dict by input name, already preprocessed as the dataset
        gives them. Returns a numpy array (a tuple of arrays for a model with several
        outputs). With `onnx`, the package's ONNX file runs in onnxruntime instead
        (`fp16`: the float16 one). `batch_size` splits the rows into several passes."""
        import numpy as np

        arrays = self._arrays(inputs)
        rows = len(arrays[0]) if arrays and arrays[0].ndim else 0
        step = batch_size or max(rows, 1)
        chunks = [self._forward([a[start:start + step] for a in arrays], onnx or fp16, fp16) for start in range(0, max(rows, 1), step)]
        outputs = [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*chunks)]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _forward(self, arrays: list, onnx: bool, fp16: bool) -> list:
        import numpy as np

        if onnx:
            key = "fp16" if fp16 else "fp32"
            if key not in self._runners:
                from stagedsl.export.onnx_io import OnnxRunner

                self._runners[key] = OnnxRunner(self.onnx_path(fp16=fp16))
            return [np.asarray(o) for o in self._runners[key](arrays)]
        import torch

        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        with torch.inference_mode():
            result = self.model(*tensors)
        result = list(result) if isinstance(result, (tuple, list)) else [result]
        return [r.detach().cpu().numpy() for r in result]

    def _arrays(self, inputs: Any) -> list[Any]:
        import numpy as np

        specs = self.config.get("inputs", [])
        if isinstance(inputs, Mapping):
            missing = [s["name"] for s in specs if s["name"] not in inputs]
            if missing:
                raise UsageError([Problem(code="E522", message=f"missing model input(s) {missing}; the model takes {self.input_names}")])
            values = [inputs[s["name"]] for s in specs]
        elif isinstance(inputs, (list, tuple)) and inputs and all(hasattr(v, "shape") for v in inputs):
            values = list(inputs)
        else:
            values = [inputs]
        if len(values) != len(specs):
            raise UsageError([Problem(code="E522", message=f"the model takes {len(specs)} input(s) {self.input_names}, got {len(values)}")])
        arrays = []
        for spec, value in zip(specs, values):
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            expected = spec["shape"]
            shape = "[" + ", ".join("batch" if e is None else str(e) for e in expected) + "]"
            raw = np.asarray(value)
            if raw.dtype.kind not in NUMERIC_KINDS:
                kind = DTYPE_KINDS.get(raw.dtype.kind, f"dtype {raw.dtype}")
                raise UsageError([Problem(code="E522", message=f"input `{spec['name']}` holds {kind} (dtype {raw.dtype}); "
                                          f"the model expects {spec['dtype']} {shape}",
                                          hint=f"pass a real-valued numeric array of shape {shape}; it is converted to {spec['dtype']}")])
            array = np.ascontiguousarray(raw.astype(spec["dtype"], copy=False))
            if array.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected, array.shape)):
                raise UsageError([Problem(code="E522", message=f"input `{spec['name']}` has shape {list(array.shape)}; "
                                          f"the model expects {spec['dtype']} {shape}")])
            arrays.append(array)
        return arrays


NUMERIC_KINDS = "biuf"
"""numpy dtype kinds a package converts to its inputs' dtype: booleans, integers and reals."""
DTYPE_KINDS = {"c": "complex numbers (their imaginary part would be lost)", "O": "Python objects", "U": "text",
               "S": "bytes", "V": "raw records", "M": "dates", "m": "time spans"}


def load_package(path: Path | str, *, registry: Optional[Any] = None, verify: bool = True) -> Package:
    """Load a model package folder. Rebuilds the model through the registry (default:
    `stagedsl.get_registry()`) from its plugin name and args and loads the weights with
    safetensors, strictly. With `verify`, every file's sha256 is checked against
    config.json first; a mismatch or a missing file is a `CheckpointError`."""
    from safetensors.torch import load_model

    from stagedsl.export.source import build_model

    path = Path(path)
    if not path.is_dir():
        raise UsageError([_missing_package(path)])
    config = _read_json(path / CONFIG)
    if not isinstance(config, dict) or config.get("format") != PACKAGE_FORMAT or "model" not in config:
        raise CheckpointError([Problem(code="E520", message=f"`{path / CONFIG}` is not a stagedsl package config "
                                       f"(format {config.get('format') if isinstance(config, dict) else '?'}, expected {PACKAGE_FORMAT})")])
    files = config.get("files", {})
    for entry in files.values():
        file = path / entry["file"]
        if not file.is_file():
            raise CheckpointError([Problem(code="E520", message=f"the package has no {entry['file']}", file=str(file))])
        if verify and sha256(file) != entry.get("sha256"):
            raise CheckpointError([Problem(code="E521", message=f"{entry['file']} does not match its sha256 in config.json: "
                                           "the package was modified or is corrupt", file=str(file))])
    if registry is None:
        from stagedsl.registry import get_registry

        registry = get_registry()
    from stagedsl.plan.model import PieceRef

    model = build_model(PieceRef(config["model"]["name"], dict(config["model"].get("args", {}))), registry)
    weights = path / files.get("weights", {}).get("file", WEIGHTS)
    try:
        load_model(model, str(weights), strict=True, device="cpu")
    except Exception as exc:
        raise CheckpointError([Problem(code="E505", message=f"{weights.name} does not fit model `{config['model']['name']}`: "
                                       f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}", file=str(weights))]) from None
    model.eval()
    return Package(path, model, config, _read_json(path / PREPROCESSING), _read_json(path / METRICS))
