"""Atomic writes: the one owner of that rule (docs/architecture.md).

A file is written to a temporary name in its own directory, flushed to disk and renamed into
place (`os.replace` is atomic on POSIX). A process killed at any moment leaves either the old
file or the new one, never a torn file, and never a stray temporary file on a Python error.

Modes follow the user's umask, as a plain `open()` or `mkdir` would: `tempfile` creates its
files 0600 and folders 0700, which would hide report.md or ckpt.pt from colleagues sharing the
folder, so the temporary is chmod-ed to 0666 (folders 0777) less the umask before it is renamed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(f)` on a binary file object, then rename it to `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        os.chmod(tmp, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def umask() -> int:
    """The process umask. Linux shows it in /proc/self/status, read without changing it;
    elsewhere it can only be read by setting it (`os.umask`) and setting it back, which another
    thread creating a file in between would see, so that is the fallback only."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def write_text(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, obj, indent: int = 1) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, default=str) + "\n")


def save_torch(path: str | Path, obj) -> Path:
    """`torch.save(obj)` to `path`, atomically."""
    import torch

    return write_atomic(path, lambda f: torch.save(obj, f))


@contextmanager
def directory(final: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name, then rename it to `final` in one step.

    If another process published `final` first (same content by construction, e.g. a seeded
    cache), its copy is kept and this one is discarded.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        tmp.chmod(0o777 & ~umask())
        yield tmp
        try:
            os.replace(tmp, final)
        except OSError:
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
