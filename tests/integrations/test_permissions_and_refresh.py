import pytest
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from integrations.engine.sync import integration_sync
from integrations.models import SyncRun


@pytest.mark.django_db
def test_catalog_admins_group_holds_the_edit_integration_permission(make_user):
    group = Group.objects.get(name="Catalog admins")
    user = make_user("lead")
    user.groups.add(group)
    assert user.has_perm("integrations.edit_integration")
    assert user.has_perm("catalog.delete_entity")


@pytest.mark.django_db(transaction=True)
def test_catalog_refresh_of_a_linked_entity_syncs_its_integration(
    world, make_integration, make_user, bearer_client
):
    world.add_repo("billing", description="Bills")
    integration = make_integration(auto_import=True)
    integration_sync(integration_id=integration.pk, trigger="manual")
    world.repos[0].description = "Bills and invoices"
    client: APIClient = bearer_client(make_user("editor", "catalog.change_entity"))
    response = client.post(
        "/api/catalog/refresh", {"entityRef": "component:default/billing"}, format="json"
    )
    assert response.status_code == 200
    # Tasks run in process without a broker: the refresh already happened.
    assert SyncRun.objects.filter(integration=integration, trigger="manual").count() == 2
    entity = client.get("/api/catalog/entities/by-name/component/default/billing").json()
    assert entity["metadata"]["description"] == "Bills and invoices"
