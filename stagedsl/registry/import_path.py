"""Pieces named by import path: ``use = "package.module:attr"`` or ``use = "./file.py:attr"``.

What LightningCLI's ``class_path``, Hydra's ``_target_`` and torchtune's ``_component_`` do:
a spec names a class or a factory directly, with no plugin package. The registry resolves
such a name here into an `Entry`, exactly like a registered piece, so its arguments are
checked against its signature and it is built through the one door (`Registry.build`).

- ``"pkg.module:attr"``: imported the usual way; when it is not importable, the spec's
  folder is put on ``sys.path`` (at its end: installed packages win) and it is tried again.
- ``"./file.py:attr"`` (a path ending in ``.py``, relative to the spec's folder; absolute
  and ``~`` paths work as usual): the file is imported as a module named after it, its
  folder put on ``sys.path`` so its own sibling imports work.
- ``attr`` may be dotted (``"pkg.module:Outer.build"``).

Kinds whose factories the core calls with arguments of its own are adapted, so common
classes need no wrapper: an optimizer class taking ``params`` (``torch.optim:SGD``) is
called ``cls(param_groups, lr=lr, **args)``; a scheduler without ``total_steps``
(``torch.optim.lr_scheduler:StepLR``) is called without it, and a ``ReduceLROnPlateau``
subclass is stepped with its monitored metric; a metric class with ``higher_is_better``
(torchmetrics) takes its mode from it. Resolution failures are `PluginError`s E080–E085,
each saying what the module does contain.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

from stagedsl.errors import PluginError, Problem, did_you_mean

LIVE_PREFIX = "<live:"
"""The name a plan gives a piece handed over live (``stagedsl.run(model=...)``): ``<live:ClassName>``."""


def is_live(name: str) -> bool:
    """Whether `name` stands for a live object handed to `stagedsl.run` / `stagedsl.plan`."""
    return isinstance(name, str) and name.startswith(LIVE_PREFIX) and name.endswith(">")


def live_name(obj: Any) -> str:
    """The plan's name for a live object: ``<live:ClassName>``."""
    return f"{LIVE_PREFIX}{type(obj).__name__}>"


def is_import_path(name: str) -> bool:
    """Whether a piece's `use` is an import path (``"module:attr"``, or a file path, with or without its ``:attr``)
    rather than a registered name."""
    if not isinstance(name, str) or is_live(name):
        return False
    return ":" in name or name.endswith(".py") or name.startswith(("./", "../", "~/", "/"))


def is_file_path(name: str) -> bool:
    """Whether an import path names a file (``"./model.py:Net"``) rather than a module."""
    module = name.rpartition(":")[0]
    return module.endswith(".py") or "/" in module or "\\" in module or module.startswith(("~", "."))


def short_name(name: str) -> str:
    """How a piece is called in logs: its registered name, or the attribute of an import path
    (``torchmetrics.classification:MulticlassF1Score`` -> ``MulticlassF1Score``)."""
    return name.rpartition(":")[2].rpartition(".")[2] if is_import_path(name) else name


def absolute(name: str, root: Optional[str]) -> str:
    """`name` with a relative file path made absolute against `root` (the spec's folder); else unchanged."""
    if not is_import_path(name) or not is_file_path(name):
        return name
    module, _, attr = name.rpartition(":")
    return f"{_file(module, root)}:{attr}"


def importable(root: Optional[str]) -> None:
    """Put `root` (the spec's folder) at the end of ``sys.path``, so its modules import by name."""
    if root and root not in sys.path:
        sys.path.append(root)  # at the end: an installed package of the same name still wins
        importlib.invalidate_caches()


def names_import_paths(names: Any) -> bool:
    """Whether any of `names` is a module import path (``"pkg.module:attr"``) that may live in the spec's folder."""
    return any(is_import_path(name) and not is_file_path(name) for name in names)


def _file(module: str, root: Optional[str]) -> Path:
    path = Path(os.path.expanduser(module))
    if not path.is_absolute():
        path = Path(root or os.getcwd()) / path
    return Path(os.path.normpath(path))


def _problem(code: str, message: str, hint: Optional[str] = None, trace: Optional[str] = None) -> PluginError:
    return PluginError([Problem(code=code, message=message, hint=hint, trace=trace)])


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    try:
        return metadata.packages_distributions()
    except Exception:  # a broken environment must not stop a piece from loading
        return {}


def distribution_of(module_name: str) -> tuple[Optional[str], Optional[str]]:
    """The installed distribution (name, version) that provides `module_name`, or (None, None) for local code."""
    names = _distributions().get(module_name.split(".")[0]) or []
    if not names:
        return None, None
    try:
        return names[0], metadata.version(names[0])
    except metadata.PackageNotFoundError:
        return names[0], None


