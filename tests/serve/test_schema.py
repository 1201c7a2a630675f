"""Property-based API testing with schemathesis against the live server's /openapi.json: no generated request
makes the server fail with a 5xx, and every answer has a documented status, content type and body schema.

The operations are driven through hypothesis directly (``operation.as_strategy()``) rather than through
``schemathesis.pytest.from_fixture``, whose lazy loader reads a pytest attribute that pytest 9 removed.
"""

from __future__ import annotations

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed in .venv")
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 25
OPERATIONS = [("POST", "/predict"), ("POST", "/predict/batch"), ("POST", "/explain"), ("GET", "/health"),
              ("GET", "/model")]
# Negative cases only where there is something to break (the GET operations take no parameters).
CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in OPERATIONS if m == "POST"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(server_url):
    return schemathesis.openapi.from_url(server_url + "/openapi.json")


def test_schema_lists_every_operation(api_schema):
    found = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g}" for m, p, g in CASES])
def test_no_server_errors_and_documented_answers(api_schema, server_url, method, path, mode):
    """Positive mode sends what the schema allows; negative mode sends what it forbids (wrong types, missing
    fields, out-of-range values): both must get documented non-5xx answers."""
    operation = api_schema[path][method]
    statuses: list[int] = []

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case) -> None:
        response = case.call_and_validate(base_url=server_url, checks=CHECKS)
        statuses.append(response.status_code)

    exercise()
    assert statuses and max(statuses) < 500


def test_server_still_healthy_after_fuzzing(server_url):
    assert httpx.get(server_url + "/health").json()["status"] == "ok"
