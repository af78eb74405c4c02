"""Schemathesis against the server's own OpenAPI schema: generated requests, valid and invalid, to
every operation of a real uvicorn server; none may be answered with a 5xx.

Bounded for CI: a fixed number of examples per operation, derandomized (the same cases every run),
no example database. Two servers: the asynchronous API on one whose jobs stay queued (a generated
4096x4096 batch of 16 would otherwise run for minutes), the two synchronous compatible endpoints
(OpenAI, A1111 txt2img wait for their images) on one that runs jobs, with fewer examples. Both
with an admin's key, so the admin routes are exercised too (single-user mode would end once a
generated request created a key)."""

import dataclasses

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")
from hypothesis import HealthCheck, given, settings as hsettings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from designerbox.server.app import create_app  # noqa: E402
from designerbox.store.users import UserStore  # noqa: E402
from server_util import ThreadServer, settings  # noqa: E402

pytestmark = pytest.mark.schemathesis
SYNC_PATHS = ["/v1/images/generations", "/sdapi/v1/txt2img"]


def _serve(home, workers: bool):
    store = UserStore(home / "users.sqlite")
    store.add_user("fuzzer", "admin")
    key = store.create_key("fuzzer")[0]
    app = create_app(dataclasses.replace(settings(home), max_body_bytes=1 << 20), workers=workers)
    return ThreadServer(app), {"Authorization": f"Bearer {key}"}


def fuzz(server, headers, schema, examples: int, timeout: float) -> tuple[list[str], int]:
    """Every operation, valid and invalid requests (`examples` of each): the 5xx answers, and how many calls."""
    errors, calls = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @hsettings(max_examples=examples, deadline=None, derandomize=True, database=None,
                       suppress_health_check=list(HealthCheck))
            def run(case):
                nonlocal calls
                calls += 1
                response = case.call(base_url=server.url, headers=headers, timeout=timeout)
                if response.status_code >= 500:
                    errors.append(f"{case.method} {case.formatted_path} ({mode.value}): {response.status_code} "
                                  f"{response.text[:300]}")

            run()
    return errors, calls


def test_no_server_errors(tmp_path):
    server, headers = _serve(tmp_path / "queued", workers=False)
    with server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers).exclude(path=SYNC_PATHS)
        errors, calls = fuzz(server, headers, schema, examples=25, timeout=60)
    assert calls > 500 and errors == [], "\n".join(errors)


def test_no_server_errors_from_the_waiting_endpoints(tmp_path):
    server, headers = _serve(tmp_path / "running", workers=True)
    with server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", headers=headers).include(path=SYNC_PATHS)
        errors, calls = fuzz(server, headers, schema, examples=8, timeout=300)
    assert calls >= 20 and errors == [], "\n".join(errors)