def resolve(name: str, root: Optional[str]) -> tuple[Any, Any]:
    """The object an import path names and the module it comes from (E080–E085 when there is none)."""
    module_text, _, attr = name.rpartition(":")
    parts = attr.split(".")
    if not module_text and is_file_path(f"{name}:"):
        raise _problem("E080", f"`{name}` names a file but not what in it to use",
                       f'add the class or function after a colon: "{name}:ClassName"')
    if not module_text or not all(part.isidentifier() for part in parts):
        raise _problem("E080", f"`{name}` is not an import path \"package.module:attr\" or \"./file.py:attr\"",
                       'e.g. use = "torch.optim:SGD" or use = "./model.py:Net"')
    module = _import_file(module_text, root) if is_file_path(name) else _import_module(module_text, root)
    obj = module
    for index, part in enumerate(parts):
        try:
            found = hasattr(obj, part)
            value = getattr(obj, part) if found else None
        except Exception as exc:  # a lazy attribute whose own import fails
            raise _problem("E083", f"reading `{part}` of `{module_text}` failed: {type(exc).__name__}: {exc}",
                           "the module's own code raised; see its traceback with `staged --debug ...`",
                           trace=traceback.format_exc()) from None
        if not found:
            where = f"module `{module_text}`" if index == 0 else f"`{module_text}:{'.'.join(parts[:index])}`"
            raise _problem("E084", f"{where} has no attribute `{part}`", contents_hint(part, obj))
        obj = value
    if not callable(obj):
        raise _problem("E085", f"`{name}` is {_article(type(obj).__name__)}, not a class or a function that builds the piece",
                       "name the class (or the factory function) itself")
    return obj, module


def contents_hint(word: str, holder: Any) -> str:
    """A did-you-mean among the public callables of `holder` (a module or a class), and what it defines
    (its ``__all__``, else what was defined in it, else every public callable)."""
    own = getattr(holder, "__name__", None)
    callables = []
    for name in dir(holder):
        if name.startswith("_"):
            continue
        try:
            value = getattr(holder, name)
        except Exception:
            continue
        if callable(value) and not inspect.ismodule(value):
            callables.append((getattr(value, "__module__", None) == own, name))
    exported = getattr(holder, "__all__", None)
    if isinstance(exported, (list, tuple)) and exported:
        defined = [name for name in exported if isinstance(name, str) and any(name == n for _, n in callables)]
    else:
        defined = [name for mine, name in callables if mine] or [name for _, name in callables]
    near = did_you_mean(word, [name for _, name in callables])
    listing = ", ".join(defined[:12]) + (", ..." if len(defined) > 12 else "")
    contents = f"it defines: {listing}" if defined else "it defines no public class or function"
    return f"{near} {contents}" if near else contents


def _missing(exc: ModuleNotFoundError, dotted: str) -> bool:
    """Whether the module itself (or a package above it) is what is missing, not one of its own imports."""
    return exc.name is not None and (dotted == exc.name or dotted.startswith(exc.name + "."))


def _import_failed(module: str, exc: BaseException) -> PluginError:
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        hint = f"`{module}` imports `{exc.name}`, which is not installed: pip install it (its distribution may be named otherwise)"
    else:
        hint = "the module's own code raised while it was imported; see its traceback with `staged --debug ...`"
    return _problem("E083", f"importing `{module}` failed: {type(exc).__name__}: {exc}", hint,
                    trace="".join(traceback.format_exception(exc)))


def _article(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _import_module(dotted: str, root: Optional[str]) -> Any:
    if not all(part.isidentifier() for part in dotted.split(".")):
        raise _problem("E080", f"`{dotted}` is not a module name (dotted identifiers) nor a file path ending in .py",
                       'e.g. use = "torch.optim:SGD" or use = "./model.py:Net"')
    attempts = [None] + ([root] if root and root not in sys.path else [])
    for folder in attempts:
        importable(folder)
        try:
            return importlib.import_module(dotted)
        except ModuleNotFoundError as exc:
            if not _missing(exc, dotted):
                raise _import_failed(dotted, exc) from None
        except Exception as exc:
            raise _import_failed(dotted, exc) from None
    raise _problem("E081", f"no module named `{dotted}`", _modules_hint(dotted, root))


def _modules_hint(dotted: str, root: Optional[str]) -> str:
    import pkgutil

    parent = dotted.rpartition(".")[0]
    where, found = "the spec's folder", []
    if parent:
        try:
            package = importlib.import_module(parent)
        except Exception:
            return f"`{parent}` is not importable either; a module beside the spec is importable by name, a file as \"./file.py:attr\""
        found = sorted(m.name for m in pkgutil.iter_modules(getattr(package, "__path__", [])))
        where = f"package `{parent}`"
    elif root:
        found = sorted(m.name for m in pkgutil.iter_modules([root]))
    near = did_you_mean(dotted, [f"{parent}.{n}" if parent else n for n in found])
    if near:
        return near
    listing = ", ".join(found[:12]) + (", ..." if len(found) > 12 else "")
    held = f"{where} holds: {listing}" if found else f"{where} holds no module"
    return f"{held}; install the package, or name a file: use = \"./file.py:attr\""


def _import_file(text: str, root: Optional[str]) -> Any:
    import importlib.util

    path = _file(text, root)
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("*.py")) if path.parent.is_dir() else []
        near = did_you_mean(path.name, siblings)
        base = "the spec's folder" if root else "the working directory"
        hint = near or (f"{path.parent} holds: {', '.join(siblings[:12])}" if siblings else
                        f"a relative path is read from {base} ({root or os.getcwd()})")
        raise _problem("E082", f"no file `{text}` (looked for {path})", hint)
    importable(str(path.parent))  # the file's own sibling imports work, and its classes pickle by name
    name = _module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise _import_failed(text, exc) from None
    return module


