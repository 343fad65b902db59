"""`run_search` / `resume_search`: a study's trials through the engine, one at a time or N processes at once.

1. `compile_search` checks the space and compiles representative trials; the folder gets
   ``search.json`` and ``spec.toml``; the study is created in its storage (the grid's
   points queued in order).
2. Trials a stopped process left running are finished first (continued from their newest
   checkpoint, `stagedsl.search.trials.run_trial`), then new ones are asked for until the
   study has its trials. With ``jobs > 1`` each trial runs in its own process
   (`stagedsl.matrix.jobs.run_processes`, the matrix's pool); a trial whose next stage to
   train is being trained by a running trial waits for it to land in the cache, so a
   shared stage is trained once however many processes there are.
3. Each ended trial is told to the study; ``summary.json`` is rewritten after every one,
   ``best.toml`` at the end.

`resume_search` is the same from the folder (``staged search RUN_DIR``): its spec, index
and study. The engine runs each trial as an ordinary plan and knows nothing of this.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import attrs

from stagedsl.search.layout import SearchDir, claim_folder
from stagedsl.search.study import COMPLETE, FAILED, PRUNED, Ticket, check_backend, open_study

Say = Callable[[str], None]
INTERRUPTED_CODES = (130, 143)
"""Exit codes of a trial process stopped by SIGINT / SIGTERM (after saving): its trial stays running."""


@attrs.frozen
class SearchResult:
    """How a search ended: its folder and ``summary.json``'s content."""

    run_dir: Path
    summary: dict

    @property
    def best(self) -> Optional[dict]:
        """The best trial (``trial``, ``value``, ``params``, ``run_dir``), or None."""
        return self.summary.get("best")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _registry(registry: Any) -> Any:
    from stagedsl.registry import get_registry

    return registry if registry is not None else get_registry()


def run_search(spec: Any, *, registry: Any = None, out: Optional[Path | str] = None, trials: Optional[int] = None,
               jobs: Optional[int] = None, storage: Optional[str] = None, reuse: Optional[bool] = None, device: Optional[str] = None,
               overwrite: bool = False, spec_text: str = "", say: Say = _stderr, callbacks: Iterable[Any] = ()) -> SearchResult:
    """Run the study of `spec`'s ``[search]`` in `out` (default ``runs/<name>``); see the module docstring."""
    from stagedsl.engine.checkpointing.safe_io import atomic_write_text
    from stagedsl.search.plan import compile_search

    registry = _registry(registry)
    run_dir = Path(out if out is not None else spec.run.out_dir)
    search = compile_search(spec, registry, out=run_dir, trials=trials, storage=storage, reuse=reuse, jobs=jobs)
    search_dir = SearchDir(run_dir)
    check_backend(search.index)  # before the folder is touched: E103 names the extra to install
    claim_folder(run_dir, overwrite=overwrite, say=say, go_on=f"continue the search with `staged search {run_dir}`")
    run_dir.mkdir(parents=True, exist_ok=True)
    index = search.index
    search_dir.write_json(search_dir.index_file, index)
    atomic_write_text(search_dir.spec_file, spec_text or _effective_text(spec))
    study = open_study(search_dir, index, create=True)
    return _drive(search_dir, index, spec, study, registry=registry, device=device, say=say, callbacks=callbacks)


def resume_search(run_dir: Path | str, *, registry: Any = None, trials: Optional[int] = None, jobs: Optional[int] = None,
                  device: Optional[str] = None, say: Say = _stderr, callbacks: Iterable[Any] = ()) -> SearchResult:
    """Go on with the study in `run_dir`: finish the trials left running, then run the rest (`trials` raises the count)."""
    from stagedsl.spec.loader import loads_spec
    from stagedsl.spec.search import Axis, count_trials

    registry = _registry(registry)
    search_dir = SearchDir(run_dir)
    index = search_dir.read_index()
    spec = loads_spec(search_dir.spec_file.read_text(encoding="utf-8"), file=str(search_dir.spec_file), registry=registry)
    if trials is not None:
        index = {**index, "trials": count_trials(index["sampler"], [Axis.from_dict(a) for a in index["axes"]], trials)}
    if jobs is not None:
        index = {**index, "jobs": jobs}
    search_dir.write_json(search_dir.index_file, index)
    study = open_study(search_dir, index, create=index["sampler"] == "grid")
    return _drive(search_dir, index, spec, study, registry=registry, device=device, say=say, callbacks=callbacks)


