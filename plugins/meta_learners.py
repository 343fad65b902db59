"""Built-in meta-learners of the `stacking` ensemble: LightGBM, logistic regression, ridge.

Each factory takes the `task` stagedsl supplies (classification or regression, its seed)
and the spec's arguments, and returns an unfitted scikit-learn-style estimator seeded
from ``task.seed`` and single-threaded, so a refit (on export) gives the same model.
LightGBM and scikit-learn come with the ``stagedsl[ensemble]`` extra.
"""

from __future__ import annotations

from typing import Any

from stagedsl import hookimpl, import_optional

EXTRA = "ensemble"


def lightgbm(
    task: Any,
    num_leaves: int = 15,
    n_estimators: int = 200,
    learning_rate: float = 0.05,
    min_child_samples: int = 10,
    reg_lambda: float = 0.0,
    subsample: float = 1.0,
    colsample_bytree: float = 1.0,
):
    """LightGBM gradient-boosted trees (LGBMClassifier / LGBMRegressor), deterministic and single-threaded."""
    lgbm = import_optional("lightgbm", extra=EXTRA, purpose="the `lightgbm` meta-learner")
    cls = lgbm.LGBMClassifier if task.is_classification else lgbm.LGBMRegressor
    return cls(
        num_leaves=num_leaves, n_estimators=n_estimators, learning_rate=learning_rate, min_child_samples=min_child_samples,
        reg_lambda=reg_lambda, subsample=subsample, subsample_freq=1 if subsample < 1.0 else 0, colsample_bytree=colsample_bytree,
        random_state=task.seed, n_jobs=1, deterministic=True, force_col_wise=True, verbose=-1,
    )


def logistic(task: Any, C: float = 1.0, max_iter: int = 1000):
    """L2-regularised logistic regression (scikit-learn); classification only."""
    if not task.is_classification:
        raise ValueError("`logistic` is a classifier; use `ridge` or `lightgbm` for regression")
    linear = import_optional("sklearn.linear_model", extra=EXTRA, purpose="the `logistic` meta-learner")
    return linear.LogisticRegression(C=C, max_iter=max_iter, random_state=task.seed)


def ridge(task: Any, alpha: float = 1.0):
    """Ridge regression (scikit-learn); regression only (use `logistic` to stack classifiers)."""
    if task.is_classification:
        raise ValueError("`ridge` is a regressor and gives no probabilities; use `logistic` or `lightgbm` for classification")
    linear = import_optional("sklearn.linear_model", extra=EXTRA, purpose="the `ridge` meta-learner")
    return linear.Ridge(alpha=alpha)


def estimator_to_onnx(estimator: Any, task: Any, opset: int) -> Any:
    """A fitted meta-learner as an ONNX model from ``features`` [N, F] to ``probabilities`` [N, C] or ``values`` [N, 1].

    LightGBM goes through onnxmltools (at the highest opset it supports, then
    `onnx.version_converter` to `opset`), scikit-learn through skl2onnx; classifiers
    keep their probability output without a ZipMap, and the label output is dropped.
    """
    onnx = import_optional("onnx", extra=EXTRA, purpose="exporting a stacking ensemble")
    width = int(estimator.n_features_in_)
    if type(estimator).__module__.startswith("lightgbm"):
        onnxmltools = import_optional("onnxmltools", extra=EXTRA, purpose="exporting a LightGBM meta-learner")
        from onnxmltools.convert.common.data_types import FloatTensorType

        model = onnxmltools.convert_lightgbm(float32_thresholds(estimator), initial_types=[("features", FloatTensorType([None, width]))],
                                             target_opset=min(opset, LIGHTGBM_MAX_OPSET), zipmap=False)
        if opset > LIGHTGBM_MAX_OPSET:
            from onnx import version_converter

            model = version_converter.convert_version(model, opset)
    else:
        skl2onnx = import_optional("skl2onnx", extra=EXTRA, purpose="exporting a scikit-learn meta-learner")
        from skl2onnx.common.data_types import FloatTensorType

        options = {id(estimator): {"zipmap": False}} if task.is_classification else None
        model = skl2onnx.convert_sklearn(estimator, initial_types=[("features", FloatTensorType([None, width]))],
                                         target_opset={"": opset, "ai.onnx.ml": 3}, options=options)
    kept = model.graph.output[-1]  # classifiers: (label, probabilities); regressors: (variable,)
    name = "probabilities" if task.is_classification else "values"
    if kept.name != name:
        model.graph.node.append(onnx.helper.make_node("Identity", [kept.name], [name]))
    output = onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None, task.classes if task.is_classification else 1])
    del model.graph.output[:]
    model.graph.output.append(output)
    return model


def float32_thresholds(estimator: Any) -> Any:
    """The estimator's booster with every split threshold t replaced by the largest float32 <= t.

    For float32 features x (what the graph and `Stacking.features` give), ``x <= t`` holds
    exactly when ``x <= floor32(t)``, so the booster predicts the same; but the ONNX tree
    ensemble stores thresholds as float32, and the nearest float32 to t can be a feature
    value just above t, which would then go left in ONNX and right in LightGBM.
    """
    import numpy as np

    lgbm = import_optional("lightgbm", extra=EXTRA, purpose="exporting a LightGBM meta-learner")
    lines = []
    for line in estimator.booster_.model_to_string().splitlines():
        if line.startswith("tree_sizes="):
            continue  # byte offsets of the trees: they change with the thresholds' text, and are optional
        if line.startswith("threshold="):
            values = np.array([float(v) for v in line[len("threshold="):].split()], dtype=np.float64)
            nearest = values.astype(np.float32)
            floor = np.where(nearest.astype(np.float64) > values, np.nextafter(nearest, np.float32(-np.inf)), nearest)
            line = "threshold=" + " ".join(repr(float(v)) for v in floor)
        lines.append(line)
    return lgbm.Booster(model_str="\n".join(lines) + "\n")


LIGHTGBM_MAX_OPSET = 15
"""The highest default-domain opset onnxmltools' LightGBM converter writes."""


@hookimpl
def register_meta_learners(register):
    """Register the built-in meta-learners."""
    register("lightgbm", lightgbm)
    register("logistic", logistic)
    register("ridge", ridge)