def _module_name_for(path: Path) -> str:
    """The file's stem when that name is free or is this very file (so its objects pickle by name); else a unique name."""
    import hashlib
    import importlib.util

    stem = path.stem
    if stem.isidentifier():
        loaded = sys.modules.get(stem)
        if loaded is not None:
            if _same_file(getattr(loaded, "__file__", None), path):
                return stem
        else:
            try:
                found = importlib.util.find_spec(stem)
            except (ImportError, ValueError):
                found = None
            if found is None or _same_file(found.origin, path):
                return stem
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"stagedsl_file_{stem if stem.isidentifier() else 'module'}_{digest}"


def _same_file(origin: Optional[str], path: Path) -> bool:
    try:
        return origin is not None and os.path.samefile(origin, path)
    except OSError:
        return False


# -- adapting the core's calling conventions ----------------------------------------------
def signature_of(obj: Callable[..., Any]) -> Optional[inspect.Signature]:
    """`obj`'s signature with string annotations resolved where they can be; None when unreadable."""
    try:
        return inspect.signature(obj, eval_str=True)
    except (NameError, AttributeError, SyntaxError, TypeError):
        try:
            return inspect.signature(obj)
        except (TypeError, ValueError):
            return None
    except ValueError:
        return None


def _mro_names(obj: Any) -> set[str]:
    return {cls.__name__ for cls in inspect.getmro(obj)} if inspect.isclass(obj) else set()


def _described(factory: Callable[..., Any], obj: Any) -> Callable[..., Any]:
    factory.__doc__ = getattr(obj, "__doc__", None)
    factory.__name__ = getattr(obj, "__name__", factory.__name__)
    factory.__qualname__ = getattr(obj, "__qualname__", factory.__qualname__)
    return factory


def _with_supplied(signature: inspect.Signature, supplied: tuple[str, ...], rest: list[inspect.Parameter]) -> inspect.Signature:
    first = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in supplied]
    keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is inspect.Parameter.POSITIONAL_ONLY else p
               for p in rest if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    return signature.replace(parameters=first + keyword)


def adapt(kind: str, name: str, obj: Callable[..., Any]) -> tuple[Callable[..., Any], Optional[inspect.Signature], dict]:
    """``(factory, signature, meta)`` of an imported object: the core's calling convention for `kind`
    (see the module docstring), the arguments a spec may write, and what its class says about it."""
    signature = signature_of(obj)
    meta: dict = {}
    params = list(signature.parameters.values()) if signature is not None else []
    names = [p.name for p in params]
    open_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    if kind == "optimizers" and signature is not None and "param_groups" not in names and names[:1] == ["params"]:
        takes_lr = "lr" in names or open_kwargs

        def optimizer(param_groups, lr, **args):
            return obj(param_groups, lr=lr, **args) if takes_lr else obj(param_groups, **args)

        return _described(optimizer, obj), _with_supplied(signature, ("param_groups", "lr"), [p for p in params[1:] if p.name != "lr"]), meta
    if kind == "schedulers":
        if "ReduceLROnPlateau" in _mro_names(obj):
            meta["monitored"] = True
        if signature is not None and "total_steps" not in names and not open_kwargs and params:

            def scheduler(optimizer, total_steps, **args):
                return obj(optimizer, **args)

            return _described(scheduler, obj), _with_supplied(signature, ("optimizer", "total_steps"), params[1:]), meta
    if kind == "metrics" and isinstance(getattr(obj, "higher_is_better", None), bool):
        meta["mode"] = "max" if obj.higher_is_better else "min"
    if kind == "freeze_strategies" and signature is not None and not open_kwargs and not {"names", "modules"} & set(names):
        raise _problem("E085", f"freeze strategy `{name}` takes neither `names` nor `modules`",
                       "a freeze strategy is `f(names, **args) -> list[str]` (and/or takes `modules`, the model's module tree)")
    return obj, signature, meta
