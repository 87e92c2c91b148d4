from django.contrib import admin

from portal.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued with ``manage.py issue_token``; the admin lists and revokes them."""

    list_display = ("prefix", "name", "user", "created_at", "last_used_at")
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("user", "name", "prefix", "created_at", "last_used_at")
    exclude = ("digest",)

    def has_add_permission(self, request) -> bool:
        return False
