"""Nodes: an op (a pure function) plus its typed schema, declared once in the op's signature.

An op is declared like this::

    @node("edit.crop", layer="edit")
    def crop(image: Image, *,
             left: Annotated[int, Field(ge=0, description="left edge, px")] = 0,
             ...) -> Image:

- positional parameters are **inputs** (media values connected from other nodes); their
  annotation is the media type (``Image``, ``Mask``, ``list[Image]``; ``X | None`` = optional);
- keyword-only parameters are **params**: plain JSON values validated by pydantic from the
  annotation (bounds, choices via ``Literal``, ``description`` as the doc);
- the return annotation is the single output (named by ``output=``, default from its type), or
  ``outputs={name: type}`` with the op returning a dict.

Two keyword names are *injected* by the engine and are not params: ``progress`` (a callable
``progress(step, total, preview=None)``) and ``loaded_model`` (the model the registry resolves
for the node's declared ``model=`` capability; an op may also declare a ``model: str | None``
param naming which registered model to use). The function stays a plain function that Python
code can call directly.

Ops that take the same params (the generation ops' prompt, seed, steps, ...) declare them
once, in a *param group*: a function whose keyword-only parameters are declared like an op's.
``@node(..., params=group)`` (or a tuple of groups) adds them to the op's params; the op
receives them in its ``**kwargs`` (its own declaration of a name wins, e.g. another default).
Params are listed (and forms show them) in the order: the first group's, the op's own, the
other groups'. The registered function has the merged signature: a direct call checks names
and fills defaults like any call.

The CLI, server and JSON Schema export all read these specs, so a param is declared once.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Union, get_args, get_origin

import pydantic

from strata.errors import StrataError

LAYERS = ("io", "generate", "select", "edit", "composite", "enhance", "sound", "motion", "video")
INJECTED = ("progress", "loaded_model")


class _FileMarker:
    """Metadata marking a str param as a path to a file the node reads."""

    def __repr__(self) -> str:
        return "InputFile"


# A param naming a file the node reads: validation checks that the file exists, relative paths
# resolve against the workflow file's folder, and the cache key includes the file's content
# hash, so editing the file reruns the node. Use as ``path: InputFile`` (or inside Annotated).
InputFile = typing.Annotated[str, pydantic.Field(json_schema_extra={"format": "path"}), _FileMarker()]


@dataclass(frozen=True)
class PortSpec:
    """An input or output port: its name, media type, and whether it may be left unconnected."""

    name: str
    type: Any
    optional: bool = False
    doc: str = ""

    @property
    def type_name(self) -> str:
        return type_name(self.type)


@dataclass(frozen=True)
class NodeSpec:
    """Everything the engine knows about an op."""

    op: str
    fn: Callable[..., Any]
    layer: str
    version: int
    doc: str
    inputs: tuple[PortSpec, ...]
    outputs: tuple[PortSpec, ...]
    params_model: type[pydantic.BaseModel]
    model_capability: str | None = None
    wants_progress: bool = False
    file_params: tuple[str, ...] = field(default_factory=tuple)

    @property
    def param_names(self) -> list[str]:
        return list(self.params_model.model_fields)

    def params_schema(self) -> dict[str, Any]:
        """JSON Schema of the params (the server and UI build forms from this)."""
        return self.params_model.model_json_schema()

    def json_schema(self) -> dict[str, Any]:
        """The whole node schema as a JSON-serializable dict."""
        return {
            "op": self.op,
            "layer": self.layer,
            "version": self.version,
            "description": self.doc,
            "inputs": {p.name: {"type": p.type_name, "optional": p.optional} for p in self.inputs},
            "outputs": {p.name: {"type": p.type_name} for p in self.outputs},
            "params": self.params_schema(),
            "model": self.model_capability,
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


REGISTRY: dict[str, NodeSpec] = {}


def type_name(tp: Any) -> str:
    """A short, stable name for a media type ('Image', 'list[Image]', 'Mask | None')."""
    origin = get_origin(tp)
    if origin in (list, tuple):
        return f"list[{type_name(get_args(tp)[0])}]"
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) < len(get_args(tp)) and len(args) == 1:
            return args[0], True
    return tp, False


def _default_output_name(tp: Any) -> str:
    if get_origin(tp) in (list, tuple):
        return _default_output_name(get_args(tp)[0]) + "s"
    return getattr(tp, "__name__", "value").lower()


def _is_file_param(annotation: Any) -> bool:
    """True for ``InputFile``, also nested in Annotated or in ``InputFile | None``."""
    if get_origin(annotation) is typing.Annotated:
        if any(isinstance(m, _FileMarker) for m in annotation.__metadata__):
            return True
        return _is_file_param(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_file_param(a) for a in get_args(annotation) if a is not type(None))
    return False


def node(
    op: str,
    *,
    layer: str,
    version: int = 1,
    output: str | None = None,
    outputs: dict[str, Any] | None = None,
    model: str | None = None,
    params: Callable[..., Any] | tuple[Callable[..., Any], ...] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` as the op ``op`` (see the module docstring for the conventions).

    Args:
        op: dotted id, ``layer.name`` by convention (e.g. ``"composite.blend"``).
        layer: one of :data:`LAYERS`.
        version: bump whenever the op's output for the same inputs changes; part of cache keys.
        output: name of the single output (default: derived from the return type).
        outputs: ``{name: type}`` for ops returning several values as a dict.
        model: capability the op needs from the model registry (e.g. ``"text-to-image"``).
        params: a param group (or groups) shared with other ops; ``fn`` takes them as ``**kwargs``.
    """
    if layer not in LAYERS:
        raise StrataError(f"op {op!r}: unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if op in REGISTRY and inspect.unwrap(REGISTRY[op].fn) is not fn:
            raise StrataError(f"op {op!r} is registered twice ({REGISTRY[op].fn.__module__} and {fn.__module__})")
        hints = typing.get_type_hints(fn, include_extras=True)
        sig = inspect.signature(fn)
        if params is not None:
            groups = params if isinstance(params, tuple) else (params,)
            fn = _with_groups(op, fn, sig, groups)
            hints = {k: v for g in groups for k, v in typing.get_type_hints(g, include_extras=True).items()} | hints
            sig = inspect.signature(fn)
        inputs: list[PortSpec] = []
        fields: dict[str, Any] = {}
        file_params: list[str] = []
        wants_progress = False
        for name, p in sig.parameters.items():
            ann = hints.get(name, Any)
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                base, optional = _strip_optional(ann)
                inputs.append(PortSpec(name, base, optional or p.default is None))
            elif p.kind == p.KEYWORD_ONLY:
                if name in INJECTED:
                    wants_progress = wants_progress or name == "progress"
                    continue
                default = ... if p.default is p.empty else p.default
                fields[name] = (ann, default)
                if _is_file_param(ann):
                    file_params.append(name)
            else:
                raise StrataError(f"op {op!r}: *args/**kwargs are not allowed in op signatures "
                                  "(**kwargs only receives a param group: @node(..., params=group))")
        if outputs is not None:
            outs = tuple(PortSpec(n, t) for n, t in outputs.items())
        else:
            ret = hints.get("return")
            if ret is None:
                raise StrataError(f"op {op!r}: annotate the return type (the node's output)")
            outs = (PortSpec(output or _default_output_name(ret), ret),)
        params_model = pydantic.create_model(
            "Params_" + op.replace(".", "_"),
            __config__=pydantic.ConfigDict(extra="forbid", strict=False),
            **fields,
        )
        spec = NodeSpec(op=op, fn=fn, layer=layer, version=version, doc=inspect.getdoc(fn) or "", inputs=tuple(inputs),
                        outputs=outs, params_model=params_model, model_capability=model,
                        wants_progress=wants_progress, file_params=tuple(file_params))
        REGISTRY[op] = spec
        fn.__strata_node__ = spec  # type: ignore[attr-defined]
        return fn

    return register


def _with_groups(op: str, fn: Callable[..., Any], sig: inspect.Signature,
                 groups: tuple[Callable[..., Any], ...]) -> Callable[..., Any]:
    """``fn`` (which ends in ``**kwargs``) as a function with the groups' params in its signature.

    Order: the first group's params (an op's own declaration of one of them takes its place), the
    op's other keyword params, then the other groups'. A call binds its arguments to that
    signature — unknown names raise TypeError, missing ones get their defaults — and passes them
    all to ``fn`` by name.
    """
    own = sig.parameters
    shared = [[p for p in inspect.signature(g).parameters.values()] for g in groups]
    names = {p.name for group in shared for p in group}
    if not any(p.kind == p.VAR_KEYWORD for p in own.values()) or any(
            p.kind != p.KEYWORD_ONLY for group in shared for p in group):
        raise StrataError(f"op {op!r}: a param group's params must be keyword-only, and the op must "
                          "take them as **kwargs")
    positional = [p for p in own.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    clash = sorted(names & {p.name for p in positional})
    if clash:
        raise StrataError(f"op {op!r}: input(s) {', '.join(clash)} have the name of a param of its group")
    own_keyword = [p for p in own.values() if p.kind == p.KEYWORD_ONLY and p.name not in names]
    first, *rest = ([own.get(p.name, p) for p in group] for group in shared)
    merged = sig.replace(parameters=positional + first + own_keyword + [p for group in rest for p in group])

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        bound = merged.bind(*args, **kwargs)
        bound.apply_defaults()
        return fn(**bound.arguments)

    call.__signature__ = merged  # type: ignore[attr-defined]
    return call


_builtins_loaded = False


def load_builtin_ops() -> dict[str, NodeSpec]:
    """Import every built-in op module so that their nodes are registered; return the registry.

    Cheap after the first call. Op modules keep heavy imports (torch, skimage) inside the
    functions that need them, so listing or validating never pays for them.
    """
    global _builtins_loaded
    if not _builtins_loaded:
        import importlib
        import pkgutil

        import strata.ops

        for info in pkgutil.iter_modules(strata.ops.__path__):
            importlib.import_module(f"strata.ops.{info.name}")
        _builtins_loaded = True
    return REGISTRY


__all__ = ["node", "NodeSpec", "PortSpec", "InputFile", "REGISTRY", "LAYERS", "load_builtin_ops", "Literal"]
