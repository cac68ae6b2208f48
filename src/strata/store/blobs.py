"""Content-addressed blobs on disk: a blob's id is the sha256 of its bytes.

Layout: ``ROOT/blobs/ab/cdef…``. Writes go to a temp file in ``ROOT/tmp``, are fsynced and
then renamed into place, so a blob file either exists whole or not at all — an interrupted
write leaves only a temp file, which ``gc`` removes.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Iterator, Sequence

from strata.errors import StoreError
from strata.files import atomic_write_bytes


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_parts(parts: Sequence[bytes | memoryview]) -> str:
    """The sha256 of the concatenation of ``parts``, without concatenating them."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.hexdigest()


def sha256_file(path: str | Path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# A file modified this recently may change again within its timestamp's resolution without
# its stat changing (git's "racily clean" problem): such files are hashed every time.
_SETTLED_S = 2.0
_FILE_HASHES: dict[tuple[str, int, int, int, int, int], str] = {}
_FILE_HASHES_MAX = 256


def sha256_file_cached(path: str | Path) -> str:
    """:func:`sha256_file`, remembered per file version within the process.

    A version is the file's (path, device, inode, size, mtime, ctime): rewriting, replacing or
    touching the file is a new version and is hashed again. Files changed in the last two
    seconds are always hashed (their timestamps could still miss a change). A workflow that
    reads a 1 MB LUT or a model file then costs a ``stat`` per run instead of a full read.

    Raises:
        OSError: the file cannot be read.
    """
    st = os.stat(path)
    stamp = (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = _FILE_HASHES.get(stamp)
    if digest is None:
        digest = sha256_file(path)
        if time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > _SETTLED_S:
            if len(_FILE_HASHES) >= _FILE_HASHES_MAX:
                _FILE_HASHES.clear()
            _FILE_HASHES[stamp] = digest
    return digest


class BlobStore:
    """Immutable content-addressed byte storage under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, blob_id: str) -> Path:
        return self.blob_dir / blob_id[:2] / blob_id[2:]

    def has(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file()

    def put(self, data: bytes) -> str:
        """Store ``data``; returns its id. Storing the same bytes twice is a no-op."""
        blob_id = sha256_bytes(data)
        self.put_known(blob_id, data)
        return blob_id

    def put_known(self, blob_id: str, data: bytes | Sequence[bytes | memoryview]) -> None:
        """Store ``data`` whose sha256 the caller already computed as ``blob_id`` (no second hash).

        ``data`` may also be pieces, written one after another (see
        :func:`strata.media.codec.encode_value_parts`).
        """
        target = self.path(blob_id)
        if not target.is_file():
            # Temp files live in ROOT/tmp, where gc finds what an interruption left behind.
            atomic_write_bytes(target, data, tmp_dir=self.tmp_dir)

    def get(self, blob_id: str) -> bytes:
        try:
            return self.path(blob_id).read_bytes()
        except FileNotFoundError:
            raise StoreError(
                f"asset {blob_id[:12]}… is missing from {self.blob_dir}; the store was edited by hand "
                "or garbage-collected — rerun with --no-cache to rebuild it"
            ) from None

    def ids(self) -> Iterator[str]:
        for sub in self.blob_dir.iterdir():
            if sub.is_dir():
                for f in sub.iterdir():
                    yield sub.name + f.name

    def remove(self, blob_id: str) -> int:
        p = self.path(blob_id)
        size = p.stat().st_size
        p.unlink()
        return size

    def temp_files(self) -> list[Path]:
        return list(self.tmp_dir.iterdir())
