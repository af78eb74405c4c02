"""Scale-out: a real redis-server, `designerbox serve --broker` (no model, no worker thread) and two
`designerbox worker` processes, each its own process. One worker is SIGKILLed in the middle of a job:
the other finishes it, every job finishes exactly once and none is lost. Events of remote workers reach
the API's SSE stream (Redis pub/sub); a cancel reaches a remote worker through the database.

Needs Debian's redis-server (.ci/run installs it) and the server extra's celery and redis."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from server_util import FAST, free_port, start_subprocess_server, wait_job

pytest.importorskip("celery", reason="the cluster needs the server extra (celery, redis)")
redis = pytest.importorskip("redis", reason="the cluster needs the server extra (celery, redis)")
REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed (apt-get install "
                                "redis-server; .ci/run does)")

SLOW = {"steps": 150, "width": 32, "height": 32, "batch_size": 2}  # seconds on this CPU: time to kill mid-job


@pytest.fixture
def broker(tmp_path):
    """A redis-server of this test's own: a free port, its files in tmp_path, nothing saved; stopped after."""
    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
                             "--save", "", "--appendonly", "no"], stdout=(tmp_path / "redis.log").open("wb"),
                            stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "redis.log").read_text()
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


def start_worker(home: Path, broker: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, DESIGNERBOX_HOME=str(home), OMP_NUM_THREADS="1")
    exe = Path(sys.executable).parent / "designerbox"
    return subprocess.Popen([str(exe), "worker", "--broker", broker, "--device", "cpu", "--lease", "2",
                             "--visibility-timeout", "4", "--log-level", "info"], env=env, stdout=log.open("ab"),
                            stderr=subprocess.STDOUT)


