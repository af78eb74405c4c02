"""What happens to jobs in this process, as it happens: an append-only log of events per job, read
by Server-Sent Events streams, plus the cancel flags the sampler callback checks.

Events: queued, started, progress (per sampling step, with a small preview PNG where the network
works in pixels), finished, failed, cancelled, requeued. The durable state is the queue's row;
this log only lives as long as the process, keeps the last `keep` jobs, and drops a job's
previews but the last when it ends. Listeners (the webhook sender) are told when a job ends,
after the event is logged and outside the log's lock; they must not block. Dispatchers (a cluster's
Celery sender) are told of every "queued" event, so a job reaches a worker in another process.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

TERMINAL = ("finished", "failed", "cancelled")


class EventLog:
    def __init__(self, keep: int = 500):
        self.keep = keep
        self._events: OrderedDict[str, list[dict]] = OrderedDict()
        self._cancel: set[str] = set()
        self._lock = threading.Lock()
        self.wakeup = threading.Event()  # set when a job is queued, so idle workers look at once
        self.listeners: list[Callable[[str, str], None]] = []  # (job id, terminal event kind)
        self.dispatchers: list[Callable[[str], None]] = []     # (job id) of each queued job

    def publish(self, job_id: str, kind: str, **data) -> None:
        with self._lock:
            log = self._events.setdefault(job_id, [])
            self._events.move_to_end(job_id)
            if kind in TERMINAL:  # previews matter while a job runs; a finished job keeps its last one
                last = max((i for i, e in enumerate(log) if e.get("preview")), default=None)
                for i, e in enumerate(log):  # new dicts: a reader may be serialising the old ones
                    if i != last and "preview" in e:
                        log[i] = {k: v for k, v in e.items() if k != "preview"}
            log.append({"event": kind, "job": job_id, "time": round(time.time(), 3), **data})
            while len(self._events) > self.keep:
                self._events.popitem(last=False)
        if kind in TERMINAL:
            for listener in self.listeners:
                listener(job_id, kind)
        if kind == "queued":
            for dispatch in self.dispatchers:
                dispatch(job_id)

    def since(self, job_id: str, index: int) -> list[dict]:
        with self._lock:
            return list(self._events.get(job_id, ())[index:])

    def latest(self, job_id: str, kind: str) -> dict | None:
        with self._lock:
            return next((e for e in reversed(self._events.get(job_id, ())) if e["event"] == kind), None)

    # cancel flags: set by the API, read in the worker's sampler callback at every step
    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancel.add(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        return job_id in self._cancel

    def clear_cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancel.discard(job_id)
