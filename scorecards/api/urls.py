from django.urls import path, re_path

from portal.api import NoSuchEndpointApi
from scorecards.api import views

app_name = "scorecards-api"

scorecard_list = views.ScorecardViewSet.as_view({"get": "list", "post": "create"})
scorecard_detail = views.ScorecardViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
check_list = views.CheckViewSet.as_view({"get": "list", "post": "create"})
check_detail = views.CheckViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    path("", scorecard_list, name="scorecards"),
    path("<int:pk>", scorecard_detail, name="scorecard"),
    path("checks/", check_list, name="checks"),
    path("checks/<int:pk>", check_detail, name="check"),
    path(
        "entities/<str:kind>/<str:namespace>/<str:name>",
        views.EntityScorecardsApi.as_view(),
        name="entity",
    ),
    # Last: any other path under this API is a JSON 404.
    re_path(r"", NoSuchEndpointApi.as_view()),
]
