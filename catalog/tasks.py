"""Celery tasks of the catalog: thin wrappers that take ids and call one service."""

from celery import shared_task
from django.db import transaction

from catalog.locations import location_refresh, locations_due
from catalog.models import Entity, Location


@shared_task(name="catalog.location_refresh", acks_late=True)
def location_refresh_task(location_id: str) -> bool:
    location = Location.objects.filter(pk=location_id).first()
    return location is not None and location_refresh(location=location)


@shared_task(name="catalog.refresh_due_locations")
def refresh_due_locations() -> int:
    """Every minute (beat): enqueue each location whose next read is due."""
    due = [str(pk) for pk in locations_due().values_list("pk", flat=True)]
    for location_id in due:
        location_refresh_enqueue(location_id=location_id)
    return len(due)


def location_refresh_enqueue(*, location_id: str) -> None:
    """Enqueue a location's refresh once the current transaction commits."""
    transaction.on_commit(lambda: location_refresh_task.delay(location_id))


def entity_refresh_from_location(entity: Entity) -> bool:
    """``POST /refresh`` of an entity a location emits (or of its Location entity): read the
    location again."""
    if entity.location_id is None:
        return False
    location_refresh_enqueue(location_id=str(entity.location_id))
    return True
