"""Checks and scorecards in the Django admin: the model forms run the same validation as the
services (``Model.clean``), and saving a scorecard re-evaluates it (in the background). Entities
whose recompute is pending or failed are listed with the error and can be sent again."""

from django.contrib import admin

from scorecards import services
from scorecards.models import Check, PendingRefresh, Scorecard, ScorecardCheck


@admin.register(Check)
class CheckAdmin(admin.ModelAdmin):
    list_display = ["name", "description"]
    search_fields = ["name", "description"]


class ScorecardCheckInline(admin.TabularInline):
    model = ScorecardCheck
    extra = 1
    autocomplete_fields = ["check_item"]


@admin.register(Scorecard)
class ScorecardAdmin(admin.ModelAdmin):
    list_display = ["name", "filter"]
    search_fields = ["name"]
    inlines = [ScorecardCheckInline]

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        services.results_refresh_request(scorecard_ids=[form.instance.pk])


@admin.register(PendingRefresh)
class PendingRefreshAdmin(admin.ModelAdmin):
    """Entities whose metrics and results wait for a recompute, or whose last one failed (with
    the error): their stored results are stale until it succeeds."""

    list_display = ["entity", "state", "requested_at", "failed_at", "error"]
    list_select_related = ["entity"]
    list_filter = [("failed_at", admin.EmptyFieldListFilter)]
    search_fields = ["entity__name"]
    readonly_fields = ["entity", "requested_at", "queued_at", "failed_at", "error"]
    actions = ["recompute"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Recompute the selected entities now")
    def recompute(self, request, queryset) -> None:
        sent = services.pending_refresh_retry(
            entity_ids=queryset.values_list("entity_id", flat=True)
        )
        self.message_user(request, f"{sent} entities sent for a recompute.")
