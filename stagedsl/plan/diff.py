"""Two plans (or any two JSON-like values) compared key by key.

`differences(old, new)` flattens both to dotted keys — nested dicts by key, lists of
uniquely named tables (stages, groups) by name: ``stages.finetune.lr``,
``stages.unfreeze.groups.backbone.lr`` — and lists every key whose value differs. A
resume judges such changes (`stagedsl.engine.plan_diff`); a report shows them side by side.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def shown(value: Any) -> Any:
    """A value short enough to print: long lists and tables as their size."""
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"[{len(value)} items]"
    if isinstance(value, dict) and len(value) > 6:
        return f"{{{len(value)} entries}}"
    return value


def flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of nested dicts; lists of uniquely named tables keyed by name; other lists whole."""
    if isinstance(value, dict) and value and prefix.rsplit(".", 1)[-1] not in ("parameters",):
        for key, item in value.items():
            flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
        return out
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) and "name" in v for v in value):
        names = [v["name"] for v in value]
        if len(set(names)) == len(names):
            for item in value:
                flatten({k: v for k, v in item.items() if k != "name"}, f"{prefix}.{item['name']}", out)
            return out
    out[prefix] = list(value) if isinstance(value, tuple) else value
    return out


def differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) for every flattened key that differs; None where a side lacks the key."""
    a, b = flatten(old, prefix, {}), flatten(new, prefix, {})
    rows = []
    for key in list(a) + [k for k in b if k not in a]:
        if a.get(key, _MISSING) != b.get(key, _MISSING):
            rows.append((key, a.get(key), b.get(key)))
    return rows
