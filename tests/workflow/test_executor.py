"""The executor: exactly what depends on a change reruns; results persist; failures and
interruptions leave the store consistent and resumable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
from pydantic import Field

from strata.errors import RunInterrupted
from strata.store import Store
from strata.workflow.events import CollectSink, NodeCached, NodeFinished, NodeSkipped
from strata.workflow.executor import Executor
from strata.workflow.node import InputFile
from strata.workflow.spec import parse_workflow

CHAIN = {"name": "chain", "seed": 1, "nodes": [
    {"id": "a", "op": "test.solid", "params": {"value": 0.25}},
    {"id": "b", "op": "test.solid", "params": {"value": 0.5}},
    {"id": "sa", "op": "test.scale", "inputs": {"image": "a"}, "params": {"factor": 2.0}},
    {"id": "m", "op": "test.mix", "inputs": {"a": "sa", "b": "b"}},
    {"id": "end", "op": "test.scale", "inputs": {"image": "m"}, "params": {"factor": 1.0}},
]}


def run(store: Store, data: dict, **kw):
    sink = CollectSink()
    result = Executor(store, sinks=[sink]).run(parse_workflow(data), **kw)
    return result, sink


def with_param(data: dict, node: str, param: str, value) -> dict:
    return parse_workflow(data).with_param(node, param, value).to_dict()


def test_first_run_executes_everything_and_values_are_right(tmp_path):
    store = Store(tmp_path)
    result, _ = run(store, CHAIN)
    assert result.ok and result.executed == ["a", "b", "sa", "m", "end"] and result.cached == []
    value = store.get_value(result.refs["end"]["image"])
    np.testing.assert_allclose(value.rgb, 0.5, atol=1e-6)  # mix(0.25*2, 0.5) = 0.5


def test_unchanged_rerun_executes_nothing(tmp_path, calls):
    store = Store(tmp_path)
    run(store, CHAIN)
    calls.clear()
    result, events = run(store, CHAIN)
    assert result.executed == [] and result.cached == ["a", "b", "sa", "m", "end"]
    assert sum(calls.values()) == 0
    assert all(isinstance(e, NodeCached) for e in events if isinstance(e, (NodeCached, NodeFinished)))


def test_upstream_change_reruns_exactly_its_descendants(tmp_path):
    store = Store(tmp_path)
    run(store, CHAIN)
    result, _ = run(store, with_param(CHAIN, "a", "value", 0.3))
    assert result.executed == ["a", "sa", "m", "end"]
    assert result.cached == ["b"]


def test_terminal_change_reruns_one_node(tmp_path):
    store = Store(tmp_path)
    run(store, CHAIN)
    result, _ = run(store, with_param(CHAIN, "end", "factor", 0.5))
    assert result.executed == ["end"]


def test_change_that_gives_the_same_value_stops_propagating(tmp_path):
    # factor 1.0 → 1.0000001 rounds to the same float32 image: downstream keys don't change.
    store = Store(tmp_path)
    run(store, CHAIN)
    result, _ = run(store, with_param(CHAIN, "sa", "factor", 2.0000000001))
    assert result.executed == ["sa"]


def test_seed_only_reaches_nodes_that_take_a_seed(tmp_path):
    wf = {"seed": 1, "nodes": [{"id": "n", "op": "test.noise"}, {"id": "s", "op": "test.solid"},
                               {"id": "m", "op": "test.mix", "inputs": {"a": "n", "b": "s"}}]}
    store = Store(tmp_path)
    run(store, wf)
    result, _ = run(store, {**wf, "seed": 2})
    assert result.executed == ["n", "m"] and result.cached == ["s"]
    a = store.get_value(run(store, wf)[0].refs["n"]["image"])
    b = store.get_value(result.refs["n"]["image"])
    assert not np.array_equal(a.pixels, b.pixels)


def test_no_cache_and_per_node_cache_false(tmp_path):
    store = Store(tmp_path)
    run(store, CHAIN)
    assert run(store, CHAIN, no_cache=True)[0].executed == ["a", "b", "sa", "m", "end"]
    data = {**CHAIN, "nodes": [dict(n, cache=False) if n["id"] == "b" else n for n in CHAIN["nodes"]]}
    assert run(store, data)[0].executed == ["b"]  # b re-executes, gives the same value: nothing else does


def test_input_file_content_is_part_of_the_key(tmp_path):
    f = tmp_path / "in.bin"
    f.write_bytes(b"\x10")
    wf = {"nodes": [{"id": "r", "op": "test.read", "params": {"path": str(f)}},
                    {"id": "s", "op": "test.scale", "inputs": {"image": "r"}}]}
    store = Store(tmp_path / "store")
    run(store, wf)
    assert run(store, wf)[0].executed == []
    f.write_bytes(b"\x20")
    assert run(store, wf)[0].executed == ["r", "s"]


def test_failure_stops_only_descendants(tmp_path):
    wf = {"nodes": [
        {"id": "a", "op": "test.solid"},
        {"id": "bad", "op": "test.boom", "inputs": {"image": "a"}},
        {"id": "after", "op": "test.scale", "inputs": {"image": "bad"}},
        {"id": "other", "op": "test.scale", "inputs": {"image": "a"}, "params": {"factor": 0.5}},
    ]}
    store = Store(tmp_path)
    result, events = run(store, wf)
    assert result.status == "failed"
    assert result.executed == ["a", "other"]
    assert list(result.failed) == ["bad"] and "node 'bad': 'kind': this op always fails" in result.failed["bad"]
    assert result.skipped == ["after"]
    assert any(isinstance(e, NodeSkipped) and "bad" in e.reason for e in events)
    crash, _ = run(store, with_param(wf, "bad", "kind", "bug"))
    assert "crashed: RuntimeError: unexpected bug" in crash.failed["bad"]
    statuses = dict(store.db.query("SELECT node_id, status FROM nodes WHERE run_id=?", (result.run_id,)))
    assert statuses == {"a": "executed", "bad": "failed", "after": "skipped", "other": "executed"}


def test_results_persist_across_processes(tmp_path):
    wf_path = tmp_path / "wf.json"
    import json

    wf_path.write_text(json.dumps(CHAIN))
    script = textwrap.dedent(f"""
        import sys, json
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import conftest  # registers the test ops
        from strata.store import Store
        from strata.workflow.executor import Executor
        from strata.workflow.spec import load_workflow
        r = Executor(Store({str(tmp_path / 'store')!r})).run(load_workflow({str(wf_path)!r}))
        print(json.dumps({{"executed": r.executed, "cached": r.cached}}))
    """)
    outs = [json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
            for _ in range(2)]
    assert outs[0]["executed"] == ["a", "b", "sa", "m", "end"]
    assert outs[1] == {"executed": [], "cached": ["a", "b", "sa", "m", "end"]}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_resumes_from_finished_nodes(tmp_path, sig):
    wf = {"nodes": [
        {"id": "a", "op": "test.solid"},
        {"id": "fast", "op": "test.scale", "inputs": {"image": "a"}, "params": {"factor": 0.5}},
        {"id": "slow", "op": "test.sleep", "inputs": {"image": "fast"}, "params": {"seconds": 30}},
        {"id": "end", "op": "test.scale", "inputs": {"image": "slow"}},
    ]}
    import json

    wf_path = tmp_path / "wf.json"
    wf_path.write_text(json.dumps(wf))
    store_dir = tmp_path / "store"
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import conftest
        from strata.errors import RunInterrupted
        from strata.store import Store
        from strata.workflow.executor import Executor
        from strata.workflow.spec import load_workflow
        from strata.workflow.events import NodeStarted
        def sink(e):
            if isinstance(e, NodeStarted) and e.node == "slow":
                print("SLOW", flush=True)
        try:
            Executor(Store({str(store_dir)!r}), sinks=[sink]).run(load_workflow({str(wf_path)!r}))
        except RunInterrupted as exc:
            print("INTERRUPTED", exc, flush=True)
            sys.exit(130)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "SLOW"
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=90)  # generous: CI machines can be busy
    assert proc.returncode == 130 and "INTERRUPTED" in out and "resume" in out

    store = Store(store_dir)
    assert store.db.integrity_check() == "ok"
    rows = dict(store.db.query("SELECT node_id, status FROM nodes"))
    assert rows["a"] == rows["fast"] == "executed" and rows["slow"] == "interrupted"
    assert store.db.query("SELECT status FROM runs")[0]["status"] == "interrupted"
    # Resume (with a shorter sleep so the test is quick): a and fast come from the store.
    short = parse_workflow(wf).with_param("slow", "seconds", 0.01)
    res = Executor(store).run(short)
    assert res.cached == ["a", "fast"] and res.executed == ["slow", "end"]


def test_interrupt_in_process_raises_and_records(tmp_path, monkeypatch):
    import dataclasses

    from strata.workflow.node import REGISTRY

    def raise_interrupt(image, *, seconds=0.1):
        raise KeyboardInterrupt

    spec = REGISTRY["test.sleep"]
    wf = {"nodes": [{"id": "a", "op": "test.solid"}, {"id": "s", "op": "test.sleep", "inputs": {"image": "a"}}]}
    store = Store(tmp_path)
    patched = dataclasses.replace(spec, fn=raise_interrupt)
    monkeypatch.setitem(REGISTRY, "test.sleep", patched)
    with pytest.raises(RunInterrupted, match="1 finished node"):
        run(store, wf)
    monkeypatch.setitem(REGISTRY, "test.sleep", spec)
    result, _ = run(store, wf)
    assert result.cached == ["a"] and result.executed == ["s"]


def test_cached_nodes_are_recorded_in_one_commit_and_before_an_interrupt(tmp_path, monkeypatch):
    """Cached nodes' history rows wait for the next record (one commit for the batch); an
    interrupt right after them still leaves them, with their lineage, in the run's history."""
    import dataclasses

    from strata.workflow.node import REGISTRY

    store = Store(tmp_path)
    first, _ = run(store, CHAIN)
    commits = []
    record_nodes = store.db.record_nodes
    monkeypatch.setattr(store.db, "record_nodes", lambda run_id, rows: (commits.append([r.node_id for r in rows]),
                                                                         record_nodes(run_id, rows)))
    changed = with_param(CHAIN, "end", "factor", 0.5)
    result, _ = run(store, changed)
    assert result.cached == ["a", "b", "sa", "m"] and result.executed == ["end"]
    assert commits == [["a", "b", "sa", "m", "end"], ["end"]]  # the batch + "running", then "executed"

    def interrupt(image, *, factor=1.0):
        raise KeyboardInterrupt

    monkeypatch.setitem(REGISTRY, "test.scale", dataclasses.replace(REGISTRY["test.scale"], fn=interrupt))
    with pytest.raises(RunInterrupted):
        run(store, with_param(CHAIN, "end", "factor", 0.25))
    run_id = store.db.query("SELECT id FROM runs ORDER BY created DESC LIMIT 1")[0]["id"]
    rows = {r["node_id"]: r["status"] for r in store.db.query("SELECT node_id, status FROM nodes WHERE run_id=?", (run_id,))}
    assert rows == {"a": "cached", "b": "cached", "sa": "cached", "m": "cached", "end": "interrupted"}
    lineage = store.db.query("SELECT asset_id FROM edges WHERE run_id=? AND node_id='m' AND role='output'", (run_id,))
    assert [r["asset_id"] for r in lineage] == [first.refs["m"]["image"]]


