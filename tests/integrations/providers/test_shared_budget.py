"""The shared request budget: worker processes using one token stay within its budget together
(counted at the sandbox), in Redis and in the database; what the server announces in its
rate-limit headers is kept below too."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

from integrations.providers.base import RequestStats
from integrations.providers.bitbucket_cloud.client import BitbucketCloudClient
from integrations.providers.budget import DatabaseBudgetStore, current_window
from integrations.providers.http import ProviderRateLimited, RequestBudget, RetryPolicy
from integrations.providers.oauth import BearerCredential
from sandbox import SandboxServer
from tests.sandbox.fixtures import SANDBOX_TOKEN, cloud_world_factory

ROOT = Path(__file__).resolve().parents[3]
REDIS_URL = os.environ.get("CELERY_BROKER_URL", "")


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


@pytest.fixture
def cloud():
    with SandboxServer(cloud_world_factory(repos=2), kind="cloud") as server:
        yield server


def workspace_reads(server) -> int:
    return sum(1 for e in server.api.log.entries() if e.path == "/2.0/workspaces/acme")


def run_workers(server, tmp_path, *, per_hour: int, env: dict, count: int = 2) -> list[int]:
    """Start the workers, wait until each is set up, then let them go at once."""
    go = tmp_path / "go"
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LANTERN_OUTBOUND_ALLOWLIST": "127.0.0.1",
        **env,
    }
    workers = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "tests.support.budget_worker", server.api_url]
            + [SANDBOX_TOKEN, str(per_hour), str(go), str(tmp_path / f"ready-{number}")],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(count)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    go.write_text("go")
    made = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        made.append(json.loads(out.strip().splitlines()[-1])["made"])
    return made


@pytest.mark.skipif(not REDIS_URL.startswith("redis://"), reason="needs a Redis broker")
def test_two_worker_processes_sharing_a_token_stay_within_its_budget_in_redis(cloud, tmp_path):
    made = run_workers(
        cloud, tmp_path, per_hour=60, env={"LANTERN_REQUEST_BUDGET_STORE": REDIS_URL}
    )
    assert sum(made) == workspace_reads(cloud) == 57  # 95 % of 60, for both together
    assert all(count > 0 for count in made), made  # both worked, neither alone spent it all


@pytest.mark.django_db
def test_two_worker_processes_sharing_a_token_stay_within_its_budget_in_the_database(
    cloud, tmp_path
):
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    if connection.vendor != "postgresql":
        pytest.skip("the worker processes share the PostgreSQL test database")
    made = run_workers(
        cloud,
        tmp_path,
        per_hour=60,
        env={"LANTERN_REQUEST_BUDGET_STORE": "database", "DATABASE_URL": url},
    )
    assert sum(made) == workspace_reads(cloud) == 57
    assert all(count > 0 for count in made), made


@pytest.mark.django_db
def test_the_database_store_counts_atomically_and_keeps_the_larger_spent_count(request):
    store = DatabaseBudgetStore()
    request.addfinalizer(store.close)
    window = current_window()
    assert [store.take("k", window) for _ in range(3)] == [1, 2, 3]
    store.raise_to("k", window, 10)
    store.raise_to("k", window, 4)  # never lowers
    assert store.take("k", window) == 11
    assert store.take("k", window + 1) == 1  # a new hour starts afresh
    assert store.prune(before=window + 1) >= 1
    assert store.take("k", window) == 1


def cloud_client(server, per_hour: int) -> BitbucketCloudClient:
    return BitbucketCloudClient(
        base_url=server.api_url,
        credentials=[BearerCredential(SANDBOX_TOKEN)],
        stats=RequestStats(),
        hourly_limit=per_hour,
        retry=RetryPolicy(max_tries=1),
    )


def list_until_spent(client: BitbucketCloudClient, most: int = 200) -> int:
    made = 0
    try:
        for _ in range(most):
            client.repositories_page("acme")
            made += 1
    except ProviderRateLimited:
        pass
    return made


def listings(server) -> list:
    return [e for e in server.api.log.entries() if e.path.startswith("/2.0/repositories/")]


@pytest.mark.django_db
def test_a_smaller_limit_the_server_announces_wins(cloud):
    cloud.api.rate_limits.configure(limits={"api-repositories": 20})
    made = list_until_spent(cloud_client(cloud, per_hour=1000))
    assert made == len(listings(cloud)) == 19  # 95 % of the announced 20
    assert not [e for e in listings(cloud) if e.status == 429]


@pytest.mark.django_db
def test_a_scaled_limit_the_server_announces_above_the_configured_one_is_used(cloud):
    cloud.api.rate_limits.configure(limits={"api-repositories": 30})
    made = list_until_spent(cloud_client(cloud, per_hour=10))
    assert made == 28  # 95 % of the announced 30, not of the configured 10


@pytest.mark.django_db
def test_requests_made_elsewhere_with_the_token_are_counted_when_the_server_is_near_its_limit(
    cloud,
):
    cloud.api.rate_limits.configure(limits={"api-repositories": 100}, near_limit_ratio=0.2)
    headers = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    with httpx.Client(base_url=cloud.api_url, headers=headers) as elsewhere:
        for _ in range(70):  # another tool, outside Lantern, with the same token
            assert elsewhere.get("/repositories/acme").status_code == 200
    made = list_until_spent(cloud_client(cloud, per_hour=100))
    # Near the limit from Lantern's 11th request on (under 20 left): the shared count jumps
    # from 11 to 80 spent, so 15 more fit under 95, not 84 (the 429 would come at 30).
    assert made == 26
    assert not [e for e in listings(cloud) if e.status == 429]


def test_the_budget_limit_is_95_percent_of_the_hourly_limit():
    assert RequestBudget(1000).limit == 950
    assert RequestBudget(None).take("anything")


@pytest.mark.django_db
def test_the_minute_beat_forgets_past_hours_counts_and_keeps_this_hours(settings):
    from integrations.providers.budget import budget_store, budget_stores_close
    from integrations.tasks import enqueue_due_integrations

    settings.LANTERN_REQUEST_BUDGET_STORE = "database"
    store = budget_store()
    window = current_window()
    store.take("old", window - 5)
    store.take("last-hour", window - 1)
    store.take("now", window)

    enqueue_due_integrations()

    assert store.take("old", window - 5) == 1  # forgotten, so counted afresh
    assert store.take("last-hour", window - 1) == 2
    assert store.take("now", window) == 2
    budget_stores_close()
