from django.urls import path, re_path

from catalog.api import locations, views
from portal.api import NoSuchEndpointApi

app_name = "catalog-api"

urlpatterns = [
    path("entities", views.EntityListApi.as_view(), name="entities"),
    path("entities/by-query", views.EntityQueryApi.as_view(), name="entities-by-query"),
    path("entities/by-refs", views.EntityByRefsApi.as_view(), name="entities-by-refs"),
    path(
        "entities/by-name/<str:kind>/<str:namespace>/<str:name>",
        views.EntityByNameApi.as_view(),
        name="entity-by-name",
    ),
    path(
        "entities/by-name/<str:kind>/<str:namespace>/<str:name>/ancestry",
        views.EntityAncestryApi.as_view(),
        name="entity-ancestry",
    ),
    path("entities/by-uid/<str:uid>", views.EntityByUidApi.as_view(), name="entity-by-uid"),
    path("entity-facets", views.EntityFacetsApi.as_view(), name="entity-facets"),
    path("refresh", views.EntityRefreshApi.as_view(), name="refresh"),
    path("validate-entity", views.EntityValidateApi.as_view(), name="validate-entity"),
    path("locations", locations.LocationListApi.as_view(), name="locations"),
    path("locations/by-query", locations.LocationQueryApi.as_view(), name="locations-by-query"),
    path(
        "locations/by-entity/<str:kind>/<str:namespace>/<str:name>",
        locations.LocationByEntityApi.as_view(),
        name="location-by-entity",
    ),
    path("locations/<str:id>", locations.LocationDetailApi.as_view(), name="location"),
    path("analyze-location", locations.AnalyzeLocationApi.as_view(), name="analyze-location"),
    # Last: any other path under this API is a JSON 404.
    re_path(r"", NoSuchEndpointApi.as_view()),
]
