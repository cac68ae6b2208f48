"""The CLI's view of the event stream: a rich live display (or plain lines when not a TTY)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from strata.workflow.events import (
    Event, NodeCached, NodeFailed, NodeFinished, NodeProgress, NodeSkipped, NodeStarted, NodeWarning, OutputWritten,
    RunFinished, RunStarted,
)


class ProgressDisplay:
    """A sink drawing one overall bar (nodes done / total) and a bar for the node at work."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
        )
        self.run_task: Any = None
        self.node_task: Any = None
        self.node_label = ""

    def __call__(self, event: Event) -> None:
        p, c = self.progress, self.console
        if isinstance(event, RunStarted):
            p.start()
            self.run_task = p.add_task(f"run {event.workflow}", total=event.nodes)
        elif isinstance(event, NodeStarted):
            self.node_label = f"  {event.node} [dim]{event.op}[/]"
            self.node_task = p.add_task(self.node_label, total=None)
        elif isinstance(event, NodeProgress):
            if self.node_task is not None:
                label = self.node_label + (f" [yellow]{event.message}[/]" if event.message else "")
                p.update(self.node_task, total=event.total, completed=event.step, description=label)
        elif isinstance(event, NodeCached):
            c.print(f"[dim]↺ {event.node:<16} {event.op:<28} cached[/]")
            p.advance(self.run_task)
        elif isinstance(event, NodeFinished):
            self._end_node()
            c.print(f"[green]✓[/] {event.node:<16} {event.op:<28} {event.duration_s:6.2f} s")
            p.advance(self.run_task)
        elif isinstance(event, NodeFailed):
            self._end_node()
            c.print(f"[red]✗ {event.node:<16} {event.op:<28} failed[/]\n    {event.error}")
            p.advance(self.run_task)
        elif isinstance(event, NodeSkipped):
            c.print(f"[yellow]- {event.node:<16} {event.op:<28} skipped: {event.reason}[/]")
            p.advance(self.run_task)
        elif isinstance(event, NodeWarning):
            c.print(f"[yellow]! {event.node}: {event.message}[/]")
        elif isinstance(event, OutputWritten):
            c.print(f"  → {event.path}")
        elif isinstance(event, RunFinished):
            self._end_node()
            p.stop()
            color = {"ok": "green", "failed": "red"}.get(event.status, "yellow")
            c.print(
                f"[{color}]run {event.run_id} {event.status}[/] in {event.duration_s:.2f} s: "
                f"{len(event.executed)} executed, {len(event.cached)} cached, {len(event.failed)} failed, "
                f"{len(event.skipped)} skipped"
            )

    def _end_node(self) -> None:
        if self.node_task is not None:
            self.progress.remove_task(self.node_task)
            self.node_task = None
