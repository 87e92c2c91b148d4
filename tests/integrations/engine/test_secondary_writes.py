"""Pull requests and commits are upserted in bulk: created once, updated in place by their key."""

from datetime import UTC, datetime, timedelta

from integrations.engine.secondary import _states_write, upsert_commits, upsert_pull_requests
from integrations.models import Commit, DiscoveredEntity, PullRequest
from integrations.providers.base import CommitRecord, PullRequestRecord

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _repo(integration, name: str) -> DiscoveredEntity:
    return DiscoveredEntity.objects.create(
        integration=integration, external_id=name, name=name, last_seen_at=T0
    )


def test_pull_requests_are_created_then_updated_in_place_with_exact_values(make_integration):
    integration = make_integration(secondary_kinds=[])
    repo = _repo(integration, "payments")
    raw = {"id": 1, "title": 'Fix "quotes" \\ and ünïcode', "nested": {"list": [1, None]}}
    first = PullRequestRecord("1", "Fix", "OPEN", T0, created_on=None, author="ann", raw=raw)
    other = PullRequestRecord("2", "Other", "MERGED", T0 - timedelta(days=1), raw={})
    assert upsert_pull_requests([(repo.pk, first), (repo.pk, other)]) == 2

    stored = PullRequest.objects.get(discovered=repo, external_id="1")
    assert (stored.title, stored.state, stored.author, stored.data) == ("Fix", "OPEN", "ann", raw)
    assert (stored.updated_on, stored.created_on) == (T0, None)

    later = T0 + timedelta(hours=1)
    merged = PullRequestRecord("1", "Fix it", "MERGED", later, created_on=T0, raw={"v": 2})
    assert upsert_pull_requests([(repo.pk, merged)]) == 1
    assert PullRequest.objects.filter(discovered=repo).count() == 2
    stored = PullRequest.objects.get(pk=stored.pk)  # the same row, updated
    assert (stored.title, stored.state, stored.updated_on, stored.created_on, stored.data) == (
        "Fix it",
        "MERGED",
        later,
        T0,
        {"v": 2},
    )
    assert upsert_pull_requests([]) == 0


def test_commits_are_keyed_by_repository_and_hash(make_integration):
    integration = make_integration(secondary_kinds=[])
    one, two = _repo(integration, "one"), _repo(integration, "two")
    commit = CommitRecord("abc", T0, message="line\nnext\ttab", author="bob", raw={"hash": "abc"})
    assert upsert_commits([(one.pk, commit), (two.pk, commit)]) == 2
    assert upsert_commits([(one.pk, CommitRecord("abc", T0, message="amended"))]) == 1
    assert dict(Commit.objects.values_list("discovered__name", "message")) == {
        "one": "amended",
        "two": "line\nnext\ttab",
    }
    assert Commit.objects.get(discovered=two).date == T0


def test_secondary_states_are_written_per_repository(make_integration):
    integration = make_integration(secondary_kinds=[])
    one, two = _repo(integration, "one"), _repo(integration, "two")
    state = {"pull_requests": {"initialized": True, "gaps": [["a", "b"]], "newest": None}}
    _states_write({one.pk: state})
    one.refresh_from_db()
    two.refresh_from_db()
    assert (one.secondary_state, two.secondary_state) == (state, {})
