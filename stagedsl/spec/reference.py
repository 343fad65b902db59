"""Generate `docs/language.md` — every key, its type, default and meaning — from the attrs
classes of `stagedsl.spec.model`, so the reference cannot drift from the code.

    python -m stagedsl.spec.reference > docs/language.md
"""

from __future__ import annotations

import typing
from typing import Any, Literal, Union

import attrs

from stagedsl.spec.convert import key_names
from stagedsl.spec.durations import Duration
from stagedsl.spec.model import (
    LOADER_FIELDS,
    CheckpointSpec,
    DataSection,
    EarlyStopSpec,
    EnsembleSpec,
    EvalSpec,
    ExportSpec,
    GateSpec,
    GroupSpec,
    InitSpec,
    LossSpec,
    MatrixSpec,
    Piece,
    PruneSpec,
    RunSection,
    SearchSpec,
    StageSpec,
)

INTRO = '''# The spec language

A spec is one TOML file: run settings, the model, the data, an ordered list of stages,
and optionally callbacks and an export. `staged validate SPEC` checks it in a blink;
`staged plan SPEC --dry-run` shows what it will do; `staged schema` prints its JSON Schema
(put `#:schema ../docs/schema.json` on the first line for completion in Taplo / Even Better TOML).

```toml
[run]
name = "ocec"
precision = "16-mixed"

[model]                        # a registered model; every other key is its argument
use = "ocec_net"
width = 16

[data]                         # a registered dataset; loader keys + the dataset's arguments
use = "ocec_eyes"
batch_size = 128
n_train = 2048

[defaults]                     # every stage inherits these (deep merge)
optimizer = { use = "adamw", weight_decay = 0.01 }
loss = { use = "cosface", margin = 0.35 }
metrics = ["f1", "accuracy"]
eval = { every = "1 epoch", monitor = "val/f1" }

[[stage]]
name = "heads"
epochs = 10
lr = 1e-4
freeze = ["backbone.**"]
gate = { when = "val/f1 >= 0.80", on_fail = "stop" }

[[stage]]
name = "unfreeze"
epochs = 20
lr = 1e-4
freeze = [{ use = "fraction", module = "backbone", fraction = 0.5, end = "first" }]
groups = [{ name = "backbone", params = ["backbone.**"], lr_scale = 0.05 }]
init = { stage = "heads", which = "best" }
```

## Pieces
Models, datasets, losses, metrics, optimizers, schedulers, freeze strategies and callbacks
are *pieces* registered by plugins (`staged plugins` lists them). A piece is written as
its name, `"adamw"`, or as a table `{ use = "adamw", weight_decay = 0.01 }` whose other keys
are the arguments of the piece's factory. Arguments are checked against the factory's
signature before anything runs.

`use` may also be an import path naming a class or function directly, with no plugin:
`"torch.optim:SGD"`, `"timm:create_model"`, `"./model.py:Net"` (a file, relative to the
spec's folder). The spec's folder is importable; a torch optimizer or LR scheduler class is
called the way the core calls its pieces (`docs/plugins.md`, section 0). An imported metric
is logged as `val/<attribute>` (`val/MulticlassAccuracy`).

Relative paths are read from the spec's folder (or from the folder a top-level
`paths_from` names): import paths, and the arguments of `[model]` and `[data]` that their
factory annotates as paths (`npz`'s `train`, `image_folder`'s `root`). Absolute paths and
`~` work as usual. `init.path` and `run.out` are read from the working directory.

## Durations
`steps` and `epochs` give a stage's length. Everywhere else (evaluation cadence,
scheduler milestones and warm-up, logging, checkpoints) a duration is an integer number of
steps or a string: `"500 steps"`, `"3 epochs"`, `"1 epoch"`, `"2ep"`, `"100ba"`. Durations
count from the start of the stage that uses them. Epochs are converted to steps with the
training split's length, known before any data is built. A *step* is one optimizer step
(`accumulate` micro-batches).

## Selecting parameters: `train`, `freeze`, `groups`
Selectors match the names of `model.named_parameters()`:
- a glob over the whole dotted name: `*` matches within one segment, `**` across segments
  (`"transformer.**"`, `"**.bias"`, `"backbone.blocks.*.norm.*"`);
- `"re:<regex>"`: a regular expression matched against the whole name;
- `{ use = "<strategy>", ... }`: a registered freeze strategy, e.g.
  `{ use = "fraction", module = "backbone", fraction = 0.5, end = "last" }` — the last
  half of the backbone's parameter tensors in registration order.

A stage trains the parameters selected by `train` (all if absent) minus those selected by
`freeze`. Stages are independent: a later stage may freeze what an earlier one trained.
Norm layers whose parameters are all frozen stay in eval mode (`frozen_norm = "eval"`) so
their running statistics do not move. Frozen parameters never reach the optimizer.
`groups` split the trainable parameters into named optimizer groups with their own `lr`
(absolute) or `lr_scale` (× the stage's `lr`) and `weight_decay`; the rest form group
`default`. Overlapping groups are an error.

## Losses
- `loss = "mse"` or `loss = { use = "cross_entropy", label_smoothing = 0.1 }`;
- a weighted sum: `loss = { sum = [{ use = "l1", weight = 2.0 }, { use = "relative_l1", weight = 0.8 }] }`;
- a blend of two: `loss = { blend = ["mse", { use = "nrmse", sigma = "auto" }], alpha = 0.3 }`
  is `(1 - alpha) * mse + alpha * nrmse`.

An argument written `"auto"` is derived from the training data before the stage starts,
when the loss declares how (`nrmse`'s per-channel `sigma`); the value is recorded in the run.

## Gates
`gate = { when = "val/f1 >= 0.80", on_fail = "stop" }` is checked after the stage (or at
each evaluation with `check = "eval"`). `when` is a condition over the stage's metrics —
`train/loss`, `val/loss` and `val/<metric>` — made of comparisons (`>=`, `>`, `<=`, `<`,
`==`, `!=`) joined by `and`, `or`, `not` and parentheses. It is parsed, never evaluated as
code. When it fails: `stop` ends the plan (exit code 3), `retry` runs the stage again from
its `init` (at most `max_retries` times), `goto` jumps to the later stage named by `goto`,
`warn` logs and goes on.

## Layers: `extends`, profiles, `--set`
`extends = "base.toml"` layers this file over another (deep merge; stages merge by
`name`). `[profile.<name>]` tables hold partial specs applied with `--profile <name>`;
they may address stages by name: `[profile.tiny.stage.warmup] steps = 20`. Every profile is
checked (keys, types, plugin names and arguments) whether or not it is selected, each
mistake reported where the profile writes it. Every command
accepts `--set key.path=value` (`--set stage.finetune.lr=1e-5`, `--set stage[0].steps=10`,
`--set run.device=cpu`); values are read as TOML, else as strings.

## Matrices and ensembles: `[matrix]`, `[[ensemble]]`
A spec with `[matrix]` trains many runs from one file: every variant with every seed.

```toml
[matrix]
seeds = [42, 2023, 2024]            # run.seed of each member
jobs = 2                            # members trained at once, each in its own process

[matrix.variant.resnet]             # a partial spec layered like a profile
model = { layers = [3, 3, 3] }

[matrix.variant.fusion]
model = { layers = [2, 2, 2], fusion = true }
stage.resnet = { epochs = 30 }      # stages addressed by name, as in a profile

[[ensemble]]
name = "mean"
use = "mean"                        # mean of probabilities / regression outputs
members = ["*"]                     # globs over member names

[[ensemble]]
name = "stacking"
use = "stacking"
meta = { use = "lightgbm", num_leaves = 15 }   # or "logistic" / "ridge" (scikit-learn)
folds = 5
```

Each variant × seed is a *member* named `<variant>-s<seed>` (`fusion-s2023`): a complete
run of its own in `RUN_DIR/members/<member>/` (its plan, checkpoints, metrics, summary;
`staged resume` and `staged export` work on it as on any run). A member's spec is the
file (with `extends` and the profile) layered with the variant's table, then the `--set`
overrides again (so `--set` wins), then `run.seed`. A variant may not set `run.seed`,
`matrix`, `ensemble`, `profile` or `extends`; a mistake in a variant is reported where it
is written (`matrix.variant.fusion.model.layerz`). Variant and ensemble names are letters,
digits, `_`, `-` and `.`, not starting with `.`, at most 64 characters. Without variants
the matrix has one, `base`; without seeds, one seed, `run.seed`.

Members run through the engine as ordinary plans; `staged run SPEC --jobs N` trains N at
once, each in a fresh process with `matrix.threads` CPU threads, so `--jobs 1` and
`--jobs 2` give bit-identical members on a CPU. A member that fails is recorded and the
others go on; `staged resume RUN_DIR` finishes what is unfinished, `--member GLOB` picks
some. Each finished member's validation (and test) predictions are cached in
`RUN_DIR/predictions/`, so `staged ensemble RUN_DIR` (re)builds the ensembles without
training. Ensembles are `ensemble` pieces (`staged plugins`): `mean`, `weighted` (given
`weights`, or fitted), `vote`, `greedy` (Caruana's selection with replacement, AutoGluon's
weighted ensemble) and `stacking` (a `meta` learner fitted on the members' outputs). An
ensemble that learns from the validation split is scored on out-of-fold predictions of
`folds` seeded (stratified) folds, and its cross-validation score is reported.
`staged eval RUN_DIR` scores every member and ensemble; `staged export RUN_DIR --ensemble
NAME` writes one ONNX graph.

## Search: `[search]`
A spec with `[search]` is a study: `staged search SPEC` runs trials, each a complete run of the
spec with the trial's parameters written in, and keeps the best.

```toml
[search]
metric = "val/nrmse"              # a metric the last stage evaluates; its best value there is the objective
direction = "minimize"            # or "maximize"
sampler = "tpe"                   # "grid" | "random" | "tpe"; seeded by `seed`
trials = 16
seed = 0
pruner = "median"                 # Optuna's pruners, on every evaluation of `metric`
[search.space]                    # keys are --set key paths
"stage.finetune.lr" = { low = 1e-6, high = 1e-4, log = true }   # a float range (an integer one on an integer key)
"stage.finetune.loss.alpha" = [0.5, 1.0]                       # a list: categorical, a grid axis
"model.dim" = [64, 128]
```

Every key of the space is checked against the spec by `staged validate` and `staged plan`: it
must name a key the spec has (a stage by name, a plugin's argument), each listed value must fit
it, and a range `{ low, high, log, step }` is an integer range on an integer key (integer bounds)
and a float range otherwise; a mistake points at the axis's line. `grid` runs every combination of
the lists in order (`trials` caps it) and needs no Optuna; `random` and `tpe` need `trials` and
the `search` extra (`pip install 'stagedsl[search]'`). A trial's sampler is seeded from `seed`
and the trial's number, so a study is reproducible and one resumed after a kill asks what the
uninterrupted one would have.

Trials are ordinary run directories, `RUN_DIR/trials/<n>/` (with `trial.json`: the parameters,
state and objective). A trial's objective is the best value of `metric` (in `direction`) over
the evaluations of its last stage; every evaluation is reported to the pruner, which may stop the
trial (pruned); a gate that stops the plan prunes the trial too; a trial that fails is recorded
and the study goes on. The study lives in `storage` (default `sqlite:///RUN_DIR/study.db`, which
`optuna-dashboard` reads); `staged search RUN_DIR` goes on with it (a trial left running by a
killed process continues from its newest checkpoint). `--jobs N` runs N trials at once, each in
its own process on the same storage.

**Stages trained once.** Every stage of a plan has a *stage hash* (`staged plan --json`,
`stage_hashes`) over everything that decides its weights: the model, the data and how it is
batched, the seed and numerics, the stage's own resolved plan, and where its starting weights
come from (the previous stage's hash, or that of the stage it inits from; a file's digest). With
`reuse = true` (the default) a trial whose stage hash equals one a trial of the study already
trained adopts that stage's outcome (best and last weights, metrics, gate decision) instead of
training it: a search over the last stage's LR trains the first stages once. The remaining
stages are bit-identical (on the CPU) to training the trial from scratch. Its `summary.json`
records each adopted stage under `reused` (`{"from": "trials/0", "stage", "hash"}`). The same
serves single runs: `staged run SPEC --reuse OTHER_RUN_DIR` (or a search's folder) adopts the
leading stages whose hashes match, so after editing stage 3 only stage 3 trains;
`staged plan SPEC --dry-run --reuse DIR` shows what would be adopted.

The results: `RUN_DIR/summary.json` (the best trial, value and parameters; the counts of
complete, pruned and failed trials and of trained and reused stages; a row per trial), the table
`staged search` prints, `--json`, and `RUN_DIR/best.toml`: the spec as it ran with the best
parameters written in and without `[search]`, which `staged run` runs as it is.

# Reference
'''


