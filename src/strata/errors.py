"""strata's exception hierarchy, drawn once here.

    StrataError                      base of everything strata raises on purpose
    ├── WorkflowError                a workflow is invalid; carries every issue found
    │     (.issues: list[Issue] — each names node, param and a fix)
    ├── OpError                      an op refused its inputs/params at run time (node, param)
    ├── MediaError                   a file or media value is unusable (corrupt, too large, ...)
    ├── StoreError                   the store is missing, locked or inconsistent
    ├── ModelError                   a model is missing, unsafe or refuses to load
    └── RunInterrupted               a run was stopped by Ctrl-C / SIGTERM (resumable)

    StrataWarning (UserWarning)      something a user should know that did not stop the work
                                     (e.g. a truncated prompt); the engine turns it into an event

Errors are values a user reads: each message says what is wrong and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass


class StrataError(Exception):
    """Base class of every error strata raises deliberately."""


@dataclass(frozen=True)
class Issue:
    """One problem found while validating a workflow.

    Args:
        message: what is wrong and how to fix it.
        node: id of the node concerned, or None for workflow-level issues.
        param: name of the param or input concerned, or None.
    """

    message: str
    node: str | None = None
    param: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.node is not None:
            where = f"node '{self.node}'"
            if self.param is not None:
                where += f", '{self.param}'"
            where += ": "
        return where + self.message


class WorkflowError(StrataError):
    """A workflow failed validation. ``issues`` lists every problem, not just the first."""

    def __init__(self, issues: list[Issue] | Issue | str):
        if isinstance(issues, str):
            issues = [Issue(issues)]
        elif isinstance(issues, Issue):
            issues = [issues]
        self.issues: list[Issue] = list(issues)
        lines = [f"  - {i}" for i in self.issues]
        noun = "problem" if len(self.issues) == 1 else "problems"
        super().__init__(f"workflow has {len(self.issues)} {noun}:\n" + "\n".join(lines))


class OpError(StrataError):
    """An op could not run with the values it was given.

    Raised from inside pure ops (they know the param name, not the node id); the executor
    adds the node id before reporting.
    """

    def __init__(self, message: str, *, param: str | None = None, node: str | None = None):
        self.param = param
        self.node = node
        self.bare_message = message
        super().__init__(self._format())

    def _format(self) -> str:
        prefix = ""
        if self.node:
            prefix += f"node '{self.node}': "
        if self.param:
            prefix += f"'{self.param}': "
        return prefix + self.bare_message

    def at_node(self, node: str) -> "OpError":
        """Return a copy of this error that names ``node``."""
        return OpError(self.bare_message, param=self.param, node=node)


class MediaError(StrataError):
    """A media file or value is unusable: corrupt, truncated, unsupported, empty or too large."""


class StoreError(StrataError):
    """The asset store or its history database is unusable."""


class ModelError(StrataError):
    """A model could not be found, loaded or trusted."""


class RunInterrupted(StrataError):
    """A run was interrupted (Ctrl-C or SIGTERM). Finished nodes are stored; rerun to resume."""


class StrataWarning(UserWarning):
    """A warning meant for the user (the executor forwards these as NodeWarning events)."""
