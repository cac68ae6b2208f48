"""Validate a whole workflow before anything runs, reporting every problem at once.

Checks, each reported with the node and param it concerns: duplicate ids, unknown ops (with
the nearest names), missing / unknown inputs, references to unknown nodes or outputs, type
mismatches between a connected output and an input, params of the wrong type or out of range
(pydantic, from the op's declaration), unknown params (with the nearest names), cycles (naming
the nodes in them), input files that do not exist, and bad ``outputs`` entries.

The result is a :class:`Plan`: the nodes in execution order with their validated params and
resolved connections — the executor runs a Plan, never a raw workflow.
"""

from __future__ import annotations

import difflib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pydantic

from strata.errors import Issue, WorkflowError
from strata.workflow.node import REGISTRY, NodeSpec, PortSpec, load_builtin_ops, type_name
from strata.media.image_io import EXTENSIONS as IMAGE_EXTENSIONS
from strata.media.writers import WRITERS
from strata.workflow.spec import NodeDef, Workflow, split_ref

# Output file formats strata can write, by extension: images (strata.media.image_io) and the
# rest (strata.media.writers). What each non-image format holds is checked here, so a mismatch
# fails before anything runs.
OUTPUT_EXTENSIONS = set(IMAGE_EXTENSIONS) | set(WRITERS)
OUTPUT_VALUE_TYPES = {suffix: writer.value_type for suffix, writer in WRITERS.items()}


@dataclass(frozen=True)
class Source:
    """Where an input value comes from: ``node``'s output ``output``."""

    node: str
    output: str


@dataclass(frozen=True)
class PlannedNode:
    """A node ready to run: its definition, spec, validated params and input sources."""

    node: NodeDef
    spec: NodeSpec
    params: dict[str, Any]  # validated, normalized, JSON-serializable
    inputs: dict[str, list[Source] | Source]  # list for list-typed inputs

    def sources(self) -> list[Source]:
        """Every upstream output this node reads, flattened."""
        out: list[Source] = []
        for v in self.inputs.values():
            out.extend(v if isinstance(v, list) else [v])
        return out


@dataclass(frozen=True)
class Plan:
    """A validated workflow: nodes in topological order, and the outputs to write."""

    workflow: Workflow
    nodes: tuple[PlannedNode, ...]
    outputs: dict[str, Source]

    def node(self, node_id: str) -> PlannedNode:
        for n in self.nodes:
            if n.node.id == node_id:
                return n
        raise KeyError(node_id)

    def descendants(self, node_id: str) -> set[str]:
        """Ids of every node that (transitively) consumes ``node_id``'s outputs."""
        found: set[str] = set()
        frontier = {node_id}
        while frontier:
            nxt = set()
            for pn in self.nodes:
                if pn.node.id in found:
                    continue
                if any(s.node in frontier for s in pn.sources()):
                    found.add(pn.node.id)
                    nxt.add(pn.node.id)
            frontier = nxt
        return found


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _is_list(tp: Any) -> bool:
    return get_origin(tp) in (list, tuple)


def _item(tp: Any) -> Any:
    return get_args(tp)[0] if _is_list(tp) else tp


def _compatible(out_tp: Any, in_tp: Any) -> bool:
    if out_tp is Any or in_tp is Any:
        return True
    if get_origin(in_tp) in (Union, types.UnionType):
        return any(_compatible(out_tp, a) for a in get_args(in_tp))
    return out_tp == in_tp


# "strata:luts/film_warm.cube" names a file shipped inside the package, so a workflow that uses
# one runs from any folder (and from an image's embedded copy of the workflow).
PACKAGE_SCHEME = "strata:"


def _resolve_file(value: str, base_dir: str | None) -> Path:
    if value.startswith(PACKAGE_SCHEME):
        return Path(__file__).resolve().parents[1] / "assets" / value[len(PACKAGE_SCHEME):]
    p = Path(value).expanduser()
    if not p.is_absolute() and base_dir:
        p = Path(base_dir) / p
    return p


