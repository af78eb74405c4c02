"""Scale-out: jobs delivered by Celery over a Redis broker to `designerbox worker` processes on GPU hosts.

    designerbox serve  --broker redis://HOST:6379/0 --database URL      (holds no model, runs no job)
    designerbox worker --broker redis://HOST:6379/0 --database URL --device cuda:0   (one per device)

Celery delivers, the database decides. The jobs table (queue.py) stays the one record of every job:

  1. submit: the API writes the queued row, then sends one Celery message for it.
  2. a worker takes a message (one at a time: prefetch 1) and claims the database's next job with the
     queue's compare-and-set claim (priority, round-robin by user, age), under a lease it renews every
     lease/3 s while the job runs. A message is thus a token "one job is waiting", not a job: the order
     stays the database's, and a surplus message (the job was taken by another) claims nothing and is done.
  3. the message is acknowledged only when the job has ended (task_acks_late). A worker process that
     dies mid-job leaves its message unacknowledged: Redis gives it to another worker once the
     visibility timeout has passed (task_reject_on_worker_lost: at once, when only a pool child died),
     and that worker's claim takes over the job whose lease ran out. The API also checks every few
     seconds for running jobs whose lease ran out, puts them back in the queue and sends a message
     for each, so a job is not lost when its message is (duplicate deliveries are dropped in step 2).
  4. every state change checks the holder (queue.py), so a job finishes once even if a worker that
     lost its lease wakes up and completes it: that result is dropped.

Events (started, progress with previews, finished...) reach the API's event log, and so its SSE
streams and webhooks, through Redis pub/sub, not the database: previews every step would be a write
per step per job in the shared database for data nobody needs after the job, and the broker is there
anyway. Pub/sub keeps nothing for a listener that is away; what must survive (state, progress at most
every 0.25 s, images) is in the database, and the SSE stream falls back to the job's row.

Images go to a folder every process sees (a shared path: --images or DESIGNERBOX_HOME), records to the
one database (--database: PostgreSQL for several hosts; a SQLite file works for processes on one host).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading

from designerbox.server.events import EventLog
from designerbox.server.queue import JobQueue
from designerbox.settings import Settings

log = logging.getLogger("designerbox.cluster")

TASK = "designerbox.run_job"
QUEUE = "designerbox"              # the Celery queue (a Redis list) the API sends to and workers read
CHANNEL = "designerbox:events"     # the Redis pub/sub channel of job events
LEASE_SECONDS = 30.0               # a worker's hold on a running job, renewed every third of it
VISIBILITY_SECONDS = 300.0         # an unacknowledged message goes to another worker after this long
REAP_SECONDS = 5.0                 # how often the API looks for running jobs whose lease ran out


class BrokerError(ValueError):
    pass


def check_broker(url: str) -> str:
    if not url.startswith(("redis://", "rediss://")):
        raise BrokerError(f"--broker must be a Redis URL (redis://HOST:6379/0 or rediss://... for TLS), not {url!r}")
    return url


def celery_app(broker: str, visibility_timeout: float = VISIBILITY_SECONDS):
    """The Celery app both sides use: late acknowledgement, one message at a time, no result backend."""
    from celery import Celery

    app = Celery("designerbox", broker=check_broker(broker), set_as_current=False)
    app.conf.update(
        task_acks_late=True,                  # acknowledge when the job has ended, not when it starts
        task_reject_on_worker_lost=True,      # a pool child that dies: its message goes back at once
        worker_prefetch_multiplier=1,         # take one message at a time: the others stay for idle workers
        task_ignore_result=True,              # results are in the database
        task_default_queue=QUEUE,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={"visibility_timeout": visibility_timeout,
                                  "unacked_restore_interval": max(1, min(10, int(visibility_timeout / 2))),
                                  "unacked_restore_throttle": 1, "unacked_mutex_expire": 60},
    )
    return app


def redis_client(broker: str):
    import redis

    return redis.Redis.from_url(check_broker(broker))


class RedisEventLog(EventLog):
    """A worker process's event log: each event goes to the API processes over Redis pub/sub (not kept
    here); cancel flags stay local (set by the lease heartbeat and progress writes from the database)."""

    def __init__(self, client):
        super().__init__(keep=0)
        self.client = client

    def publish(self, job_id: str, kind: str, **data) -> None:
        event = {"event": kind, "job": job_id, **data}
        try:
            self.client.publish(CHANNEL, json.dumps(event))
        except Exception:  # noqa: BLE001 - events are best effort; the job's state is in the database
            log.warning("could not publish the %s event of job %s", kind, job_id, exc_info=True)


class ClusterDispatch:
    """The API's side: a Celery message per queued job, remote events into the local event log, and a
    reaper for jobs whose worker died (their lease ran out)."""

    def __init__(self, broker: str, queue: JobQueue, events: EventLog, visibility_timeout: float = VISIBILITY_SECONDS,
                 reap_seconds: float = REAP_SECONDS):
        self.queue, self.events, self.reap_seconds = queue, events, reap_seconds
        self.app = celery_app(broker, visibility_timeout)
        self.redis = redis_client(broker)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def send(self, job_id: str) -> None:
        self.app.send_task(TASK, args=[job_id], queue=QUEUE)

    def start(self) -> None:
        self.redis.ping()  # fail at start, with the broker's address, not at the first job
        for job_id in self.queue.queued_ids():  # a message may have been lost with a process that stopped
            self.send(job_id)
        for target in (self._relay, self._reap):
            t = threading.Thread(target=target, name=f"designerbox-cluster-{target.__name__[1:]}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _relay(self) -> None:
        """Remote workers' events into this process's event log (SSE streams, webhooks)."""
        while not self._stop.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        event = json.loads(message["data"])
                        job_id, kind = event.pop("job"), event.pop("event")
                        self.events.publish(job_id, kind, **event)
                pubsub.close()
            except Exception:  # noqa: BLE001 - Redis restarting: subscribe again; states are in the database
                log.warning("lost the event channel; subscribing again", exc_info=True)
                self._stop.wait(1.0)

    def _reap(self) -> None:
        while not self._stop.wait(self.reap_seconds):
            try:
                for job_id in self.queue.requeue_expired():
                    self.events.publish(job_id, "requeued", reason="its worker stopped renewing its lease")
                    self.send(job_id)
            except Exception:  # noqa: BLE001 - the database or broker away for a moment: look again later
                log.warning("could not check for jobs of dead workers", exc_info=True)


def run_worker(settings: Settings, broker: str, device: str, concurrency: int = 1, lease: float = LEASE_SECONDS,
               visibility_timeout: float = VISIBILITY_SECONDS, log_level: str = "info") -> None:
    """A Celery worker running jobs on one device until stopped (SIGTERM: after the job in progress).

    concurrency 1: Celery's solo pool, the job in this process (one model cache). More: a thread per
    slot, each with its own Studio (models loaded once per slot), for a device with memory to spare."""
    from designerbox.server.worker import Worker
    from designerbox.studio import Studio

    if concurrency < 1:
        raise ValueError(f"--concurrency must be 1 or more, not {concurrency}")
    if lease <= 0 or visibility_timeout <= 0:
        raise ValueError("--lease and --visibility-timeout must be positive numbers of seconds")
    app = celery_app(broker, visibility_timeout)
    queue = JobQueue(settings.store("queue.sqlite"))
    events = RedisEventLog(redis_client(broker))
    device_settings = dataclasses.replace(settings, device=device)
    slots = threading.local()

    def worker() -> Worker:
        if not hasattr(slots, "worker"):
            slots.worker = Worker(Studio(device_settings), queue, events, lease=lease)
            log.info("worker %s on %s ready", slots.worker.name, device)
        return slots.worker

    @app.task(name=TASK)
    def run_job(job_id: str) -> None:
        w = worker()
        job = w.claim()
        if job is None:
            log.info("message for job %s: nothing to claim (another worker took it, or it ended)", job_id)
            return
        w.run_job(job)

    worker()  # build the Studio now: a bad device or home fails here, before any message is taken
    app.worker_main(["worker", f"--pool={'solo' if concurrency == 1 else 'threads'}", f"--concurrency={concurrency}",
                     f"--queues={QUEUE}", f"--loglevel={log_level.upper()}", "--without-gossip", "--without-mingle",
                     f"--hostname=designerbox-{device.replace(':', '')}-{os.getpid()}@%h"])
