"""Retention on the real SQLite queue and gallery folder: finished jobs older than N days are deleted with the
uploaded inputs no remaining job names; recent, queued and running jobs and the inputs they name stay; a dry
run deletes nothing and reports the same counts; `designerbox jobs prune` and DESIGNERBOX_JOB_RETENTION_DAYS."""

import json
import os
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from designerbox.cli import main
from designerbox.server.app import create_app
from designerbox.server.queue import JobQueue, JobRow, UnknownJobError, _now, worker_name
from designerbox.server.retention import prune
from designerbox.server.tool_jobs import ToolJobRequest, store_input
from designerbox.settings import Settings
from designerbox.studio import Studio
from server_util import settings


@pytest.fixture
def studio(tmp_path):
    return Studio(settings(tmp_path / "home"))


@pytest.fixture
def queue(studio):
    return JobQueue(studio.settings.store("queue.sqlite"))


def upload(studio, data: bytes, age_hours: float = 2.0):
    """An uploaded input stored as submit_tool stores it, its file `age_hours` old."""
    item = store_input(studio.settings.gallery_root, "photo.png", data)
    then = time.time() - age_hours * 3600
    os.utime(studio.settings.gallery_root / item.path, (then, then))
    return item


def tool_job(queue, inputs=(), options=None):
    request = ToolJobRequest(tool="headshot", inputs=list(inputs), options=options or {})
    return queue.submit(request.model_dump(mode="json"), kind="tool")


def end(queue, job, how: str, days_ago: float):
    """Run the job to `how` (succeeded, failed, cancelled), finished `days_ago` days ago."""
    w = worker_name()
    assert queue.claim(w, "cpu").id == job.id
    if how == "succeeded":
        queue.finish(job.id, w, [])
        queue.mark_stored(job.id)
    elif how == "failed":
        queue.fail(job.id, w, "boom")
    else:
        queue.mark_cancelled(job.id, w)
    with Session(queue.engine) as s:
        s.execute(update(JobRow).where(JobRow.id == job.id).values(finished_at=_now() - timedelta(days=days_ago)))
        s.commit()


def inputs_left(studio) -> set[str]:
    return {p.name for p in (studio.settings.gallery_root / "inputs").glob("*/*")}


def exists(queue, job_id: str) -> bool:
    try:
        queue.get(job_id)
    except UnknownJobError:
        return False
    return True


@pytest.fixture
def scene(studio, queue):
    """Old finished jobs (one per final state) naming inputs a, b (a also named by a recent job's option, c by a
    queued job), a recent finished job, a running job and an unreferenced file just uploaded."""
    a, b, c, d = (upload(studio, bytes([i]) * (100 + i)) for i in range(4))
    fresh = upload(studio, b"just uploaded", age_hours=0.1)
    old = [tool_job(queue, [a, b]), tool_job(queue, [b]), tool_job(queue, [d])]
    for job, how in zip(old, ("succeeded", "failed", "cancelled")):
        end(queue, job, how, days_ago=40)
    recent = tool_job(queue, [], {"style_image": {"sha256": a.sha256, "bytes": a.bytes}, "prompt": "x"})
    end(queue, recent, "succeeded", days_ago=2)
    running = tool_job(queue, [c])
    queue.claim(worker_name(), "cpu")
    with Session(queue.engine) as s:  # running for ages: still never pruned
        s.execute(update(JobRow).where(JobRow.id == running.id).values(created_at=_now() - timedelta(days=90),
                                                                       started_at=_now() - timedelta(days=90)))
        s.commit()
    queued = tool_job(queue, [c])
    output = studio.settings.gallery_root / "images" / "ab" / "out.png"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"an output image")
    return {"inputs": (a, b, c, d, fresh), "old": old, "kept": [recent, running, queued], "output": output}


def test_old_finished_jobs_go_with_the_inputs_no_job_names(studio, queue, scene):
    a, b, c, d, fresh = scene["inputs"]
    out = prune(studio, queue, 30)
    assert out == {"older_than_days": 30.0, "dry_run": False, "jobs": 3, "inputs": 2,
                   "bytes_freed": b.bytes + d.bytes}
    assert not any(exists(queue, j.id) for j in scene["old"])
    assert all(exists(queue, j.id) for j in scene["kept"])
    assert queue.get(scene["kept"][1].id).state == "running" and queue.get(scene["kept"][2].id).state == "queued"
    assert inputs_left(studio) == {a.sha256, c.sha256, fresh.sha256}  # named by a remaining job, or just uploaded
    assert scene["output"].read_bytes() == b"an output image"  # the gallery's images are not touched
    assert prune(studio, queue, 30)["jobs"] == 0  # nothing more to do


