"""The typed spec: frozen attrs classes that mirror the TOML language key for key.

Field docstrings live in `metadata={"doc": ...}`; `staged schema` and
`docs/language.md` are generated from them, so the documentation cannot drift.
Plugin pieces (model, data, loss, optimizer, scheduler, metric, freeze strategy,
callback) are written ``"name"`` or ``{ use = "name", <arguments> }`` and land in
`Piece` (``use`` + ``args``).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import attrs

from stagedsl.spec.durations import Duration
from stagedsl.spec.names import NAME_PATTERN

DEVICES_HELP = '"auto", "cpu", "cuda" or "cuda:N"'
Precision = Literal["32", "16-mixed", "bf16-mixed"]
Mode = Literal["min", "max"]
Checkpoint = Literal["best", "last"]
FrozenNorm = Literal["eval", "train"]
OnNonfinite = Literal["stop", "skip"]
GateAction = Literal["stop", "retry", "goto", "warn"]
GateCheck = Literal["end", "eval"]
Direction = Literal["minimize", "maximize"]
Sampler = Literal["grid", "random", "tpe"]
"""The choices of the language: a value outside them is a spec error with a did-you-mean."""

REST_GROUP = "default"
"""The optimizer group of the trainable parameters no `groups` entry selects (a reserved group name)."""


def doc(text: str, **extra: Any) -> dict:
    """Field metadata carrying the documentation of a key."""
    return {"doc": text, **extra}


@attrs.frozen
class Piece:
    """A registered piece: `use` names it, every other key is an argument of its factory."""

    use: str = attrs.field(metadata=doc('Registered name of the piece (see `staged plugins`), or an import path: "package.module:attr" or "./file.py:attr" (relative to the spec\'s folder).'))
    args: dict = attrs.field(factory=dict, metadata=doc("Arguments of the piece's factory, written inline."))


@attrs.frozen
class RunSection:
    """`[run]`: settings of the whole run."""

    name: str = attrs.field(default="run", metadata=doc("Name of the run; the default output folder is `runs/<name>`."))
    seed: int = attrs.field(default=0, metadata=doc("Seed of torch, numpy, random and the data order."))
    device: str = attrs.field(default="auto", metadata=doc(f"Where to train: {DEVICES_HELP}."))
    precision: Precision = attrs.field(default="32", metadata=doc('Numeric precision: "32", "16-mixed" (AMP with a grad scaler) or "bf16-mixed".'))
    out: Optional[str] = attrs.field(default=None, metadata=doc("Run directory; default `runs/<name>`."))
    compile: bool = attrs.field(default=False, metadata=doc("Wrap the model in `torch.compile`."))
    channels_last: bool = attrs.field(default=False, metadata=doc("Use the channels-last memory format for 4D inputs."))
    threads: Union[int, Literal["auto"]] = attrs.field(default="auto", metadata=doc('CPU threads torch may use (torch.set_num_threads). "auto": one for a model under 2M parameters, else the cores not busy with other processes.'))
    max_parameters: int = attrs.field(default=2**31, metadata=doc("Parameter budget: `staged plan` refuses a model with more parameters than this (counted while it is built on the meta device, so a `depth = 1000000` fails at once, not after minutes); raise it for a model that is meant to be that big."))


    @property
    def out_dir(self) -> str:
        """The run directory: `out`, or ``runs/<name>`` when the spec names none."""
        return self.out or f"runs/{self.name}"

@attrs.frozen
class DataSection:
    """`[data]`: the dataset piece and how it is batched; other keys are the dataset's arguments."""

    use: str = attrs.field(metadata=doc('Registered dataset name, or an import path ("pkg.module:attr", "./data.py:make_splits").'))
    args: dict = attrs.field(factory=dict, metadata=doc("Arguments of the dataset factory, written inline."))
    batch_size: int = attrs.field(default=32, metadata=doc("Training batch size."))
    eval_batch_size: Optional[int] = attrs.field(default=None, metadata=doc("Evaluation batch size; default `batch_size`."))
    workers: int = attrs.field(default=0, metadata=doc("DataLoader worker processes."))
    shuffle: bool = attrs.field(default=True, metadata=doc("Shuffle the training split each epoch."))
    drop_last: bool = attrs.field(default=False, metadata=doc("Drop the last incomplete training batch."))
    pin_memory: Optional[bool] = attrs.field(default=None, metadata=doc("Pin host memory; default: when training on CUDA."))


