"""Every validation error is reported at once, naming node and param."""

from __future__ import annotations

import pytest

from strata.errors import WorkflowError
from strata.workflow.spec import load_workflow, parse_workflow
from strata.workflow.validate import validate


def errors_of(data: dict) -> list[str]:
    with pytest.raises(WorkflowError) as info:
        validate(parse_workflow(data))
    return [str(i) for i in info.value.issues]


def test_valid_workflow_plans_in_dependency_order():
    wf = parse_workflow({"nodes": [
        {"id": "m", "op": "test.mix", "inputs": {"a": "a", "b": "b.image"}},
        {"id": "a", "op": "test.solid"},
        {"id": "b", "op": "test.solid", "params": {"value": 0.2}},
    ]})
    plan = validate(wf)
    assert [p.node.id for p in plan.nodes] == ["a", "b", "m"]
    assert plan.node("b").params == {"value": 0.2, "width": 8, "height": 8}


def test_all_errors_reported_together():
    msgs = errors_of({"nodes": [
        {"id": "a", "op": "test.solidd"},                                     # unknown op
        {"id": "b", "op": "test.solid", "params": {"value": 2.0}},            # out of range
        {"id": "c", "op": "test.solid", "params": {"width": "wide"}},         # wrong type
        {"id": "d", "op": "test.solid", "params": {"valu": 0.1}},             # unknown param
        {"id": "e", "op": "test.mix", "inputs": {"a": "b"}},                  # missing input b
        {"id": "f", "op": "test.scale", "inputs": {"image": "b", "extra": "b"}},  # extra input
        {"id": "g", "op": "test.scale", "inputs": {"image": "nowhere"}},      # unknown node
        {"id": "h", "op": "test.scale", "inputs": {"image": "m.mask"}},       # to_mask gives Mask
        {"id": "m", "op": "test.to_mask", "inputs": {"image": "b"}},
        {"id": "b", "op": "test.solid"},                                      # duplicate id
    ]})
    text = "\n".join(msgs)
    assert "node 'a': unknown op 'test.solidd'; did you mean 'test.solid'" in text
    assert "node 'b', 'value': Input should be less than or equal to 1, got 2.0" in text
    assert "node 'c', 'width': Input should be a valid integer" in text
    assert "node 'd', 'valu': unknown param; did you mean 'value'?" in text
    assert "node 'e', 'b': missing input of type Image" in text
    assert "node 'f', 'extra': unknown input" in text
    assert "node 'g', 'image': references unknown node 'nowhere'" in text
    assert "node 'h', 'image': type mismatch: 'm.mask' gives Mask, this input takes Image" in text
    assert "node 'b': duplicate node id" in text
    assert len(msgs) == 9


def test_cycle_names_its_nodes():
    msgs = errors_of({"nodes": [
        {"id": "src", "op": "test.solid"},
        {"id": "x", "op": "test.mix", "inputs": {"a": "src", "b": "z"}},
        {"id": "y", "op": "test.scale", "inputs": {"image": "x"}},
        {"id": "z", "op": "test.scale", "inputs": {"image": "y"}},
    ]})
    assert len(msgs) == 1 and msgs[0].startswith("node '")
    assert "cycle:" in msgs[0]
    for n in ("x", "y", "z"):
        assert n in msgs[0].split("cycle:")[1]
    assert "src" not in msgs[0].split("cycle:")[1]


def test_missing_input_file(tmp_path):
    msgs = errors_of({"nodes": [{"id": "r", "op": "test.read", "params": {"path": str(tmp_path / "nope.png")}}]})
    assert msgs == [f"node 'r', 'path': input file not found: {tmp_path / 'nope.png'}"]


def test_relative_files_resolve_against_the_workflow_folder(tmp_path):
    (tmp_path / "in.bin").write_bytes(b"\x80")
    (tmp_path / "wf.yaml").write_text("nodes:\n  - {id: r, op: test.read, params: {path: in.bin}}\n")
    plan = validate(load_workflow(tmp_path / "wf.yaml"))
    assert plan.node("r").params["path"] == str(tmp_path / "in.bin")


def test_outputs_are_checked():
    msgs = errors_of({"nodes": [{"id": "a", "op": "test.solid"}],
                      "outputs": {"a.gif": "a", "b.png": "zz", "../up.png": "a", "c.png": "a.nope"}})
    text = "\n".join(msgs)
    assert "output 'a.gif': unsupported extension" in text
    assert "output 'b.png' references unknown node 'zz'" in text
    assert "give a plain file name" in text
    assert "'a' has no output 'nope'" in text


def test_shape_errors_and_yaml_problems(tmp_path):
    with pytest.raises(WorkflowError, match="nodes: is required"):
        parse_workflow({"seed": 1})
    p = tmp_path / "dup.yaml"
    p.write_text("nodes:\n  - id: a\n    op: test.solid\n    op: test.scale\n")
    with pytest.raises(WorkflowError, match="duplicate key 'op'"):
        load_workflow(p)
    with pytest.raises(WorkflowError, match="workflow file not found"):
        load_workflow(tmp_path / "missing.yaml")
    with pytest.raises(WorkflowError, match=r"node 'has space': id: use letters"):
        parse_workflow({"nodes": [{"id": "has space", "op": "test.solid"}]})


def test_list_inputs_accept_several_refs_and_reject_lists_for_single_inputs():
    plan = validate(parse_workflow({"nodes": [
        {"id": "a", "op": "test.solid"}, {"id": "b", "op": "test.solid"},
        {"id": "s", "op": "test.stack", "inputs": {"images": ["a", "b"]}},
    ]}))
    assert len(plan.node("s").inputs["images"]) == 2
    msgs = errors_of({"nodes": [{"id": "a", "op": "test.solid"},
                                {"id": "s", "op": "test.scale", "inputs": {"image": ["a", "a"]}}]})
    assert msgs == ["node 's', 'image': takes one Image, got a list of 2 references"]


def test_builder_makes_the_same_model_as_yaml():
    from strata.workflow.builder import WorkflowBuilder

    b = WorkflowBuilder(name="t", seed=3)
    a = b.add("test.solid", value=0.25)
    s = b.add("test.scale", image=a, factor=2.0)
    b.output("out.png", s)
    wf = b.build()
    same = parse_workflow({"name": "t", "seed": 3, "nodes": [
        {"id": "solid", "op": "test.solid", "params": {"value": 0.25}},
        {"id": "scale", "op": "test.scale", "inputs": {"image": "solid"}, "params": {"factor": 2.0}},
    ], "outputs": {"out.png": "scale"}})
    assert wf.canonical_json() == same.canonical_json()
    assert [p.node.id for p in validate(wf).nodes] == ["solid", "scale"]
