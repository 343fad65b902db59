"""One owner per run directory: an exclusive ``fcntl.flock`` on ``<run dir>/.lock``.

`hold(directory, command)` takes the lock for as long as the block runs: `staged run`,
`staged resume` and `staged export` (and the engine's `execute`, whoever calls it) hold it
while they write. A second process gets a `RunError` (E441) naming the holder's pid and
command, which the holder writes into the lock file. The kernel releases a ``flock`` when
its process ends, however it ends (an exception, SIGKILL, a power cut of the process),
so a lock file left behind by a dead process blocks nobody: it is only a file, and the
next owner locks it and writes its own pid into it.

The lock is re-entrant within a process (the CLI holds it around the engine, which takes
it again), and only the writing process of a distributed run takes it (rank 0: the others
write nothing into the run directory). Where the file system cannot lock (some network
file systems), a warning says so and the command goes on unlocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

from stagedsl.errors import Problem, RunError
from stagedsl.run_dir import RunDir

_HELD: dict[str, list] = {}  # resolved directory -> [file descriptor or None, depth]
_GUARD = threading.Lock()


def holder(directory: Path | str) -> Optional[dict]:
    """What the lock file of `directory` says about its last owner (pid, command, host, since), or None."""
    try:
        data = json.loads(RunDir(directory).lock_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def hold(directory: Path | str, command: str, *, required: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of `directory` (created if missing) while the block runs.

    Raises `RunError` E441 when another process holds it; an `OSError` creating the folder
    or the lock file propagates (the caller reports it as an OS failure), unless not
    `required` (a command that may only read here), which then goes on unlocked.
    """
    directory = Path(directory)
    if os.environ.get("RANK", "0").strip() not in ("", "0"):  # torchrun's other ranks: rank 0 owns the run
        yield
        return
    key = os.path.realpath(directory)
    with _GUARD:
        if key in _HELD:
            _HELD[key][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _GUARD:
                _HELD[key][1] -= 1
        return
    try:
        fd = _acquire(directory, command)
    except OSError:
        if required:
            raise
        fd = None
    with _GUARD:
        _HELD[key] = [fd, 1]
    try:
        yield
    finally:
        with _GUARD:
            _HELD.pop(key, None)
        if fd is not None:
            _release(fd)


def _acquire(directory: Path, command: str) -> Optional[int]:
    """Lock ``directory/.lock`` and write who holds it; the descriptor (None when locking is unsupported)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: no advisory locks to take
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = RunDir(directory).lock_file
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _locked(directory, command) from None
    except OSError as exc:  # ENOLCK, EOPNOTSUPP: a file system without flock
        os.close(fd)
        print(f"warning: cannot lock {path} ({exc.strerror or exc}); {command} goes on without the lock: "
              "make sure no other process writes this run", file=sys.stderr, flush=True)
        return None
    record = {"pid": os.getpid(), "command": command, "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    except OSError:
        pass  # who holds it is a courtesy for the next process's message; the lock is what counts
    return fd


def _release(fd: int) -> None:
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
    except (ImportError, OSError):
        pass
    finally:
        os.close(fd)


def _locked(directory: Path, command: str) -> RunError:
    """E441: another process holds the lock of `directory`."""
    owner = holder(directory) or {}
    pid = owner.get("pid")
    who = f"process {pid}" if pid else "another process"
    details = [f"`staged {owner['command']}`"] if owner.get("command") else []
    details += [f"on {owner['host']}"] if owner.get("host") else []
    details += [f"since {owner['since']}"] if owner.get("since") else []
    doing = f" ({' '.join(details[:2])}{', ' + details[2] if len(details) > 2 else ''})" if details else ""
    return RunError([Problem(
        code="E441",
        message=f"{directory} is in use by {who}{doing}: only one process may write a run directory at a time",
        hint=(f"wait for it to finish, or stop it (kill {pid}) and run `staged resume {directory}`" if pid
              else f"wait for the other process to finish, then run `staged resume {directory}`"),
    )])


__all__ = ["hold", "holder"]
