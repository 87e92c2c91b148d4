"""Schemathesis against Lantern's own OpenAPI schema (drf-spectacular, ``/api/schema/``): every
operation of the catalog and integrations APIs, with a bounded number of generated requests each,
answers without a server error and as the schema documents it (status code, content type,
headers, body).

The app runs in process (WSGI) over a seeded database: a superuser's bearer token, entities with
relations, a fake-provider connector and integration after a sync, so detail endpoints hit real
rows as well as missing ones. Every generated request runs in a savepoint that is rolled back,
so a DELETE does not starve the examples after it. Generation is derandomized: a CI failure
replays locally.
"""

import time
from dataclasses import dataclass

import pytest
import schemathesis
import yaml
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.wsgi import application
from tests.security import fuzz_helpers
from tests.security.fuzz_helpers import FuzzWorld

fuzz_world = fuzz_helpers.fuzz_world  # the fixture, for the test below

# Per operation and generation mode: valid requests (positive) and requests that break the schema
# (negative). 31 operations x 2 x 20 stays well under a minute.
EXAMPLES_PER_MODE = 20
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,  # the same request without the token is refused
]
# Not run, on purpose: positive_data_acceptance and negative_data_rejection read the schema as the
# whole contract. It describes shapes; values are the services' to judge (a provider key, a
# JMESPath, an entity ref), so a schema-valid request can rightly be a 400. And lists read a
# malformed limit or offset as the default, as DRF's pagination and Backstage's catalog do, so a
# schema-violating request can rightly be a 200. test_bad_input.py covers the inputs that matter.


# Every YAML media type: schemathesis picks the first registered deserializer of the YAML family.
@schemathesis.deserializer("text/yaml", "text/x-yaml", "application/x-yaml", "application/yaml")
def _yaml_documents(ctx, response):
    """The API's YAML as the README describes it: one document, or for a list a YAML stream with
    one document per entity (as ``export_catalog`` writes), read back as the documented array."""
    responses = ctx.operation.definition.raw["responses"]
    schema = responses[str(response.status_code)]["content"]["application/yaml"]["schema"]
    if schema.get("type") == "array":
        return list(yaml.safe_load_all(response.content))
    return yaml.safe_load(response.content)


@pytest.fixture
def connection_kept_across_requests():
    """The WSGI handler closes the database connection around each request, which would end the
    test's transaction; Django's test client unhooks the same signal handlers."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@dataclass
class Outcome:
    label: str
    examples: int = 0
    failure: str = ""


def _real_path_parameters(operation, world: FuzzWorld) -> dict:
    """Path parameters naming seeded rows, for the operation's own parameters."""
    path = operation.path
    values = {
        "kind": world.entity.kind,
        "namespace": world.entity.namespace,
        "name": world.entity.name,
        "uid": str(world.entity.uid),
        "id": world.spare_connector.pk if "/connectors/" in path else world.integration.pk,
        "imported_pk": world.imported.pk,
    }
    names = {parameter.name for parameter in operation.path_parameters}
    return {name: value for name, value in values.items() if name in names}


def _strategy(operation, mode: GenerationMode, world: FuzzWorld):
    generated = operation.as_strategy(generation_mode=mode)
    real = _real_path_parameters(operation, world)
    if not real:
        return generated
    return st.one_of(generated, operation.as_strategy(generation_mode=mode, path_parameters=real))


def _fuzz(operation, mode: GenerationMode, world: FuzzWorld, outcome: Outcome, on_commit) -> None:
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation, mode, world))
    def run(case) -> None:
        outcome.examples += 1
        with transaction.atomic():
            try:
                # What a request queues after commit runs too: a manual sync syncs (the fake
                # provider, in process), so it answers without ever reaching a network.
                with on_commit(execute=True):
                    case.call_and_validate(headers=world.authorization, checks=CHECKS)
            finally:
                transaction.set_rollback(True)

    run()


@pytest.mark.django_db
def test_every_operation_answers_without_server_errors_and_as_the_schema_documents(
    fuzz_world, connection_kept_across_requests, django_capture_on_commit_callbacks
):
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    documented = sum(
        1
        for methods in schema.raw_schema["paths"].values()
        for method in methods
        if method in {"get", "put", "post", "patch", "delete", "head", "options"}
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    outcomes: list[Outcome] = []
    started = time.monotonic()
    for operation in operations:
        outcome = Outcome(operation.label)
        outcomes.append(outcome)
        for mode in MODES:
            try:
                _fuzz(operation, mode, fuzz_world, outcome, django_capture_on_commit_callbacks)
            except (Exception, BaseExceptionGroup) as exc:  # collected: every operation runs
                outcome.failure += f"\n[{mode.value}] {type(exc).__name__}: {exc}"
    elapsed = time.monotonic() - started

    failures = [f"{o.label}:{o.failure}" for o in outcomes if o.failure]
    assert not failures, "\n\n".join(failures)
    assert len(outcomes) == documented > 0
    examples = EXAMPLES_PER_MODE * len(MODES)
    # Hypothesis stops early only when it has tried every distinct input an operation allows.
    thin = [f"{o.label}: {o.examples}" for o in outcomes if o.examples < examples]
    print(
        f"\n{len(outcomes)} operations fuzzed, {examples} examples each "
        f"({EXAMPLES_PER_MODE} valid + {EXAMPLES_PER_MODE} invalid) in {elapsed:.1f}s"
        + (f"; fewer for {', '.join(thin)}" if thin else "")
    )
    assert all(o.examples > 0 for o in outcomes)
