"""The hook specifications: the whole contract between stagedsl and its plugins.

Each kind of piece has one `register_<kind>(register)` hook. A plugin implements the
hooks it needs with the `stagedsl.hookimpl` marker and calls `register` once per piece::

    from stagedsl import hookimpl

    @hookimpl
    def register_losses(register):
        register("charbonnier", make_charbonnier)

`register(name, factory, **meta)` records a *factory*: a callable that builds the piece
when the engine needs it. The keywords a kind accepts are its meta
(`stagedsl.registry.meta`: typed and checked; an unknown one is an error). Registration must stay cheap (no torch import at module
level of the plugin): `staged validate` and `staged plugins` load every plugin, and the
factory imports its heavy code only when called. The factory's signature *is* the
piece's argument list: the spec's arguments are checked against it before anything
runs (unknown or missing arguments are spec errors, with a did-you-mean).

The registry calls each hook once per plugin, at start-up, in the order plugins load.
Two plugins registering the same name for one kind is an error naming both.
Per-step events are not hooks: see `stagedsl.engine.events.Event`.
"""

from __future__ import annotations

import pluggy

PROJECT = "stagedsl"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register):
    """Register model factories.

    Receives: ``register(name, factory)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(**args) -> torch.nn.Module``. It must be able to build the model
    under ``torch.device("meta")`` (the planner does, to resolve parameter names without
    memory). The model is called as ``model(x)`` with the batch's input, or
    ``model(*x)`` when the input is a tuple.
    Returns: nothing.
    """


@hookspec
def register_datasets(register):
    """Register dataset factories.

    Receives: ``register(name, factory, sizes=None)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(**args) -> stagedsl.DataSplits`` (``train``, optional ``val`` and
    ``test`` torch datasets, and ``stats``: plain-data statistics such as normalisation).
    In-memory datasets should implement ``__getitems__`` so whole batches are fetched
    at once. ``sizes(**args) -> {"train": n, "val": m}`` optionally returns the split
    lengths without building the data, so the planner can turn epochs into steps (it may
    name only the arguments it needs and take the rest as ``**kwargs``); without it the
    planner builds the dataset once when a duration is in epochs. Arguments annotated
    ``pathlib.Path`` are read relative to the spec's folder and arrive as ``Path``.
    Returns: nothing.
    """


@hookspec
def register_losses(register):
    """Register loss factories.

    Receives: ``register(name, factory, auto=None)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(**args) -> callable(prediction, target) -> scalar tensor``
    (usually an ``nn.Module``). A loss whose object has ``needs_inputs = True`` is called
    ``loss(prediction, target, inputs)`` with the batch's inputs (e.g. a mesh's edges). ``auto`` maps an argument name to
    ``derive(train_dataset) -> value``: a spec may then write ``arg = "auto"`` and the
    engine computes the value once from the training split before the stage starts.
    Returns: nothing.
    """


@hookspec
def register_metrics(register):
    """Register metric factories.

    Receives: ``register(name, factory, mode="max")``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(**args) -> torchmetrics.Metric`` (``update(pred, target)``,
    ``compute()``, ``reset()``). Logged as ``val/<name>``. ``mode`` says whether larger
    (``"max"``) or smaller (``"min"``) is better, the default for monitors.
    Returns: nothing.
    """


@hookspec
def register_optimizers(register):
    """Register optimizer factories.

    Receives: ``register(name, factory, default=False)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(param_groups, lr, **args) -> torch.optim.Optimizer`` where
    ``param_groups`` is a list of ``{"params", "lr", "name"[, "weight_decay"]}`` dicts
    holding trainable parameters only, one per group of the plan, named as the plan names
    them (``weight_decay`` only where the plan sets one; else the optimizer's own applies). ``default=True``: the optimizer
    of a stage that names none (one plugin may claim it).
    Returns: nothing.
    """


@hookspec
def register_schedulers(register):
    """Register learning-rate scheduler factories.

    Receives: ``register(name, factory, default=False, monitored=False, worst_case=None)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(optimizer, total_steps, **args) -> LRScheduler | None`` (None: the
    LR never changes, and nothing is stepped). The engine
    steps it once per optimizer step; arguments annotated ``stagedsl.Steps`` (or a list
    of them) are written as durations in the spec (``"30 epochs"``) and arrive as step
    counts from the stage's start. ``monitored=True`` marks schedulers stepped with a
    metric (``scheduler.step(value)`` after each evaluation) instead; ``worst_case``
    (see `stagedsl.registry.meta.SchedulerMeta`) tells the W001 lint how low such a
    schedule can take the LR. ``default=True``: the scheduler of a stage that names none.
    Returns: nothing.
    """


@hookspec
def register_freeze_strategies(register):
    """Register freeze strategies: ways to select parameters by name.

    Receives: ``register(name, factory, default=False, prefix=None)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(names, **args) -> list[str]``: given every parameter name of the
    model in registration order, return the selected ones. A factory that also (or only)
    takes ``modules`` receives the model's module tree: one `stagedsl.ModuleInfo` per
    entry of ``model.named_modules()`` (dotted name, class name and bases, the parameters
    it holds itself), parameter-less modules (``relu``, ``maxpool``) included. Used in a
    stage's ``freeze``/``train`` lists as ``{use = "<name>", ...}``. Must not need torch.
    ``default=True``: a bare selector string (``"encoder.**"``) means this strategy;
    ``prefix="re:"``: a string starting with it does. Either is called with the string
    (without the prefix) as ``pattern``.
    Returns: nothing.
    """


