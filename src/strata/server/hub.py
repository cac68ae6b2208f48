"""Fan-out of job events from worker threads to websocket clients (asyncio).

Workers call :meth:`EventHub.publish` from their own threads; each websocket holds a
:class:`Subscription` (an asyncio queue fed with ``call_soon_threadsafe``). Every job keeps a
short replay buffer, so a client that connects after a job started still sees its whole story
(bounded: the newest ``replay`` events of the newest ``keep_jobs`` jobs).

Messages are plain JSON dicts: the engine's events (``Event.to_json()``) with a ``job`` field,
plus ``job_queued`` / ``job_started`` / ``job_finished`` from the queue. A ``node_progress``
event that carried a preview image has ``preview`` = a small PNG as a ``data:`` URL.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections import OrderedDict, deque
from typing import Any

from strata.workflow.events import Event, NodeProgress

ALL = "*"
PREVIEW_MAX_SIDE = 128


def preview_data_url(image: Any, max_side: int = PREVIEW_MAX_SIDE) -> str | None:
    """A small PNG of ``image`` (a strata Image) as a ``data:`` URL, or None if it is not one."""
    from strata.media.image import Image

    if not isinstance(image, Image):
        return None
    import PIL.Image

    pil = PIL.Image.fromarray(image.to_uint8())
    pil.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pil.save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def event_message(job_id: str, event: Event) -> dict[str, Any]:
    """The websocket message for one engine event."""
    msg = {"job": job_id, **event.to_json()}
    if isinstance(event, NodeProgress) and event.preview is not None:
        msg["preview"] = preview_data_url(event.preview)
    return msg


class Subscription:
    """One listener: ``replayed`` events so far, then ``await next()`` for live ones."""

    def __init__(self, hub: "EventHub", key: str, loop: asyncio.AbstractEventLoop, maxsize: int):
        self.hub = hub
        self.key = key
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=maxsize)
        self.replayed: list[dict[str, Any]] = []
        self.dropped = 0

    def offer(self, message: dict[str, Any]) -> None:
        """Called in the event loop: enqueue, or count a drop when the client is too slow."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1

    async def next(self, timeout: float) -> dict[str, Any] | None:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    def close(self) -> None:
        self.hub._unsubscribe(self)


class EventHub:
    """Thread-safe publish, asyncio subscribe (see the module docstring)."""

    def __init__(self, *, replay: int = 256, keep_jobs: int = 200, queue_size: int = 1000):
        self._lock = threading.Lock()
        self._subs: dict[str, set[Subscription]] = {}
        self._recent: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._progress: dict[str, dict[str, Any]] = {}
        self._last_preview: dict[str, dict[str, Any]] = {}
        self.replay = replay
        self.keep_jobs = keep_jobs
        self.queue_size = queue_size

    def publish(self, job_id: str, message: dict[str, Any]) -> None:
        """Record ``message`` for ``job_id`` and hand it to that job's and the global listeners."""
        with self._lock:
            buf = self._recent.get(job_id)
            if buf is None:
                buf = self._recent[job_id] = deque(maxlen=self.replay)
                while len(self._recent) > self.keep_jobs:
                    old, _ = self._recent.popitem(last=False)
                    self._progress.pop(old, None)
                    self._last_preview.pop(old, None)
            kept = message
            if "preview" in message:
                # the replay keeps only a job's newest preview, so memory stays ~1 image per job
                kept = dict(message)
                previous = self._last_preview.get(job_id)
                if previous is not None:
                    previous.pop("preview", None)
                self._last_preview[job_id] = kept
            buf.append(kept)
            self._recent.move_to_end(job_id)
            if message.get("event") == "node_progress":
                self._progress[job_id] = message
            elif message.get("event") == "job_finished":
                self._progress.pop(job_id, None)
                self._last_preview.pop(job_id, None)
            targets = list(self._subs.get(job_id, ())) + list(self._subs.get(ALL, ()))
        for sub in targets:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, message)
            except RuntimeError:  # the loop closed (server shutting down)
                pass

    def subscribe(self, key: str, *, replay: bool = True) -> Subscription:
        """Listen to one job (``key`` = job id) or to every job (``ALL``); call in the event loop."""
        sub = Subscription(self, key, asyncio.get_running_loop(), self.queue_size)
        with self._lock:
            self._subs.setdefault(key, set()).add(sub)
            if replay and key != ALL:
                sub.replayed = list(self._recent.get(key, ()))
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.key)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.key]

    def latest_progress(self, job_id: str) -> dict[str, Any] | None:
        """The last ``node_progress`` message of a running job (for A1111 ``/progress``)."""
        with self._lock:
            return self._progress.get(job_id)
