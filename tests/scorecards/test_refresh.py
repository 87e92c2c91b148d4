"""Metrics and results follow the data over real sockets: after the first sync of a Cloud
sandbox, then after webhook refreshes the sandbox delivers to a live Lantern server (the
recompute is a task sent after the commit, run in process without a broker)."""

from integrations.models import ImportedEntity
from scorecards import services
from scorecards.models import EntityMetric, PendingRefresh, ScorecardResult
from tests.integrations.webhooks.conftest import webhook_test_settings  # noqa: F401 (autouse)
from tests.integrations.webhooks.test_end_to_end import WS, lantern, settle  # noqa: F401
from tests.sandbox.helpers import first_repo


def _metric(entity, name: str, days: int = 0) -> EntityMetric:
    return EntityMetric.objects.get(entity=entity, metric=name, window_days=days)


def test_metrics_and_results_follow_a_sync_and_webhook_refreshes(cloud_sandbox, lantern):  # noqa: F811
    world = cloud_sandbox.world
    repo = first_repo(cloud_sandbox, with_prs=True)
    entity = ImportedEntity.objects.get(discovered__external_id=repo.uuid, state="linked").entity
    open_before = sum(1 for pr in repo.pull_requests.values() if pr.state == "OPEN")
    open_prs = _metric(entity, "open_prs")
    assert (open_prs.value, open_prs.n) == (open_before, len(repo.pull_requests))
    check = services.check_create(
        name="no open pull request",
        rule={"path": "metrics.open_prs.value", "op": "==", "value": open_before},
    )
    services.scorecard_create(name="Tidy", checks=[{"check": check}])
    assert ScorecardResult.objects.get(entity=entity).score == 100.0
    assert not PendingRefresh.objects.exists()  # every recompute the tasks were sent finished
    merged_before = _metric(entity, "merged_prs_per_week", 30).n

    pr = world.pullrequest_open(
        workspace=WS, slug=repo.slug, title="Scorecards", source="feature/scorecards"
    )
    settle(cloud_sandbox)
    assert _metric(entity, "open_prs").value == open_before + 1
    result = ScorecardResult.objects.get(entity=entity)
    assert (result.score, result.checks[0]["value"]) == (0.0, open_before + 1)

    world.pullrequest_merge(workspace=WS, slug=repo.slug, pr_id=pr.id)
    settle(cloud_sandbox)
    assert _metric(entity, "open_prs").value == open_before
    assert _metric(entity, "merged_prs_per_week", 30).n == merged_before + 1
    assert _metric(entity, "days_since_last_commit").value < 1
    assert ScorecardResult.objects.get(entity=entity).score == 100.0
    assert not PendingRefresh.objects.exists()  # every recompute the tasks were sent finished
