"""spec -> plan: resolve every name, selector and duration into a `Plan`.

The package is also callable: ``stagedsl.plan(spec, profile=..., set=[...], model=..., data=...)``
is `stagedsl.api.plan`, the Python face of ``staged plan`` (the package keeps its modules:
``stagedsl.plan.compile``, ``stagedsl.plan.model``, ...).
"""

import importlib
import sys
import types


class _CallablePackage(types.ModuleType):
    """A package that is also `stagedsl.api.plan`, so ``stagedsl.plan(...)`` works beside ``stagedsl.plan.compile``."""

    def __call__(self, spec, **options):
        """Compile `spec` into a `Plan` (see `stagedsl.api.plan`)."""
        return importlib.import_module("stagedsl.api").plan(spec, **options)  # the API room sits above the plan room


sys.modules[__name__].__class__ = _CallablePackage
