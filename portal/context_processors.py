"""What every page's layout shows: the scopes the signed-in user sees."""

from django.utils.functional import SimpleLazyObject

from catalog.models import ScopeMembership


def _scope_label(user) -> str:
    if not user.is_authenticated:
        return ""
    if user.is_superuser:
        return "all scopes"
    paths = sorted(ScopeMembership.objects.filter(user=user).values_list("scope__path", flat=True))
    return ", ".join(paths) if paths else "unscoped only"


def layout(request) -> dict:
    """``lantern_scope_label`` is lazy: pages that do not render the header pay no query."""
    return {"lantern_scope_label": SimpleLazyObject(lambda: _scope_label(request.user))}