def _type(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Piece:
        return "piece"
    if tp is LossSpec:
        return "loss"
    if tp == Union[str, Piece]:
        return "selector"
    if tp is Duration:
        return "duration"
    if origin is Literal:
        return " \\| ".join(f'`"{a}"`' for a in args)
    if origin is Union:
        options = [a for a in args if a is not type(None)]
        return " or ".join(_type(a) for a in options)
    if origin is typing.Literal:
        return " or ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in args)
    if origin is tuple:
        return f"array of {_type(args[0])}"
    if attrs.has(tp):
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "boolean", dict: "table"}.get(tp, str(tp))


def _default(attribute: attrs.Attribute) -> str:
    default = attribute.default
    if default is attrs.NOTHING:
        return "**required**"
    if isinstance(default, attrs.Factory):
        default = default.factory()
    if default is None:
        return "—"
    if isinstance(default, Piece):
        return f'`"{default.use}"`'
    if isinstance(default, Duration):
        return f'`"{default}"`'
    if attrs.has(type(default)):
        return "see below"
    if isinstance(default, str):
        return f'`"{default}"`'
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple):
        return "`[" + ", ".join(f'"{d}"' if isinstance(d, str) else str(d) for d in default) + "]`"
    return f"`{default}`"


def _table(title: str, cls: type, skip: tuple[str, ...] = ()) -> str:
    hints = typing.get_type_hints(cls)
    rows = [f"## {title}", "", (cls.__doc__ or "").strip().splitlines()[0], "", "| key | type | default | meaning |", "|---|---|---|---|"]
    names = [a for a in attrs.fields(cls) if a.name not in LOADER_FIELDS + ("args",) + skip]
    keys = dict(zip([a.name for a in attrs.fields(cls) if a.name not in LOADER_FIELDS], key_names(cls)))
    for attribute in names:
        rows.append(f"| `{keys[attribute.name]}` | {_type(hints[attribute.name])} | {_default(attribute)} | {attribute.metadata.get('doc', '')} |")
    return "\n".join(rows) + "\n"