def _check_params(nd: NodeDef, spec: NodeSpec, wf: Workflow, issues: list[Issue]) -> dict[str, Any]:
    raw = dict(nd.params)
    fields = spec.params_model.model_fields
    if "seed" in fields and "seed" not in raw:
        raw["seed"] = wf.seed
    for name in spec.file_params:
        if isinstance(raw.get(name), str):
            raw[name] = str(_resolve_file(raw[name], wf.base_dir))
    try:
        model = spec.params_model.model_validate(raw)
    except pydantic.ValidationError as exc:
        for err in exc.errors():
            param = str(err["loc"][0]) if err["loc"] else None
            if err["type"] == "extra_forbidden":
                names = list(fields)
                msg = f"unknown param{_suggest(param or '', names)} (params of {spec.op}: {', '.join(names) or 'none'})"
            elif err["type"] == "missing":
                msg = "required param is missing" + (f" ({fields[param].description})" if param in fields and fields[param].description else "")
            else:
                where = ".".join(str(x) for x in err["loc"][1:])
                msg = f"{err['msg']}, got {err.get('input')!r}" + (f" (at {where})" if where else "")
            issues.append(Issue(msg, node=nd.id, param=param))
        return {}
    params = model.model_dump(mode="json")
    for name in spec.file_params:
        value = params.get(name)
        if value is not None and not Path(value).is_file():
            issues.append(Issue(f"input file not found: {value}", node=nd.id, param=name))
    return params


def _check_inputs(
    nd: NodeDef, spec: NodeSpec, specs: dict[str, NodeSpec | None], issues: list[Issue]
) -> dict[str, list[Source] | Source]:
    resolved: dict[str, list[Source] | Source] = {}
    ports = {p.name: p for p in spec.inputs}
    for name in nd.inputs:
        if name not in ports:
            issues.append(
                Issue(f"unknown input{_suggest(name, list(ports))} (inputs of {spec.op}: {', '.join(ports) or 'none'})",
                      node=nd.id, param=name)
            )
    for port in spec.inputs:
        refs = nd.inputs.get(port.name)
        if refs is None:
            if not port.optional:
                issues.append(Issue(f"missing input of type {port.type_name}; connect another node's output",
                                    node=nd.id, param=port.name))
            continue
        ref_list = refs if isinstance(refs, list) else [refs]
        if isinstance(refs, list) and not _is_list(port.type):
            issues.append(Issue(f"takes one {port.type_name}, got a list of {len(refs)} references", node=nd.id, param=port.name))
            continue
        sources: list[Source] = []
        for ref in ref_list:
            src = _resolve_ref(ref, nd, port, specs, issues)
            if src is not None:
                sources.append(src)
        if len(sources) == len(ref_list):
            resolved[port.name] = sources if _is_list(port.type) else sources[0]
    return resolved


def _resolve_ref(ref: str, nd: NodeDef, port: PortSpec, specs: dict[str, NodeSpec | None], issues: list[Issue]) -> Source | None:
    src_id, out_name = split_ref(ref)
    if src_id not in specs:
        issues.append(Issue(f"references unknown node '{src_id}'{_suggest(src_id, list(specs))}", node=nd.id, param=port.name))
        return None
    src_spec = specs[src_id]
    if src_spec is None:  # unknown op: already reported
        return None
    outs = {o.name: o for o in src_spec.outputs}
    if out_name is None:
        if len(outs) != 1:
            issues.append(Issue(f"'{src_id}' has several outputs ({', '.join(outs)}); write '{src_id}.<output>'",
                                node=nd.id, param=port.name))
            return None
        out_name = next(iter(outs))
    if out_name not in outs:
        issues.append(Issue(f"'{src_id}' has no output '{out_name}'{_suggest(out_name, list(outs))} (outputs: {', '.join(outs)})",
                            node=nd.id, param=port.name))
        return None
    out_tp = outs[out_name].type
    in_tp = port.type
    ok = _compatible(out_tp, in_tp) or (_is_list(in_tp) and (_compatible(out_tp, _item(in_tp))))
    if not ok:
        issues.append(Issue(f"type mismatch: '{src_id}.{out_name}' gives {type_name(out_tp)}, this input takes {type_name(in_tp)}",
                            node=nd.id, param=port.name))
        return None
    return Source(src_id, out_name)


