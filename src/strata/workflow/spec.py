"""The workflow spec: one pydantic model behind YAML files, JSON files and the Python builder.

A workflow is a list of nodes. Each node has an ``id``, an ``op`` (a registered node type),
``inputs`` that reference other nodes' outputs by name (``"node_id.output"``, or just
``"node_id"`` when that node has one output; a list of references for list inputs), and
``params`` (plain JSON values). Top level: ``seed`` (filled into every node that takes a
``seed`` param and does not set one), ``outputs`` (file name → reference: what ``strata run``
writes) and free-form ``metadata``.

    name: poster
    seed: 7
    nodes:
      - {id: photo, op: io.sample_image, params: {name: astronaut}}
      - {id: warm,  op: enhance.white_balance, inputs: {image: photo}, params: {temperature: 0.2}}
    outputs:
      poster.png: warm.image
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pydantic
import yaml

from strata.errors import Issue, WorkflowError

Ref = str


class NodeDef(pydantic.BaseModel):
    """One node of a workflow (see the module docstring)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    id: str = pydantic.Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    op: str
    inputs: dict[str, Ref | list[Ref]] = pydantic.Field(default_factory=dict)
    params: dict[str, Any] = pydantic.Field(default_factory=dict)
    cache: bool = pydantic.Field(True, description="false = always execute this node (never reuse a stored result)")


class Workflow(pydantic.BaseModel):
    """A whole workflow: nodes, seed, outputs, metadata."""

    model_config = pydantic.ConfigDict(extra="forbid")

    version: int = 1
    name: str = "workflow"
    seed: int = pydantic.Field(0, ge=0, le=2**63 - 1)
    metadata: dict[str, Any] = pydantic.Field(default_factory=dict)
    nodes: list[NodeDef]
    outputs: dict[str, Ref] = pydantic.Field(default_factory=dict)
    # Directory that relative file params are resolved against (the workflow file's folder).
    base_dir: str | None = pydantic.Field(None, exclude=True)

    def node(self, node_id: str) -> NodeDef:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable form (what provenance embeds and the store records)."""
        return self.model_dump(mode="json", exclude_defaults=False)

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def content_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def with_param(self, node_id: str, param: str, value: Any) -> "Workflow":
        """A copy with one param changed (what ``strata rerun --set`` does)."""
        data = self.model_dump(mode="json")
        for n in data["nodes"]:
            if n["id"] == node_id:
                n["params"][param] = value
                break
        else:
            ids = ", ".join(n["id"] for n in data["nodes"])
            raise WorkflowError(Issue(f"no node '{node_id}' in this workflow (nodes: {ids})", node=node_id))
        return Workflow.model_validate({**data, "base_dir": self.base_dir})


def split_ref(ref: Ref) -> tuple[str, str | None]:
    """``"a.image"`` → ``("a", "image")``; ``"a"`` → ``("a", None)`` (the node's only output)."""
    node_id, _, output = ref.partition(".")
    return node_id, (output or None)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate mapping keys (plain YAML keeps the last silently)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark
            )
        seen[key] = loader.construct_object(value_node, deep=deep)
    return seen


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_workflow(data: dict[str, Any], *, base_dir: str | Path | None = None) -> Workflow:
    """Validate the *shape* of a workflow dict (node semantics are checked by :func:`validate`).

    Raises:
        WorkflowError: listing every shape problem (missing ``nodes``, bad ids, unknown keys...).
    """
    if not isinstance(data, dict):
        raise WorkflowError(f"a workflow must be a mapping with a 'nodes' list, got {type(data).__name__}")
    try:
        wf = Workflow.model_validate(data)
    except pydantic.ValidationError as exc:
        issues = []
        for err in exc.errors():
            loc = list(err["loc"])
            node = None
            if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
                nodes = data.get("nodes") or []
                raw = nodes[loc[1]] if loc[1] < len(nodes) else None
                node = raw.get("id") if isinstance(raw, dict) else None
                node = node or f"#{loc[1] + 1}"
                loc = loc[2:]
            msg = "is required" if err["type"] == "missing" else err["msg"]
            if err["type"] == "string_pattern_mismatch" and loc == ["id"]:
                msg = "use letters, digits, '_' and '-', starting with a letter (dots separate node and output)"
            if err["type"] == "extra_forbidden":
                msg = f"unknown key (allowed: {', '.join((NodeDef if node else Workflow).model_fields)})"
            issues.append(Issue(f"{'.'.join(map(str, loc)) or 'value'}: {msg}", node=node))
        raise WorkflowError(issues) from None
    if base_dir is not None:
        wf = wf.model_copy(update={"base_dir": str(base_dir)})
    return wf


def load_workflow(path: str | Path) -> Workflow:
    """Load a workflow from a ``.yaml``/``.yml``/``.json`` file.

    Raises:
        WorkflowError: if the file is missing, unparsable, or has the wrong shape.
    """
    p = Path(path)
    if not p.is_file():
        raise WorkflowError(f"workflow file not found: {p} (give a .yaml or .json workflow, or an image strata made)")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_UniqueKeyLoader)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise WorkflowError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}") from None
    return parse_workflow(data, base_dir=p.resolve().parent)
