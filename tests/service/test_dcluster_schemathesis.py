"""Property-based API tests: schemathesis drives every operation of the running service's /openapi.json.

The service runs in python launcher mode from a temporary project whose only job (the schema's
example app, `smoke`) exits at once, so submits that pass validation start no real work.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.dcluster import REPO, Service, fast_settings

MAX_EXAMPLES = 25  # per operation and generation mode; ~20 operations stay well under a minute
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The real service over HTTP; its project's jobs exit 0 at once."""
    tmp = tmp_path_factory.mktemp("schemathesis")
    jobs = tmp / "project" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "run.py").write_text((REPO / "jobs" / "run.py").read_text())
    (jobs / "__init__.py").write_text("")
    (jobs / "smoke.py").write_text("def main(argv):\n    return 0\n")
    svc = Service(fast_settings(tmp / "state", Path(jobs.parent), terminate_grace_s=2.0)).start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def api_schema(service: Service) -> schemathesis.BaseSchema:
    """The schema the service publishes, loaded over HTTP (base URL: the service's)."""
    return schemathesis.openapi.from_url(service.url + "/openapi.json", timeout=10)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_api_conforms_to_its_schema_and_never_answers_5xx(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode
) -> None:
    # One hypothesis run per operation inside one test: the schema only exists once the service runs,
    # and schemathesis' fixture-based parametrize does not work with this pytest (Function._nodeid).
    failures: list[str] = []
    labels = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def exercise(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=10)

        try:
            exercise()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no valid request can be generated"
            continue  # nothing in this operation's input can be made invalid
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # every operation is tried; all failures are reported together
            failures.append(f"{operation.label}:\n{exc}")
    assert "POST /cluster/job/submit" in labels and len(labels) == 19
    assert not failures, f"{len(failures)} of {len(labels)} operations failed:\n\n" + "\n\n".join(failures)