@hookspec
def register_ensembles(register):
    """Register ensembles: ways to combine the predictions of a matrix's members.

    Receives: ``register(name, factory, pieces=None)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(**args) -> ensemble``, with the arguments of the spec's
    ``[[ensemble]]`` table (its keys ``name``, ``use``, ``members`` and ``folds`` are
    stagedsl's). ``pieces`` maps an argument to a kind of piece: the spec writes it as a
    piece (``meta = { use = "lightgbm", num_leaves = 15 }``), checked like every piece, and
    the factory receives ``make(task) -> object`` that builds a fresh one of it.
    The ensemble object has:

    - ``fit(outputs, target, task)``: ``outputs`` float64 ``[members, samples, width]``
      (class probabilities for classification; the model's outputs, flattened per sample,
      for regression), ``target`` ``[samples]`` int labels or ``[samples, width]`` floats,
      ``task`` a `stagedsl.EnsembleTask` (kind, classes, seed). stagedsl cross-fits it over
      k folds of the validation split (its out-of-fold predictions are its scores), then
      fits it once more on the whole split;
    - ``predict(outputs) -> [samples, width]``: combined probabilities or values;
    - ``needs_fit`` (optional, default True): False when the fit learns nothing from the
      data (``mean``, given weights): its scores then need no cross-fitting;
    - ``weights`` (optional, after fit): ``[members]`` when the ensemble is a weighted
      average of its members' outputs; such an ensemble exports as one ONNX graph;
    - ``to_onnx(opset, width)`` (optional, after fit): an ``onnx.ModelProto`` from input
      ``features`` ``[samples, members * width]`` (member-major) to the combined output;
      `staged export --ensemble` composes it after the members' graph;
    - ``describe() -> dict`` (optional, after fit): JSON-safe facts (weights, selection).

    Returns: nothing.
    """


@hookspec
def register_meta_learners(register):
    """Register meta-learners: the models a stacking ensemble fits on its members' outputs.

    Receives: ``register(name, factory)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(task, **args) -> estimator`` with scikit-learn's interface:
    ``fit(features, target)`` and ``predict_proba(features)`` for classification,
    ``predict(features)`` for regression. ``task`` (a `stagedsl.EnsembleTask`) is supplied
    by stagedsl; the spec writes the other arguments
    (``meta = { use = "lightgbm", num_leaves = 15 }``). A factory seeds the estimator from
    ``task.seed`` so a refit gives the same model.
    Returns: nothing.
    """


@hookspec
def register_exporters(register):
    """Register exporters: formats a trained model is written to.

    Receives: ``register(name, factory)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(**args) -> callable(context) -> list[pathlib.Path]`` where the
    context carries the model, sample inputs and the destination folder.
    Returns: nothing.
    """


@hookspec
def register_callbacks(register):
    """Register callback factories.

    Receives: ``register(name, factory)``.
    Called: once per plugin when the registry loads.
    Factory: ``factory(**args) -> stagedsl.Callback``; the engine gathers the callbacks a
    run names once, in order, and calls ``callback.on_event(event, state)`` for the
    events listed in ``stagedsl.engine.events.Event``.
    Returns: nothing.
    """


SUPPLIED: dict[str, tuple[str, ...]] = {
    "optimizers": ("param_groups", "lr"),
    "schedulers": ("optimizer", "total_steps"),
    "freeze_strategies": ("names",),
    "meta_learners": ("task",),
}
"""Factory arguments the core supplies itself, by keyword; a spec does not write them."""

OPTIONAL_SUPPLIED: dict[str, tuple[str, ...]] = {
    "freeze_strategies": ("modules",),
}
"""Arguments the core supplies only to a factory whose signature takes them: a freeze strategy's
``modules``, the model's module tree (`stagedsl.ModuleInfo` records)."""

KINDS: tuple[str, ...] = (
    "models",
    "datasets",
    "losses",
    "metrics",
    "optimizers",
    "schedulers",
    "freeze_strategies",
    "ensembles",
    "meta_learners",
    "exporters",
    "callbacks",
)
"""Every kind of piece, in the order `staged plugins` lists them."""

SINGULAR = {
    "models": "model", "datasets": "dataset", "losses": "loss", "metrics": "metric", "optimizers": "optimizer",
    "schedulers": "scheduler", "freeze_strategies": "freeze strategy", "ensembles": "ensemble", "meta_learners": "meta-learner",
    "exporters": "exporter",
    "callbacks": "callback",
}


def singular(kind: str) -> str:
    """What one piece of a kind is called: "losses" -> "loss", "freeze_strategies" -> "freeze strategy"."""
    return SINGULAR.get(kind, kind.rstrip("s").replace("_", " "))
