"""The write-back API over the Cloud sandbox: a dry run answers the previews, a request the
queued batch (202) whose progress and records read back; the permission is required; a
missing write scope is named."""

import pytest

from tests.integrations.writeback.conftest import (
    CLOUD_READ_TOKEN,
    CLOUD_WRITE_TOKEN,
    cloud_provider,
)
from tests.integrations.writeback.helpers import imported

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(make_user, bearer_client):
    return bearer_client(make_user("writer", "integrations.write_back"))


def test_dry_run_then_write_then_progress_and_the_list(
    cloud, client, django_capture_on_commit_callbacks, caplog
):
    provider = cloud_provider(cloud)
    (record,) = imported(cloud, provider)
    url = f"/api/integrations/{provider.integration.pk}/write-back"
    previews = client.post(url, {"discovered_ids": [record.pk], "dry_run": True}, format="json")
    assert previews.status_code == 200, previews.content
    (preview,) = previews.json()
    assert preview["allowed"] and preview["current"] is None
    assert preview["diff"].startswith("--- /dev/null") and preview["entity_ref"]
    with django_capture_on_commit_callbacks(execute=True):
        queued = client.post(url, {"discovered_ids": [record.pk]}, format="json")
    assert queued.status_code == 202, queued.content
    body = queued.json()
    assert body["total"] == 1 and body["mode"] == "pull_request"
    progress = client.get(f"{url}/{body['id']}").json()
    assert (progress["state"], progress["done"], progress["failed"]) == ("succeeded", 1, 0)
    (write,) = progress["writes"]
    assert write["pull_request_url"] and write["pull_request_state"] == "OPEN"
    assert write["requested_by"] == "writer" and write["repository"] == record.name
    listed = client.get(f"/api/integrations/{provider.integration.pk}/writes").json()
    assert [w["id"] for w in listed["results"]] == [write["id"]]
    assert CLOUD_WRITE_TOKEN not in caplog.text + str(progress)


def test_refusals(cloud, client, make_user, bearer_client):
    provider = cloud_provider(cloud, token=CLOUD_READ_TOKEN, name="reader")
    (record,) = imported(cloud, provider)
    url = f"/api/integrations/{provider.integration.pk}/write-back"
    plain = bearer_client(make_user("plain", "integrations.edit_integration"))
    assert plain.post(url, {"discovered_ids": [record.pk]}, format="json").status_code == 403
    refused = client.post(url, {"discovered_ids": [record.pk]}, format="json")
    assert refused.status_code == 400
    assert "repository:write" in str(refused.json()["error"])
    (preview,) = client.post(
        url, {"discovered_ids": [record.pk], "dry_run": True}, format="json"
    ).json()
    assert not preview["allowed"] and "repository:write" in preview["reason"]
    mode = client.post(url, {"discovered_ids": [record.pk], "mode": "commit"}, format="json")
    assert mode.status_code == 400 and "writeback_mode" in str(mode.json())
    missing = client.get(f"{url}/12345")
    assert missing.status_code == 404
