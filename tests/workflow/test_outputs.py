"""Output files: reproducible bytes, ordinary permissions, provenance that names the lineage."""

from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest

from strata.media.image_io import load_image
from strata.provenance.metadata import read_provenance
from strata.store import Store
from strata.workflow.executor import Executor
from strata.workflow.spec import parse_workflow

WF = {"name": "out", "seed": 5, "nodes": [
    {"id": "n", "op": "test.noise"},
    {"id": "s", "op": "test.scale", "inputs": {"image": "n"}, "params": {"factor": 0.5}},
    {"id": "many", "op": "test.stack", "inputs": {"images": ["n", "s"]}},
], "outputs": {"s.png": "s", "s.jpg": "s", "s.webp": "s", "s.tif": "s"}}


def test_same_workflow_and_seed_give_identical_files_in_fresh_stores(tmp_path, monkeypatch):
    # Unsigned, the files are byte-identical. C2PA signatures are salted with random bytes, so
    # signed files from two fresh stores share pixels and provenance, not bytes.
    for sign in ("0", "1"):
        monkeypatch.setenv("STRATA_SIGN", sign)
        outs = []
        for i in range(2):
            out = tmp_path / f"out{sign}{i}"
            Executor(Store(tmp_path / f"store{sign}{i}")).run(parse_workflow(WF), out_dir=out)
            outs.append({p.name: p.read_bytes() for p in out.iterdir()})
        assert outs[0].keys() == {"s.png", "s.jpg", "s.webp", "s.tif"}
        if sign == "0":
            assert outs[0] == outs[1]
        else:
            for name in outs[0]:
                a, b = (tmp_path / f"out1{i}" / name for i in range(2))
                assert np.array_equal(load_image(a).pixels, load_image(b).pixels)
                assert read_provenance(a) == read_provenance(b)


def _spy_writes(monkeypatch, log: list) -> None:
    """Log each node's hand-off to the writer ("handed", node), and each file's write: ("stored",
    name) for the cheap stored-bytes pass, ("encode", name) for the full write (encode/sign)
    that goes to the pool."""
    import strata.workflow.outputs as outputs

    real = outputs.OutputWriter._write
    real_done = outputs.OutputWriter.node_done

    def spy(self, job, cached_only=False):
        log.append(("stored" if cached_only else "encode", job[3].name))
        return real(self, job, cached_only)

    def handed(self, node_id, refs, **kwargs):
        log.append(("handed", node_id))
        return real_done(self, node_id, refs, **kwargs)

    monkeypatch.setattr(outputs.OutputWriter, "_write", spy)
    monkeypatch.setattr(outputs.OutputWriter, "node_done", handed)


def _encoded(log: list) -> list[str]:
    return sorted(name for kind, name in log if kind == "encode")


def test_a_rerun_encodes_only_the_files_whose_bytes_are_not_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_SIGN", "0")
    store, out = Store(tmp_path / "store"), tmp_path / "out"
    Executor(store).run(parse_workflow(WF), out_dir=out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "s.jpg").unlink()  # a file the user deleted is written again — from the stored bytes
    log: list = []
    _spy_writes(monkeypatch, log)
    monkeypatch.setattr("strata.media.image_io.encode_image", lambda *a, **k: pytest.fail("re-encoded a stored file"))
    Executor(store).run(parse_workflow(WF), out_dir=out)
    assert _encoded(log) == [] and {p.name: p.read_bytes() for p in out.iterdir()} == before
    # a changed node: its four files are encoded again
    monkeypatch.undo()
    monkeypatch.setenv("STRATA_SIGN", "0")
    log.clear()
    _spy_writes(monkeypatch, log)
    wf = parse_workflow(WF).with_param("s", "factor", 0.25)
    Executor(store).run(wf, out_dir=out)
    assert _encoded(log) == ["s.jpg", "s.png", "s.tif", "s.webp"] and (out / "s.png").read_bytes() != before["s.png"]
    # signing turned on: the stored unsigned bytes are not enough, the slow signing goes to the pool
    log.clear()
    monkeypatch.setenv("STRATA_SIGN", "1")
    Executor(store).run(wf, out_dir=out)
    assert _encoded(log) == ["s.jpg", "s.png", "s.tif", "s.webp"]
    log.clear()
    Executor(store).run(wf, out_dir=out)
    assert _encoded(log) == []