def _topological(nodes: list[NodeDef], deps: dict[str, set[str]], issues: list[Issue]) -> list[str]:
    order: list[str] = []
    remaining = {n.id: set(deps.get(n.id, set())) for n in nodes}
    while True:
        # Declaration order among ready nodes keeps runs (and event logs) predictable.
        ready = list(dict.fromkeys(n.id for n in nodes if n.id in remaining and not remaining[n.id]))
        if not ready:
            break
        for nid in ready:
            order.append(nid)
            del remaining[nid]
        for pending in remaining.values():
            pending.difference_update(ready)
    if remaining:
        cycle = _find_cycle(remaining)
        issues.append(Issue("cycle: " + " → ".join(cycle + cycle[:1]) + "; a node cannot depend on its own output",
                            node=cycle[0]))
    return order


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    # Walk dependencies from any stuck node until a node repeats: that loop is a cycle.
    path: list[str] = []
    node = next(iter(graph))
    while node not in path:
        path.append(node)
        node = next(iter(sorted(d for d in graph[node] if d in graph)))
    return path[path.index(node):][::-1]


def validate(workflow: Workflow) -> Plan:
    """Check ``workflow`` against the op registry; return a runnable :class:`Plan`.

    Raises:
        WorkflowError: with every issue found (not only the first).
    """
    load_builtin_ops()
    issues: list[Issue] = []
    seen: set[str] = set()
    for nd in workflow.nodes:
        if nd.id in seen:
            issues.append(Issue("duplicate node id; every node needs its own id", node=nd.id))
        seen.add(nd.id)
    if not workflow.nodes:
        issues.append(Issue("the workflow has no nodes"))

    specs: dict[str, NodeSpec | None] = {}
    for nd in workflow.nodes:
        spec = REGISTRY.get(nd.op)
        if spec is None:
            issues.append(Issue(f"unknown op '{nd.op}'{_suggest(nd.op, list(REGISTRY))} (`strata ops` lists them)", node=nd.id))
        specs.setdefault(nd.id, spec)

    planned: dict[str, PlannedNode] = {}
    deps: dict[str, set[str]] = {}
    for nd in workflow.nodes:
        spec = specs.get(nd.id)
        if spec is None:
            deps[nd.id] = {split_ref(r)[0] for refs in nd.inputs.values() for r in (refs if isinstance(refs, list) else [refs])}
            continue
        inputs = _check_inputs(nd, spec, specs, issues)
        params = _check_params(nd, spec, workflow, issues)
        deps[nd.id] = {split_ref(r)[0] for refs in nd.inputs.values() for r in (refs if isinstance(refs, list) else [refs])} & set(specs)
        planned[nd.id] = PlannedNode(nd, spec, params, inputs)

    order = _topological(workflow.nodes, deps, issues)

    outputs: dict[str, Source] = {}
    for filename, ref in workflow.outputs.items():
        if Path(filename).suffix.lower() not in OUTPUT_EXTENSIONS:
            issues.append(Issue(f"output '{filename}': unsupported extension; use one of {', '.join(sorted(OUTPUT_EXTENSIONS))}"))
            continue
        if Path(filename).name != filename:
            issues.append(Issue(f"output '{filename}': give a plain file name (no folders); choose the folder with --out"))
            continue
        src_id, out_name = split_ref(ref)
        spec = specs.get(src_id)
        if src_id not in specs:
            issues.append(Issue(f"output '{filename}' references unknown node '{src_id}'{_suggest(src_id, list(specs))}"))
            continue
        if spec is None:
            continue
        outs = {o.name: o for o in spec.outputs}
        name = out_name or (next(iter(outs)) if len(outs) == 1 else None)
        if name not in outs:
            issues.append(Issue(f"output '{filename}': '{src_id}' has no output '{out_name}' (outputs: {', '.join(outs)})"))
            continue
        want = OUTPUT_VALUE_TYPES.get(Path(filename).suffix.lower())
        if want and outs[name].type_name not in (want, f"list[{want}]"):
            issues.append(Issue(f"output '{filename}' holds {want}, but '{src_id}' gives {outs[name].type_name}; "
                                f"connect a node that makes {want}"))
            continue
        outputs[filename] = Source(src_id, name)

    if issues:
        raise WorkflowError(issues)
    return Plan(workflow, tuple(planned[i] for i in order), outputs)
