"""A small world for scorecards: repositories synced through the fake provider and imported,
whose pull requests and commits are then written with hand-chosen times."""

from datetime import UTC, datetime, timedelta

import pytest

from integrations.engine.sync import integration_sync
from integrations.models import Commit, ImportedEntity, PullRequest
from tests.integrations.conftest import (  # noqa: F401
    component_doc,
    connector,
    fake_provider,
    make_entities,
    make_integration,
    world,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def add_pr(discovered, number: int, state: str, created: float, updated: float, **data):
    return PullRequest.objects.create(
        discovered=discovered,
        external_id=str(number),
        title=f"PR {number}",
        state=state,
        author="ann",
        created_on=ago(created),
        updated_on=ago(updated),
        data=data,
    )


def add_commit(discovered, number: int, days: float, author: str):
    return Commit.objects.create(
        discovered=discovered, hash=f"{number:040x}", author=author, date=ago(days)
    )


@pytest.fixture
def small_world(world, make_integration, make_entities):  # noqa: F811
    """``alpha``: eight pull requests and five commits; ``empty``: nothing; ``single``: one
    merged pull request; plus ``loner``, a catalog entity with no repository."""
    for name in ("alpha", "empty", "single"):
        world.add_repo(name, description=f"{name} repository")
    integration = make_integration(auto_import=True, secondary_kinds=[])
    integration_sync(integration_id=integration.pk, trigger="manual")
    links = {
        link.discovered.name: link
        for link in ImportedEntity.objects.filter(integration=integration).select_related(
            "discovered", "entity"
        )
    }
    alpha = links["alpha"].discovered
    add_pr(alpha, 1, "MERGED", 10, 9)
    add_pr(alpha, 2, "MERGED", 20, 17)
    add_pr(alpha, 3, "MERGED", 40, 35)
    # Data Center's merge time is closedDate; updated_on moved later with a comment.
    add_pr(alpha, 4, "MERGED", 12, 1, closedDate=int(ago(10).timestamp() * 1000))
    add_pr(alpha, 5, "DECLINED", 15, 14)
    add_pr(alpha, 6, "OPEN", 45, 2)
    add_pr(alpha, 7, "OPEN", 5, 5)
    add_pr(alpha, 8, "SUPERSEDED", 8, 7)
    for number, (days, author) in enumerate(
        [(1, "Ann"), (3, "Bob"), (3, "Ann"), (50, "Cy"), (100, "Dee")]
    ):
        add_commit(alpha, number, days, author)
    add_pr(links["single"].discovered, 1, "MERGED", 4, 2)
    (loner,) = make_entities(component_doc("loner"))
    entities = {name: link.entity for name, link in links.items()}
    entities["loner"] = loner
    return {"integration": integration, "entities": entities, "links": links}