DATA_LOADER_KEYS = ("batch_size", "eval_batch_size", "workers", "shuffle", "drop_last", "pin_memory")


@attrs.frozen
class LossTermSpec:
    """One term of a loss: a piece with a weight."""

    piece: Piece
    weight: float = 1.0


@attrs.frozen
class LossSpec:
    """A stage's loss: one piece, a weighted `sum` of pieces, or a `blend` of two."""

    kind: str = attrs.field(metadata=doc('"sum" (a single loss is a sum of one) or "blend".'))
    terms: tuple[LossTermSpec, ...] = attrs.field(metadata=doc("The loss pieces with their weights."))
    alpha: Optional[float] = attrs.field(default=None, metadata=doc("Blend factor: (1 - alpha) * first + alpha * second."))


@attrs.frozen
class GroupSpec:
    """An optimizer parameter group: parameters selected by glob, with their own LR / decay."""

    name: str = attrs.field(metadata=doc("Name of the group, shown in logs (`lr/<name>`)."))
    params: tuple[Union[str, Piece], ...] = attrs.field(metadata=doc("Selectors of the group's parameters (globs, `re:` regexes or strategies)."))
    lr: Optional[float] = attrs.field(default=None, metadata=doc("Absolute learning rate of the group."))
    lr_scale: Optional[float] = attrs.field(default=None, metadata=doc("Learning rate relative to the stage's `lr`."))
    weight_decay: Optional[float] = attrs.field(default=None, metadata=doc("Weight decay of the group; default the optimizer's."))


@attrs.frozen
class EvalSpec:
    """`eval`: when a stage evaluates and which metric picks its best checkpoint."""

    every: Optional[Duration] = attrs.field(default=None, metadata=doc('Cadence as a duration ("1 epoch", "500 steps"); default: at the end of the stage only.'))
    monitor: str = attrs.field(default="val/loss", metadata=doc("Metric deciding the best checkpoint."))
    mode: Optional[Mode] = attrs.field(default=None, metadata=doc('"min" or "max"; default from the metric ("min" for losses).'))


@attrs.frozen
class EarlyStopSpec:
    """`early_stop`: stop the stage when `monitor` stops improving."""

    patience: int = attrs.field(metadata=doc("Evaluations without improvement before stopping."))
    monitor: Optional[str] = attrs.field(default=None, metadata=doc("Metric to watch; default the stage's `eval.monitor`."))
    mode: Optional[Mode] = attrs.field(default=None, metadata=doc('"min" or "max"; default as for `eval.mode`.'))
    min_delta: float = attrs.field(default=0.0, metadata=doc("Smallest change that counts as an improvement."))


@attrs.frozen
class InitSpec:
    """`init`: weights to start the stage from: an earlier stage's checkpoint or a file."""

    stage: Optional[str] = attrs.field(default=None, metadata=doc("An earlier stage whose checkpoint to load."))
    which: Checkpoint = attrs.field(default="best", metadata=doc('"best" or "last" checkpoint of that stage.'))
    path: Optional[str] = attrs.field(default=None, metadata=doc("A weights file or glob (the newest match wins): .safetensors, or a .pt / .pth / .ckpt / .bin state dict (also a Lightning checkpoint's `state_dict`), always read with weights_only=True. Relative to the working directory, like `run.out`."))
    strict: bool = attrs.field(default=True, metadata=doc("Fail when the file's keys differ from the model's; false: load the keys that match and report exactly which were missing and unexpected."))
    strip_prefix: Optional[str] = attrs.field(default=None, metadata=doc('Remove this prefix from every key of the file that has it (a Lightning `.ckpt`: "model.").'))
    rename: dict = attrs.field(factory=dict, metadata=doc('Rename keys: `{ "fc" = "head" }` maps `fc` and every key under `fc.` to `head` (after `strip_prefix`).'))
    add_prefix: Optional[str] = attrs.field(default=None, metadata=doc('Put this prefix before every key (after `rename`), e.g. "backbone." for a backbone-only file.'))


