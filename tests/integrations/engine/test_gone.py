"""Marking repositories gone: only after a complete listing, never en masse."""

from integrations.choices import DiscoveredState, SyncState
from integrations.models import DiscoveredEntity
from tests.integrations.engine.conftest import discovered, entity, sync, sync_ok


def states(integration) -> dict[str, str]:
    return dict(
        DiscoveredEntity.objects.filter(integration=integration).values_list("name", "state")
    )


def test_repository_removed_from_the_world_is_marked_gone_and_its_entity_kept(
    world, engine_integration
):
    for index in range(10):
        world.add_repo(f"svc-{index}")
    world.pagelen = 3
    integration = engine_integration(auto_import=True)
    sync_ok(integration, full=True)
    removed = world.repos.pop(4)

    run = sync_ok(integration, full=True)

    assert run.gone == 1
    assert not run.flagged
    assert states(integration)[removed.name] == DiscoveredState.GONE
    assert sum(state == DiscoveredState.GONE for state in states(integration).values()) == 1
    assert entity(removed.name).integration_links  # the catalog entity stays, still linked

    world.repos.append(removed)  # it comes back
    back = sync_ok(integration, full=True)
    assert back.gone == 0
    assert discovered(integration, removed.name).state == DiscoveredState.IMPORTED


def test_half_vanishing_is_still_marked_but_more_than_half_is_flagged_and_marks_nothing(
    world, engine_integration
):
    for index in range(8):
        world.add_repo(f"svc-{index}")
    integration = engine_integration()
    sync_ok(integration, full=True)
    kept = world.repos[:4]
    world.repos[:] = kept  # exactly 50 %: allowed

    half = sync_ok(integration, full=True)

    assert (half.gone, half.flagged) == (4, False)
    world.repos[:] = world.repos[3:]  # 3 of the 4 still active vanish: 75 %

    run = sync_ok(integration, full=True)

    assert run.flagged
    assert run.gone == 0
    assert "3 of 4 repositories vanished" in run.message
    assert "none were marked gone" in run.message
    current = states(integration)
    assert [name for name, state in current.items() if state == DiscoveredState.GONE] == [
        f"svc-{index}" for index in range(4, 8)
    ]
    assert all(current[f"svc-{index}"] == DiscoveredState.DISCOVERED for index in range(4))


def test_more_than_half_vanishing_at_once_marks_nothing_and_flags_the_run(
    world, engine_integration
):
    for index in range(10):
        world.add_repo(f"svc-{index}")
    integration = engine_integration()
    sync_ok(integration, full=True)
    del world.repos[:6]

    run = sync_ok(integration, full=True)

    assert run.state == SyncState.SUCCEEDED
    assert run.flagged
    assert run.gone == 0
    assert "6 of 10 repositories vanished" in run.message
    assert DiscoveredEntity.objects.filter(state=DiscoveredState.GONE).count() == 0


def test_crashed_listing_marks_nothing_gone(world, engine_integration):
    for index in range(10):
        world.add_repo(f"svc-{index}")
    world.pagelen = 2
    integration = engine_integration()
    sync_ok(integration, full=True)
    world.repos.pop()  # would be gone after a complete listing
    world.fail_after_pages = 2

    run = sync(integration, full=True)

    assert run.state == SyncState.FAILED
    assert "injected crash" in run.error
    assert DiscoveredEntity.objects.filter(state=DiscoveredState.GONE).count() == 0
    world.fail_after_pages = None
    assert sync_ok(integration, full=True).gone == 1