def test_files_are_written_while_later_nodes_run(tmp_path, monkeypatch):
    # "s" finishes before "many" starts: its files are handed to the writer in between, not
    # after the last node; the history and events still list them once, in the declared order.
    monkeypatch.setenv("STRATA_SIGN", "0")
    log: list = []
    _spy_writes(monkeypatch, log)

    def record(event) -> None:
        e = event.to_json()
        log.append((e["event"], e["path"] if e["event"] == "output_written" else e.get("node")))

    store = Store(tmp_path / "store")
    result = Executor(store, sinks=[record]).run(parse_workflow(WF), out_dir=tmp_path / "out")
    handed = log.index(("handed", "s"))
    assert log.index(("node_finished", "s")) < handed < log.index(("node_started", "many"))
    assert ("stored", "s.png") not in log  # "s" ran: its files went to the pool without a stored-bytes pass
    written = [p for kind, p in log if kind == "output_written"]
    assert [os.path.basename(p) for p in written] == ["s.png", "s.jpg", "s.webp", "s.tif"]
    assert log.index(("node_finished", "many")) < log.index(("output_written", written[0]))
    assert result.outputs and store.db.integrity_check() == "ok"


def test_files_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        Executor(Store(tmp_path / "store")).run(parse_workflow(WF), out_dir=tmp_path / "out")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "out" / "s.png").stat().st_mode)
    assert mode == 0o644


def test_provenance_names_node_inputs_and_workflow(tmp_path):
    result = Executor(Store(tmp_path / "store")).run(parse_workflow(WF), out_dir=tmp_path / "out")
    prov = read_provenance(tmp_path / "out" / "s.png")
    assert prov.node_id == "s" and prov.op == "test.scale" and prov.params == {"factor": 0.5}
    assert prov.asset_id == result.refs["s"]["image"]
    assert prov.input_assets == [result.refs["n"]["image"]]
    assert prov.workflow["nodes"][0]["op"] == "test.noise" and prov.label == "edited with strata"
    assert prov.created is None


def _exported(store) -> list[str]:
    return sorted(os.path.basename(r["path"]) for r in store.db.query("SELECT path FROM exports"))


def test_a_file_that_cannot_be_written_fails_the_run_after_the_others_are_recorded(tmp_path, monkeypatch):
    import strata.workflow.outputs as outputs
    from strata.errors import MediaError

    monkeypatch.setenv("STRATA_SIGN", "0")
    real = outputs._write_one

    def broken_jpeg(store, plan, src, asset_id, input_assets, path, *a, **k):
        if path.suffix == ".jpg":
            raise MediaError("cannot encode this JPEG")
        return real(store, plan, src, asset_id, input_assets, path, *a, **k)

    monkeypatch.setattr(outputs, "_write_one", broken_jpeg)
    store = Store(tmp_path / "store")
    with pytest.raises(MediaError, match="cannot encode this JPEG"):
        Executor(store).run(parse_workflow(WF), out_dir=tmp_path / "out")
    (status,) = [r["status"] for r in store.db.query("SELECT status FROM runs")]
    assert status == "failed"  # recorded as finished, not left "running"
    assert _exported(store) == ["s.png", "s.tif", "s.webp"] == sorted(p.name for p in (tmp_path / "out").iterdir())
    assert store.db.integrity_check() == "ok"


def test_an_interrupted_run_records_the_files_it_wrote(tmp_path, monkeypatch):
    # Ctrl-C while "many" runs: the files of "s" were written meanwhile; they are complete and
    # in the history, so `strata lineage` finds them.
    import dataclasses

    from strata.errors import RunInterrupted
    from strata.workflow.node import REGISTRY

    store, out = Store(tmp_path / "store"), tmp_path / "out"

    def interrupted(*a, **k):
        for _ in range(500):  # the files of "s" are being written meanwhile: let them land
            if len(list(out.glob("s.*"))) == 4:
                break
            time.sleep(0.01)
        raise KeyboardInterrupt

    monkeypatch.setenv("STRATA_SIGN", "0")
    monkeypatch.setitem(REGISTRY, "test.stack", dataclasses.replace(REGISTRY["test.stack"], fn=interrupted))
    with pytest.raises(RunInterrupted):
        Executor(store).run(parse_workflow(WF), out_dir=out)
    (status,) = [r["status"] for r in store.db.query("SELECT status FROM runs")]
    assert status == "interrupted"
    assert _exported(store) == ["s.jpg", "s.png", "s.tif", "s.webp"] == sorted(p.name for p in out.iterdir())
    assert read_provenance(out / "s.png").node_id == "s"