@attrs.frozen
class GateSpec:
    """`gate`: a condition over metrics that decides whether and where the plan goes on."""

    when: str = attrs.field(metadata=doc('Condition that must hold, e.g. "val/f1 >= 0.80" (and / or / not, parentheses).'))
    on_fail: GateAction = attrs.field(default="stop", metadata=doc('What to do when it fails: "stop", "retry", "goto" or "warn".'))
    goto: Optional[str] = attrs.field(default=None, metadata=doc('Later stage to jump to when `on_fail = "goto"`.'))
    max_retries: int = attrs.field(default=1, metadata=doc('Retries of the stage when `on_fail = "retry"`.'))
    check: GateCheck = attrs.field(default="end", metadata=doc('"end": after the stage; "eval": at every evaluation too.'))


@attrs.frozen
class CheckpointSpec:
    """`checkpoint`: cadence of resumable checkpoints."""

    every: Optional[Duration] = attrs.field(default=None, metadata=doc('Cadence as a duration; default: at each evaluation and at the end.'))
    keep_last: int = attrs.field(default=2, metadata=doc("How many periodic checkpoints to keep (best is kept apart)."))


@attrs.frozen
class StageSpec:
    """`[[stage]]`: one stage of the plan. Keys in `[defaults]` apply to every stage."""

    name: str = attrs.field(metadata=doc("Unique name of the stage."))
    steps: Optional[int] = attrs.field(default=None, metadata=doc("Duration in optimizer steps (give `steps` or `epochs`)."))
    epochs: Optional[float] = attrs.field(default=None, metadata=doc("Duration in epochs of the training split."))
    lr: Optional[float] = attrs.field(default=None, metadata=doc("Base learning rate of the stage."))
    optimizer: Optional[Piece] = attrs.field(default=None, metadata=doc("Optimizer piece; default: the optimizer a plugin registers as default (the built-ins: adamw)."))
    scheduler: Optional[Piece] = attrs.field(default=None, metadata=doc("LR scheduler piece, its duration arguments counted from the stage's start; default: the scheduler a plugin registers as default (the built-ins: constant)."))
    loss: Optional[LossSpec] = attrs.field(default=None, metadata=doc('Loss: "name", {use=...}, {sum=[...]} or {blend=[a, b], alpha=...}.'))
    metrics: tuple[Piece, ...] = attrs.field(default=(), metadata=doc("Validation metrics, logged as `val/<name>`."))
    train: tuple[Union[str, Piece], ...] = attrs.field(default=(), metadata=doc("Selectors of the parameters to train; default all."))
    freeze: tuple[Union[str, Piece], ...] = attrs.field(default=(), metadata=doc("Selectors of parameters to freeze (applied after `train`)."))
    frozen_norm: FrozenNorm = attrs.field(default="eval", metadata=doc('"eval": norm layers whose parameters are frozen keep their running statistics; "train" lets them update.'))
    groups: tuple[GroupSpec, ...] = attrs.field(default=(), metadata=doc(f"Optimizer parameter groups; parameters in none go to group `{REST_GROUP}`."))
    eval: EvalSpec = attrs.field(default=EvalSpec(), metadata=doc("Evaluation cadence and monitored metric."))
    early_stop: Optional[EarlyStopSpec] = attrs.field(default=None, metadata=doc("Early stopping."))
    init: Optional[InitSpec] = attrs.field(default=None, metadata=doc("Weights to start from."))
    gate: Optional[GateSpec] = attrs.field(default=None, metadata=doc("Condition checked after the stage."))
    grad_clip: Optional[float] = attrs.field(default=None, metadata=doc("Clip the gradient norm to this value."))
    accumulate: int = attrs.field(default=1, metadata=doc("Micro-batches accumulated per optimizer step."))
    log_every: Duration = attrs.field(default=Duration(50, "steps"), metadata=doc("Logging cadence as a duration."))
    checkpoint: CheckpointSpec = attrs.field(default=CheckpointSpec(), metadata=doc("Checkpoint cadence."))
    on_nonfinite: OnNonfinite = attrs.field(default="stop", metadata=doc('"stop" or "skip" a step whose loss is NaN or infinite.'))
    max_nonfinite: int = attrs.field(default=10, metadata=doc("Skipped non-finite steps in a row before stopping."))

    @property
    def length(self) -> Optional[Duration]:
        """The stage's duration: `steps` or `epochs` as a `Duration` (None when neither is given)."""
        if self.steps is not None:
            return Duration(self.steps, "steps")
        if self.epochs is not None:
            return Duration(self.epochs, "epochs")
        return None


@attrs.frozen
class PruneSpec:
    """`[export] prune`: L1 unstructured pruning of Linear/Conv weights after export."""

    amount: float = attrs.field(default=0.3, metadata=doc("Fraction of each weight tensor's entries zeroed, in [0, 1)."))


