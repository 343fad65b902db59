"""The error catalogue: one wrong spec per mistake a user makes, each run through the CLI.

Every case is a small edit of `BASE`, a valid three-stage spec on the built-in plugins
(a tiny `pde_transformer` on `pde_synthetic`). For each one the CLI must exit 2 without
a traceback and print the error code, the key path, ``file:LINE:COL`` with the line the
mistake is on (computed from the text written here) and, where there is one to give,
the help line. Spec-level mistakes go through ``staged validate``, mistakes only the
planner can see (parameter names, steps per epoch) through ``staged plan --json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pytest

from stagedsl.cli.app import run_cli

BASE = """\
[run]
name = "tiny"
seed = 0

[model]
use = "pde_transformer"
channels = 2
size = 8
patch = 4
dim = 8
depth = 1
heads = 2

[data]
use = "pde_synthetic"
n_train = 16
n_val = 8
size = 8
channels = 2
batch_size = 4

[defaults]
lr = 1e-3
optimizer = { use = "adamw", weight_decay = 0.01 }
loss = "mse"
metrics = ["mse"]
eval = { every = "2 steps", monitor = "val/loss" }

[[stage]]
name = "warmup"
steps = 4
freeze = ["transformer.**"]

[[stage]]
name = "middle"
epochs = 2
train = ["transformer.**"]
init = { stage = "warmup", which = "best" }
gate = { when = "val/loss < 10.0", on_fail = "warn" }

[[stage]]
name = "finetune"
steps = 4
lr = 1e-4
scheduler = { use = "multistep", milestones = [2, "3 steps"], gamma = 0.5 }
groups = [{ name = "enc", params = ["encoder_2d.**"], lr_scale = 0.1 }]
init = { stage = "middle" }

[profile.tiny]
stage.warmup = { steps = 2 }
"""

# The same plan shape on an MLP and .npz files written into the test's folder.
NPZ_BASE = """\
[model]
use = "mlp"
in_features = 4
hidden = [8]
out_features = 2

[data]
use = "npz"
train = "{train}"
val = "{val}"
batch_size = 4