def test_gc_removes_only_unreferenced_blobs(tmp_path):
    store = Store(tmp_path)
    result, _ = run(store, CHAIN)
    orphan = store.blobs.put(b"left behind by an interrupted write")
    (store.blobs.tmp_dir / "blob-partial").write_bytes(b"half")
    report = store.gc()
    assert report.removed_blobs == 1 and report.removed_temp_files == 1
    assert not store.blobs.has(orphan)
    assert run(store, CHAIN)[0].executed == []  # every stored result survived


def test_decoded_value_cache_is_bounded(tmp_path):
    from strata.media import Image

    store = Store(tmp_path, value_cache_bytes=3 * 8 * 8 * 4 * 4 + 1000)
    refs = [store.put_value(Image.solid(8, 8, (i / 10, 0, 0, 1)))[0] for i in range(6)]
    assert len(store._values) == 3 and list(store._values) == refs[-3:]
    store.db.cache_put("k", "test", {"x": refs[0]}, [(refs[0], "image", 1)], None)
    assert store.get_value(refs[0]).pixels[0, 0, 0] == 0.0  # evicted, decoded again from its blob


def test_a_nodes_newer_result_replaces_the_older_one_in_memory_not_on_disk(tmp_path):
    store = Store(tmp_path)
    base = with_param(CHAIN, "end", "factor", 1.5)
    first, _ = run(store, base)
    second, _ = run(store, with_param(CHAIN, "end", "factor", 0.3))  # values unlike any other node's
    old, new, m = first.refs["end"]["image"], second.refs["end"]["image"], first.refs["m"]["image"]
    assert len({old, new, m}) == 3
    assert new in store._values and m in store._values and old not in store._values
    np.testing.assert_allclose(store.get_value(old).rgb, 0.75, atol=1e-6)  # decoded again from its blob
    third, _ = run(store, base)  # back to the first value: a cache hit from disk
    assert third.executed == [] and third.refs["end"]["image"] == old
    run(store, with_param(CHAIN, "end", "factor", 0.25))  # a cache hit was the newest too: it leaves now
    assert old not in store._values and new not in store._values


