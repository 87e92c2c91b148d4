"""The provider contract: what the sync engine relies on from every provider, proved once over
each provider's own source (a sandbox on a real socket, or in-process data).

A provider's tests subclass :class:`ProviderContract` and supply one fixture, ``source``,
returning a :class:`ContractSource` (how to build the provider over the source and what the
source holds); the class's tests run unchanged for every provider. The helpers below it are
what the Bitbucket provider conftests shared as copies: test settings (loopback allowed, fast
retries, budgets cleared) and a comparable snapshot of what a sync wrote.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.core.cache import cache

from catalog.models import Entity
from catalog.rendering import entity_document
from integrations.models import Commit, DiscoveredEntity, PullRequest
from integrations.providers import registry
from integrations.providers.base import (
    AuthKindSpec,
    Provider,
    ProviderAuthError,
    RepoRecord,
    WebhookEvent,
)
from integrations.providers.http import RetryPolicy


@dataclass
class Delivery:
    """A webhook delivery as the provider sends it, and the repository it names."""

    headers: dict[str, str]
    body: bytes
    repository_external_id: str | None


@dataclass
class ContractSource:
    """What a provider's fixture hands the contract.

    ``provider(**options)`` builds the provider over the source with working credentials (the
    options go to the provider's constructor); ``refused()`` builds one the source refuses.
    ``repositories``: external id → name of what a full listing yields, in more than one page.
    ``pull_requests`` / ``commits``: external id of one repository → the ids of its pull
    requests (any order) and the hashes of its default branch's commits (newest first).
    ``file``: (external id, path, content) of a file the source holds. ``faults(kinds)`` makes
    the source answer its next requests with these transient faults ("500", "429", ...).
    ``push``: a push delivery; ``ignored``: a delivery the provider ignores.
    """

    provider: Callable[..., Provider]
    refused: Callable[[], Provider]
    repositories: dict[str, str]
    pull_requests: tuple[str, set[str]]
    commits: tuple[str, list[str]]
    file: tuple[str, str, bytes]
    faults: Callable[[list[str]], None]
    push: Delivery
    ignored: Delivery
    target: dict = field(default_factory=dict)


def listing(provider: Provider) -> list[list[RepoRecord]]:
    return list(provider.iter_repositories())


class ProviderContract:
    """Listing, paging, pull requests, commits, files, faults, webhooks and credentials."""

    @pytest.fixture
    def source(self) -> ContractSource:
        raise NotImplementedError("a provider's contract tests supply the source fixture")

    # -- listing and paging --------------------------------------------------------------------

    def test_a_full_listing_yields_every_repository_once(self, source):
        records = [record for page in listing(source.provider()) for record in page]
        assert {r.external_id: r.name for r in records} == source.repositories
        assert len(records) == len(source.repositories)

    def test_the_listing_comes_in_pages_and_counts_its_requests(self, source):
        provider = source.provider()
        pages = listing(provider)
        assert len(pages) > 1 and all(isinstance(page, list) for page in pages)
        assert provider.stats.requests >= len(pages)

    def test_one_repository_reads_as_the_listing_has_it_and_an_unknown_one_is_none(self, source):
        provider = source.provider()
        listed = {r.external_id: r for page in listing(provider) for r in page}
        external_id = next(iter(source.repositories))
        one = provider.get_repository(external_id)
        assert (one.external_id, one.name) == (external_id, listed[external_id].name)
        assert provider.in_target(one)
        assert provider.get_repository("999999", "no-such-repository") is None

    # -- pull requests, commits and files ------------------------------------------------------

    def test_pull_requests_are_the_repositorys_newest_updated_first_within_the_limit(self, source):
        provider = source.provider()
        external_id, expected = source.pull_requests
        record = provider.get_repository(external_id)
        prs = list(provider.iter_pull_requests(record, limit=100))
        assert {pr.external_id for pr in prs} == expected
        stamps = [pr.updated_on for pr in prs]
        assert stamps == sorted(stamps, reverse=True)
        assert len(list(provider.iter_pull_requests(record, limit=1))) == 1
        newer = list(provider.iter_pull_requests(record, since=stamps[-1], limit=100))
        assert [pr.external_id for pr in newer] == [
            pr.external_id for pr in prs if pr.updated_on > stamps[-1]
        ]

    def test_commits_are_the_default_branchs_newest_first_within_the_limit(self, source):
        provider = source.provider()
        external_id, expected = source.commits
        record = provider.get_repository(external_id)
        assert [c.hash for c in provider.iter_commits(record, limit=100)] == expected
        assert [c.hash for c in provider.iter_commits(record, limit=2)] == expected[:2]

    def test_a_file_reads_as_its_bytes_and_a_missing_one_as_none(self, source):
        provider = source.provider()
        external_id, path, content = source.file
        record = provider.get_repository(external_id)
        assert provider.read_file(record, path) == content
        assert provider.read_file(record, "no/such/file.yaml") is None

    # -- faults and credentials ----------------------------------------------------------------

    def test_transient_faults_are_retried_and_the_listing_is_unchanged(self, source):
        clean = [(r.external_id, r.data) for page in listing(source.provider()) for r in page]
        source.faults(["500", "429", "503"])
        provider = source.provider()
        faulty = [(r.external_id, r.data) for page in listing(provider) for r in page]
        assert faulty == clean

    def test_refused_credentials_fail_the_probe_and_the_listing(self, source):
        assert source.provider().probe().ok
        refused = source.refused()
        result = refused.probe()
        assert not result.ok and result.message
        with pytest.raises(ProviderAuthError):
            listing(refused)

    def test_every_auth_kind_is_a_registered_spec_that_builds_credentials(self, source):
        provider_class = type(source.provider())
        assert provider_class.auth_kinds
        for spec in provider_class.auth_kinds:
            assert isinstance(spec, AuthKindSpec)
            assert registry.auth_kind(spec.key) is spec
            assert not set(spec.public_fields) & set(spec.secret_fields)
            fields = {*spec.public_fields, *spec.secret_fields}
            assert all(set(alternatives) <= fields for alternatives in spec.required)
            assert spec.build_credential is not None
        assert source.provider().credentials()

    def test_the_target_fields_are_the_target_keys_and_the_source_target_is_valid(self, source):
        provider_class = type(source.provider())
        assert {f.name for f in provider_class.target_fields} == set(provider_class.target_keys)
        assert provider_class.validate_target(source.target) == {}
        assert set(provider_class.validate_target({**source.target, "bogus": 1})) == {"bogus"}

    # -- webhooks ------------------------------------------------------------------------------

    def test_a_push_delivery_names_the_repository_it_changed(self, source):
        push = source.push
        event = source.provider().parse_webhook(push.headers, push.body)
        assert isinstance(event, WebhookEvent) and not event.ignored
        assert event.repository_external_id == push.repository_external_id

    def test_an_event_the_provider_does_not_act_on_is_ignored(self, source):
        ignored = source.ignored
        assert source.provider().parse_webhook(ignored.headers, ignored.body).ignored


# -- shared by the Bitbucket provider tests ------------------------------------------------------


def provider_test_settings(settings, monkeypatch, client_module, *, delays: tuple[float, float]):
    """Loopback allowed, the client-side request budgets (in the cache) cleared, and retries
    that wait milliseconds; call from an autouse fixture, then ``cache.clear()`` after it."""
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    cache.clear()
    base_delay, max_delay = delays
    monkeypatch.setattr(
        client_module,
        "retry_policy",
        lambda: RetryPolicy(base_delay=base_delay, max_delay=max_delay),
    )


def snapshot(*, link_keys: tuple[str, ...]) -> dict:
    """Everything a sync wrote, without ids, timestamps of the run or generated uids (and the
    integration-link keys named, which differ between two runs)."""

    def document(entity: Entity) -> dict:
        doc = entity_document(entity)
        doc["metadata"].pop("uid", None)
        doc["metadata"].pop("etag", None)
        for link in doc["metadata"].get("integration", []):
            for key in link_keys:
                link.pop(key, None)
        return doc

    return {
        "entities": sorted(
            (document(e) for e in Entity.objects.all()), key=lambda d: d["metadata"]["name"]
        ),
        "discovered": sorted(
            DiscoveredEntity.objects.values_list(
                "external_id", "name", "state", "recommended_action", "data"
            )
        ),
        "pull_requests": sorted(
            PullRequest.objects.values_list(
                "discovered__external_id", "external_id", "state", "title", "updated_on"
            )
        ),
        "commits": sorted(
            Commit.objects.values_list("discovered__external_id", "hash", "date", "message")
        ),
    }
