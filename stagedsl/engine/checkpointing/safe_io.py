"""Durable and safe file I/O for checkpoints.

- **Durable**: `atomic_write` writes a temp file in the target's folder, fsyncs it,
  renames it over the target and fsyncs the folder, so a crash at any moment leaves
  either the old file or the new one, never a torn one.
- **Checked**: `sha256_file` is the checksum each trainer checkpoint's manifest carries.
- **Safe**: `torch_load_safe` loads torch files with ``weights_only=True`` only. A file
  whose pickle stream names anything but tensors and plain values (the way a malicious
  ``.pt`` runs code on load) is refused with `E413`, saying why and what to do; nothing in
  it runs. Weights themselves are read with safetensors, which holds no code at all.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

from stagedsl.errors import CheckpointError, Problem

CHUNK = 4 * 2**20

PICKLE_HINT = (
    "do not load this file: naming Python callables is how a pickle runs code, and nothing here will "
    "unpickle it. Where the file comes from, save the weights alone as plain tensors instead, e.g. "
    "safetensors.torch.save_file(model.state_dict(), 'FILE.safetensors') (or torch.save(model.state_dict(), ...)), "
    "and load that (see docs/security.md)"
)


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's data to the disk (a no-op where the OS refuses)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Write `path` through ``write(temp_path)``: temp file, fsync, rename, fsync the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_path(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_durable(path: str | Path, write: Callable[[str], None]) -> None:
    """Write `path` in place and fsync it (for files inside a folder that is renamed into place as a whole)."""
    write(str(path))
    fsync_path(path)


def sha256_file(path: str | Path) -> str:
    """The SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            block = handle.read(CHUNK)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


TORCH_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode", "builtins.set", "builtins.frozenset")
"""Globals the weights_only loader itself accepts: not what made it refuse a file."""


def pickled_globals(path: str | Path) -> list[str]:
    """The Python callables and classes a pickle file (or a torch zip's pickles) names, beyond torch's own.

    Read with `pickletools` (nothing is unpickled). Naming any is what lets a pickle run
    code on load. A stream that is not a readable pickle stops the scan.
    """
    import io
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                streams = [archive.read(name) for name in archive.namelist() if name.endswith(".pkl")]
        else:
            streams = [Path(path).read_bytes()]
    except (OSError, zipfile.BadZipFile):
        return []
    found: list[str] = []
    for data in streams:
        buffer = io.BytesIO(data)
        while buffer.tell() < len(data):  # the legacy torch format is several pickles in a row
            strings: list[str] = []
            try:
                for opcode, arg, _ in pickletools.genops(buffer):
                    if opcode.name in ("GLOBAL", "INST"):
                        found.append(str(arg).replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL":
                        found.append(".".join(strings[-2:]) if len(strings) >= 2 else "a Python object")
                    elif isinstance(arg, str):
                        strings.append(arg)
            except Exception:
                break
    return [name for name in dict.fromkeys(found) if not name.startswith(TORCH_GLOBALS)]


def is_pickle_refusal(exc: BaseException) -> bool:
    """Whether `exc` is torch's weights_only loader refusing a pickle stream."""
    return isinstance(exc, pickle.UnpicklingError) and "Weights only load failed" in str(exc)


def pickle_refusal(path: str | Path, names: list[str], what: str = "checkpoint") -> CheckpointError:
    """The `E413` error for a file whose pickle stream names Python callables or classes."""
    shown = ", ".join(f"`{n}`" for n in names[:3]) + (", ..." if len(names) > 3 else "")
    detail = f" (it names {shown})" if names else ""
    return CheckpointError([Problem(
        code="E413",
        message=f"{what} `{path}` carries pickled Python objects{detail}; loading it could run code, so it was refused "
                "and nothing in it ran",
        file=str(path),
        hint=PICKLE_HINT.replace("FILE", Path(path).name),
    )])


def torch_load_safe(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; E410 missing, E413 pickle payload, E412 unreadable."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{what} `{path}` does not exist", code="E410") from None
    except Exception as exc:
        names = pickled_globals(path) if is_pickle_refusal(exc) else []
        if names:
            raise pickle_refusal(path, names, what) from None
        detail = "not a torch file, or truncated" if is_pickle_refusal(exc) else _first_line(exc)
        raise CheckpointError([Problem(
            code="E412", message=f"cannot read {what} `{path}`: {type(exc).__name__}: {detail}",
            hint="the file is truncated or not a torch file; torch files are loaded with weights_only=True")]) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
