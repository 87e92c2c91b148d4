"""A crash at any point, then a clean re-run, gives exactly the catalog a clean run gives.

Each test runs the same world twice in one database: a clean run, snapshot, wipe the catalog and
the integration, then a run with an injected crash followed by a clean re-run, snapshot, compare
row by row (entities as rendered documents minus uid/etag/timestamps, search rows, relations,
discovered rows, imports, pull requests and commits).
"""

from datetime import timedelta

import pytest

from integrations.choices import SyncState
from integrations.engine import imports as imports_module
from integrations.models import Integration
from tests.integrations.catalog_snapshot import assert_same_catalog, snapshot, wipe
from tests.integrations.conftest import component_doc
from tests.integrations.engine.conftest import sync, sync_ok
from tests.integrations.fake_provider import EPOCH, World


def build_world(world: World) -> None:
    """17 repositories over 6 pages of 3. Data Center style, two repositories share the name
    ``common`` in different projects (pages 0 and 3), two share ``dup`` on one page (2); a
    third has the name of another but in other case (pages 1 and 5)."""
    world.pagelen = 3
    for index in range(16):
        name = {1: "common", 10: "common", 6: "dup", 7: "dup"}.get(index, f"svc-{index:02d}")
        repo = world.add_repo(
            name,
            description=f"Service {index}",
            project_key=f"P{index % 3}",
            updated_on=EPOCH + timedelta(days=index),
        )
        for number in range(index % 4 * 20):  # 0, 20, 40 or 60 PRs and commits
            world.add_pull_request(repo, number)
            world.add_commit(repo, number)
    world.add_repo("Svc-04")  # same entity name as svc-04, on a later page


def setup_catalog(make_entities, make_integration) -> Integration:
    make_entities(
        component_doc("svc-03", metadata={"description": "Written by the team"}),
        component_doc("svc-12", system="payments"),
        {
            "apiVersion": "backstage.io/v1alpha1",
            "kind": "System",
            "metadata": {"name": "payments"},
            "spec": {"owner": "team-a"},
        },
    )
    return make_integration(auto_import=True, secondary_kinds=["pull_requests", "commits"])


def clean_then_crashed(world, make_entities, make_integration, inject) -> tuple[dict, dict]:
    build_world(world)
    integration = setup_catalog(make_entities, make_integration)
    sync_ok(integration)
    clean = snapshot()
    wipe()

    integration = setup_catalog(make_entities, make_integration)
    undo = inject()
    crashed = sync(integration)
    undo()
    assert crashed.state == SyncState.FAILED
    assert "injected crash" in crashed.error
    assert Integration.objects.get(pk=integration.pk).locked_by_run is None
    sync_ok(integration)
    return clean, snapshot()


@pytest.mark.parametrize("pages", [1, 2, 4])
def test_crash_while_listing_then_rerun_equals_a_clean_run(
    world, make_entities, make_integration, pages
):
    def inject():
        world.fail_after_pages = pages
        return lambda: setattr(world, "fail_after_pages", None)

    clean, rerun = clean_then_crashed(world, make_entities, make_integration, inject)
    # 3 pre-existing; 17 repositories: 2 merged into them, 3 share a name: 12 registered
    assert len(clean["entities"]) == 15
    assert sorted(name for _, name, _, _ in clean["imports"] if "common" in name) == [
        "component:default/common",
        "component:default/common",
    ]  # the second one merged into the entity the first registered (page 3 sees page 0)
    dup = sorted(
        (row["state"], row["recommended_action"], row["suggested"])
        for row in clean["discovered"].values()
        if row["name"] == "dup"
    )
    # on one page: the first registers the name and the second, which the rules match to it,
    # merges into it, as a later page's would (never left behind unreported)
    assert dup == [("imported", "register", None), ("imported", "register", None)]
    dup_imports = sorted(action for _, name, action, _ in clean["imports"] if name.endswith("/dup"))
    assert dup_imports == ["MERGE", "REGISTER"]
    assert len(clean["pull_requests"]) > 0
    assert_same_catalog(clean, rerun)


@pytest.mark.parametrize("fetches", [0, 5, 17])
def test_crash_while_fetching_pull_requests_or_commits_then_rerun_equals_a_clean_run(
    world, make_entities, make_integration, fetches
):
    def inject():
        world.fail_after_secondary_fetches = fetches
        return lambda: setattr(world, "fail_after_secondary_fetches", None)

    clean, rerun = clean_then_crashed(world, make_entities, make_integration, inject)
    assert_same_catalog(clean, rerun)


@pytest.mark.parametrize("imports", [1, 7])
def test_crash_in_the_middle_of_auto_import_then_rerun_equals_a_clean_run(
    world, make_entities, make_integration, monkeypatch, imports
):
    # Each import (a page's bulk registrations, or one register or merge) ends by linking its
    # entities: crash there after ``imports`` of them.
    calls = {"n": 0, "armed": False}

    def flaky(real):
        def link(*args, **kwargs):
            if calls["armed"]:
                calls["n"] += 1
                if calls["n"] > imports:
                    raise RuntimeError("injected crash during auto-import")
            return real(*args, **kwargs)

        return link

    monkeypatch.setattr(imports_module, "_link_many", flaky(imports_module._link_many))
    monkeypatch.setattr(imports_module, "_link", flaky(imports_module._link))

    def inject():
        calls["armed"] = True
        return lambda: calls.update(armed=False)

    clean, rerun = clean_then_crashed(world, make_entities, make_integration, inject)
    assert_same_catalog(clean, rerun)
