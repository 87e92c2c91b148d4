from django.urls import path

from scorecards import views

app_name = "scorecards"

urlpatterns = [
    path("", views.scorecard_list, name="list"),
    path("<int:pk>/", views.scorecard_detail, name="detail"),
]

# The Scorecards tab of the catalog's entity page, mounted under /catalog/ (see portal/urls.py).
entity_tab_patterns = (
    [
        path(
            "<str:namespace>/<str:kind>/<str:name>/scorecards",
            views.entity_scorecards,
            name="scorecards",
        ),
    ],
    "scorecards-entity",
)