def test_a_dry_run_deletes_nothing_and_reports_the_same_counts(studio, queue, scene):
    before = inputs_left(studio)
    dry = prune(studio, queue, 30, dry_run=True)
    assert inputs_left(studio) == before and all(exists(queue, j.id) for j in scene["old"])
    real = prune(studio, queue, 30)
    assert dry == dict(real, dry_run=True) and real["jobs"] == 3


def test_a_shorter_age_takes_the_recent_job_and_its_option_image_too(studio, queue, scene):
    a, b, c, d, fresh = scene["inputs"]
    assert prune(studio, queue, 1)["jobs"] == 4
    assert inputs_left(studio) == {c.sha256, fresh.sha256}


def test_unstored_results_and_pending_callbacks_wait(studio, queue):
    w = worker_name()
    unstored = queue.submit({"tool": "headshot", "inputs": [], "options": {}}, kind="tool")
    queue.claim(w, "cpu")
    queue.finish(unstored.id, w, [])  # gallery rows not written yet: the next start stores them
    callback = queue.submit({"tool": "headshot", "inputs": [], "options": {}}, kind="tool",
                            callback_url="http://example.test/hook")
    end(queue, callback, "failed", days_ago=40)
    with Session(queue.engine) as s:
        s.execute(update(JobRow).values(finished_at=_now() - timedelta(days=40)))
        s.commit()
    assert prune(studio, queue, 30)["jobs"] == 0
    queue.callback_result(callback.id, "delivered", 1)
    assert prune(studio, queue, 30)["jobs"] == 1 and exists(queue, unstored.id)


def test_storing_an_upload_again_renews_it(studio, queue):
    a = upload(studio, b"an old photo")
    store_input(studio.settings.gallery_root, "again.png", b"an old photo")  # a submit racing the prune
    assert prune(studio, queue, 30)["inputs"] == 0 and inputs_left(studio) == {a.sha256}


def test_the_cli_prunes_and_names_bad_ages(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DESIGNERBOX_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DESIGNERBOX_DEVICE", "cpu")
    studio = Studio(Settings.from_env())
    queue = JobQueue(studio.settings.store("queue.sqlite"))
    gone, kept = upload(studio, b"old upload"), upload(studio, b"recent upload")
    end(queue, tool_job(queue, [gone]), "failed", days_ago=10)
    end(queue, tool_job(queue, [kept]), "succeeded", days_ago=1)

    assert main(["jobs", "prune", "--older-than", "7", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"] == 1 and len(inputs_left(studio)) == 2
    assert main(["jobs", "prune", "--older-than", "7"]) == 0
    assert "deleted 1 job(s)" in capsys.readouterr().out and inputs_left(studio) == {kept.sha256}
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(SystemExit):
            main(["jobs", "prune", "--older-than", bad])
        assert f"--older-than: DAYS must be a number of days (0 or more, e.g. 30 or 0.5), not '{bad}'" \
            in capsys.readouterr().err


def test_the_setting_is_off_by_default_and_checked():
    assert Settings.from_env({}).job_retention_days is None
    assert Settings.from_env({"DESIGNERBOX_JOB_RETENTION_DAYS": "off"}).job_retention_days is None
    assert Settings.from_env({"DESIGNERBOX_JOB_RETENTION_DAYS": "30"}).job_retention_days == 30.0
    for bad in ("0", "-3", "a month", "inf"):
        with pytest.raises(ValueError, match=f"DESIGNERBOX_JOB_RETENTION_DAYS must be a number of days above 0 "
                                             rf"\(e.g. 30 or 0.5\), or 'off' to keep every job, not '{bad}'"):
            Settings.from_env({"DESIGNERBOX_JOB_RETENTION_DAYS": bad})


def test_the_server_prunes_at_start_when_the_setting_is_on(studio, queue):
    import dataclasses

    gone = upload(studio, b"an old upload")
    old = tool_job(queue, [gone])
    end(queue, old, "cancelled", days_ago=8)
    app = create_app(dataclasses.replace(studio.settings, job_retention_days=7.0), workers=False)
    with TestClient(app) as client:
        assert client.app.state.pruner.last == {"older_than_days": 7.0, "dry_run": False, "jobs": 1, "inputs": 1,
                                                "bytes_freed": gone.bytes}
        assert client.get(f"/api/v1/jobs/{old.id}").status_code == 404
    assert inputs_left(studio) == set()
    kept = tool_job(queue, [upload(studio, b"another")])
    end(queue, kept, "failed", days_ago=8)
    with TestClient(create_app(studio.settings, workers=False)) as client:  # off (the default): nothing goes
        assert client.app.state.pruner is None
    assert exists(queue, kept.id)
