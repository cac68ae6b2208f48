"""Bad files are refused with clear messages, and the store stays consistent."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image as PILImage

from strata.errors import StoreError
from strata.store import Store
from strata.workflow.executor import Executor
from strata.workflow.spec import parse_workflow


def png_bytes(w: int = 16, h: int = 16) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.full((h, w, 3), 128, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def load_then_scale(path) -> dict:
    return {"nodes": [{"id": "load", "op": "io.load_image", "params": {"path": str(path)}},
                      {"id": "half", "op": "edit.resize", "inputs": {"image": "load"},
                       "params": {"width": 8, "height": 8}}],
            "outputs": {"half.png": "half"}}


def assert_consistent(store: Store) -> None:
    assert store.db.integrity_check() == "ok"
    assert store.blobs.temp_files() == []
    referenced = set(store.db.referenced_blob_ids())
    on_disk = set(store.blobs.ids())
    assert on_disk == referenced  # no partial or orphan blobs, no dangling rows
    for blob_id in on_disk:  # every blob's name is its content hash
        import hashlib

        assert hashlib.sha256(store.blobs.path(blob_id).read_bytes()).hexdigest() == blob_id


@pytest.mark.parametrize("content, message", [
    (png_bytes()[:60], "truncated"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "png"),
    (b"this is not an image at all", "supported formats are PNG, JPEG, WebP and TIFF"),
])
def test_bad_input_files_fail_their_node_and_leave_the_store_consistent(tmp_path, content, message):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    store = Store(tmp_path / "store")
    result = Executor(store).run(parse_workflow(load_then_scale(bad)), out_dir=tmp_path / "out")
    assert result.status == "failed" and list(result.failed) == ["load"] and result.skipped == ["half"]
    assert "node 'load'" in result.failed["load"] and str(bad) in result.failed["load"]
    assert message.lower() in result.failed["load"].lower()
    assert not (tmp_path / "out" / "half.png").exists()
    assert_consistent(store)


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(64, 64))
    monkeypatch.setenv("STRATA_MAX_PIXELS", "1000")
    store = Store(tmp_path / "store")
    result = Executor(store).run(parse_workflow(load_then_scale(big)))
    assert "64×64 = 4,096 pixels" in result.failed["load"] and "STRATA_MAX_PIXELS" in result.failed["load"]
    assert_consistent(store)


def test_good_file_runs_and_store_is_consistent(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes())
    store = Store(tmp_path / "store")
    result = Executor(store).run(parse_workflow(load_then_scale(good)), out_dir=tmp_path / "out")
    assert result.ok and (tmp_path / "out" / "half.png").is_file()
    assert_consistent(store)


def test_values_written_behind_the_run_are_on_disk_and_cached_when_it_returns(tmp_path):
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes())
    store = Store(tmp_path / "store")
    first = Executor(store).run(parse_workflow(load_then_scale(src)), out_dir=tmp_path / "out")
    assert first.status == "ok" and store._pending == []
    assert_consistent(store)
    fresh = Store(tmp_path / "store")  # another process sees every value: nothing was left in memory only
    again = Executor(fresh).run(parse_workflow(load_then_scale(src)), out_dir=tmp_path / "out")
    assert again.executed == [] and sorted(again.cached) == ["half", "load"]


def test_a_failed_background_write_fails_the_run_and_caches_nothing(tmp_path, monkeypatch):
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes())
    store = Store(tmp_path / "store")

    put_known = store.blobs.put_known

    def disk_full_behind(blob_id, data):  # only the background writer's writes fail
        if threading.current_thread().name.startswith("strata-store"):
            raise OSError(28, "No space left on device")
        put_known(blob_id, data)

    monkeypatch.setattr(store.blobs, "put_known", disk_full_behind)
    with pytest.raises(StoreError, match="No space left on device"):
        Executor(store).run(parse_workflow(load_then_scale(src)), out_dir=tmp_path / "out")
    assert store.db.query("SELECT status FROM runs")[0]["status"] == "failed"
    assert store.db.query("SELECT COUNT(*) AS n FROM cache WHERE op != 'export'")[0]["n"] == 0  # values: none cached
    for row in store.db.query("SELECT key FROM cache"):  # and no entry points at a missing blob
        assert store.cache_lookup(row["key"]) is not None
    monkeypatch.undo()
    rerun = Executor(store).run(parse_workflow(load_then_scale(src)), out_dir=tmp_path / "out")
    assert rerun.status == "ok" and sorted(rerun.executed) == ["half", "load"]
    assert_consistent(store)


def test_an_unwritable_output_folder_fails_the_run_clearly_and_keeps_the_values(tmp_path):
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes())
    blocker = tmp_path / "out"
    blocker.write_text("a file where the output folder should be")
    store = Store(tmp_path / "store")
    with pytest.raises(StoreError, match="cannot write the outputs into"):
        Executor(store).run(parse_workflow(load_then_scale(src)), out_dir=blocker)
    assert store.db.query("SELECT status FROM runs")[0]["status"] == "failed"
    rerun = Executor(store).run(parse_workflow(load_then_scale(src)), out_dir=tmp_path / "elsewhere")
    assert rerun.executed == [] and (tmp_path / "elsewhere" / "half.png").is_file()  # computed values were kept


def test_the_file_hash_cache_sees_every_change_and_rehashes_fresh_files(tmp_path, monkeypatch) -> None:
    import hashlib

    from strata.store import blobs

    calls = []
    real = blobs.sha256_file
    monkeypatch.setattr(blobs, "sha256_file", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(blobs, "_FILE_HASHES", {})
    f = tmp_path / "grade.cube"
    f.write_bytes(b"LUT_3D_SIZE 2\n")
    # Just written: its timestamps could still miss a same-second change, so it is hashed each time.
    assert blobs.sha256_file_cached(f) == blobs.sha256_file_cached(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert len(calls) == 2
    monkeypatch.setattr(blobs, "_SETTLED_S", -1.0)  # as if written long ago
    blobs.sha256_file_cached(f)
    blobs.sha256_file_cached(f)
    assert len(calls) == 3  # the second call was served from the cache
    f.write_bytes(b"LUT_3D_SIZE 3\n")  # same size, new content: a new version
    assert blobs.sha256_file_cached(f) == hashlib.sha256(b"LUT_3D_SIZE 3\n").hexdigest()
    replacement = tmp_path / "other.cube"
    replacement.write_bytes(b"LUT_3D_SIZE 4\n")
    replacement.replace(f)  # replaced by rename: another inode
    assert blobs.sha256_file_cached(f) == hashlib.sha256(b"LUT_3D_SIZE 4\n").hexdigest()


def test_a_blob_written_from_pieces_is_their_concatenation(tmp_path) -> None:
    from strata.files import atomic_write_bytes
    from strata.store.blobs import BlobStore, sha256_parts

    pieces = [b"head", memoryview(np.arange(5, dtype=np.float32)).cast("B"), b"tail"]
    whole = b"".join(pieces)
    blobs = BlobStore(tmp_path)
    blobs.put_known(sha256_parts(pieces), pieces)
    assert blobs.get(sha256_parts(pieces)) == whole
    assert atomic_write_bytes(tmp_path / "one.bin", memoryview(whole)).read_bytes() == whole
    assert list((tmp_path / "tmp").iterdir()) == []
