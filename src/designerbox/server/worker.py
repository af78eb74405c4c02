"""The worker loop: one thread per device, claiming jobs from the queue and running them with the
same `Studio.generate` the CLI and the Python API use.

Per job:
  1. claim (queued -> running, compare-and-set), publish "started"
  2. generate; the sampler callback publishes progress (and a preview) per step and raises
     JobCancelled when a cancel was asked for, so a cancel takes effect within one step
  3. write each PNG under its sha256 (temporary name, then rename), then mark the job succeeded
     (only if this worker still holds it), then add the gallery rows and mark the job stored:
     a crash between any two steps leaves nothing half-done (see `store_unfinished`)

Batching: after claiming a job, the worker also claims the queued generations of its priority that share
its batch key (model, drawn size, steps, sampler, schedule, cfg: jobs/batch.py), round-robin by user,
up to Settings.batch_images images; each runs through run_job in a thread of its own as above, and
their draws meet in one network call (DrawBatch). A cancel stops one job of a batch; the others go on.

A verify job (verify_jobs.py) draws an image again and compares it: its report is stored with the job
(JobQueue.finish's result), and nothing goes to the gallery.

The same Worker runs jobs in a cluster worker process (cluster.py), with `lease` set: it claims under a
lease and a heartbeat thread renews it while the job runs (and reads cancel requests made through the
database); its events go to the API process through Redis.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time

import torch

from designerbox.jobs.batch import DrawBatch, batch_key
from designerbox.jobs.generate import RequestError
from designerbox.jobs.schema import GenerationRequest
from designerbox.presets import UnknownPresetError
from designerbox.registry.discovery import UnknownModelError
from designerbox.registry.files import ModelFileError
from designerbox.server.events import EventLog
from designerbox.server.queue import JobQueue, JobRow, worker_name
from designerbox.store.gallery import Gallery
from designerbox.store.png_metadata import read_record
from designerbox.studio import Studio

log = logging.getLogger("designerbox.worker")

PREVIEW_MAX_PIXELS = 128 * 128   # larger previews (none today: latents are 1/8 of the image) are skipped
DB_PROGRESS_SECONDS = 0.25       # progress is written to the queue at most this often (events: every step)
USER_ERRORS = (RequestError, UnknownModelError, UnknownPresetError, ModelFileError, MemoryError, ValueError)


class JobCancelled(Exception):
    pass


class WorkerStopping(Exception):
    pass


def preview_png(preview: torch.Tensor | None) -> str | None:
    """The first image of a step's preview ((B, 3, h, w) in [0, 1]: the pipelines' cheap image of the
    current estimate, latent models included) as base64 PNG, or None when there is none or it is large."""
    if preview is None or preview.dim() != 4 or preview.shape[1] != 3:
        return None
    if preview.shape[2] * preview.shape[3] > PREVIEW_MAX_PIXELS:
        return None
    from PIL import Image

    arr = (preview[0].float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Worker:
    """Runs jobs on one device until stopped."""

    def __init__(self, studio: Studio, queue: JobQueue, events: EventLog, poll_seconds: float = 1.0,
                 lease: float | None = None):
        self.studio, self.queue, self.events = studio, queue, events
        self.device = studio.device
        self.name = worker_name()
        self.poll_seconds = poll_seconds
        self.lease = lease  # seconds (cluster workers): claim under a lease, renewed while a job runs
        self.current: str | None = None
        self.last_batch: list[list[str]] = []  # the job ids of the last batch's network calls
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"designerbox-worker-{self.device}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current sampling step; a job in progress goes back to the queue."""
        self._stop.set()
        self.events.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def claim(self) -> JobRow | None:
        return self.queue.claim(self.name, self.device, lease=self.lease)

    def run(self) -> None:
        while not self._stop.is_set():
            if not self.run_next():
                self.events.wakeup.wait(self.poll_seconds)
                self.events.wakeup.clear()

    def run_next(self) -> bool:
        """Claim the next job and run it, with the queued jobs it can share a network call with (a batch);
        False when nothing was queued."""
        job = self.claim()
        if job is None:
            return False
        batch = self.claim_batch(job)
        if len(batch) == 1:
            self.run_job(job)
        else:
            self.run_batch(batch)
        return True

    def claim_batch(self, job: JobRow) -> list[JobRow]:
        """The job, and queued generations with its batch key (jobs/batch.py) while their images fit in
        Settings.batch_images (round-robin by user: JobQueue.claim_more)."""
        room = self.studio.settings.batch_images - job.request.get("batch_size", 1)
        if job.kind != "generation" or room < 1:
            return [job]
        key = batch_key(job.request, self.studio.registry)
        if key is None:
            return [job]
        more = self.queue.claim_more(job, self.name, self.device, room=room,
                                     fits=lambda row: batch_key(row.request, self.studio.registry) == key,
                                     weight=lambda row: row.request.get("batch_size", 1))
        return [job, *more]

    def run_batch(self, jobs: list[JobRow]) -> None:
        """Each job in a thread of its own, through run_job as alone, their draws made as one network call:
        each thread's prep (resolve, conditions) runs in turn, then DrawBatch.run draws them all."""
        batch = DrawBatch(len(jobs))
        self.studio.gallery  # opened (created) here, not by several threads at once
        threads = []
        for i, job in enumerate(jobs):
            t = threading.Thread(target=self.run_job, args=(job, batch.drawer(i), len(jobs)),
                                 name=f"designerbox-batch-{job.id}", daemon=True)
            t.start()
            threads.append(t)
            batch.wait_arrival(i, t)
        batch.run()
        for t in threads:
            t.join()
        self.last_batch = [[jobs[i].id for i in group] for group in batch.groups]

    def run_job(self, job: JobRow, drawer=None, batch: int = 1) -> None:
        self.current = job.id
        self.events.publish(job.id, "started", attempt=job.attempts, device=self.device,
                            **({"batch": batch} if batch > 1 else {}))
        done = threading.Event()
        if self.lease is not None:
            threading.Thread(target=self._keep_lease, args=(job.id, done), daemon=True,
                             name=f"designerbox-lease-{job.id}").start()
        try:
            images = self._generate(job, drawer)
        except JobCancelled:
            self.queue.mark_cancelled(job.id, self.name)
            self.events.publish(job.id, "cancelled")
        except WorkerStopping:
            self.queue.release(job.id, self.name)
            self.events.publish(job.id, "requeued", reason="the server is stopping; the job runs again at start")
        except USER_ERRORS as err:
            self._failed(job, str(err.args[0]) if isinstance(err, KeyError) else str(err))
        except Exception as err:  # noqa: BLE001 - the loop must outlive any one job; the error is kept
            log.exception("job %s failed", job.id)
            self._failed(job, f"{type(err).__name__}: {err}")
        else:
            if job.kind == "verify":
                self._store_report(job, images)
            else:
                self._store(job, images)
        finally:
            done.set()
            self.events.clear_cancel(job.id)
            self.current = None

    def _keep_lease(self, job_id: str, done: threading.Event) -> None:
        """Renew the lease a third of its length before it runs out, until the job is done."""
        while not done.wait(self.lease / 3):
            try:
                cancel = self.queue.heartbeat(job_id, self.name, self.lease)
            except Exception:  # noqa: BLE001 - a database hiccup: try again at the next beat; the lease has slack
                log.warning("job %s: could not renew the lease", job_id, exc_info=True)
                continue
            if cancel:
                self.events.request_cancel(job_id)

    def _failed(self, job: JobRow, message: str) -> None:
        self.queue.fail(job.id, self.name, message)
        self.events.publish(job.id, "failed", error=message)

    def _generate(self, job: JobRow, drawer=None):
        progress = self._progress(job)
        if job.cancel_requested or self.events.cancel_requested(job.id):
            raise JobCancelled()
        if job.kind == "tool":
            from designerbox.server.tool_jobs import run_tool_job

            return run_tool_job(self.studio, job.request, progress)
        if job.kind == "verify":  # a report (dict), no images
            from designerbox.server.verify_jobs import run_verify_job

            return run_verify_job(self.studio, job.request, progress)
        return self.studio.generate(GenerationRequest(**job.request), progress=progress, save=False, drawer=drawer)

    def _progress(self, job: JobRow):
        """The per-step callback: events (and a preview), progress in the queue now and then, and stopping
        (JobCancelled, WorkerStopping) when a cancel was asked for or the server stops."""
        last_write = 0.0

        def progress(info: dict) -> None:
            nonlocal last_write
            if self._stop.is_set():
                raise WorkerStopping()
            step, total = info["i"] + 1, info["total"]
            self.events.publish(job.id, "progress", step=step, total=total, preview=preview_png(info.get("preview")))
            now = time.monotonic()
            if now - last_write > DB_PROGRESS_SECONDS or step == total:
                if self.queue.progress(job.id, self.name, step, total):  # cancelled through the database
                    self.events.request_cancel(job.id)
                last_write = now
            if self.events.cancel_requested(job.id):
                raise JobCancelled()

        return progress

    def _store(self, job: JobRow, images) -> None:
        gallery = self.studio.gallery
        refs = []
        for img in images:
            sha, rel = gallery.put_file(img.png)
            ref = {"id": sha[:16], "sha256": sha, "path": str(rel)}
            if getattr(img, "name", None):  # a tool's output label (e.g. "amazon")
                ref["name"] = img.name
            refs.append(ref)
        if not self.queue.finish(job.id, self.name, refs):
            log.warning("job %s was taken from this worker before it finished; its result is dropped", job.id)
            return
        for img in images:
            gallery.add(img.png, img.record, owner=job.user)
        self.queue.mark_stored(job.id)
        self.events.publish(job.id, "finished", images=[r["id"] for r in refs])


    def _store_report(self, job: JobRow, report: dict) -> None:
        """A verify job: the report is its result; the replayed image is not kept (nothing for the gallery)."""
        if not self.queue.finish(job.id, self.name, [], result=report):
            log.warning("job %s was taken from this worker before it finished; its result is dropped", job.id)
            return
        self.queue.mark_stored(job.id)
        self.events.publish(job.id, "finished", images=[], result=report)


def store_unfinished(queue: JobQueue, gallery: Gallery) -> list[str]:
    """Add the gallery rows of succeeded jobs whose process died before adding them (startup repair).
    Each PNG carries its own record, so the rows are rebuilt from the files alone."""
    done = []
    for job in queue.unstored():
        for ref in job.images:
            path = gallery.root / ref["path"]
            gallery.add(path.read_bytes(), read_record(path), owner=job.user)
        queue.mark_stored(job.id)
        done.append(job.id)
    return done


def devices(settings) -> list[str]:
    """One worker per device: every CUDA device when the setting is "auto" and CUDA is there, else the one named."""
    if settings.device == "auto" and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [settings.resolve_device()]