def holder_pid(home: Path, job_id: str) -> int | None:
    with sqlite3.connect(home / "queue.sqlite") as db:
        worker = db.execute("SELECT worker FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    return None if worker is None else int(worker.split(":")[1])


def wait_step(api: httpx.Client, job_id: str, step: int = 1, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while (job := api.get(f"/api/v1/jobs/{job_id}").json())["progress"]["step"] < step:
        assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.02)
    return job


def test_two_workers_one_killed_mid_job_every_job_finishes_exactly_once(tmp_path, broker):
    home, port = tmp_path / "home", free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("api", "w1", "w2")}
    api_proc = start_subprocess_server(home, port, logs["api"], ("--broker", broker))
    workers = [start_worker(home, broker, logs["w1"]), start_worker(home, broker, logs["w2"])]
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        # the API process runs nothing itself: a job waits for a worker's claim
        slow = api.post("/api/v1/generations", json={"prompt": "an interrupted kite", "seed": 21, **SLOW}).json()
        fast = [api.post("/api/v1/generations", json={"prompt": f"a cup number {i}", **FAST}).json()["id"]
                for i in range(4)]
        wait_step(api, slow["id"])
        victim = holder_pid(home, slow["id"])
        assert victim in (workers[0].pid, workers[1].pid)
        survivor = workers[1] if victim == workers[0].pid else workers[0]
        fast += [api.post("/api/v1/generations", json={"prompt": f"a cup number {i}", **FAST}).json()["id"]
                 for i in range(4, 8)]
        os.kill(victim, signal.SIGKILL)
        assert next(w for w in workers if w.pid == victim).wait(10) == -signal.SIGKILL
        fast += [api.post("/api/v1/generations", json={"prompt": f"a cup number {i}", **FAST}).json()["id"]
                 for i in range(8, 12)]

        done = wait_job(api, slow["id"], timeout=240)
        assert done["state"] == "succeeded", done
        assert done["attempts"] == 2 and holder_pid(home, slow["id"]) == survivor.pid  # taken over by the other
        kites = api.get("/api/v1/images", params={"q": "interrupted kite"}).json()["images"]
        assert sorted(i["id"] for i in kites) == sorted(done["images"]) and sorted(i["seed"] for i in kites) == [21, 22]
        for job_id in fast:
            job = wait_job(api, job_id, timeout=120)
            assert job["state"] == "succeeded" and job["attempts"] == 1 and len(job["images"]) == 1, job
        cups = api.get("/api/v1/images", params={"q": "a cup number", "limit": 100}).json()["images"]
        assert len(cups) == len(fast) == 12  # each job's image once: none lost, none drawn twice

        # events of a remote worker reach this API's SSE stream (progress comes only from the worker)
        streamed = api.post("/api/v1/generations", json={"prompt": "a streamed lamp", "steps": 6, "width": 32,
                                                         "height": 32}).json()
        with api.stream("GET", f"/api/v1/jobs/{streamed['id']}/events") as response:
            events = [json.loads(line[6:])["event"] for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "finished" and events.count("progress") == 6, events

        # a cancel reaches the remote worker through the database, within a step or two
        cancelled = api.post("/api/v1/generations", json={"prompt": "a cancelled boat", **SLOW}).json()
        wait_step(api, cancelled["id"])
        assert api.post(f"/api/v1/jobs/{cancelled['id']}/cancel").status_code == 200
        job = wait_job(api, cancelled["id"], timeout=30)
        assert job["state"] == "cancelled" and job["progress"]["step"] < 150, job

        with sqlite3.connect(home / "queue.sqlite") as db:
            states = dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
        assert states == {"succeeded": 14, "cancelled": 1}
        assert survivor.poll() is None and api_proc.poll() is None
    finally:
        for proc in (*workers, api_proc):
            if proc.poll() is None:
                proc.terminate()
        for proc in (*workers, api_proc):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert "Traceback" not in logs["api"].read_text()
    assert "Traceback" not in logs[{workers[0].pid: "w1", workers[1].pid: "w2"}[survivor.pid]].read_text()
    assert not list(home.rglob("*.tmp"))  # no half-written image


def test_bad_broker_and_database_are_refused_naming_the_valid_forms(tmp_path):
    exe = Path(sys.executable).parent / "designerbox"
    env = dict(os.environ, DESIGNERBOX_HOME=str(tmp_path / "home"))
    for args, expected in [(["worker", "--broker", "amqp://rabbit"], "--broker must be a Redis URL"),
                           (["worker", "--broker", "redis://127.0.0.1:1/0", "--device", "gpu7"],
                            "use cpu, cuda, cuda:N"),
                           (["worker", "--broker", "redis://127.0.0.1:1/0", "--concurrency", "0"],
                            "--concurrency must be 1 or more"),
                           (["serve", "--broker", "redis://127.0.0.1:1/0", "--database", "jobs.db"],
                            "--database must be a SQLAlchemy URL")]:
        out = subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and expected in out.stderr, (args, out.stderr)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """The records' database: a SQLite file, and PostgreSQL when DESIGNERBOX_TEST_POSTGRES names an empty
    database to use (postgresql+psycopg://USER@HOST:PORT/DB; its tables are dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.sqlite'}"
        return
    url = os.environ.get("DESIGNERBOX_TEST_POSTGRES")
    if not url:
        pytest.skip("set DESIGNERBOX_TEST_POSTGRES=postgresql+psycopg://USER@HOST:PORT/DB to run on PostgreSQL")
    yield url
    from sqlalchemy import create_engine, text

    with create_engine(url).begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS jobs, images, keys, users CASCADE"))


def test_a_lease_that_runs_out_is_taken_over_and_the_old_holder_cannot_finish(database, tmp_path):
    from designerbox.jobs.schema import GenerationRequest
    from designerbox.server.queue import JobQueue
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    queue = JobQueue(database)
    low = queue.submit(GenerationRequest(prompt="low"), user="ada")
    high = queue.submit(GenerationRequest(prompt="high"), user="bo", priority=1)
    first = queue.claim("host:1:a", "cuda:0", lease=0.3)
    assert first.id == high.id and first.lease_until is not None           # priority first, under a lease
    assert queue.claim("host:2:b", "cuda:1", lease=30).id == low.id
    assert queue.claim("host:3:c", "cuda:2", lease=30) is None             # nothing queued, no lease expired
    time.sleep(0.5)
    taken = queue.claim("host:3:c", "cuda:2", lease=30)                    # host:1 stopped renewing
    assert (taken.id, taken.attempts, taken.worker) == (high.id, 2, "host:3:c")
    assert queue.heartbeat(high.id, "host:1:a", 30) is None                # the old holder learns it lost it
    assert not queue.finish(high.id, "host:1:a", []) and queue.finish(high.id, "host:3:c", [])
    assert queue.get(high.id).state == "succeeded" and queue.get(high.id).attempts == 2
    assert queue.heartbeat(low.id, "host:2:b", 30) is False
    queue.cancel(low.id)
    assert queue.heartbeat(low.id, "host:2:b", 30) is True and queue.progress(low.id, "host:2:b", 1, 2) is True
    # the API's reaper: a running job whose lease ran out goes back to the queue, once
    lost = queue.submit(GenerationRequest(prompt="lost"))
    queue.claim("host:4:d", "cpu", lease=0.2)
    time.sleep(0.4)
    assert queue.requeue_expired() == [lost.id] and queue.requeue_expired() == []
    assert queue.queued_ids() == [lost.id] and queue.get(lost.id).worker is None
    # gallery rows in the same database; seeds reach 2**32 - 1
    studio = Studio(Settings(home=tmp_path / "home", device="cpu", cache_mb=512, database=database,
                             images=tmp_path / "shared"))
    studio.generate(GenerationRequest(prompt="a shared pear", seed=2**32 - 1, **FAST))
    [row] = studio.gallery.list(search="SHARED PEAR")
    assert row.seed == 2**32 - 1 and (tmp_path / "shared" / row.path).is_file()
