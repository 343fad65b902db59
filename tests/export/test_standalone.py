"""The exported ONNX files run where there is no torch: a fresh process with onnxruntime and numpy only."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from .conftest import MODELS

CONSUMER = r"""
import sys
import numpy as np
import onnxruntime as ort

model, inputs, outputs = sys.argv[1:4]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
with np.load(inputs) as data:
    result = session.run(None, {"input": data["input"]})[0]
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
np.savez(outputs, output=result)
print(result.dtype, result.shape)
"""


@pytest.mark.parametrize("key", ["pde_transformer", "ocec_net"])
def test_onnx_files_run_in_a_process_without_torch(tmp_path, exported, export_registry, key):
    from safetensors.torch import load_file

    run_dir, _ = exported(key)
    data = MODELS[key][1]
    splits = export_registry.get("datasets", data.name).factory(**data.args)
    inputs, _ = splits.val[list(range(3))]  # 3 rows: not the batch size the graph was traced with
    model_ref = MODELS[key][0]
    model = export_registry.get("models", model_ref.name).factory(**model_ref.args)
    model.load_state_dict(load_file(run_dir / "stages" / "fit" / "best.safetensors"))
    with torch.no_grad():
        expected = model.eval()(inputs).numpy()
    np.savez(tmp_path / "in.npz", input=inputs.numpy())
    for name, tolerance in (("model.onnx", 1e-4), ("model.fp16.onnx", 2e-2)):
        done = subprocess.run(
            [sys.executable, "-I", "-c", CONSUMER, str(run_dir / "export" / name), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith("float32")
        with np.load(tmp_path / "out.npz") as result:
            np.testing.assert_allclose(result["output"], expected, atol=tolerance, rtol=tolerance)
