"""Build workflows from Python: the same :class:`Workflow` model the YAML files produce.

    b = WorkflowBuilder(name="poster", seed=7)
    photo = b.add("io.sample_image", name="astronaut")
    warm = b.add("enhance.white_balance", image=photo, temperature=0.2)
    b.output("poster.png", warm)
    workflow = b.build()

Keyword arguments that are :class:`NodeRef` (or lists of them) become inputs; everything
else becomes params. Which is which is decided by the value, so the builder needs no
registry; :func:`strata.workflow.validate.validate` checks the result against the schemas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strata.workflow.spec import NodeDef, Workflow


@dataclass(frozen=True)
class NodeRef:
    """A reference to a node's output, returned by :meth:`WorkflowBuilder.add`."""

    node: str
    output: str | None = None

    def __getattr__(self, name: str) -> "NodeRef":
        # ref.mask → the node's "mask" output; dunder lookups must not turn into refs.
        if name.startswith("__"):
            raise AttributeError(name)
        return NodeRef(self.node, name)

    def __str__(self) -> str:
        return self.node if self.output is None else f"{self.node}.{self.output}"


class WorkflowBuilder:
    """Accumulates nodes; :meth:`build` returns a :class:`Workflow`."""

    def __init__(self, *, name: str = "workflow", seed: int = 0, metadata: dict[str, Any] | None = None):
        self._name = name
        self._seed = seed
        self._metadata = dict(metadata or {})
        self._nodes: list[NodeDef] = []
        self._outputs: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def add(self, op: str, *, id: str | None = None, cache: bool = True, **kwargs: Any) -> NodeRef:
        """Add a node running ``op``; returns a reference to its output(s).

        Args:
            op: the op id, e.g. ``"composite.blend"``.
            id: node id (default: the op's short name plus a counter, e.g. ``blend_2``).
            cache: False to always execute this node.
            **kwargs: inputs (NodeRef values) and params (anything else).
        """
        if id is None:
            short = op.rsplit(".", 1)[-1]
            self._counts[short] = self._counts.get(short, 0) + 1
            id = short if self._counts[short] == 1 else f"{short}_{self._counts[short]}"
        inputs: dict[str, str | list[str]] = {}
        params: dict[str, Any] = {}
        for key, value in kwargs.items():
            if isinstance(value, NodeRef):
                inputs[key] = str(value)
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, NodeRef) for v in value):
                inputs[key] = [str(v) for v in value]
            else:
                params[key] = value
        self._nodes.append(NodeDef(id=id, op=op, inputs=inputs, params=params, cache=cache))
        return NodeRef(id)

    def output(self, filename: str, ref: NodeRef) -> None:
        """Write ``ref`` to ``filename`` (format from the extension) when the workflow runs."""
        self._outputs[filename] = str(ref)

    def build(self) -> Workflow:
        return Workflow(
            name=self._name, seed=self._seed, metadata=self._metadata, nodes=list(self._nodes), outputs=dict(self._outputs)
        )
