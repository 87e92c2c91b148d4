"""Recommendations that are never stale, after a real sync of each sandbox (Cloud and Data
Center over real sockets): an entity another path adds to the catalog (``import_catalog``)
turns a record's Register into Merge at once, without a sync; deleting it turns it back; a
correlation-rule change through the API recomputes at once; and a name taken by an entity the
rules do not match is a conflict naming the holder, never Register.
"""

import pytest
import yaml
from django.core.management import call_command

from catalog.models import Entity
from catalog.services import entity_delete
from integrations import services
from integrations.choices import RecommendedAction, SyncState
from integrations.models import DiscoveredEntity
from tests.integrations.engine.conftest import sync

pytestmark = pytest.mark.django_db(transaction=True)  # catalog changes are delivered on commit


@pytest.fixture(params=["cloud", "dc"])
def bitbucket(request, bitbucket_factory):
    return bitbucket_factory(request.param, repos=4, prs=0, commits=0)


def advice(row: DiscoveredEntity) -> tuple[str, str | None, str | None]:
    row.refresh_from_db()
    suggested = row.suggested_entity.name if row.suggested_entity_id else None
    holder = row.name_holder.name if row.name_holder_id else None
    return row.recommended_action, suggested, holder


def import_file(tmp_path, *documents: dict) -> None:
    path = tmp_path / "catalog-info.yaml"
    path.write_text(yaml.safe_dump_all(documents))
    call_command("import_catalog", str(path))


def component(name: str, **annotations) -> dict:
    return {
        "apiVersion": "backstage.io/v1alpha1",
        "kind": "Component",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
    }


def test_catalog_changes_and_rule_changes_reach_the_advice_without_a_sync(bitbucket, tmp_path):
    integration = bitbucket.integration(auto_import=False, secondary_kinds=[])
    assert sync(integration).state == SyncState.SUCCEEDED
    rows = list(DiscoveredEntity.objects.filter(integration=integration).order_by("name"))
    first, second = rows[0], rows[1]
    assert advice(first) == (RecommendedAction.REGISTER, None, None)

    # Another path registers the first record's name: Merge into it, at once.
    import_file(tmp_path, component(first.name))
    assert advice(first) == (RecommendedAction.MERGE, first.name, None)

    # Deleted again: back to Register.
    entity_delete(entity=Entity.objects.get(name=first.name))
    assert advice(first) == (RecommendedAction.REGISTER, None, None)

    # Rules that match on the repository's URL annotation instead of the name: the entity
    # holding the second record's name no longer matches it, so the name is a conflict.
    import_file(tmp_path, component(second.name))
    assert advice(second) == (RecommendedAction.MERGE, second.name, None)
    services.integration_update(
        integration=integration,
        correlation=[
            {
                "ingested": "url",
                "catalog": 'metadata.annotations."bitbucket.org/repo-url"',
                "operator": "equals",
            }
        ],
    )
    assert advice(second) == (RecommendedAction.CONFLICT, None, second.name)
