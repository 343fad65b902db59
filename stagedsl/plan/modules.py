"""The model's module tree as plain data, for freeze strategies that select by module.

A strategy that takes a ``modules`` argument receives, besides ``names``, one `ModuleInfo`
per entry of ``model.named_modules()`` (in that order: a module before its children, the
root first as ``""``): its dotted name, its class name and those of its bases, and the
parameters it holds itself. So "every BatchNorm2d", "the first three blocks of the
backbone" or "every child, parameter-less ``relu`` and ``maxpool`` included" can be
written without torch.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import attrs


@attrs.frozen
class ModuleInfo:
    """One module of the model: where it sits, what it is, and the parameters it holds itself."""

    name: str
    """Dotted name, as in ``model.named_modules()`` (``""`` for the model itself)."""
    type: str
    """Class name (``"BatchNorm2d"``)."""
    bases: tuple[str, ...] = ()
    """Class names of its bases, nearest first, ``Module`` last (``("_BatchNorm", "_NormBase", "Module")``)."""
    parameters: tuple[str, ...] = ()
    """Full names of the parameters registered on this module itself (not its children), in order."""

    @property
    def depth(self) -> int:
        """0 for the model, 1 for its children, and so on."""
        return 0 if not self.name else self.name.count(".") + 1

    def is_a(self, type_name: str) -> bool:
        """Whether the module's class or one of its bases is called `type_name`."""
        return type_name == self.type or type_name in self.bases

    def parent_of(self, other: "ModuleInfo") -> bool:
        """Whether `other` is a direct child of this module."""
        return other.depth == self.depth + 1 and (not self.name or other.name.startswith(self.name + "."))


def module_tree(model: Any, names: list[str]) -> tuple[ModuleInfo, ...]:
    """The `ModuleInfo` of every module of `model`; parameters limited to `names` (a parameter shared by
    two modules belongs to the first that registers it, as in ``named_parameters()``)."""
    known = set(names)
    seen: set[str] = set()
    tree = []
    for name, module in model.named_modules():
        own = []
        for local, _ in module.named_parameters(recurse=False):
            full = f"{name}.{local}" if name else local
            if full in known and full not in seen:
                own.append(full)
                seen.add(full)
        bases = tuple(cls.__name__ for cls in type(module).__mro__[1:] if cls is not object)
        tree.append(ModuleInfo(name, type(module).__name__, bases, tuple(own)))
    return tuple(tree)


class ModuleTree(Sequence):
    """The `module_tree` of a model, read on first use: a plan whose strategies take no ``modules`` never walks it."""

    def __init__(self, model: Any, names: list[str]):
        self._model, self._names = model, names
        self._tree: tuple[ModuleInfo, ...] | None = None

    @property
    def _items(self) -> tuple[ModuleInfo, ...]:
        if self._tree is None:
            self._tree = module_tree(self._model, self._names)
            self._model = None
        return self._tree

    def __getitem__(self, index):  # type: ignore[override]
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ModuleInfo]:
        return iter(self._items)


__all__ = ["ModuleInfo", "ModuleTree", "module_tree"]
