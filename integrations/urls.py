from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("", views.integration_list, name="list"),
    path("new/", views.wizard_start, name="wizard-start"),
    path("new/<str:step>/", views.wizard, name="wizard"),
    path("connectors/", views.connector_list, name="connector-list"),
    path("connectors/<int:pk>/", views.connector_detail, name="connector-detail"),
    path("connectors/<int:pk>/connect", views.connector_connect, name="connector-connect"),
    path("connectors/<int:pk>/test", views.connector_test_view, name="connector-test"),
    path("<int:pk>/", views.integration_discovered, name="detail"),
    path("<int:pk>/imported/", views.integration_imported, name="imported"),
    path("<int:pk>/runs/", views.integration_runs, name="runs"),
    path("<int:pk>/webhooks/", views.integration_webhooks, name="webhooks"),
    path("<int:pk>/configuration/", views.integration_configuration, name="configuration"),
    path("<int:pk>/sync", views.integration_sync, name="sync"),
    path("<int:pk>/import", views.integration_import, name="import"),
    path("<int:pk>/auto-import", views.integration_auto_import, name="auto-import"),
    path(
        "<int:pk>/imported/<int:imported_pk>/unlink",
        views.imported_unlink_view,
        name="unlink",
    ),
    path("<int:pk>/writes/", views.integration_writes, name="writes"),
    path("<int:pk>/write-back/", views.writeback_preview_view, name="write-back-preview"),
    path("<int:pk>/write-back/confirm", views.writeback_request_view, name="write-back"),
    path("<int:pk>/write-back/progress/", views.writeback_batch_view, name="write-back-batch"),
    path("<int:pk>/suspend", views.integration_danger, {"action": "suspend"}, name="suspend"),
    path("<int:pk>/resume", views.integration_danger, {"action": "resume"}, name="resume"),
    path("<int:pk>/delete", views.integration_danger, {"action": "delete"}, name="delete"),
]

# Tabs of the catalog's entity page, mounted under /catalog/ (see portal/urls.py).
entity_tab_patterns = (
    [
        path(
            "<str:namespace>/<str:kind>/<str:name>/pull-requests",
            views.entity_pull_requests,
            name="pull-requests",
        ),
        path(
            "<str:namespace>/<str:kind>/<str:name>/commits",
            views.entity_commits,
            name="commits",
        ),
        path(
            "<str:namespace>/<str:kind>/<str:name>/catalog-file",
            views.entity_writes,
            name="writes",
        ),
    ],
    "integrations-entity",
)