[[stage]]
name = "fit"
steps = 10
lr = 1e-3
loss = "mse"
freeze = ["layers.0.*"]
"""

Marker = Union[str, tuple[str, int]]


@dataclass(frozen=True)
class Case:
    """One wrong spec: edits of the base text and what the CLI must say about it."""

    id: str
    edits: tuple[tuple[str, str], ...]
    code: str
    path: Optional[str]
    at: Optional[Marker]  # text on the offending line (the n-th occurrence with a tuple); None: no line
    hint: Optional[str] = None  # part of the `= help:` line, when one is expected
    message: Optional[str] = None  # part of the `error[...]:` line
    command: str = "validate"
    args: tuple[str, ...] = ()
    files: dict = field(default_factory=dict)  # other files beside the spec
    where: str = "spec.toml"  # the file the error points into
    base: str = BASE
    caret: Optional[str] = None  # exactly the text the carets underline: the wrong value, or the key for a key error
    set_number: Optional[int] = None  # the error points at this --set argument (from 1) instead of into a file


def edit(old: str, new: str) -> tuple[tuple[str, str], ...]:
    return ((old, new),)


STAGE0_STEPS = 'name = "warmup"\nsteps = 4\n'
PLAN = "plan"

CASES = [
    # -- TOML itself ----------------------------------------------------------------
    Case("toml-syntax", edit("n_train = 16", "n_train = = 16"), "E006", None, "n_train = = 16", "check quotes, brackets"),
    Case("toml-unclosed-string", edit('name = "tiny"', 'name = "tiny'), "E006", None, 'name = "tiny', "check quotes"),
    Case("toml-duplicate-key", edit("seed = 0", "seed = 0\nseed = 1"), "E006", None, "seed = 1", "check quotes"),
    # -- unknown keys, at every level, with did-you-mean ----------------------------------
    Case("unknown-top-level-table", edit("[run]", "[runn]"), "E002", "runn", "[runn]", 'did you mean "run"?', caret='[runn]'),
    Case("misspelt-defaults", edit("[defaults]", "[defualts]"), "E002", "defualts", "[defualts]", 'did you mean "defaults"?', caret='[defualts]'),
    Case("unknown-run-key", edit('name = "tiny"', 'nmae = "tiny"'), "E002", "run.nmae", "nmae", 'did you mean "name"?', caret='nmae'),
    Case("unknown-stage-key", edit(STAGE0_STEPS, 'name = "warmup"\nstpes = 4\n'), "E002", "stage[0].stpes", "stpes", 'did you mean "steps"?', caret='stpes'),
    Case("unknown-gate-key", edit('on_fail = "warn"', 'on_fial = "warn"'), "E002", "stage[1].gate.on_fial", "on_fial", 'did you mean "on_fail"?', caret='on_fial'),
    Case("unknown-init-key", edit('which = "best"', 'wich = "best"'), "E002", "stage[1].init.wich", "wich", 'did you mean "which"?', caret='wich'),
    Case("unknown-group-key", edit("lr_scale = 0.1", "lr_scal = 0.1"), "E002", "stage[2].groups[0].lr_scal", "lr_scal", 'did you mean "lr_scale"?', caret='lr_scal'),
    Case("unknown-key-in-defaults", edit('monitor = "val/loss" }', 'monitr = "val/loss" }'), "E002", "stage[0].eval.monitr", "monitr", 'did you mean "monitor"?', caret='monitr'),
    # -- types and values ----------------------------------------------------------------
    Case("wrong-type-run-seed", edit("seed = 0", 'seed = "zero"'), "E003", "run.seed", 'seed = "zero"', caret='"zero"'),
    Case("wrong-type-fractional-steps", edit(STAGE0_STEPS, 'name = "warmup"\nsteps = 4.5\n'), "E003", "stage[0].steps", "steps = 4.5", caret='4.5'),
    Case("wrong-type-batch-size-string", edit("batch_size = 4", 'batch_size = "4"'), "E003", "data.batch_size", 'batch_size = "4"', caret='"4"'),
    Case("string-for-an-array", edit('freeze = ["transformer.**"]', 'freeze = "transformer.**"'), "E003", "stage[0].freeze",
         'freeze = "transformer.**"', 'write an array: ["transformer.**"]', caret='"transformer.**"'),
    Case("string-for-a-table", edit('init = { stage = "middle" }', 'init = "middle"'), "E003", "stage[2].init", 'init = "middle"', caret='"middle"'),
    Case("bad-duration", edit(STAGE0_STEPS, STAGE0_STEPS + 'log_every = "ten steps"\n'), "E010", "stage[0].log_every", "log_every",
         'a string like "500 steps"', caret='"ten steps"'),
    Case("bad-duration-unit", edit(STAGE0_STEPS, STAGE0_STEPS + 'checkpoint = { every = "3 fortnights" }\n'), "E010",
         "stage[0].checkpoint.every", "fortnights", '"500 steps"', caret='"3 fortnights"'),
    Case("bad-precision", edit("seed = 0", 'seed = 0\nprecision = "bf16"'), "E011", "run.precision", "precision", 'did you mean "bf16-mixed"?', caret='"bf16"'),
    Case("bad-device", edit("seed = 0", 'seed = 0\ndevice = "gpu"'), "E011", "run.device", "device", '"cuda:N"', caret='"gpu"'),
    Case("zero-batch-size", edit("batch_size = 4", "batch_size = 0"), "E012", "data.batch_size", "batch_size = 0", caret='0'),
    Case("missing-stage-name", edit('name = "middle"\n', ""), "E001", "stage[1].name", ("[[stage]]", 1), message="missing required key `name`", caret='[[stage]]'),
    Case("piece-without-use", edit('optimizer = { use = "adamw", weight_decay = 0.01 }', "optimizer = { weight_decay = 0.01 }"), "E004",
         "stage[0].optimizer", "optimizer =", 'e.g. optimizer = { use = "<registered optimizer>"', caret='{ weight_decay = 0.01 }'),
    Case("data-without-use", edit('use = "pde_synthetic"\n', ""), "E004", "data", "[data]", 'write use = "<registered dataset>" in [data]', caret='[data]'),
    Case("model-misspelt-use", edit('use = "pde_transformer"', 'usex = "pde_transformer"'), "E004", "model.usex", "usex =",
         'did you mean "use"?', message="`usex` is not a key here", caret='usex'),
    Case("no-stage-at-all", (), "E001", "stage", None, message="missing required key `stage`", base=BASE[: BASE.index("[[stage]]")]),
    Case("empty-stage-array", (), "E030", "stage", "stage = []", "add at least one [[stage]]", base="stage = []\n" + BASE[: BASE.index("[[stage]]")], caret='[]'),
    Case("init-stage-and-path", edit('init = { stage = "middle" }', 'init = { stage = "middle", path = "w.safetensors" }'), "E035",
         "stage[2].init", 'init = { stage = "middle", path', 'e.g. init = { stage = "warmup"', caret='{ stage = "middle", path = "w.safetensors" }'),
    # -- gates ------------------------------------------------------------------------
    Case("gate-dangling-comparison", edit('"val/loss < 10.0"', '"val/loss <"'), "E040", "stage[1].gate.when", "gate =", "comparisons joined by and/or", caret='"val/loss <"'),
    Case("gate-c-operator", edit('"val/loss < 10.0"', '"val/loss < 10 && val/mse < 1"'), "E040", "stage[1].gate.when", "gate =", "comparisons joined by and/or"),
    Case("gate-unbalanced-paren", edit('"val/loss < 10.0"', '"(val/loss < 1"'), "E040", "stage[1].gate.when", "gate =", "comparisons joined by and/or"),
    Case("gate-no-comparison", edit('"val/loss < 10.0"', '"val/loss"'), "E040", "stage[1].gate.when", "gate =", "comparisons joined by and/or"),
    Case("gate-empty", edit('"val/loss < 10.0"', '""'), "E040", "stage[1].gate.when", "gate =", "comparisons joined by and/or"),
    Case("gate-metric-not-computed", edit('"val/loss < 10.0"', '"val/msee < 0.5"'), "E043", "stage[1].gate.when", "gate =", 'did you mean "val/mse"?'),
    Case("gate-unknown-action", edit('on_fail = "warn"', 'on_fail = "wran"'), "E041", "stage[1].gate.on_fail", "gate =", 'did you mean "warn"?', caret='"wran"'),
    Case("goto-earlier-stage", edit('on_fail = "warn"', 'on_fail = "goto", goto = "warmup"'), "E042", "stage[1].gate.goto", "gate =", "later stages: finetune", caret='"warmup"'),
    Case("monitor-not-computed", edit(STAGE0_STEPS, STAGE0_STEPS + 'early_stop = { patience = 2, monitor = "val/rmse" }\n'), "E043",
         "stage[0].early_stop.monitor", "early_stop", 'did you mean "val/mse"?', caret='"val/rmse"'),
    # -- plugin names, with did-you-mean ---------------------------------------------------
    Case("unknown-model", edit('use = "pde_transformer"', 'use = "pde_transfomer"'), "E020", "model.use", "pde_transfomer", 'did you mean "pde_transformer"?', caret='"pde_transfomer"'),
    Case("unknown-dataset", edit('use = "pde_synthetic"', 'use = "pde_synth"'), "E020", "data.use", "pde_synth", 'did you mean "pde_synthetic"?', caret='"pde_synth"'),
    Case("unknown-loss", edit("lr = 1e-4", 'lr = 1e-4\nloss = "hubber"'), "E020", "stage[2].loss", "hubber", 'did you mean "huber"?',
         message="no loss named `hubber` is registered", caret='"hubber"'),
    Case("unknown-optimizer", edit("lr = 1e-4", 'lr = 1e-4\noptimizer = "adamm"'), "E020", "stage[2].optimizer", "adamm", 'did you mean "adam', caret='"adamm"'),
    Case("plugin-name-in-another-case", edit('use = "adamw"', 'use = "adamW"'), "E020", "stage[0].optimizer.use", 'use = "adamW"',
         'did you mean "adamw"?', caret='"adamW"'),
    Case("unknown-scheduler", edit('use = "multistep"', 'use = "multistpe"'), "E020", "stage[2].scheduler.use", "multistpe", 'did you mean "multistep"?', caret='"multistpe"'),
    Case("unknown-metric", edit("lr = 1e-4", 'lr = 1e-4\nmetrics = ["rmsee"]'), "E020", "stage[2].metrics[0]", "rmsee", 'did you mean "rmse"?', caret='"rmsee"'),
    Case("unknown-freeze-strategy", edit('freeze = ["transformer.**"]', 'freeze = [{ use = "fractoin", module = "encoder_2d", fraction = 0.5 }]'),
         "E020", "stage[0].freeze[0].use", "fractoin", 'did you mean "fraction"?', message="no freeze strategy named `fractoin`", caret='"fractoin"'),
    # -- plugin arguments, against the factory's signature -------------------------------------
    Case("unknown-model-argument", edit("heads = 2", "hedas = 2"), "E021", "model.hedas", "hedas", 'did you mean "heads"?', caret='hedas'),
    Case("unknown-scheduler-argument", edit("gamma = 0.5", "gama = 0.5"), "E021", "stage[2].scheduler.gama", "gama", 'did you mean "gamma"?', caret='gama'),
    Case("unknown-dataset-argument", edit("n_val = 8", "n_vall = 8"), "E021", "data.n_vall", "n_vall", 'did you mean "n_val"?', caret='n_vall'),
    Case("missing-scheduler-argument", edit('milestones = [2, "3 steps"], ', ""), "E022", "stage[2].scheduler", "scheduler =", "add milestones = ...", caret='{ use = "multistep", gamma = 0.5 }'),
    Case("missing-strategy-argument", edit('freeze = ["transformer.**"]', 'freeze = [{ use = "fraction", module = "encoder_2d" }]'),
         "E022", "stage[0].freeze[0]", "freeze =", "add fraction = ...", message="freeze strategy `fraction` needs argument `fraction`"),
    Case("wrong-argument-type", edit("depth = 1", "depth = 1.5"), "E023", "model.depth", "depth = 1.5", caret='1.5'),
    Case("wrong-argument-type-in-piece", edit("gamma = 0.5", 'gamma = "half"'), "E023", "stage[2].scheduler.gamma", "scheduler =", caret='"half"'),
    # -- stage structure and references -------------------------------------------------------
    Case("steps-and-epochs", edit(STAGE0_STEPS, STAGE0_STEPS + "epochs = 1\n"), "E032", "stage[0]", ("[[stage]]", 0), "e.g. steps = 2000", caret='[[stage]]'),
    Case("neither-steps-nor-epochs", edit(STAGE0_STEPS, 'name = "warmup"\n'), "E032", "stage[0]", ("[[stage]]", 0), "e.g. steps = 2000"),
    Case("no-lr", edit("lr = 1e-3\n", ""), "E033", "stage[0]", ("[[stage]]", 0), "set `lr`"),
    Case("no-loss", edit('loss = "mse"\n', ""), "E034", "stage[0]", ("[[stage]]", 0), "set `loss`"),
    Case("duplicate-stage-name", edit('name = "finetune"', 'name = "warmup"'), "E031", "stage[2].name", ('name = "warmup"', 1), "its own name", caret='"warmup"'),
    Case("init-unknown-stage", edit('stage = "warmup", which', 'stage = "warmpu", which'), "E036", "stage[1].init.stage", "init =", 'did you mean "warmup"?', caret='"warmpu"'),
    Case("init-forward", edit(STAGE0_STEPS, STAGE0_STEPS + 'init = { stage = "middle" }\n'), "E037", "stage[0].init.stage",
         'init = { stage = "middle" }', "init can only load an earlier stage", caret='"middle"'),
    Case("init-itself", edit('stage = "warmup", which', 'stage = "middle", which'), "E037", "stage[1].init.stage", "init =", "init can only load an earlier stage: warmup"),
    Case("lr-and-lr-scale", edit("lr_scale = 0.1", "lr_scale = 0.1, lr = 1e-3"), "E050", "stage[2].groups[0]", "groups =", "keep one", caret='{ name = "enc", params = ["encoder_2d.**"], lr_scale = 0.1, lr = 1e-3 }'),
    Case("plateau-without-monitor", edit('scheduler = { use = "multistep", milestones = [2, "3 steps"], gamma = 0.5 }', 'scheduler = "plateau"'),
         "E045", "stage[2].scheduler", "plateau", "monitor", caret='"plateau"'),
    # -- layers: profiles, --set, extends ---------------------------------------------------
    Case("set-unknown-stage", (), "E007", "stage.warmpu", None, 'did you mean "warmup"?', args=("--set", "stage.warmpu.steps=3"),
         caret="warmpu", set_number=1),
    Case("set-unknown-stage-by-name", (), "E007", "stage.finetun", None, 'did you mean "finetune"?',
         args=("--set", "run.seed=1", "--set", "stage.finetun.lr=1e-5"), caret="finetun", set_number=2),
    Case("set-without-value", (), "E007", None, None, "e.g. --set stage.finetune.lr=1e-5", args=("--set", "stage[0].steps"),
         caret="stage[0].steps", set_number=1),
    Case("set-index-out-of-range", (), "E007", "stage[7]", None, None, args=("--set", "stage[7].steps=1"), caret="[7]", set_number=1),
    Case("set-wrong-type", (), "E003", "stage[0].steps", None, None, args=("--set", "stage[0].steps=ten"), caret="ten", set_number=1,
         message="expected an integer, found 'ten'"),
    Case("set-unknown-key", (), "E002", "stage[0].stpes", None, 'did you mean "steps"?', args=("--set", "stage[0].stpes=3"), caret="stpes",
         set_number=1),
    Case("set-unknown-plugin-in-a-table", (), "E020", "stage[2].optimizer.use", None, 'did you mean "adamw"?',
         args=("--set", 'stage.finetune.optimizer={ use = "AdamW", lr = 1 }'), caret='"AdamW"', set_number=1),
    Case("set-defaults-wrong-type", (), "E003", "stage[0].lr", None, None, args=("--set", 'defaults.lr="fast"'), caret='"fast"', set_number=1),
    Case("extends-missing-file", edit("[run]", 'extends = "base.toml"\n\n[run]'), "E008", "extends", "extends", "relative to the file", caret='"base.toml"'),
    Case("extends-itself", edit("[run]", 'extends = "spec.toml"\n\n[run]'), "E008", "extends", "extends", "cannot extend itself", caret='"spec.toml"'),
    Case("extends-cycle", edit("[run]", 'extends = "parent.toml"\n\n[run]'), "E008", "extends", "extends", "cannot extend itself",
         files={"parent.toml": 'extends = "spec.toml"\n'}, where="parent.toml", caret='"spec.toml"'),
    # -- hostile names, values and sizes: nothing reaches a path, a NaN or a recursion (issue 15) ----------
    Case("stage-name-climbs-out", edit('name = "warmup"', 'name = "../../../victim"'), "E013", "stage[0].name", 'name = "../../../victim"',
         'e.g. "victim"', message="cannot be a path"),
    Case("stage-name-with-slash", edit('name = "warmup"', 'name = "a/b"'), "E013", "stage[0].name", 'name = "a/b"', 'e.g. "a_b"',
         message="contains '/'"),
    Case("stage-name-empty", edit('name = "warmup"', 'name = ""'), "E013", "stage[0].name", 'name = ""', message="is empty"),
    Case("stage-name-dotdot", edit('name = "middle"', 'name = ".."'), "E013", "stage[1].name", 'name = ".."', message="starts with '.'"),
    Case("stage-name-too-long", edit('name = "finetune"', f'name = "{"x" * 300}"'), "E013", "stage[2].name", "x" * 300,
         message="300 characters long"),
    Case("stage-name-nul", edit('name = "finetune"', 'name = "fine\\u0000tune"'), "E013", "stage[2].name", "u0000", 'e.g. "fine_tune"'),
    Case("run-name-climbs-out", edit('name = "tiny"', 'name = "../../../etc"'), "E013", "run.name", 'name = "../../../etc"', 'e.g. "etc"'),
    Case("run-out-in-proc", edit("seed = 0", 'seed = 0\nout = "/proc/evil"'), "E014", "run.out", 'out = "/proc/evil"', "a folder of its own"),
    Case("run-out-set-in-sys", (), "E014", "run.out", None, None, args=("--set", 'run.out="/sys/x"'), caret='"/sys/x"', set_number=1),
    Case("seed-overflow", edit("seed = 0", "seed = 99999999999999999999"), "E012", "run.seed", "seed = 99999999999999999999",
         message="from 0 to 2**63 - 1"),
    Case("seed-negative", edit("seed = 0", "seed = -1"), "E012", "run.seed", "seed = -1"),
    Case("group-lr-negative", edit("lr_scale = 0.1", "lr = -1.0"), "E012", "stage[2].groups[0].lr", "groups =", message="greater than 0"),
    Case("group-lr-nan", edit("lr_scale = 0.1", "lr = nan"), "E012", "stage[2].groups[0].lr", "groups =", message="finite"),
    Case("group-lr-scale-nan", edit("lr_scale = 0.1", "lr_scale = nan"), "E012", "stage[2].groups[0].lr_scale", "groups =", message="finite"),
    Case("group-weight-decay-negative", edit("lr_scale = 0.1", "lr_scale = 0.1, weight_decay = -0.5"), "E012",
         "stage[2].groups[0].weight_decay", "groups =", message="at least 0"),
    Case("grad-clip-nan", edit("lr = 1e-4", "lr = 1e-4\ngrad_clip = nan"), "E012", "stage[2].grad_clip", "grad_clip = nan", message="finite"),
    Case("grad-clip-infinite", edit("lr = 1e-4", "lr = 1e-4\ngrad_clip = inf"), "E012", "stage[2].grad_clip", "grad_clip = inf"),
    Case("min-delta-nan", edit(STAGE0_STEPS, STAGE0_STEPS + "early_stop = { patience = 2, min_delta = nan }\n"), "E012",
         "stage[0].early_stop.min_delta", "early_stop"),
    Case("loss-weight-infinite", edit("lr = 1e-4", 'lr = 1e-4\nloss = { sum = [{ use = "mse", weight = inf }] }'), "E012",
         "stage[2].loss.sum[0].weight", "weight = inf"),
    Case("gate-nests-too-deep", edit('"val/loss < 10.0"', '"' + "(" * 400 + "val/loss < 10.0" + ")" * 400 + '"'), "E015",
         "stage[1].gate.when", "gate =", "write the condition flat", message="nest more than 32 deep"),
    Case("gate-set-nests-too-deep", (), "E015", "stage[1].gate.when", None, args=("--set", "stage.middle.gate.when=" + "(" * 400 + "val/loss<1" + ")" * 400), set_number=1),
    Case("toml-arrays-nest-too-deep", edit("heads = 2", "heads = 2\nextra = " + "[" * 600 + "]" * 600), "E016", None, None,
         message="more than 32 deep"),
    Case("tables-nest-too-deep", edit("heads = 2", "heads = 2\n" + ".".join(["deep"] * 40) + " = 1"), "E016", "model.deep.deep ...", "deep.deep",
         message="more than 32 deep"),
    Case("set-value-nests-too-deep", (), "E016", None, None, args=("--set", "model.extra=" + "[" * 600 + "]" * 600), set_number=1,
         message="nests too deeply"),
    Case("extends-a-folder", edit("[run]", 'extends = "sub"\n\n[run]'), "E008", "extends", "extends", "name the .toml file inside it",
         files={"sub/keep.toml": ""}, message="names a folder, not a file"),
    Case("extends-proc-environ", edit("[run]", 'extends = "/proc/self/environ"\n\n[run]'), "E008", "extends", "extends",
         message="a folder of the system's"),
    Case("extends-not-toml", edit("[run]", 'extends = "notes.txt"\n\n[run]'), "E008", "extends", "extends", "nothing of it is shown",
         files={"notes.txt": "SECRET=1\n"}, message="not a .toml file"),
    Case("model-depth-a-million", edit("depth = 1", "depth = 1000000"), "E017", "model", "[model]", "check its size arguments",
         command=PLAN, message="more than 100,000 parameter tensors"),  # refused while built, not after minutes of swapping
    Case("model-over-parameter-budget", edit("seed = 0", "seed = 0\nmax_parameters = 100"), "E017", "model", "[model]",
         "raise [run] max_parameters", command=PLAN, message="more than 100 parameters"),
    # -- what only the planner sees (model parameters, dataset sizes) ------------------------------
    Case("glob-matches-nothing", edit('freeze = ["transformer.**"]', 'freeze = ["encoder.**"]'), "E060", "stage[0].freeze[0]", "freeze =",
         'did you mean "encoder_2d.**"?', command=PLAN, caret='"encoder.**"'),
    Case("train-glob-matches-nothing", edit('train = ["transformer.**"]', 'train = ["transfomer.*.weight"]'), "E060", "stage[1].train[0]", "train = [",
         'did you mean "transformer.*.weight"?', command=PLAN, caret='"transfomer.*.weight"'),
    Case("glob-keeps-the-users-subtree", edit('freeze = ["transformer.**"]', 'freeze = ["transformers.*"]'), "E060", "stage[0].freeze[0]",
         "freeze =", 'did you mean "transformer.**"?', command=PLAN, caret='"transformers.*"'),
    Case("set-glob-matches-nothing", (), "E060", "stage[0].freeze[0]", None, 'did you mean "encoder_2d.**"?', command=PLAN,
         args=("--set", 'stage[0].freeze=["encoder.**"]'), caret='"encoder.**"', set_number=1),
    Case("bad-regex", edit('freeze = ["transformer.**"]', 'freeze = ["re:transformer.(["]'), "E024", "stage[0].freeze[0]", "freeze =", command=PLAN),
    Case("strategy-rejects-arguments", edit('freeze = ["transformer.**"]', 'freeze = [{ use = "fraction", module = "encoder_2d", fraction = 1.5 }]'),
         "E024", "stage[0].freeze[0]", "freeze =", command=PLAN, caret='{ use = "fraction", module = "encoder_2d", fraction = 1.5 }'),
    Case("stage-trains-nothing", edit('freeze = ["transformer.**"]', 'freeze = ["**"]'), "E061", "stage[0]", ("[[stage]]", 0),
         "loosen `freeze`", command=PLAN, caret='[[stage]]'),
    Case("overlapping-groups", edit("lr_scale = 0.1 }]", 'lr_scale = 0.1 }, { name = "weights", params = ["**.weight"] }]'), "E062",
         "stage[2].groups[1].params", "groups =", "one group only", command=PLAN, caret='["**.weight"]'),
    Case("milestone-past-the-end", edit('milestones = [2, "3 steps"]', 'milestones = [2, "9 steps"]'), "E063", "stage[2].scheduler.milestones[1]",
         "scheduler =", "count from the stage's own start", command=PLAN, caret='"9 steps"'),
    Case("epochs-overflow-a-step-count", edit("epochs = 2", "epochs = 1.7e308"), "E064", "stage[1].epochs", "epochs = 1.7e308",
         command=PLAN, message="too long", caret='1.7e308'),
    Case("model-cannot-be-built", edit("heads = 2", "heads = 3"), "E025", "model", "[model]", "check the model's arguments", command=PLAN, caret='[model]'),
    Case("split-smaller-than-a-batch", edit("n_train = 16", "n_train = 2\ndrop_last = true"), "E027", "data.batch_size", "batch_size = 4",
         "lower batch_size", command=PLAN, caret='4'),
    Case("npz-file-missing", edit('train = "{train}"', 'train = "{missing}"'), "E026", "data", "[data]", "check the dataset's arguments",
         command=PLAN, base=NPZ_BASE, caret='[data]'),
    Case("npz-glob-matches-nothing", edit('freeze = ["layers.0.*"]', 'freeze = ["layer.0.*"]'), "E060", "stage[0].freeze[0]", "freeze =",
         'did you mean "layers.0.*"?', command=PLAN, base=NPZ_BASE, caret='"layer.0.*"'),
]


def _line(text: str, marker: Marker) -> int:
    """The 1-based line of the n-th occurrence of `marker` in `text`."""
    needle, nth = (marker, 0) if isinstance(marker, str) else marker
    start = -1
    for _ in range(nth + 1):
        start = text.index(needle, start + 1)
    return text.count("\n", 0, start) + 1


def _write_npz(folder: Path) -> dict[str, str]:
    rng = np.random.default_rng(0)
    paths = {}
    for split, count in (("train", 16), ("val", 8)):
        path = folder / f"{split}.npz"
        np.savez(path, x=rng.normal(size=(count, 4)).astype("float32"), y=rng.normal(size=(count, 2)).astype("float32"))
        paths[split] = str(path)
    paths["missing"] = str(folder / "missing.npz")
    return paths


def _spec_text(case: Case, folder: Path) -> str:
    text = case.base
    for old, new in case.edits:
        assert text.count(old) == 1, f"edit target {old!r} must occur once in the base"
        text = text.replace(old, new)
    if case.base is NPZ_BASE:
        text = text.format(**_write_npz(folder))
    return text


def test_the_base_specs_are_valid(tmp_path, registry, capsys):
    for base in (BASE, NPZ_BASE):
        spec = tmp_path / "spec.toml"
        spec.write_text(base.format(**_write_npz(tmp_path)) if base is NPZ_BASE else base)
        assert run_cli(["validate", str(spec)]) == 0, capsys.readouterr().err
        assert run_cli(["plan", str(spec), "--json"]) == 0, capsys.readouterr().err


def test_the_catalogue_is_large_and_distinct():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({(c.edits, c.args, c.base) for c in CASES}) == len(CASES)
    assert len({c.code for c in CASES}) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_error_catalogue(case: Case, tmp_path, registry, capsys):
    text = _spec_text(case, tmp_path)
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    for name, content in case.files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    argv = [case.command, str(spec), *case.args] + (["--json"] if case.command == PLAN else [])

    code = run_cli(argv)
    out, err = capsys.readouterr()

    assert code == 2, err
    assert "Traceback" not in err and "Traceback" not in out
    assert "SECRET" not in err and "PATH=" not in err  # a file named by `extends` is never echoed unless it is a spec
    assert f"error[{case.code}]:" in err, err
    if case.message is not None:
        assert re.search(rf"error\[{case.code}\]: .*{re.escape(case.message)}", err), err
    if case.path is not None:
        assert f"= at: {case.path}\n" in err + "\n", err
    where = tmp_path / case.where
    if case.set_number is not None:
        argument = [value for flag, value in zip(case.args, case.args[1:]) if flag == "--set"][case.set_number - 1]
        assert f" --> --set #{case.set_number}\n" in err, err
        assert f" | --set {argument}\n" in err, err  # the argument, as written
    elif case.at is None:
        assert f"--> {spec}" in err, err
    else:
        where_text = where.read_text()
        line = _line(where_text, case.at)
        assert re.search(rf"--> {re.escape(str(where))}:{line}:\d+\n", err), f"expected line {line}:\n{err}"
        assert f"{line} | {where_text.splitlines()[line - 1]}" in err, err  # the offending line, shown
    if case.hint is not None:
        assert re.search(r"= help: .*" + re.escape(case.hint), err), err
    if case.caret is not None:
        assert case.caret in underlined(err), err
    assert re.search(r"\n\d+ errors?\s*$", err), err


def test_an_unknown_profile_points_at_the_argument_and_names_the_file(tmp_path, registry, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(BASE)
    assert run_cli(["validate", str(spec), "--profile", "tyni"]) == 2
    err = capsys.readouterr().err
    assert f"error[E009]: no profile named `tyni` in {spec}\n --> --profile\n" in err and "Traceback" not in err
    assert underlined(err) == ["tyni"] and 'did you mean "tiny"?' in err


def underlined(rendered: str) -> list[str]:
    """The text each block's carets stand under (``steps = "ten"`` over ``        ^^^^^`` -> ``"ten"``)."""
    lines = rendered.splitlines()
    out = []
    for shown, below in zip(lines, lines[1:]):
        source = re.match(r"^\s*\d* \| (.*)$", shown)
        carets = re.match(r"^\s* \| ( *)(\^+)$", below)
        if source and carets:
            start = len(carets.group(1))
            out.append(source.group(1)[start : start + len(carets.group(2))])
    return out


