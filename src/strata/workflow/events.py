"""The one event stream: typed events from the executor to pluggable sinks.

A sink is any callable taking an :class:`Event`. The CLI's progress display, ``--json``
lines, the run log and (later) the server's websocket are all sinks of the same stream.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, TextIO


@dataclass(frozen=True)
class Event:
    """Base event; ``kind`` names the subclass in serialized form."""

    run_id: str

    @property
    def kind(self) -> str:
        return _KINDS[type(self)]

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "preview"}
        return {"event": self.kind, "time": time.time(), **data}


@dataclass(frozen=True)
class RunStarted(Event):
    """A run began: the workflow's name and how many nodes its plan has. One per run, before
    any node event."""

    workflow: str
    nodes: int


@dataclass(frozen=True)
class NodeEvent(Event):
    """Base of the events about one node of a run: which node, running which op."""

    node: str
    op: str


@dataclass(frozen=True)
class NodeCached(NodeEvent):
    """The node's result was found under ``cache_key``: it does not run."""

    cache_key: str


@dataclass(frozen=True)
class NodeStarted(NodeEvent):
    """The node is running (its result will be stored under ``cache_key``); progress events
    may follow, then finished or failed (nothing more if the run is interrupted)."""

    cache_key: str


@dataclass(frozen=True)
class NodeProgress(Event):
    """A running node finished ``step`` of ``total`` steps (e.g. a denoising step), with an
    optional preview of its result so far."""

    node: str
    step: int
    total: int
    # Optional preview image (strata.media.Image); sinks that serialize drop it.
    preview: Any = field(default=None, compare=False)
    message: str | None = None  # what the node is doing, when a step takes unusually long


@dataclass(frozen=True)
class NodeWarning(Event):
    """Something the user should know that did not stop the node (e.g. a prompt truncated to
    the text encoder's limit): the CLI prints it, the studio shows it on the node."""

    node: str
    message: str


@dataclass(frozen=True)
class NodeFinished(NodeEvent):
    """The node ran in ``duration_s`` seconds; ``outputs`` maps its output names to asset ids."""

    duration_s: float
    outputs: dict[str, Any]


@dataclass(frozen=True)
class NodeFailed(NodeEvent):
    """The node raised; ``error`` says what went wrong and how to fix it. The nodes that depend
    on it are skipped; the others go on."""

    error: str


@dataclass(frozen=True)
class NodeSkipped(NodeEvent):
    """The node did not run because a node it depends on did not finish; ``reason`` names
    those nodes. A later run of the same workflow retries it (finished nodes come from the
    cache)."""

    reason: str


@dataclass(frozen=True)
class OutputWritten(Event):
    """A file of the workflow's ``outputs:`` was written (atomically) at ``path``, from that
    node's output."""

    path: str
    node: str
    output: str


@dataclass(frozen=True)
class RunFinished(Event):
    """The run ended — ok, failed or interrupted — with which nodes ran, came from the cache,
    failed or were skipped."""

    status: str  # "ok" | "failed" | "interrupted"
    duration_s: float
    executed: list[str]
    cached: list[str]
    failed: list[str]
    skipped: list[str]


_KINDS = {
    RunStarted: "run_started",
    NodeCached: "node_cached",
    NodeStarted: "node_started",
    NodeProgress: "node_progress",
    NodeWarning: "node_warning",
    NodeFinished: "node_finished",
    NodeFailed: "node_failed",
    NodeSkipped: "node_skipped",
    OutputWritten: "output_written",
    RunFinished: "run_finished",
}

Sink = Callable[[Event], None]


class EventBus:
    """Fans events out to sinks. A sink that raises is reported once and then dropped,
    so a broken display can never fail a run."""

    def __init__(self, sinks: list[Sink] | None = None):
        self.sinks: list[Sink] = list(sinks or [])

    def emit(self, event: Event) -> None:
        for sink in list(self.sinks):
            try:
                sink(event)
            except Exception as exc:  # noqa: BLE001 - isolating sinks is the point
                self.sinks.remove(sink)
                print(f"strata: event sink {sink!r} failed and was removed: {exc}", file=sys.stderr)


class JsonLinesSink:
    """Writes one JSON object per event (``strata run --json``)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def __call__(self, event: Event) -> None:
        self.stream.write(json.dumps(event.to_json(), default=str) + "\n")
        self.stream.flush()


class CollectSink(list):
    """Keeps every event in a list (tests, benchmarks)."""

    def __call__(self, event: Event) -> None:
        self.append(event)
