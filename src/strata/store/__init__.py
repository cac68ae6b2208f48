"""Content-addressed assets on disk + SQLite history (runs, nodes, lineage)."""

from strata.store.blobs import BlobStore, sha256_bytes, sha256_file
from strata.store.store import Store, default_root, new_run_id

__all__ = ["Store", "BlobStore", "sha256_bytes", "sha256_file", "default_root", "new_run_id"]
