from django.db.models import Count
from django.shortcuts import render

from catalog.models import Entity


def home(request):
    kinds = Entity.objects.values("kind").annotate(count=Count("pk")).order_by("kind")
    return render(request, "portal/home.html", {"kinds": kinds})
