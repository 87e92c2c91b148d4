"""Checks and scorecards in the Django admin: the model forms run the same validation as the
services (``Model.clean``), and saving a scorecard re-evaluates it."""

from django.contrib import admin
from django.db import transaction

from scorecards import services
from scorecards.models import Check, Scorecard, ScorecardCheck


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
        pk = form.instance.pk
        transaction.on_commit(lambda: services.scorecard_results_refresh(scorecard_ids=[pk]))
