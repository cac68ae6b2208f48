"""The executor: runs a validated :class:`Plan` in topological order, reusing stored results.

A node's cache key is the sha256 of (op id, op version, normalized params — which include the
seed for ops that take one —, the asset ids of its inputs, the content hashes of files it
reads, and the weights hash of the model it uses). Because input asset ids are hashes of the
upstream *values*, a change upstream changes exactly the keys downstream of it, and an
upstream change that happens to produce the same value reruns nothing further.

Failure isolation: a failing node marks only its descendants as skipped; independent branches
still run. Ctrl-C / SIGTERM stop after recording what finished; rerunning resumes from there.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NoReturn, Protocol

from strata.errors import OpError, RunInterrupted, StoreError, StrataError, StrataWarning
from strata.store import Store, new_run_id
from strata.store.blobs import sha256_file_cached
from strata.store.db import NodeRecord
from strata.store.store import AssetRef
from strata.workflow.events import (
    EventBus, NodeCached, NodeFailed, NodeFinished, NodeProgress, NodeSkipped, NodeStarted, NodeWarning, RunFinished,
    RunStarted, Sink,
)
from strata.workflow.spec import Workflow
from strata.workflow.validate import Plan, PlannedNode, Source, validate


@dataclass(frozen=True)
class ModelInfo:
    """Identity of a model as the cache key and provenance see it."""

    id: str
    weights_hash: str


class ModelResolver(Protocol):
    """What the executor needs from the model registry."""

    def identify(self, capability: str, params: dict[str, Any]) -> ModelInfo: ...

    def load(self, capability: str, params: dict[str, Any]) -> Any: ...


class CancelFlag(Protocol):
    """What the executor polls to stop a run cooperatively (``threading.Event`` fits)."""

    def is_set(self) -> bool: ...


@dataclass
class RunResult:
    """What happened in a run."""

    run_id: str
    status: str  # "ok" | "failed" | "interrupted"
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    outputs: dict[str, list[Path]] = field(default_factory=dict)
    refs: dict[str, dict[str, AssetRef]] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def canonical_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def cache_key(pn: PlannedNode, input_refs: dict[str, AssetRef], model: ModelInfo | None) -> str:
    """The node's cache key (see the module docstring)."""
    files = {name: sha256_file_cached(pn.params[name]) for name in pn.spec.file_params if pn.params.get(name)}
    return canonical_hash({
        "op": pn.spec.op,
        "version": pn.spec.version,
        "params": pn.params,
        "inputs": input_refs,
        "files": files,
        "model": model.weights_hash if model else None,
    })


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt for the run's duration (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Executor:
    """Runs workflows against one store, emitting events to ``sinks``."""

    def __init__(self, store: Store, *, sinks: list[Sink] | None = None, models: ModelResolver | None = None):
        self.store = store
        self.bus = EventBus(sinks)
        self.models = models
        self._cancel: CancelFlag | None = None
        self._unrecorded: list[NodeRecord] = []  # node states not yet in the history (see _record)

    def run(self, workflow: Workflow | Plan, *, no_cache: bool = False, out_dir: str | Path | None = None,
            parent_run: str | None = None, run_id: str | None = None, cancel: CancelFlag | None = None) -> RunResult:
        """Validate (if needed) and run ``workflow``; write its outputs into ``out_dir`` if given.

        ``cancel`` (e.g. a ``threading.Event``) stops the run cooperatively once set: it is
        checked before each node and at each progress step of ops that report progress, and
        the run then ends exactly as on Ctrl-C.

        Raises:
            WorkflowError: the workflow is invalid (nothing ran).
            RunInterrupted: Ctrl-C / SIGTERM / ``cancel``; finished nodes are stored, rerun to resume.
        """
        plan = workflow if isinstance(workflow, Plan) else validate(workflow)
        wf = plan.workflow
        run_id = run_id or new_run_id()
        result = RunResult(run_id, "ok")
        t0 = time.perf_counter()
        self.store.db.insert_run(run_id, wf.name, wf.to_dict(), wf.content_hash(), wf.seed, parent_run)
        self.bus.emit(RunStarted(run_id, wf.name, len(plan.nodes)))
        refs: dict[str, dict[str, AssetRef]] = {}
        models: dict[str, ModelInfo | None] = {}
        broken: set[str] = set()
        self._cancel = cancel
        self._unrecorded = []
        writer = None
        if out_dir is not None and plan.outputs:
            from strata.workflow.outputs import OutputWriter

            writer = OutputWriter(plan, models, self.store, Path(out_dir), run_id, self.bus)
        output_error: OSError | None = None
        try:
            with _sigterm_as_interrupt():
                for seq, pn in enumerate(plan.nodes):
                    self._check_cancel()
                    self._run_node(plan, pn, seq, run_id, refs, models, broken, result, no_cache)
                    if writer is not None and pn.node.id in refs:  # its files are written while the run goes on
                        writer.node_done(pn.node.id, refs, executed=pn.node.id not in result.cached)
                if writer is not None:
                    try:
                        result.outputs = writer.finish()
                    except OSError as exc:
                        output_error = exc
        except BaseException as exc:
            # Ctrl-C / SIGTERM / cancel, or anything else (a file that cannot be encoded or signed,
            # a broken history database): the run is recorded, with what it finished, first.
            if writer is not None:
                writer.abandon()
            interrupted = isinstance(exc, KeyboardInterrupt)
            result.status = "interrupted" if interrupted else "failed"
            self._flush(result, t0)
            self._finish(result, t0)
            if not interrupted:
                raise
            raise RunInterrupted(
                f"run {run_id} interrupted; {len(result.executed) + len(result.cached)} finished node(s) are stored — "
                "run the same workflow again to resume from them"
            ) from None
        finally:
            self._cancel = None
        if output_error is not None:
            self._output_failure(result, t0, out_dir, output_error)
        # Values were written behind the run (overlapping later nodes and the output files);
        # the run is finished only when they are on disk and cached.
        self._flush(result, t0)
        if result.failed:
            result.status = "failed"
        result.refs = refs
        self._finish(result, t0)
        return result

    def _output_failure(self, result: RunResult, t0: float, out_dir: str | Path | None, exc: OSError) -> NoReturn:
        self._flush(result, t0)  # the computed values stay cached for the rerun
        result.status = "failed"
        self._finish(result, t0)
        raise StoreError(f"cannot write the outputs into {out_dir}: {exc.strerror or exc}; "
                         "choose a writable folder with free space (finished nodes are cached, "
                         "so a rerun only writes the files)") from None

    def _flush(self, result: RunResult, t0: float) -> None:
        try:
            self.store.flush()
        except StoreError:
            result.status = "failed"
            self._finish(result, t0)
            raise

    def _check_cancel(self) -> None:
        # Cancellation reuses the Ctrl-C path, so a cancelled run is recorded like an interrupted one.
        if self._cancel is not None and self._cancel.is_set():
            raise KeyboardInterrupt

    def _record(self, run_id: str, pn: PlannedNode, seq: int, status: str, key: str | None, *, later: bool = False,
                **fields: Any) -> None:
        """Record a node's state in the history. ``later`` (cached and skipped nodes) keeps it
        until the next record or the run's end, so a rerun of mostly cached nodes commits once
        instead of once per node. Meanwhile readers of the history see those nodes late, and a
        hard kill (no ``_finish``) leaves the run without them; their results are in the store
        either way, so a rerun finds them. One run at a time per Executor (as for ``cancel``)."""
        self._unrecorded.append(NodeRecord(pn.node.id, pn.spec.op, pn.spec.version, pn.params, key, status, seq,
                                           **fields))
        if not later:
            self._write_records(run_id)

    def _write_records(self, run_id: str) -> None:
        if self._unrecorded:
            self.store.db.record_nodes(run_id, self._unrecorded)
            self._unrecorded = []  # only once written: a failed write leaves them for _finish to retry

    def _finish(self, result: RunResult, t0: float) -> None:
        self._write_records(result.run_id)
        result.duration_s = time.perf_counter() - t0
        self.store.db.finish_run(result.run_id, result.status)
        self.bus.emit(RunFinished(result.run_id, result.status, result.duration_s, list(result.executed),
                                  list(result.cached), list(result.failed), list(result.skipped)))

    def _inputs_of(self, pn: PlannedNode, refs: dict[str, dict[str, AssetRef]]) -> dict[str, AssetRef]:
        def one(src: Source) -> AssetRef:
            return refs[src.node][src.output]

        out: dict[str, AssetRef] = {}
        for name, src in pn.inputs.items():
            if isinstance(src, list):
                flat: list[str] = []
                for s in src:
                    r = one(s)
                    flat.extend(r if isinstance(r, list) else [r])
                out[name] = flat
            else:
                out[name] = one(src)
        return out

    def _run_node(self, plan: Plan, pn: PlannedNode, seq: int, run_id: str, refs: dict[str, dict[str, AssetRef]],
                  models: dict[str, ModelInfo | None], broken: set[str], result: RunResult, no_cache: bool) -> None:
        nid, op = pn.node.id, pn.spec.op
        upstream_broken = {s.node for s in pn.sources()} & broken
        if upstream_broken:
            broken.add(nid)
            reason = f"upstream node(s) {', '.join(sorted(upstream_broken))} did not finish"
            result.skipped.append(nid)
            self._record(run_id, pn, seq, "skipped", None, later=True, error=reason)
            self.bus.emit(NodeSkipped(run_id, nid, op, reason))
            return
        try:
            model = None
            if pn.spec.model_capability:
                if self.models is None:
                    raise StrataError(f"op {op} needs a '{pn.spec.model_capability}' model, but no model registry is configured")
                model = self.models.identify(pn.spec.model_capability, pn.params)
            models[nid] = model
            input_refs = self._inputs_of(pn, refs)
            key = cache_key(pn, input_refs, model)
        except StrataError as exc:
            self._fail(run_id, pn, seq, None, str(exc), broken, result)
            return

        stored = None if (no_cache or not pn.node.cache) else self.store.cache_lookup(key)
        if stored is not None:
            refs[nid] = stored
            result.cached.append(nid)
            self.store.newest_result((plan.workflow.name, nid), stored)
            self._record(run_id, pn, seq, "cached", key, later=True, edges=_edge_rows(input_refs, stored))
            self.bus.emit(NodeCached(run_id, nid, op, key))
            return

        started = time.time()
        self._record(run_id, pn, seq, "running", key, started=started)
        t = time.perf_counter()
        try:
            self.bus.emit(NodeStarted(run_id, nid, op, key))
            values = self._call(pn, input_refs, run_id)
            duration = time.perf_counter() - t
            stored = self.store.cache_record(key, op, values, duration, write_behind=True, slot=(plan.workflow.name, nid))
        except KeyboardInterrupt:
            self._record(run_id, pn, seq, "interrupted", key, started=started)
            raise
        except OpError as exc:
            self._fail(run_id, pn, seq, key, str(exc.at_node(nid)), broken, result)
            return
        except StrataError as exc:
            self._fail(run_id, pn, seq, key, f"node '{nid}': {exc}", broken, result)
            return
        except Exception as exc:  # noqa: BLE001 - a bug in one op must not take down the run
            detail = "".join(traceback.format_exception(exc)[-3:]).strip()
            self._fail(run_id, pn, seq, key, f"node '{nid}' ({op}) crashed: {type(exc).__name__}: {exc}\n{detail}",
                       broken, result)
            return
        refs[nid] = stored
        result.executed.append(nid)
        self._record(run_id, pn, seq, "executed", key, started=started, duration_s=duration,
                     edges=_edge_rows(input_refs, stored))
        self.bus.emit(NodeFinished(run_id, nid, op, duration, stored))

    def _call(self, pn: PlannedNode, input_refs: dict[str, AssetRef], run_id: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {name: self.store.get_value(ref) for name, ref in input_refs.items()}
        kwargs.update(pn.params)
        if pn.spec.wants_progress:
            nid = pn.node.id

            def progress(step: int, total: int, preview: Any = None, message: str | None = None) -> None:
                self.bus.emit(NodeProgress(run_id, nid, step, total, preview, message))
                self._check_cancel()

            kwargs["progress"] = progress
        if pn.spec.model_capability:
            kwargs["loaded_model"] = self.models.load(pn.spec.model_capability, pn.params)  # type: ignore[union-attr]
        # Warnings an op raises (truncated prompt, ...) reach the user through the event stream.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            value = pn.spec.fn(**kwargs)
        for w in caught:
            if issubclass(w.category, StrataWarning):
                self.bus.emit(NodeWarning(run_id, pn.node.id, str(w.message)))
            else:  # a library's warning: back to the normal warning filters
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if len(pn.spec.outputs) == 1 and not (isinstance(value, dict) and set(value) == {pn.spec.outputs[0].name}):
            return {pn.spec.outputs[0].name: value}
        if not isinstance(value, dict) or set(value) != {o.name for o in pn.spec.outputs}:
            raise StrataError(f"op {pn.spec.op} returned {type(value).__name__}, expected a dict with "
                              f"{', '.join(o.name for o in pn.spec.outputs)}")
        return value

    def _fail(self, run_id: str, pn: PlannedNode, seq: int, key: str | None, message: str, broken: set[str],
              result: RunResult) -> None:
        nid = pn.node.id
        broken.add(nid)
        result.failed[nid] = message
        self._record(run_id, pn, seq, "failed", key, error=message)
        self.bus.emit(NodeFailed(run_id, nid, pn.spec.op, message))


def _edge_rows(inputs: dict[str, AssetRef], outputs: dict[str, AssetRef]) -> list[tuple[str, str, int, str]]:
    """A node's lineage rows (role, port, index, asset id) for :class:`NodeRecord`."""
    rows: list[tuple[str, str, int, str]] = []
    for role, mapping in (("input", inputs), ("output", outputs)):
        for port, ref in mapping.items():
            for i, a in enumerate(ref if isinstance(ref, list) else [ref]):
                rows.append((role, port, i, a))
    return rows


def run(workflow: Workflow, *, store: Store | None = None, sinks: list[Sink] | None = None, **kwargs: Any) -> RunResult:
    """Convenience: run ``workflow`` against ``store`` (default: the default store) with the
    installed models (the default registry, as the CLI and the server use)."""
    from strata.models.registry import default_registry

    return Executor(store or Store(), sinks=sinks, models=default_registry()).run(workflow, **kwargs)
