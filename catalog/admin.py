from django.contrib import admin
from django.db import transaction

from catalog.locations import location_delete, location_refresh
from catalog.models import Entity, Location, Relation, Scope
from catalog.services import entities_index, entity_delete


@admin.register(Scope)
class ScopeAdmin(admin.ModelAdmin):
    list_display = ("path", "name", "kind")
    list_filter = ("kind",)
    search_fields = ("path", "name")
    autocomplete_fields = ("parent",)


class OriginatedRelationInline(admin.TabularInline):
    model = Relation
    fk_name = "originating_entity"
    fields = ("source_key", "type", "target_ref")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "relations declared by this entity"

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Entity)
class EntityAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "namespace", "spec_type", "owner", "lifecycle", "updated_at")
    list_filter = ("kind", "lifecycle", "spec_type", "namespace", "scope")
    search_fields = ("name", "title", "description", "owner", "ref_key")
    readonly_fields = (
        "uid",
        "ref_key",
        "etag",
        "integration_links",
        "integration_properties",
        "location",
        "status_items",
        "created_at",
        "updated_at",
    )
    autocomplete_fields = ("scope",)
    inlines = [OriginatedRelationInline]
    list_per_page = 50
    show_full_result_count = False

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        entities_index(entities=[obj])

    def delete_model(self, request, obj: Entity) -> None:
        entity_delete(entity=obj)

    @transaction.atomic
    def delete_queryset(self, request, queryset) -> None:
        """One by one through the service, so subscribers hear of each deletion (in one notice:
        the transaction's)."""
        for entity in queryset:
            entity_delete(entity=entity)


@admin.register(Relation)
class RelationAdmin(admin.ModelAdmin):
    list_display = ("source_key", "type", "target_ref", "originating_entity")
    list_filter = ("type",)
    search_fields = ("source_key", "target_key")
    list_select_related = ("originating_entity",)
    raw_id_fields = ("originating_entity",)
    show_full_result_count = False


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    """Registered locations, to look at, refresh and delete: adding one reads its file, which
    the API (``POST /api/catalog/locations``) does."""

    list_display = ("target", "type", "source", "scope", "refreshed_at", "next_refresh_at")
    list_filter = ("type", "scope")
    search_fields = ("target",)
    readonly_fields = (
        "id",
        "type",
        "target",
        "scope",
        "source",
        "created_at",
        "refreshed_at",
        "next_refresh_at",
        "last_error",
    )
    actions = ["refresh_selected"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Read the selected locations again")
    def refresh_selected(self, request, queryset) -> None:
        failed = sum(not location_refresh(location=location) for location in queryset)
        self.message_user(request, f"Refreshed {queryset.count() - failed}, {failed} failed.")

    def delete_model(self, request, obj: Location) -> None:
        location_delete(location=obj)

    @transaction.atomic
    def delete_queryset(self, request, queryset) -> None:
        for location in queryset:
            location_delete(location=location)