def test_a_superseded_value_that_another_node_made_too_stays_in_memory(tmp_path):
    store = Store(tmp_path)
    first, _ = run(store, CHAIN)  # end = m × 1: the same value, one blob
    assert first.refs["end"]["image"] == first.refs["m"]["image"]
    run(store, with_param(CHAIN, "end", "factor", 0.5))
    assert first.refs["m"]["image"] in store._values


def test_optional_file_params_are_hashed_into_the_key():
    from strata.workflow.node import REGISTRY, node

    @node("test.optional_file", layer="io")
    def optional_file(*, font: Annotated[InputFile | None, Field(description="a file")] = None) -> float:
        """Test op."""
        return 0.0

    assert REGISTRY["test.optional_file"].file_params == ("font",)
    del REGISTRY["test.optional_file"]


def test_strata_run_uses_the_installed_models(tmp_path, monkeypatch):
    """The Python API's run() resolves models like the CLI: a select node (optional scorer) runs."""
    import strata
    from strata.models.registry import reset_default_registry

    monkeypatch.setenv("STRATA_SCORER_MODEL", str(tmp_path / "no-scorer"))  # none installed: technical ranking
    reset_default_registry()
    try:
        b = strata.WorkflowBuilder(name="pick", seed=0)
        a = b.add("io.sample_image", id="a", name="coffee")
        small = b.add("edit.resize", id="small", image=a, width=64, height=48)
        blur = b.add("enhance.denoise", id="blur", image=small)
        best = b.add("image.select", id="best", images=[small, blur])
        b.output("best.png", best.best)
        result = strata.run(b.build(), store=strata.Store(tmp_path / "store"), out_dir=tmp_path / "out")
        assert result.ok, result.failed
        assert (tmp_path / "out" / "best.png").is_file()
    finally:
        reset_default_registry()
