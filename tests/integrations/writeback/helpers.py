"""Helpers of the write-back product tests: an integration synced from a sandbox with some of
its repositories imported, and the sandbox repository behind a discovered record."""

from integrations import services
from integrations.engine.imports import discovered_import
from integrations.models import DiscoveredEntity


def synced(provider, *, full: bool = False):
    return services.integration_sync(
        integration_id=provider.integration.pk, trigger="manual", full=full or None
    )


def world_repo(server, discovered: DiscoveredEntity):
    data = discovered.data
    for repo in server.world.iter_repositories():
        if repo.slug == data["slug"] and repo.project_key == data.get("project_key"):
            return repo
    raise AssertionError(f"no sandbox repository behind {discovered.name}")


def without_catalog_file(
    server, integration, count: int = 1, *, absent: bool = True
) -> list[DiscoveredEntity]:
    """Discovered records of repositories with commits and (``absent``) no catalog-info.yaml
    yet."""
    found = []
    for discovered in DiscoveredEntity.objects.filter(integration=integration).order_by("name"):
        repo = world_repo(server, discovered)
        if not repo.mainbranch or not repo.branches:
            continue
        head = repo.commits[repo.branches[repo.mainbranch]]
        if not absent or repo.read_file(head, "catalog-info.yaml") is None:
            found.append(discovered)
            if len(found) == count:
                return found
    raise AssertionError(f"fewer than {count} repositories without catalog-info.yaml")


def imported(server, provider, count: int = 1, *, absent: bool = True) -> list[DiscoveredEntity]:
    """Sync, then import ``count`` repositories with commits (``absent``: and without a
    catalog file)."""
    synced(provider)
    records = without_catalog_file(server, provider.integration, count, absent=absent)
    for record in records:
        discovered_import(discovered=record)
    return records