SEVERAL_MISTAKES = [
    (STAGE0_STEPS, 'name = "warmup"\nsteps = 4\nepochs = 1\n'),  # E032 at stage[0]
    ('"val/loss < 10.0"', '"val/loss <"'),  # E040 at stage[1].gate.when
    ('stage = "warmup", which', 'stage = "middle", which'),  # E037 at stage[1].init.stage
    ("gamma = 0.5", "gama = 0.5"),  # E021 at stage[2].scheduler.gama
    ('seed = 0', 'seed = 0\nprecision = "fp8"'),  # E011 at run.precision
]


def test_independent_mistakes_are_all_reported_with_a_count(tmp_path, registry, capsys):
    text = BASE
    for old, new in SEVERAL_MISTAKES:
        text = text.replace(old, new)
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert run_cli(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert sorted(re.findall(r"error\[(E\d+)\]", err)) == ["E011", "E021", "E032", "E037", "E040"]
    assert err.rstrip().endswith("\n\n5 errors")
    for line in (_line(text, ("[[stage]]", 0)), _line(text, "gate ="), _line(text, 'init = { stage = "middle"'), _line(text, "gama"),
                 _line(text, "precision")):
        assert f"{spec}:{line}:" in err
    for path in ("stage[0]", "stage[1].gate.when", "stage[1].init.stage", "stage[2].scheduler.gama", "run.precision"):
        assert f"= at: {path}\n" in err


def test_shape_errors_hold_back_the_checks_that_need_a_typed_spec_but_not_plugin_names(tmp_path, registry, capsys):
    """Unknown keys and wrong types (all of them) come with the plugin names and arguments (each piece
    is checked on its own); the checks across keys (stage lengths, gates, inits) wait for a typed spec."""
    text = BASE.replace('name = "tiny"', 'nmae = "tiny"')
    for old, new in SEVERAL_MISTAKES:
        text = text.replace(old, new)
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert run_cli(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert sorted(re.findall(r"error\[(E\d+)\]", err)) == ["E002", "E011", "E021"]  # a bad choice is a shape error too
    assert "= at: stage[2].scheduler.gama\n" in err
    assert err.rstrip().endswith("3 errors")


def test_a_typo_a_wrong_type_and_an_unknown_plugin_are_all_reported(tmp_path, registry, capsys):
    """Shape errors do not hide unknown plugin names, even in the stage the typo is in."""
    text = (BASE.replace(STAGE0_STEPS, 'name = "warmup"\nstpes = 4\noptimizer = "adamm"\n').replace("seed = 0", 'seed = "zero"')
            .replace('use = "pde_synthetic"', 'use = "pde_synth"').replace("gamma = 0.5", "gama = 0.5"))
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert run_cli(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    found = sorted(zip(re.findall(r"error\[(E\d+)\]", err), re.findall(r"= at: (\S+)", err)))
    assert found == [("E002", "stage[0].stpes"), ("E003", "run.seed"), ("E020", "data.use"), ("E020", "stage[0].optimizer"),
                     ("E021", "stage[2].scheduler.gama")], err
    assert {'stpes', '"zero"', '"pde_synth"', '"adamm"', "gama"} <= set(underlined(err))
    assert err.rstrip().endswith("5 errors")


def test_a_wrong_value_of_a_plugin_name_is_not_reported_as_unknown_too(tmp_path, registry, capsys):
    """A piece whose `use` is not a string is one error (the piece), not a second one about its name."""
    text = BASE.replace('use = "multistep"', "use = 3").replace("seed = 0", 'seed = "zero"')
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert run_cli(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert sorted(re.findall(r"error\[(E\d+)\]", err)) == ["E003", "E003"], err
    assert set(re.findall(r"= at: (\S+)", err)) == {"run.seed", "stage[2].scheduler.use"}


def test_structural_errors_are_all_reported(tmp_path, registry, capsys):
    text = BASE.replace('name = "tiny"', 'nmae = "tiny"').replace("seed = 0", 'seed = "x"').replace("lr_scale = 0.1", "lr_scal = 0.1")
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert run_cli(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert sorted(re.findall(r"error\[(E\d+)\]", err)) == ["E002", "E002", "E003"]
    assert err.rstrip().endswith("3 errors")


def test_planner_reports_every_stage_problem(tmp_path, registry, capsys):
    text = BASE.replace('freeze = ["transformer.**"]', 'freeze = ["encoder.**"]').replace('milestones = [2, "3 steps"]', 'milestones = [2, "9 steps"]')
    spec = tmp_path / "spec.toml"
    spec.write_text(text)
    assert run_cli(["plan", str(spec), "--json"]) == 2
    out, err = capsys.readouterr()
    assert sorted(e["code"] for e in json.loads(out)["errors"]) == ["E060", "E063"]  # --json: the same errors as data
    assert sorted(re.findall(r"error\[(E\d+)\]", err)) == ["E060", "E063"]
    assert err.rstrip().endswith("2 errors")