@attrs.frozen
class ExportSpec:
    """`[export]`: what `staged run` exports at the end (and `staged export`'s defaults)."""

    formats: tuple[str, ...] = attrs.field(default=("onnx", "onnx-fp16", "package"), metadata=doc('Formats: "onnx", "onnx-fp16", "package".'))
    stage: Optional[str] = attrs.field(default=None, metadata=doc("Stage whose weights to export; default the last one run."))
    which: Checkpoint = attrs.field(default="best", metadata=doc('"best" or "last" checkpoint.'))
    opset: int = attrs.field(default=18, metadata=doc("ONNX opset version."))
    atol: float = attrs.field(default=1e-4, metadata=doc("Absolute tolerance of the fp32 ONNX check."))
    rtol: float = attrs.field(default=1e-4, metadata=doc("Relative tolerance of the fp32 ONNX check."))
    fp16_atol: float = attrs.field(default=1e-2, metadata=doc("Tolerance of the fp16 ONNX check, relative to the output's scale (its largest magnitude)."))
    fp16_rtol: float = attrs.field(default=1e-2, metadata=doc("Relative (per-element) tolerance of the fp16 ONNX check."))
    fp16_min_agreement: float = attrs.field(default=0.99, metadata=doc("Classifiers: least share of held-out rows where fp16 picks PyTorch's class."))
    fp16_metric_tol: float = attrs.field(default=0.01, metadata=doc("Classifiers: largest change of each task metric from PyTorch to fp16."))
    keep_io_types: bool = attrs.field(default=True, metadata=doc("Keep fp32 inputs and outputs in the fp16 graph."))
    check_batches: int = attrs.field(default=4, metadata=doc("Held-out batches compared against PyTorch."))
    prune: Optional[PruneSpec] = attrs.field(default=None, metadata=doc("L1 unstructured pruning after export, e.g. {amount = 0.3}."))
    dynamic_batch: bool = attrs.field(default=True, metadata=doc("Export the batch axis as dynamic."))
    metric_samples: Optional[int] = attrs.field(default=None, metadata=doc("Cap on validation rows used for the metric before/after fp16; default all."))
    exporters: dict = attrs.field(factory=dict, metadata=doc("Arguments of registered exporters named in `formats`, by name."))


MEMBER_NAME = NAME_PATTERN
"""What a variant, member or ensemble name may be (`stagedsl.spec.names.NAME_PATTERN`: it names a
folder of the run directory)."""


@attrs.frozen
class MatrixSpec:
    """`[matrix]`: train every variant with every seed; each pair is a *member*, a complete run of its own."""

    seeds: tuple[int, ...] = attrs.field(default=(), metadata=doc("`run.seed` of each member; default the spec's `run.seed` alone."))
    variant: dict = attrs.field(factory=dict, metadata=doc("`[matrix.variant.<name>]`: partial specs layered over the file like a profile (stages by name); none: one variant, `base`."))
    jobs: int = attrs.field(default=1, metadata=doc("Members trained at once, each in its own process; `staged run --jobs N` overrides it."))
    threads: int = attrs.field(default=1, metadata=doc("CPU threads of each member when its `run.threads` is unset: the same whatever `jobs` is, so a member's numbers do not depend on how many run beside it."))


@attrs.frozen
class EnsembleSpec:
    """`[[ensemble]]`: an ensemble of the matrix's members; other keys are the ensemble's arguments."""

    name: str = attrs.field(metadata=doc("Name of the ensemble (`ensembles/<name>/`, `staged export --ensemble NAME`)."))
    use: str = attrs.field(metadata=doc("Registered ensemble: mean, weighted, vote, greedy, stacking (see `staged plugins`)."))
    args: dict = attrs.field(factory=dict, metadata=doc("Arguments of the ensemble factory, written inline."))
    members: tuple[str, ...] = attrs.field(default=("*",), metadata=doc('Globs over member names (`"fusion-*"`, `"*-s42"`); default every member.'))
    folds: int = attrs.field(default=5, metadata=doc("k of the seeded k-fold (stratified for classification) over the validation split: an ensemble that is fitted is scored on out-of-fold predictions."))


ENSEMBLE_KEYS = ("name", "use", "members", "folds")
"""Keys of `[[ensemble]]` that are not arguments of the ensemble's factory."""

PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "threshold", "wilcoxon", "none")
"""Optuna's pruners by the name `[search] pruner` gives them ("none": no pruning)."""


@attrs.frozen
class SearchSpec:
    """`[search]`: a study over `[search.space]`, each trial a complete run of the spec with its parameters written in."""

    metric: str = attrs.field(metadata=doc('A metric the plan logs (`val/loss`, `val/<metric>`): its best value over the evaluations of the trial\'s last stage is the trial\'s objective.'))
    space: dict = attrs.field(metadata=doc('`[search.space]`: keys are `--set` key paths (`"stage.finetune.lr"`); a list is categorical (a grid axis), a table `{ low, high, log, step }` a float or integer range, by the key\'s type.'))
    direction: Direction = attrs.field(default="minimize", metadata=doc('"minimize" or "maximize" the objective.'))
    sampler: Sampler = attrs.field(default="tpe", metadata=doc('"grid" (every combination of the lists, in order), "random" or "tpe" (Optuna); seeded by `seed`.'))
    trials: Optional[int] = attrs.field(default=None, metadata=doc("How many trials; default every grid point (grid), required otherwise. `staged search --trials N` overrides it."))
    seed: Optional[int] = attrs.field(default=None, metadata=doc("Seed of the sampler; default `run.seed`."))
    pruner: Optional[Piece] = attrs.field(default=None, metadata=doc('Stop unpromising trials on their intermediate evaluations: "median", "percentile", "hyperband", "successive_halving", "threshold", "wilcoxon" (Optuna\'s, with their arguments: { use = "median", n_warmup_steps = 4 }) or "none".'))
    storage: Optional[str] = attrs.field(default=None, metadata=doc("Optuna storage URL shared by every process of the study; default `sqlite:///RUN_DIR/study.db`."))
    reuse: bool = attrs.field(default=True, metadata=doc("Train a stage once per stage hash: a trial whose first stages resolve like an earlier trial's starts from their outcome."))
    jobs: int = attrs.field(default=1, metadata=doc("Trials run at once, each in its own process on the study's storage; `staged search --jobs N` overrides it."))


@attrs.frozen
class Spec:
    """A whole training plan as written: run, model, data, stages and export."""

    model: Piece = attrs.field(metadata=doc("`[model]`: the model piece; other keys are its arguments."))
    data: DataSection = attrs.field(metadata=doc("`[data]`: the dataset piece and batching."))
    stages: tuple[StageSpec, ...] = attrs.field(metadata=doc("`[[stage]]`: the ordered stages."))
    run: RunSection = attrs.field(default=RunSection(), metadata=doc("`[run]`: run-wide settings."))
    callbacks: tuple[Piece, ...] = attrs.field(default=(), metadata=doc("Callback pieces, called in order."))
    export: Optional[ExportSpec] = attrs.field(default=None, metadata=doc("`[export]`: exports at the end of `staged run`."))
    matrix: Optional[MatrixSpec] = attrs.field(default=None, metadata=doc("`[matrix]`: variants x seeds, each a member run of its own."))
    ensembles: tuple[EnsembleSpec, ...] = attrs.field(default=(), metadata=doc("`[[ensemble]]`: ensembles of the matrix's members."))
    search: Optional[SearchSpec] = attrs.field(default=None, metadata=doc("`[search]`: a study over key paths of the spec; `staged search` runs it."))
    file: Optional[str] = attrs.field(default=None, metadata=doc("The file the spec was read from (set by the loader)."))
    sources: tuple = attrs.field(default=(), eq=False, repr=False, metadata=doc("(file, text) of the files read, for error positions (set by the loader)."))
    document: Optional[dict] = attrs.field(default=None, eq=False, repr=False, metadata=doc("The merged TOML document (set by the loader)."))
    profile: Optional[str] = attrs.field(default=None, eq=False, metadata=doc("The profile applied (set by the loader)."))
    overrides: tuple[str, ...] = attrs.field(default=(), eq=False, metadata=doc("The --set overrides applied (set by the loader); a matrix member applies them again over its variant."))
    root: Optional[str] = attrs.field(default=None, eq=False, metadata=doc("The spec's folder, absolute (set by the loader): import paths and [model] / [data] path arguments are read from it."))


LOADER_FIELDS = ("file", "sources", "document", "profile", "overrides", "root")
"""Fields of `Spec` the loader sets; they are not keys of the language."""
