"""The store: content-addressed assets (blobs) plus the history database, in one folder.

Default location ``./strata-data``; override with ``--store`` on the CLI or ``STRATA_DATA``.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.errors import StoreError
from strata.store.blobs import BlobStore
from strata.store.db import HistoryDB

DEFAULT_ROOT = "strata-data"
# Stored value of one output: an asset id, or a list of them for list outputs.
AssetRef = str | list[str]


def default_root() -> Path:
    return Path(os.environ.get("STRATA_DATA", DEFAULT_ROOT))


def new_run_id() -> str:
    """Sortable, readable, unique: ``20261122-081530-a3f29c01`` (32 random bits per second)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)


@dataclass(frozen=True)
class GcReport:
    removed_blobs: int
    removed_temp_files: int
    freed_bytes: int


class Store:
    """Assets and history under one root folder. Safe to share between processes."""

    def __init__(self, root: str | Path | None = None, *, value_cache_bytes: int = 2 * 2**30):
        self.root = Path(root) if root is not None else default_root()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.blobs = BlobStore(self.root)
            self.db = HistoryDB(self.root / "history.sqlite")
        except OSError as exc:
            raise StoreError(f"cannot open the store at {self.root}: {exc.strerror}; choose another folder "
                             "with --store or STRATA_DATA") from None
        # Decoded values by asset id (a run reads the same upstream value many times), least
        # recently used dropped first once they hold more than ``value_cache_bytes``.
        self._values: OrderedDict[str, Any] = OrderedDict()
        self._value_bytes: dict[str, int] = {}
        self._values_lock = threading.Lock()  # outputs are written from several threads
        self.value_cache_bytes = value_cache_bytes

    # -- values -------------------------------------------------------------------------
    def put_value(self, value: Any) -> tuple[AssetRef, list[tuple[str, str, int]]]:
        """Store a node output value; returns its asset ref and the (id, kind, size) rows to record."""
        from strata.media.codec import encode_value

        if isinstance(value, (list, tuple)):
            ids: list[str] = []
            rows: list[tuple[str, str, int]] = []
            for item in value:
                ref, item_rows = self.put_value(item)
                ids.append(ref)  # type: ignore[arg-type]
                rows += item_rows
            return ids, rows
        kind, data = encode_value(value)
        blob_id = self.blobs.put(data)
        self._remember(blob_id, value, len(data))
        return blob_id, [(blob_id, kind, len(data))]

    def _remember(self, blob_id: str, value: Any, size: int) -> None:
        with self._values_lock:
            self._values[blob_id] = value
            self._values.move_to_end(blob_id)
            self._value_bytes[blob_id] = size
            while len(self._values) > 1 and sum(self._value_bytes.values()) > self.value_cache_bytes:
                old, _ = self._values.popitem(last=False)
                del self._value_bytes[old]

    def get_value(self, ref: AssetRef) -> Any:
        """Load a stored value (or list of values) by asset ref."""
        from strata.media.codec import decode_value

        if isinstance(ref, list):
            return [self.get_value(r) for r in ref]
        with self._values_lock:
            if ref in self._values:
                self._values.move_to_end(ref)
                return self._values[ref]
        kind = self.db.asset_kind(ref)
        if kind is None:
            raise StoreError(f"unknown asset {ref[:12]}…; it was never stored here ({self.root})")
        data = self.blobs.get(ref)
        value = decode_value(kind, data)
        self._remember(ref, value, len(data))
        return value

    def has_all(self, ref: AssetRef) -> bool:
        if isinstance(ref, list):
            return all(self.has_all(r) for r in ref)
        return self.blobs.has(ref)

    # -- cache --------------------------------------------------------------------------
    def cache_lookup(self, key: str) -> dict[str, AssetRef] | None:
        """The outputs stored under ``key``, or None (also when a blob went missing)."""
        outputs = self.db.cache_get(key)
        if outputs is None or not all(self.has_all(r) for r in outputs.values()):
            return None
        return outputs

    def cache_record(self, key: str, op: str, values: dict[str, Any], duration_s: float | None) -> dict[str, AssetRef]:
        """Store output values and the cache entry for them; returns the asset refs."""
        refs: dict[str, AssetRef] = {}
        rows: list[tuple[str, str, int]] = []
        for name, value in values.items():
            refs[name], r = self.put_value(value)
            rows += r
        self.db.cache_put(key, op, refs, rows, duration_s)
        return refs

    def put_file_bytes(self, key: str, data: bytes, kind: str) -> str:
        """Cache an encoded output file (so an unchanged rerun copies bytes, not re-encodes)."""
        blob_id = self.blobs.put(data)
        self.db.cache_put(key, "export", {"file": blob_id}, [(blob_id, kind, len(data))], None)
        return blob_id

    # -- maintenance --------------------------------------------------------------------
    def gc(self, *, dry_run: bool = False) -> GcReport:
        """Remove blobs that no asset row references (left by interrupted writes) and temp files.

        Never removes a referenced blob: every cached result and every run's lineage stays.
        """
        referenced = set(self.db.referenced_blob_ids())
        removed = freed = 0
        for blob_id in list(self.blobs.ids()):
            if blob_id not in referenced:
                size = self.blobs.path(blob_id).stat().st_size
                if not dry_run:
                    self.blobs.remove(blob_id)
                removed += 1
                freed += size
        temps = self.blobs.temp_files()
        for t in temps:
            freed += t.stat().st_size
            if not dry_run:
                t.unlink(missing_ok=True)
        return GcReport(removed, len(temps), freed)

    def close(self) -> None:
        self.db.close()
