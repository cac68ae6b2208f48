"""Atomic file writes: the one way strata writes a file a reader might see half-written."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Sequence


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes | Sequence[bytes | memoryview], *,
                       tmp_dir: str | os.PathLike[str] | None = None) -> Path:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the whole new one.

    ``data`` may also be pieces written one after another (no joined copy of a large value).

    The bytes go to a temp file (in ``tmp_dir``, default the target's folder — it must be on
    the same filesystem so the rename is atomic), are fsynced, then ``os.replace`` moves them
    over ``path``; on any error the temp file is removed and ``path`` is untouched. Missing
    parent folders are created. The file gets ordinary permissions (0o666 less the umask).

    Raises:
        OSError: the folder is not writable, the disk is full, ...
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp_dir or p.parent) / f".{p.name}.{secrets.token_hex(6)}.tmp"
    # O_EXCL: never reuse someone else's file; 0o666 lets the umask decide, as open() does.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for piece in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable; not every filesystem supports fsync on a folder
        dir_fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return p


def user_cache_dir(name: str) -> Path:
    """A folder of strata's per-user cache (derived files a later process reuses — never data
    that cannot be made again): ``$STRATA_CACHE/<name>``, else ``$XDG_CACHE_HOME/strata/<name>``,
    else ``~/.cache/strata/<name>``. Not created here."""
    base = os.environ.get("STRATA_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "strata"
    return Path(base).expanduser() / name


def mark_used(path: Path) -> None:
    """Record that a cache file was just used (its mtime), so :func:`prune_cache` keeps it."""
    try:
        os.utime(path)
    except OSError:  # a read-only cache: nothing is pruned there either
        pass


def prune_cache(folder: Path, pattern: str, *, keep: int) -> list[Path]:
    """Delete all but the ``keep`` most recently used files matching ``pattern`` in ``folder``.

    Cache files are named by the weights and library versions they were made for, so every
    upgrade or retrained model leaves the old ones behind (a UNet graph is ~70 MB); "used" is
    the mtime that :func:`mark_used` refreshes. A file another process has open stays readable
    to it (POSIX). Files that cannot be removed are left. Returns the removed paths.
    """
    try:
        found = [(p.stat().st_mtime, p) for p in folder.glob(pattern)]
    except OSError:
        return []
    removed = []
    for _, p in sorted(found, reverse=True)[keep:]:
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed
