"""`compile_matrix`: every member of a spec's `[matrix]` compiled to its own `Plan`, checked
before any compute, and the matrix shown as a table (`staged plan --dry-run`).

A member's plan is an ordinary single plan (`compile_plan` of the member's spec, see
`stagedsl.spec.matrix`); its run directory is ``<run dir>/members/<member>``. A plan
problem in a member is reported once per variant, naming the variant.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import attrs

from stagedsl.errors import PlanError
from stagedsl.matrix.layout import INDEX_FORMAT, MEMBERS_DIR
from stagedsl.plan.model import Plan
from stagedsl.registry import Registry
from stagedsl.spec.matrix import expand_members
from stagedsl.spec.model import Spec


@attrs.frozen
class MemberPlan:
    """One member: its name, variant, seed, the variant's layer, its plan and effective spec text."""

    name: str
    variant: str
    seed: int
    layer: dict
    plan: Plan = attrs.field(repr=False)
    spec_text: str = attrs.field(repr=False)


@attrs.frozen
class MatrixPlan:
    """Every member's plan and the ensembles to build over them."""

    name: str
    spec_file: Optional[str]
    seed: int
    jobs: int
    members: tuple[MemberPlan, ...]
    ensembles: tuple[dict, ...]
    monitor: str
    spec_text: str = attrs.field(repr=False)

    @property
    def total_steps(self) -> int:
        """Optimizer steps of every member, summed (early stopping may end stages sooner)."""
        return sum(stage.steps for member in self.members for stage in member.plan.stages)

    def member(self, name: str) -> MemberPlan:
        """The member called `name`."""
        for member in self.members:
            if member.name == name:
                return member
        raise KeyError(name)

    def index(self) -> dict[str, Any]:
        """``matrix.json``: the members (without their plans), the ensembles, the monitor."""
        return {
            "format": INDEX_FORMAT, "name": self.name, "spec_file": self.spec_file, "seed": self.seed, "jobs": self.jobs,
            "monitor": self.monitor, "ensembles": list(self.ensembles),
            "members": [{"name": m.name, "variant": m.variant, "seed": m.seed, "layer": m.layer, "plan_hash": m.plan.hash,
                         "steps": sum(s.steps for s in m.plan.stages)} for m in self.members],
        }

    def to_json(self) -> str:
        """The matrix with every member's full plan, as JSON (`staged plan --json`)."""
        data = self.index()
        for entry, member in zip(data["members"], self.members):
            entry["plan"] = json.loads(member.plan.to_json())
        data["total_steps"] = self.total_steps
        return json.dumps(data, indent=2, default=str)


def ensemble_entry(ensemble: Any) -> dict:
    """An `EnsembleSpec` as the index keeps it."""
    return {"name": ensemble.name, "use": ensemble.use, "members": list(ensemble.members), "folds": ensemble.folds,
            "args": dict(ensemble.args)}


def member_spec_text(spec: Spec, document: dict, member: str) -> str:
    """A member's effective spec (a plain single spec: its own `staged resume --set` reads it)."""
    import tomli_w

    header = f"# effective spec of member {member} of {spec.file}: extends, profile, variant, seed and --set applied\n"
    if spec.root is not None:  # relative paths of the member's copy are read where the original's were
        document = {"paths_from": spec.root, **{k: v for k, v in document.items() if k != "paths_from"}}
    return header + tomli_w.dumps(document)


def compile_matrix(spec: Spec, registry: Registry, *, out: Path | str, spec_text: str = "", world_size: int = 1) -> MatrixPlan:
    """Compile every member of `spec`'s matrix (each for `world_size` processes); a `PlanError` lists every
    member problem (once per variant)."""
    from stagedsl.plan.compile import compile_plan

    out = Path(out)
    members, problems, seen = [], [], set()
    for member in expand_members(spec, registry):
        member_dir = str(out / MEMBERS_DIR / member.name)
        run = attrs.evolve(member.spec.run, out=member_dir)
        try:
            plan = compile_plan(attrs.evolve(member.spec, run=run), registry, world_size=world_size)
        except PlanError as exc:
            for problem in exc.problems:
                key = (problem.code, problem.message, problem.path)
                if key not in seen:
                    seen.add(key)
                    problems.append(attrs.evolve(problem, message=f"variant `{member.variant}`: {problem.message}"))
            continue
        document = dict(member.spec.document or {})
        document["run"] = {**document.get("run", {}), "out": member_dir}
        text = member_spec_text(spec, document, member.name)
        members.append(MemberPlan(member.name, member.variant, member.seed, member.layer, plan, text))
    if problems:
        raise PlanError(problems)
    last = members[0].plan.stages[-1]
    return MatrixPlan(
        name=spec.run.name, spec_file=spec.file, seed=spec.run.seed, jobs=spec.matrix.jobs, members=tuple(members),
        ensembles=tuple(ensemble_entry(e) for e in spec.ensembles), monitor=last.eval.monitor, spec_text=spec_text,
    )


# -- rendering -----------------------------------------------------------------------------
def _value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)


def differences(layer: dict, prefix: str = "") -> list[str]:
    """A variant's layer as ``key.path = value`` lines, tables flattened."""
    lines = []
    for key, value in layer.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and not ("use" in value and prefix == ""):
            lines += differences(value, path)
        else:
            lines.append(f"{path} = {_value(value)}")
    return lines


def render_matrix(matrix: MatrixPlan) -> str:
    """The matrix as text: members with their variant, seed, steps and differences, then the ensembles."""
    variants = list(dict.fromkeys(m.variant for m in matrix.members))
    seeds = list(dict.fromkeys(m.seed for m in matrix.members))
    lines = [f"matrix {matrix.name}: {len(variants)} variant{'s' if len(variants) != 1 else ''} x {len(seeds)} seed"
             f"{'s' if len(seeds) != 1 else ''} = {len(matrix.members)} members, {matrix.total_steps:,} steps in all, "
             f"jobs {matrix.jobs}, monitor {matrix.monitor}"]
    rows = [("member", "variant", "seed", "steps", "stages", "differences")]
    for member in matrix.members:
        stages = ", ".join(f"{s.name} {s.steps}" for s in member.plan.stages)
        rows.append((member.name, member.variant, str(member.seed), f"{sum(s.steps for s in member.plan.stages):,}", stages,
                     "; ".join(differences(member.layer)) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    if matrix.ensembles:
        lines.append("ensembles:")
        names = [m.name for m in matrix.members]
        for ensemble in matrix.ensembles:
            import fnmatch

            count = sum(any(fnmatch.fnmatchcase(n, p) for p in ensemble["members"]) for n in names)
            args = ", ".join(f"{k} = {_value(v)}" for k, v in ensemble["args"].items())
            lines.append(f"  {ensemble['name']}: {ensemble['use']} of {count} members ({', '.join(ensemble['members'])}), "
                         f"{ensemble['folds']} folds" + (f", {args}" if args else ""))
    return "\n".join(lines) + "\n"


__all__ = ["MatrixPlan", "MemberPlan", "compile_matrix", "differences", "ensemble_entry", "render_matrix"]
