from django.urls import path

from catalog import views

app_name = "catalog"

entity = "<str:namespace>/<str:kind>/<str:name>/"

urlpatterns = [
    path("", views.entity_list, name="entity-list"),
    path("entity-picker", views.entity_picker, name="entity-picker"),
    path(entity, views.entity_detail, name="entity"),
    path(f"{entity}relationships", views.entity_relationships, name="entity-relationships"),
    path(f"{entity}yaml", views.entity_yaml, name="entity-yaml"),
    path(f"{entity}yaml/download", views.entity_yaml_download, name="entity-yaml-download"),
    path(f"{entity}delete", views.entity_delete_view, name="entity-delete"),
]
