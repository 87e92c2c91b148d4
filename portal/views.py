from django.db.models import Count
from django.shortcuts import render
from django.views.decorators.http import require_GET

from catalog.selectors import entities_visible


@require_GET
def home(request):
    """Entity counts per kind (of what the user may see) and where to go next."""
    kinds = []
    if request.user.is_authenticated:
        kinds = (
            entities_visible(user=request.user)
            .values("kind")
            .annotate(count=Count("pk"))
            .order_by("kind")
        )
    return render(request, "portal/home.html", {"kinds": kinds})