def language_reference() -> str:
    """The whole of docs/language.md."""
    parts = [
        INTRO,
        _table("`[run]`", RunSection),
        "## `[model]`\n\n`use` names a registered model (`staged plugins`); every other key is an argument of its factory.\n",
        _table("`[data]`", DataSection),
        "Every other key of `[data]` is an argument of the dataset's factory.\n",
        _table("`[[stage]]` (and `[defaults]`)", StageSpec),
        _table("`groups` entries", GroupSpec),
        _table("`eval`", EvalSpec),
        _table("`early_stop`", EarlyStopSpec),
        _table("`init`", InitSpec),
        _table("`gate`", GateSpec),
        _table("`checkpoint`", CheckpointSpec),
        _table("`[export]`", ExportSpec),
        _table("`[export] prune`", PruneSpec),
        _table("`[matrix]`", MatrixSpec),
        _table("`[[ensemble]]`", EnsembleSpec),
        "Every other key of `[[ensemble]]` is an argument of the ensemble's factory; `stacking`'s `meta` is a "
        "meta-learner piece (`lightgbm`, `logistic`, `ridge`; `staged plugins` lists them).\n",
        _table("`[search]`", SearchSpec),
        "## Top level\n\n| key | meaning |\n|---|---|\n"
        "| `extends` | Another spec file this one is layered on. |\n"
        "| `paths_from` | The folder relative paths are read from (import paths, `[model]` / `[data]` path arguments); default the spec file's own folder. A run's `spec.toml` records it. |\n"
        "| `[defaults]` | Stage keys every stage inherits. |\n"
        "| `[profile.<name>]` | A partial spec applied by `--profile <name>`. |\n"
        "| `[matrix]` | Variants x seeds, each member a run of its own. |\n"
        "| `[[ensemble]]` | Ensembles of the matrix's members. |\n"
        "| `[search]` | A study over key paths of the spec (`staged search`). |\n"
        "| `callbacks` | Array of callback pieces, called in order. |\n",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    print(language_reference(), end="")
