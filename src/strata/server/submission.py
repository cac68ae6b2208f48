"""Workflow bodies from remote clients → checked, runnable plans.

A body is JSON (``application/json``) or YAML (``application/yaml``, ``text/yaml``). Either
the workflow itself, or an envelope ``{"workflow": {...}, "priority": 0, "no_cache": false}``.
YAML aliases are refused (a few lines of ``&a [*a, *a, ...]`` expand to gigabytes when
serialized); ``base_dir`` is refused (it would make relative paths resolve anywhere); file
params go through :func:`strata.server.security.resolve_remote_file`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any, Callable

import pydantic
import yaml

from strata.errors import Issue, WorkflowError
from strata.server.errors import ApiError
from strata.server.security import ASSET_SCHEME, resolve_remote_file
from strata.workflow.node import NodeSpec, load_builtin_ops
from strata.workflow.spec import _UniqueKeyLoader, parse_workflow
from strata.workflow.validate import Plan, validate

JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class JobOptions(pydantic.BaseModel):
    """Envelope fields of ``POST /api/jobs`` (also accepted as query parameters)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    workflow: dict[str, Any]
    priority: int = pydantic.Field(0, ge=-100, le=100, description="higher runs first; ties run in submission order")
    no_cache: bool = pydantic.Field(False, description="execute every node even if a stored result exists")
    parent_run: str | None = pydantic.Field(None, max_length=64, description="the run this one reruns with changes "
                                            "(recorded in the history, shown by `strata runs`)")


def parse_body(data: bytes, content_type: str) -> Any:
    """Decode a JSON or YAML body.

    Raises:
        ApiError: 415 for other content types, 400 for unparsable text or YAML aliases.
    """
    ctype = content_type.split(";")[0].strip().lower()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "bad_encoding", "the body is not UTF-8 text; send the workflow as UTF-8 JSON or YAML") from None
    if ctype in JSON_TYPES:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
    if ctype in YAML_TYPES:
        try:
            if any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=yaml.SafeLoader)):
                raise ApiError(400, "yaml_alias", "YAML aliases (*name) are not accepted over HTTP; write the values out")
            return yaml.load(text, Loader=_UniqueKeyLoader)
        except yaml.YAMLError as exc:
            raise ApiError(400, "bad_yaml", f"the body is not valid YAML: {exc}") from None
    raise ApiError(415, "unsupported_media_type", f"Content-Type '{ctype or 'none'}' is not accepted here; send the "
                   "workflow as application/json or application/yaml")


def job_options(body: Any, *, priority: int | None, no_cache: bool | None) -> JobOptions:
    """The envelope for a parsed body (a bare workflow gets the query-string options)."""
    if not isinstance(body, dict):
        raise ApiError(400, "bad_workflow", f"the body must be a mapping (a workflow or {{\"workflow\": ...}}), "
                       f"got {type(body).__name__}")
    if "workflow" not in body:
        body = {"workflow": body}
    if priority is not None:
        body = {**body, "priority": priority}
    if no_cache is not None:
        body = {**body, "no_cache": no_cache}
    try:
        return JobOptions.model_validate(body)
    except pydantic.ValidationError as exc:
        issues = [{"param": ".".join(map(str, e["loc"])), "message": e["msg"]} for e in exc.errors()]
        raise ApiError(400, "bad_request", "; ".join(f"{i['param']}: {i['message']}" for i in issues),
                       extra={"issues": issues}) from None


def prepare_plan(data: dict[str, Any], *, upload_path: Callable[[str], Path | None],
                 allowed_dirs: tuple[Path, ...], max_nodes: int) -> Plan:
    """Check a remote workflow dict and return its plan (nothing is run or written).

    Raises:
        ApiError: 400 ``base_dir``, 413 too many nodes, 403 refused file params.
        WorkflowError: the workflow is invalid (each issue names node and param).
    """
    if "base_dir" in data:
        raise ApiError(400, "bad_workflow", "'base_dir' cannot be set over HTTP; file params take asset:<sha256> "
                       "references to uploaded files")
    nodes = data.get("nodes")
    if isinstance(nodes, list) and len(nodes) > max_nodes:
        raise ApiError(413, "too_many_nodes", f"the workflow has {len(nodes)} nodes; this server accepts at most "
                       f"{max_nodes}")
    workflow = parse_workflow(data)
    registry = load_builtin_ops()
    refused: list[Issue] = []
    rewritten = workflow.model_dump(mode="json")
    for nd in rewritten["nodes"]:
        spec = registry.get(nd["op"])
        for name in file_params(spec) if spec is not None else ():
            value = nd["params"].get(name)
            if not isinstance(value, str):
                continue  # None = the op's default; other types fail validation below
            try:
                nd["params"][name] = resolve_remote_file(value, upload_path=upload_path, allowed_dirs=allowed_dirs)
            except ApiError as exc:
                refused.append(Issue(exc.message, node=nd["id"], param=name))
    if refused:
        raise ApiError(403, "path_not_allowed", "; ".join(map(str, refused)),
                       extra={"issues": [{"node": i.node, "param": i.param, "message": i.message} for i in refused]})
    # Run the rewritten params, but record the workflow as sent: the history, reruns and the
    # provenance in output files keep portable asset:<sha256> refs, not this server's paths.
    return dataclasses.replace(validate(parse_workflow(rewritten)), workflow=workflow)


@functools.lru_cache(maxsize=None)
def file_params(spec: NodeSpec) -> frozenset[str]:
    """Params of ``spec`` that name files: its declared ``file_params`` and, as a second line of
    defence, every param whose JSON Schema says ``format: path`` (``InputFile``), also inside
    ``anyOf`` (an optional file param is not always registered as a file param)."""
    names = set(spec.file_params)
    for name, prop in spec.params_schema().get("properties", {}).items():
        variants = [prop, *prop.get("anyOf", []), *prop.get("oneOf", [])]
        if any(isinstance(v, dict) and v.get("format") == "path" for v in variants):
            names.add(name)
    return frozenset(names)


def present_params(params: dict[str, Any], blob_dir: Path) -> dict[str, Any]:
    """``params`` for clients: stored-upload paths shown as the ``asset:<sha256>`` they came from."""
    prefix = str(blob_dir) + "/"
    out = {}
    for name, value in params.items():
        if isinstance(value, str) and value.startswith(prefix):
            value = ASSET_SCHEME + value[len(prefix):].replace("/", "")
        out[name] = value
    return out


def issues_json(exc: WorkflowError) -> list[dict[str, Any]]:
    """A WorkflowError's issues as JSON (node, param, message)."""
    return [{"node": i.node, "param": i.param, "message": i.message} for i in exc.issues]
