"""Load on the studio server: N jobs from C concurrent clients to the built-in model (2 steps, 32x32).

    python bench/server_load.py [--jobs 200] [--clients 20] [--json out.json]

1. a fresh DESIGNERBOX_HOME with one user and API key per client (quotas off for them), then
   `designerbox serve` on a free loopback port, as its own process
2. each client thread submits its share of the jobs (POST /api/v1/generations) as fast as it can;
   each POST's round trip is an enqueue latency
3. wait until every job has ended; a job lost is one whose POST was accepted (202) but that did not
   end "succeeded" with its images in the gallery, or one whose POST failed
4. the peer: the same requests run one by one in this process through the Python API
   (Studio.generate, saving to a gallery too), what a script without a server does

Reports throughput (jobs/s, from the first POST to the last job's end), p50/p99 enqueue latency,
jobs lost, and the server's throughput as a ratio of the in-process peer's.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REQUEST = {"steps": 2, "width": 32, "height": 32}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen:
    env = dict(os.environ, DESIGNERBOX_HOME=str(home), DESIGNERBOX_DEVICE="cpu")
    exe = Path(sys.executable).parent / "designerbox"
    proc = subprocess.Popen([str(exe), "serve", "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not answer within 120 s")


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def run_server(home: Path, jobs: int, clients: int) -> dict:
    from designerbox.store.users import UserStore

    store = UserStore(home / "users.sqlite")
    store.add_user("bench-admin", "admin")
    admin_key = store.create_key("bench-admin")[0]
    keys = []
    for c in range(clients):
        store.add_user(f"client{c}", "user", max_concurrent=0, jobs_per_minute=0)  # quotas off
        keys.append(store.create_key(f"client{c}")[0])
    port = free_port()
    proc = start_server(home, port, home / "server.log")
    url = f"http://127.0.0.1:{port}"
    latencies, accepted, refused = [], [], []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {keys[c]}"}) as http:
            http.get("/api/v1/me")  # connection up before the clock starts
            barrier.wait()
            for j in range(c, jobs, clients):
                t0 = time.perf_counter()
                try:
                    r = http.post("/api/v1/generations", json={"prompt": f"bench job {j}", "seed": j, **REQUEST})
                    status = r.status_code
                except httpx.HTTPError as err:
                    status = f"{type(err).__name__}"
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    (accepted.append(r.json()["id"]) if status == 202 else refused.append(status))

    try:
        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        submitted = time.perf_counter() - start
        admin = httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {admin_key}"})
        pending, ended = set(accepted), {}
        deadline = time.monotonic() + 1800
        while pending and time.monotonic() < deadline:  # polled gently: the bench shares the server's CPUs
            for state in ("succeeded", "failed", "cancelled"):
                for job in admin.get("/api/v1/jobs", params={"state": state, "limit": 500}).json()["jobs"]:
                    if job["id"] in pending and job["state"] == state:
                        pending.discard(job["id"])
                        ended[job["id"]] = job
            time.sleep(0.5)
        elapsed = time.perf_counter() - start
        images = {i["id"] for i in admin.get("/api/v1/images", params={"limit": 500}).json()["images"]}
        ok = [j for j in ended.values() if j["state"] == "succeeded" and j["images"] and set(j["images"]) <= images]
        last_end = max((j["finished_at"] for j in ended.values()), default=None)
    finally:
        proc.terminate()
        proc.wait(60)
    lost = len(refused) + (len(accepted) - len(ok))
    return {"jobs": jobs, "clients": clients, "accepted": len(accepted), "refused": refused[:10],
            "succeeded": len(ok), "lost": lost, "submit_seconds": round(submitted, 3),
            "seconds": round(elapsed, 3), "jobs_per_second": round(len(ok) / elapsed, 3),
            "enqueue_p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "enqueue_p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "enqueue_max_ms": round(max(latencies) * 1000, 2), "last_finished_at": last_end}


def run_in_process(home: Path, jobs: int) -> dict:
    """The peer: the same requests one by one through the Python API (model loaded once, as the server)."""
    from designerbox.jobs.schema import GenerationRequest
    from designerbox.settings import Settings
    from designerbox.studio import Studio

    studio = Studio(Settings(home=home, device="cpu", cache_mb=1024))
    studio.generate(GenerationRequest(prompt="warm-up", **REQUEST), save=False)  # the server loads it once too
    start = time.perf_counter()
    for j in range(jobs):
        studio.generate(GenerationRequest(prompt=f"bench job {j}", seed=j, **REQUEST))
    elapsed = time.perf_counter() - start
    return {"jobs": jobs, "seconds": round(elapsed, 3), "jobs_per_second": round(jobs / elapsed, 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="dbx-load-") as tmp:
        server = run_server(Path(tmp) / "server-home", args.jobs, args.clients)
        peer = run_in_process(Path(tmp) / "peer-home", args.jobs)
    result = {"server": server, "in_process": peer,
              "throughput_ratio_server_vs_in_process": round(server["jobs_per_second"] / peer["jobs_per_second"], 3),
              "machine": {"cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
              "request": REQUEST}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        from designerbox.store.png_metadata import write_atomic

        write_atomic(args.json, text.encode())
    print(f"\n{server['succeeded']}/{args.jobs} jobs from {args.clients} clients in {server['seconds']} s: "
          f"{server['jobs_per_second']} jobs/s ({result['throughput_ratio_server_vs_in_process']}x in-process one by "
          f"one, {peer['jobs_per_second']} jobs/s); enqueue p50 {server['enqueue_p50_ms']} ms, p99 "
          f"{server['enqueue_p99_ms']} ms; lost {server['lost']}", file=sys.stderr)
    return 0 if server["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
