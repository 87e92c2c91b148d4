"""Shared by the fault and database-error tests (``test_sync_faults.py``,
``test_database_errors.py``); nothing here is autouse, so the other modules of this directory are
untouched by it.

:func:`bitbucket_factory` starts a Bitbucket sandbox of either flavour on a real socket (Cloud
over HTTP, Data Center over HTTPS with its private CA) over a world of 36 repositories in three
projects, with a connector pointing at it. Everything is paged small so that paging is exercised
(and page faults have pages to hit): repositories 10 to a page, pull requests and commits 1 to a
page. Retries wait milliseconds (a ``Retry-After`` of 1 s is capped to 10 ms) and the client's
timeout is below the sandbox's slow answers, so an injected ``slow`` is a real read timeout.
"""

import os
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.db import connection

from integrations import services
from integrations.choices import SyncState
from integrations.models import Integration, SyncRun
from integrations.providers.bitbucket_cloud import client as cloud_client
from integrations.providers.bitbucket_dc import client as dc_client
from integrations.providers.http import RetryPolicy
from sandbox import SandboxServer
from sandbox.traffic import KINDS, FaultInjector, LoggedRequest
from tests.integrations.bitbucket_cloud.conftest import make_connector as cloud_connector
from tests.integrations.bitbucket_dc.conftest import make_connector as dc_connector
from tests.sandbox.fixtures import (  # noqa: F401 (fixtures)
    cloud_world_factory,
    dc_world_factory,
    make_cloud_sandbox,
    make_dc_sandbox,
)

REPOS = 36
PROJECTS = 3
REPOSITORIES_PER_PAGE = 10
ITEMS_PER_PAGE = 1  # pull requests and commits
CLIENT_TIMEOUT = 0.25
SLOW_SECONDS = 0.4  # above CLIENT_TIMEOUT: a slow answer times the client out
MAX_TRIES = 5
LISTING = {"cloud": "GET /2.0/repositories/{workspace}", "dc": "GET /rest/api/1.0/repos"}
# The listing's own path, to aim scripted faults at it alone.
LISTING_PATH = {"cloud": r"^/2\.0/repositories/acme$", "dc": r"^/rest/api/1\.0/repos$"}


def fast_retries() -> RetryPolicy:
    return RetryPolicy(max_tries=MAX_TRIES, base_delay=0.002, max_delay=0.01)


@pytest.fixture
def reliability_settings(settings, monkeypatch):
    """Loopback allowed, Data Center on, no webhook registration, fast retries, short timeouts
    and small pages; request budgets (kept in the cache) start afresh."""
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.BITBUCKET_DC_ENABLED = True
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False
    for module in (cloud_client, dc_client):
        monkeypatch.setattr(module, "retry_policy", fast_retries)
        monkeypatch.setattr(module, "REQUEST_TIMEOUT", CLIENT_TIMEOUT)
    monkeypatch.setattr(cloud_client, "REPOSITORIES_PAGELEN", REPOSITORIES_PER_PAGE)
    monkeypatch.setattr(cloud_client, "PULL_REQUESTS_PAGELEN", ITEMS_PER_PAGE)
    monkeypatch.setattr(cloud_client, "COMMITS_PAGELEN", ITEMS_PER_PAGE)
    monkeypatch.setattr(dc_client, "PULL_REQUESTS_LIMIT", ITEMS_PER_PAGE)
    monkeypatch.setattr(dc_client, "COMMITS_LIMIT", ITEMS_PER_PAGE)
    cache.clear()
    yield
    cache.clear()


