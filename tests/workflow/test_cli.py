"""The command line over the engine and store (in-process through typer's runner)."""

from __future__ import annotations

import json
import sqlite3
import traceback

import pytest
import yaml
from typer.testing import CliRunner

from strata.cli import app

runner = CliRunner()

WF = {"name": "cli", "seed": 3, "nodes": [
    {"id": "a", "op": "test.solid", "params": {"value": 0.25}},
    {"id": "n", "op": "test.noise"},
    {"id": "m", "op": "test.mix", "inputs": {"a": "a", "b": "n"}},
    {"id": "end", "op": "test.scale", "inputs": {"image": "m"}, "params": {"factor": 1.5}},
], "outputs": {"end.png": "end", "noise.png": "n"}}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_DATA", str(tmp_path / "store"))
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(WF))
    return tmp_path, wf


def invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result


def explain(result) -> str:
    """A failed invocation's exit code, output and traceback, for the assertion message."""
    tb = "".join(traceback.format_exception(result.exception)) if result.exception else ""
    return f"exit {result.exit_code}\n--- output ---\n{result.output}\n--- exception ---\n{tb}"


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_run_writes_outputs_and_rerun_is_cached(env):
    tmp, wf = env
    out = tmp / "out"
    r = invoke("run", str(wf), "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    ev = events(r.output)
    assert [e["node"] for e in ev if e["event"] == "node_finished"] == ["a", "n", "m", "end"]
    assert (out / "end.png").is_file() and (out / "noise.png").is_file()
    first = (out / "end.png").read_bytes()
    r = invoke("run", str(wf), "--out", str(out), "--json")
    ev = events(r.output)
    assert [e["node"] for e in ev if e["event"] == "node_cached"] == ["a", "n", "m", "end"]
    assert (out / "end.png").read_bytes() == first


def test_set_and_seed_flags_change_exactly_what_they_should(env):
    tmp, wf = env
    invoke("run", str(wf), "--out", str(tmp / "o"), "--json")
    r = invoke("run", str(wf), "--out", str(tmp / "o"), "--json", "--set", "end.factor=0.5")
    assert r.exit_code == 0, explain(r)
    assert [e["node"] for e in events(r.output) if e["event"] == "node_finished"] == ["end"], explain(r)
    r = invoke("run", str(wf), "--out", str(tmp / "o"), "--json", "--seed", "4")
    assert [e["node"] for e in events(r.output) if e["event"] == "node_finished"] == ["n", "m", "end"], explain(r)


def test_bad_input_exits_2_with_the_message(env):
    tmp, wf = env
    bad = tmp / "bad.yaml"
    bad.write_text(yaml.safe_dump({"nodes": [{"id": "a", "op": "test.solid", "params": {"value": 7}}]}))
    r = invoke("run", str(bad))
    assert r.exit_code == 2 and "node 'a', 'value': Input should be less than or equal to 1" in r.output
    r = invoke("run", str(wf), "--set", "nonsense")
    assert r.exit_code == 2 and "write node.param=value" in r.output
    r = invoke("run", str(wf), "--set", "ghost.x=1")
    assert r.exit_code == 2 and "no node 'ghost'" in r.output
    r = invoke("validate", str(bad))
    assert r.exit_code == 2
    r = invoke("validate", str(wf))
    assert r.exit_code == 0 and "4 nodes" in r.output


def test_history_commands(env):
    tmp, wf = env
    out = tmp / "out"
    invoke("run", str(wf), "--out", str(out), "--json")
    r = invoke("rerun", "last", "--set", "a.value=0.75", "--out", str(out), "--json")
    assert r.exit_code == 0, r.output
    assert [e["node"] for e in events(r.output) if e["event"] == "node_finished"] == ["a", "m", "end"]

    r = invoke("runs")
    assert r.exit_code == 0 and r.output.count("cli") == 2
    db = sqlite3.connect(tmp / "store" / "history.sqlite")
    first, second = [row[0] for row in db.execute("SELECT id FROM runs ORDER BY created")]
    assert db.execute("SELECT parent FROM runs WHERE id=?", (second,)).fetchone()[0] == first

    r = invoke("show", second)
    assert r.exit_code == 0 and "executed" in r.output and "cached" in r.output and "factor=1.5" in r.output

    r = invoke("diff", first, second)
    assert "a.value: 0.25 → 0.75" in r.output
    assert "reran (3): a, m, end" in r.output and "reused (1): n" in r.output

    r = invoke("lineage", str(out / "end.png"))
    assert r.exit_code == 0, r.output
    assert "end" in r.output and "test.mix" in r.output and "value=0.75" in r.output and "test.noise" in r.output

    r = invoke("export", first, str(tmp / "exported"))
    assert r.exit_code == 0, r.output
    assert (tmp / "exported" / "end.png").is_file() and (tmp / "exported" / "workflow.yaml").is_file()
    assert (tmp / "exported" / "end.png").read_bytes() != (out / "end.png").read_bytes()  # first run's values

    r = invoke("gc")
    assert r.exit_code == 0 and "removed 0 unreferenced blob(s)" in r.output
    r = invoke("show", "nope")
    assert r.exit_code == 2 and "no run 'nope'" in r.output


def test_ops_listing_show_and_schema(env):
    tmp, _ = env
    r = invoke("ops")
    assert r.exit_code == 0 and "test.mix" in r.output
    r = invoke("ops", "show", "test.solid")
    assert r.exit_code == 0 and "value" in r.output and "gray level" in r.output
    r = invoke("ops", "show", "test.soild")
    assert r.exit_code == 2 and "did you mean test.solid" in r.output
    r = invoke("ops", "schema", "--out", str(tmp / "schema.json"))
    data = json.loads((tmp / "schema.json").read_text())
    assert data["test.solid"]["params"]["properties"]["value"]["maximum"] == 1


def test_run_an_image_reruns_its_embedded_workflow(env):
    tmp, wf = env
    out = tmp / "out"
    invoke("run", str(wf), "--out", str(out), "--json")
    r = invoke("run", str(out / "end.png"), "--out", str(tmp / "again"), "--json")
    assert r.exit_code == 0, r.output
    assert (tmp / "again" / "end.png").read_bytes() == (out / "end.png").read_bytes()
    r = invoke("info", str(out / "end.png"))
    assert r.exit_code == 0 and "edited with strata" in r.output
