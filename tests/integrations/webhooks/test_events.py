"""One test per event and provider (Zulip-style): a real-shaped payload, signed and posted to the
endpoint, is recorded with the repository it names and queued for processing — or ignored."""

import json

import pytest

from integrations.models import WebhookDelivery
from integrations.providers.base import RefChange, WebhookPayloadError
from integrations.providers.bitbucket_cloud.webhooks import parse_webhook as parse_cloud
from integrations.providers.bitbucket_dc.webhooks import parse_webhook as parse_dc
from tests.integrations.webhooks.conftest import deliver, payload

CLOUD_REPO = ("{7c9e6679-7425-40de-944b-e07fc1f90ae7}", "payments-api")
DC_REPO = ("84", "PAY/payments-api")
NEW = "9b3c7d2e8f1a4b5c6d7e8f9012a3b4c5d6e7f809"
OLD = "1e4bb5b4a1e2c3d4e5f60718293a4b5c6d7e8f90"


def check(integration, event: str, fixture: str, repository: tuple[str, str] | None) -> None:
    response = deliver(integration, event, fixture, delivery_id=f"{fixture}-1")
    assert response.status_code == 202, response.content
    delivery = WebhookDelivery.objects.get(integration=integration, delivery_id=f"{fixture}-1")
    assert delivery.event == event
    if repository is None:
        assert (delivery.outcome, delivery.repository_external_id) == ("ignored", "")
    else:
        assert delivery.outcome == "queued"
        assert (delivery.repository_external_id, delivery.repository_name) == repository


def cloud(name: str, event: str):
    body = json.dumps(payload("bitbucket_cloud", name)).encode()
    return parse_cloud({"X-Event-Key": event, "X-Request-UUID": "d-1"}, body)


def dc(name: str, event: str):
    body = json.dumps(payload("bitbucket_dc", name)).encode()
    return parse_dc({"X-Event-Key": event, "X-Request-Id": "d-1"}, body)


# -- Bitbucket Cloud -----------------------------------------------------------------------------


def test_cloud_repo_push(cloud_integration):
    check(cloud_integration, "repo:push", "repo_push", CLOUD_REPO)


def test_cloud_repo_updated_names_the_repository_by_its_new_slug(cloud_integration):
    check(cloud_integration, "repo:updated", "repo_updated", (CLOUD_REPO[0], "payments-service"))


def test_cloud_pullrequest_created(cloud_integration):
    check(cloud_integration, "pullrequest:created", "pullrequest_created", CLOUD_REPO)


def test_cloud_pullrequest_updated(cloud_integration):
    check(cloud_integration, "pullrequest:updated", "pullrequest_updated", CLOUD_REPO)


def test_cloud_pullrequest_approved(cloud_integration):
    check(cloud_integration, "pullrequest:approved", "pullrequest_approved", CLOUD_REPO)


def test_cloud_pullrequest_unapproved(cloud_integration):
    check(cloud_integration, "pullrequest:unapproved", "pullrequest_unapproved", CLOUD_REPO)


def test_cloud_pullrequest_fulfilled(cloud_integration):
    check(cloud_integration, "pullrequest:fulfilled", "pullrequest_fulfilled", CLOUD_REPO)


def test_cloud_pullrequest_rejected(cloud_integration):
    check(cloud_integration, "pullrequest:rejected", "pullrequest_rejected", CLOUD_REPO)


def test_cloud_pullrequest_comment_created(cloud_integration):
    check(
        cloud_integration, "pullrequest:comment_created", "pullrequest_comment_created", CLOUD_REPO
    )


def test_cloud_other_event_is_ignored(cloud_integration):
    check(cloud_integration, "repo:fork", "repo_fork", None)


def test_cloud_push_hint_lists_the_moved_refs():
    assert cloud("repo_push", "repo:push").refs == (RefChange("refs/heads/main", OLD, NEW),)


def test_cloud_push_of_a_new_branch_has_no_old_hash():
    refs = cloud("repo_push_branch_created", "repo:push").refs
    assert refs == (RefChange("refs/heads/feature/catalog", None, NEW),)


def test_cloud_push_deleting_a_branch_has_no_new_hash():
    refs = cloud("repo_push_branch_deleted", "repo:push").refs
    assert refs == (RefChange("refs/heads/feature/catalog", NEW, None),)


def test_cloud_pull_request_events_carry_the_pull_request_id():
    assert cloud("pullrequest_fulfilled", "pullrequest:fulfilled").pull_request_id == "42"


# -- Bitbucket Data Center -----------------------------------------------------------------------


def test_dc_repo_refs_changed(dc_integration):
    check(dc_integration, "repo:refs_changed", "repo_refs_changed", DC_REPO)


def test_dc_repo_modified_names_the_repository_as_it_is_now(dc_integration):
    check(dc_integration, "repo:modified", "repo_modified", ("84", "PAY/payments-service"))


def test_dc_pr_opened(dc_integration):
    check(dc_integration, "pr:opened", "pr_opened", DC_REPO)


def test_dc_pr_modified(dc_integration):
    check(dc_integration, "pr:modified", "pr_modified", DC_REPO)


def test_dc_pr_merged(dc_integration):
    check(dc_integration, "pr:merged", "pr_merged", DC_REPO)


def test_dc_pr_declined(dc_integration):
    check(dc_integration, "pr:declined", "pr_declined", DC_REPO)


def test_dc_pr_deleted(dc_integration):
    check(dc_integration, "pr:deleted", "pr_deleted", DC_REPO)


def test_dc_pr_comment_added(dc_integration):
    check(dc_integration, "pr:comment:added", "pr_comment_added", DC_REPO)


def test_dc_diagnostics_ping_is_ignored(dc_integration):
    check(dc_integration, "diagnostics:ping", "diagnostics_ping", None)


def test_dc_refs_changed_update_keeps_both_hashes():
    assert dc("repo_refs_changed", "repo:refs_changed").refs == (
        RefChange("refs/heads/main", OLD, NEW),
    )


def test_dc_new_branch_zero_from_hash_becomes_none():
    refs = dc("repo_refs_changed_new_branch", "repo:refs_changed").refs
    assert refs == (RefChange("refs/heads/feature/catalog", None, NEW),)


def test_dc_deleted_branch_zero_to_hash_becomes_none():
    refs = dc("repo_refs_changed_deleted_branch", "repo:refs_changed").refs
    assert refs == (RefChange("refs/heads/feature/catalog", NEW, None),)


def test_dc_event_key_falls_back_to_the_body():
    body = json.dumps(payload("bitbucket_dc", "pr_merged")).encode()
    assert parse_dc({"X-Request-Id": "d-1"}, body).event == "pr:merged"


@pytest.mark.parametrize("parse", [parse_cloud, parse_dc])
def test_event_without_its_repository_is_a_payload_error(parse):
    event = "repo:push" if parse is parse_cloud else "repo:refs_changed"
    headers = {"X-Event-Key": event, "X-Request-UUID": "1", "X-Request-Id": "1"}
    with pytest.raises(WebhookPayloadError, match="without its repository"):
        parse(headers, b'{"actor": {}}')