@dataclass
class Bitbucket:
    """A running sandbox of one flavour (``cloud`` or ``dc``) and a connector to it."""

    kind: str
    server: SandboxServer
    connector: object

    @property
    def faults(self) -> FaultInjector:
        return self.server.api.faults

    @property
    def listing(self) -> str:
        """The repository listing's endpoint, as the request log names it."""
        return LISTING[self.kind]

    def integration(self, name: str = "reliability", **values) -> Integration:
        """Auto-import on, pull requests and commits as secondary kinds."""
        values.setdefault("auto_import", True)
        values.setdefault("secondary_kinds", ["pull_requests", "commits"])
        target = {"workspace": "acme"} if self.kind == "cloud" else {}
        return services.integration_create(
            connector=self.connector, name=name, target=target, **values
        )

    def faults_everywhere(self, rate: float, *, seed: int) -> None:
        """Every fault kind at once, on every API request: the eight that can meet any answer
        share ``rate`` equally; the two page faults, which only a page with more to come can
        meet, get the same rate each on those pages."""
        self.faults.configure(
            seed=seed,
            **{f"rate_{kind}": rate / (len(KINDS) - 2) for kind in KINDS},
            retry_after=[0, 1],
            slow_seconds=SLOW_SECONDS,
        )

    def faults_on_listing(self, script: list[str | None]) -> None:
        """``script`` played on the repository listing's requests only, in order."""
        self.faults.configure(
            script=script, path_pattern=LISTING_PATH[self.kind], slow_seconds=SLOW_SECONDS
        )

    def faults_off(self) -> None:
        self.faults.configure(slow_seconds=SLOW_SECONDS)

    def requests(self, endpoint: str | None = None) -> list[LoggedRequest]:
        """The request log (of ``endpoint``), once it holds every slow answer injected since the
        faults were configured: the sandbox logs one only when it answers, after the client
        has given up on it."""
        deadline = time.monotonic() + 10 * SLOW_SECONDS
        while time.monotonic() < deadline:
            entries = self.server.api.log.entries()
            slow = sum(entry.fault == "slow" for entry in entries)
            if slow >= self.faults.injected["slow"]:
                break
            time.sleep(0.02)
        return [entry for entry in entries if endpoint is None or entry.endpoint == endpoint]


@pytest.fixture
def bitbucket_factory(request, reliability_settings):
    """``bitbucket_factory(kind, repos=..., prs=..., commits=...)``: a :class:`Bitbucket` over
    a fresh world of that many repositories, and pull requests and commits per repository."""

    def make(kind: str, *, repos: int = REPOS, prs: int = 3, commits: int = 5) -> Bitbucket:
        seed = 7
        sizes = {
            "projects": PROJECTS,
            "repos": repos,
            "prs_per_repo": prs,
            "commits_per_repo": commits,
        }
        if kind == "cloud":
            make_sandbox = request.getfixturevalue("make_cloud_sandbox")
            server = make_sandbox(cloud_world_factory(seed, **sizes))
            server.api.rate_limits.configure(limits={})  # the test's own requests, unthrottled
            connector = cloud_connector(server, config={"requests_per_hour": 100_000})
        else:
            make_sandbox = request.getfixturevalue("make_dc_sandbox")
            server = make_sandbox(dc_world_factory(seed, **sizes), max_limit=REPOSITORIES_PER_PAGE)
            connector = dc_connector(server)
        return Bitbucket(kind, server, connector)

    return make


@pytest.fixture(params=["cloud", "dc"])
def bitbucket(request, bitbucket_factory) -> Bitbucket:
    """Each test using it runs against Bitbucket Cloud and against Data Center."""
    return bitbucket_factory(request.param)


def assert_finished_cleanly(run: SyncRun) -> None:
    """Succeeded, or failed with the error recorded; either way finished and the integration
    free for the next run."""
    run.refresh_from_db()
    assert run.state in (SyncState.SUCCEEDED, SyncState.FAILED), (run.state, run.message)
    assert run.finished_at is not None
    if run.state == SyncState.FAILED:
        assert run.error.strip(), "a failed run records why"
    assert Integration.objects.get(pk=run.integration_id).locked_by_run is None


def catalog_diff(expected: dict, actual: dict) -> dict:
    """What ``actual`` (a :func:`tests.integrations.catalog_snapshot.snapshot`) lost, has more
    of (duplicated or spurious) or changed against ``expected``, per section; empty when the two
    catalogs are the same row for row."""
    problems = {}
    for section, want in expected.items():
        got = actual[section]
        if isinstance(want, dict):
            found = {
                "lost": sorted(want.keys() - got.keys()),
                "extra": sorted(got.keys() - want.keys()),
                "changed": sorted(key for key in want.keys() & got.keys() if want[key] != got[key]),
            }
        else:
            wanted, have = Counter(want), Counter(got)
            found = {"lost": list(wanted - have), "extra": list(have - wanted)}
        found = {key: value for key, value in found.items() if value}
        if found:
            problems[section] = found
    return problems


def require_postgres() -> None:
    """Skip where the database is not PostgreSQL, except on CI (``CI=true``), where the test
    must run and fails instead."""
    if connection.vendor == "postgresql":
        return
    reason = "needs DATABASE_URL on PostgreSQL"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: this test must run)")
    pytest.skip(reason)
