"""A repository two integrations would import is one entity: the later integration's record is
flagged as a conflict naming the other (stage import, with what to do), for auto-import, manual
and bulk import, and Register & Merge — over the Cloud sandbox's real socket."""

from io import StringIO

import pytest
from django.core.cache import cache
from django.core.management import call_command

from catalog.models import Entity
from integrations import services
from integrations.choices import DiscoveredState, LinkState, SyncState
from integrations.engine.imports import ImportRequest
from integrations.engine.sync import integration_sync
from integrations.models import DiscoveredEntity, ImportedEntity, Integration
from tests.integrations.bitbucket_cloud.conftest import make_connector as cloud_connector

pytestmark = pytest.mark.django_db(transaction=True)

WS = "acme"
HINT = "unlink it there first, or narrow this integration's target"


@pytest.fixture(autouse=True)
def loopback(settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = False
    cache.clear()
    yield
    cache.clear()


def integration(server, name: str, **values) -> Integration:
    connector = Integration.objects.filter(provider="bitbucket_cloud").first()
    connector = (
        connector.connector
        if connector
        else cloud_connector(server, config={"requests_per_hour": 100_000})
    )
    values.setdefault("secondary_kinds", [])
    return services.integration_create(
        connector=connector, name=name, target={"workspace": WS}, **values
    )


def synced(item: Integration) -> Integration:
    run = integration_sync(integration_id=item.pk, trigger="manual", full=True)
    assert run.state in (SyncState.SUCCEEDED, SyncState.PARTIAL), run.error
    return item


def conflict_of(row: DiscoveredEntity) -> dict:
    row.refresh_from_db()
    return row.processing_errors["import"]


def test_auto_import_flags_each_repository_the_other_integration_imported(cloud_sandbox):
    first = synced(integration(cloud_sandbox, "first", auto_import=True))
    entities = Entity.objects.count()
    assert entities and ImportedEntity.objects.filter(integration=first).count() == entities
    second = integration(cloud_sandbox, "second", auto_import=True)
    run = integration_sync(integration_id=second.pk, trigger="manual", full=True)
    assert run.state == SyncState.PARTIAL
    assert Entity.objects.count() == entities  # never two entities for one repository
    assert not ImportedEntity.objects.filter(integration=second).exists()
    (group,) = run.error_summary
    assert group["reason"] == "imported by another integration"
    assert group["count"] == entities and HINT in group["hint"]
    row = DiscoveredEntity.objects.filter(integration=second).first()
    error = conflict_of(row)
    assert "imported by integration first" in error["hint"]
    assert "first" in error["message"] and row.state == DiscoveredState.DISCOVERED

    out = StringIO()
    call_command("check_integration", "second", stdout=out, stderr=StringIO())
    assert "imported by another integration" in out.getvalue()
    assert HINT in out.getvalue()


def test_manual_and_bulk_imports_are_refused_and_flagged(cloud_sandbox, make_user):
    first = synced(integration(cloud_sandbox, "first", auto_import=True))
    second = synced(integration(cloud_sandbox, "second"))
    rows = list(DiscoveredEntity.objects.filter(integration=second).order_by("pk")[:3])
    (one,) = services.discovered_import_many(
        integration=second, requests=[ImportRequest(discovered_id=rows[0].pk)]
    )
    assert one[1] is None and "already imported by integration first" in one[2]
    assert HINT in conflict_of(rows[0])["hint"]
    bulk = services.discovered_import_many(
        integration=second,
        requests=[ImportRequest(discovered_id=row.pk, action="register") for row in rows[1:]],
    )
    assert [result for _, result, _ in bulk] == [None, None]
    for row in rows[1:]:
        assert "first" in conflict_of(row)["hint"]
    linked = ImportedEntity.objects.filter(integration=first, state=LinkState.LINKED).first()
    merge = services.discovered_import_many(
        integration=second,
        requests=[
            ImportRequest(
                discovered_id=DiscoveredEntity.objects.get(
                    integration=second, external_id=linked.discovered.external_id
                ).pk,
                action="merge",
                entity_id=linked.entity_id,
            )
        ],
    )
    assert merge[0][1] is None and "first" in merge[0][2]
    assert not ImportedEntity.objects.filter(integration=second).exists()

    client = _api_client(make_user)
    body = client.get(f"/api/integrations/{second.pk}/discovered?state=error").json()
    items = body["results"] if isinstance(body, dict) else body
    assert items, body
    assert any(HINT in error["hint"] for item in items for error in item["processing_errors"])


def test_after_unlinking_there_the_repository_imports_here(cloud_sandbox):
    first = synced(integration(cloud_sandbox, "first", auto_import=True))
    second = synced(integration(cloud_sandbox, "second"))
    link = ImportedEntity.objects.filter(integration=first).first()
    row = DiscoveredEntity.objects.get(integration=second, external_id=link.discovered.external_id)
    services.imported_unlink(imported=link)
    ((_, imported, why),) = services.discovered_import_many(
        integration=second,
        requests=[ImportRequest(discovered_id=row.pk, action="merge", entity_id=link.entity_id)],
    )
    assert imported is not None, why
    row.refresh_from_db()
    assert "import" not in row.processing_errors


def _api_client(make_user):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(make_user("viewer"))
    return client