def _effective_text(spec: Any) -> str:
    from stagedsl.spec.loader import effective_spec_text

    return effective_spec_text(spec)


class _Driver:
    """The trial loop of one process of the study (see the module docstring)."""

    def __init__(self, search_dir: SearchDir, index: dict, spec: Any, study: Any, *, registry: Any, device: Optional[str],
                 say: Say, callbacks: Iterable[Any]):
        self.search_dir, self.index, self.spec, self.study = search_dir, index, spec, study
        self.registry, self.device, self.say, self.callbacks = registry, device, say, list(callbacks)
        self.started = time.perf_counter()
        self.previous = (search_dir.read_json(search_dir.summary_file) or {}).get("wall_time_s") or 0.0
        self.target = int(index["trials"])

    # -- what every path shares ------------------------------------------------------------
    def stale(self) -> list[Ticket]:
        """Trials the storage holds as running that no live process holds: a stopped process's. With a storage of its own
        (the default) every such trial is this folder's; with a shared one, those whose job file is here."""
        own = not self.index.get("storage")
        return [t for t in self.study.running()
                if (own or self.search_dir.job(t.number).exists()) and not self.search_dir.trial_is_running(t.number)]

    def job_of(self, ticket: Ticket) -> Optional[dict]:
        """The trial's job: the one written before (a continued trial), else compiled now; None when its parameters fail."""
        from stagedsl.search.trials import prepare_trial

        existing = self.search_dir.read_json(self.search_dir.job(ticket.number))
        if isinstance(existing, dict) and "plan" in existing:
            return existing
        return prepare_trial(self.search_dir, self.index, self.spec, ticket, self.registry)

    def reporter(self, number: int) -> Any:
        from stagedsl.search.study import NoReporter

        return self.study.reporter(number) if self.index.get("pruner") else NoReporter()

    def told(self, result: dict) -> None:
        """Tell the study how a trial ended, say it, rewrite the summary."""
        from stagedsl.matrix.jobs import error_text

        error = error_text(result)
        attrs_ = {"run_dir": result.get("run_dir"), "reused": result.get("reused") or {}, "trained": result.get("trained") or [],
                  "wall_time_s": result.get("wall_time_s"), "pruned_by": result.get("pruned_by"), "error": error}
        self.study.tell(result["trial"], result["state"], result.get("value"), attrs_)
        value = f" {self.index['metric']} = {result['value']:.6g}" if result.get("value") is not None else ""
        reused = f", reused {', '.join(result['reused'])}" if result.get("reused") else ""
        why = f" - {(result.get('pruned_by') or {}).get('message') or error}" if result["state"] != COMPLETE else ""
        self.say(f"trial {result['trial']}: {result['state']}{value} in {result.get('wall_time_s', 0):.1f}s{reused}{why}")
        self.summary()

    def summary(self) -> dict:
        from stagedsl.search.summary import write_summary

        return write_summary(self.search_dir, self.index, self.study.records(),
                             wall_time_s=round(self.previous + time.perf_counter() - self.started, 3))

    def announce(self, ticket: Ticket, how: str) -> None:
        shown = ", ".join(f"{k} = {v!r}" for k, v in ticket.params.items())
        self.say(f"trial {ticket.number} ({shown}): {how}")

    # -- in this process ---------------------------------------------------------------
    def run_here(self) -> None:
        for ticket in self.stale():
            self.one(ticket, "continued (its process was stopped)")
        while True:
            ticket = self.study.ask(self.target)
            if ticket is None:
                return
            self.one(ticket, "training")

    def one(self, ticket: Ticket, how: str) -> None:
        from stagedsl.search.trials import run_trial

        with self.search_dir.trial_lock(ticket.number) as held:
            if not held:
                return
            self.announce(ticket, how)
            job = self.job_of(ticket)
            if job is None:
                result = self.search_dir.read_json(self.search_dir.job_result(ticket.number))
            else:
                result = run_trial(self.search_dir, ticket.number, registry=self.registry, reporter=self.reporter(ticket.number),
                                   device=self.device, callbacks=self.callbacks)
        self.told(result)

    # -- N processes -------------------------------------------------------------------
    def run_processes(self, jobs: int) -> None:
        from stagedsl.matrix.jobs import WAIT, Job, run_processes, slot_device
        from stagedsl.plan.model import Plan
        from stagedsl.search.cache import StageCache
        from stagedsl.search.trials import crashed_result

        cache = StageCache(self.search_dir)
        pending: list[tuple[Ticket, dict, str]] = [(t, self.job_of(t), "continued (its process was stopped)") for t in self.stale()]
        training: dict[int, set[str]] = {}
        params: dict[int, dict] = {}

        def next_job(slot: int) -> Any:
            while not pending:
                ticket = self.study.ask(self.target)
                if ticket is None:
                    return None
                job = self.job_of(ticket)
                if job is None:
                    self.told(self.search_dir.read_json(self.search_dir.job_result(ticket.number)))
                    continue
                pending.append((ticket, job, "training"))
            ticket, job, how = pending[0]
            if job is None:  # a continued trial whose parameters no longer compile
                pending.pop(0)
                self.told(self.search_dir.read_json(self.search_dir.job_result(ticket.number)))
                return WAIT
            hashes = [job["hashes"][s["name"]] for s in job["plan"]["stages"]]
            left = [h for h in hashes if cache.find(h) is None] if self.index["reuse"] else hashes
            if left and any(left[0] in busy for busy in training.values()):
                return WAIT  # its next stage is being trained by a running trial: take it from the cache when it lands
            pending.pop(0)
            training[ticket.number], params[ticket.number] = set(left), ticket.params
            self.announce(ticket, how + f" in its own process, log {self.search_dir.log(ticket.number)}")
            self.search_dir.job_result(ticket.number).unlink(missing_ok=True)
            plan_device = Plan.from_dict(job["plan"]).run.device
            return Job(str(ticket.number), worker_command(self.search_dir, ticket.number, slot_device(slot, self.device, plan_device)),
                       self.search_dir.log(ticket.number))

        def finished(job: Job, returncode: int, wall_time_s: float) -> bool:
            number = int(job.name)
            training.pop(number, None)
            result = self.search_dir.read_json(self.search_dir.job_result(number))
            if isinstance(result, dict) and result.get("state") in (COMPLETE, PRUNED, FAILED):
                self.told(result)
                return False
            if returncode in INTERRUPTED_CODES or returncode == -2:
                self.say(f"trial {number}: interrupted; `staged search {self.search_dir.root}` continues it")
                return True
            if returncode == 0:  # its process found another one running it: that one tells the study
                return False
            self.told(crashed_result(self.search_dir, number, params[number], returncode, wall_time_s))
            return False

        run_processes(next_job, finished, jobs=jobs)


def worker_command(search_dir: SearchDir, number: int, device: Optional[str]) -> list[str]:
    """The command line of a trial's process."""
    command = [sys.executable, "-m", "stagedsl.search.worker", str(search_dir.root), str(number)]
    return command + (["--device", device] if device else [])


def _drive(search_dir: SearchDir, index: dict, spec: Any, study: Any, *, registry: Any, device: Optional[str], say: Say,
           callbacks: Iterable[Any]) -> SearchResult:
    from stagedsl.search.summary import render_table, write_best_spec

    driver = _Driver(search_dir, index, spec, study, registry=registry, device=device, say=say, callbacks=callbacks)
    jobs = int(index.get("jobs") or 1)
    say(f"search {index['name']}: {index['trials']} trials ({index['sampler']}), {index['direction']} {index['metric']}, "
        f"{jobs} at a time, study {index['study']} in {study.url if hasattr(study, 'url') else search_dir.plain_study}")
    try:
        driver.run_here() if jobs <= 1 else driver.run_processes(jobs)
    finally:
        summary = driver.summary()
    write_best_spec(search_dir, spec, summary)
    return SearchResult(search_dir.root, summary)


__all__ = ["SearchResult", "resume_search", "run_search", "worker_command"]
