from django.urls import path, re_path

from integrations.api import views
from portal.api import NoSuchEndpointApi

app_name = "integrations-api"

connector_list = views.ConnectorViewSet.as_view({"get": "list", "post": "create"})
connector_detail = views.ConnectorViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
integration_list = views.IntegrationViewSet.as_view({"get": "list", "post": "create"})
integration_detail = views.IntegrationViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    path("", integration_list, name="integrations"),
    path("<int:pk>", integration_detail, name="integration"),
    path("<int:pk>/sync", views.IntegrationSyncApi.as_view(), name="integration-sync"),
    path("<int:pk>/suspend", views.IntegrationSuspendApi.as_view(), name="integration-suspend"),
    path("<int:pk>/resume", views.IntegrationResumeApi.as_view(), name="integration-resume"),
    path("<int:pk>/discovered", views.DiscoveredListApi.as_view(), name="discovered"),
    path("<int:pk>/import", views.DiscoveredImportApi.as_view(), name="discovered-import"),
    path("<int:pk>/imported", views.ImportedListApi.as_view(), name="imported"),
    path(
        "<int:pk>/imported/<int:imported_pk>/unlink",
        views.ImportedUnlinkApi.as_view(),
        name="imported-unlink",
    ),
    path("<int:pk>/runs", views.SyncRunListApi.as_view(), name="runs"),
    path(
        "<int:pk>/webhooks/deliveries",
        views.WebhookDeliveryListApi.as_view(),
        name="webhook-deliveries",
    ),
    path("<int:pk>/write-back", views.WritebackApi.as_view(), name="write-back"),
    path(
        "<int:pk>/write-back/<int:batch_pk>",
        views.WritebackBatchApi.as_view(),
        name="write-back-batch",
    ),
    path("<int:pk>/writes", views.WritebackListApi.as_view(), name="writes"),
    path("connectors", connector_list, name="connectors"),
    path("connectors/<int:pk>", connector_detail, name="connector"),
    # Last: any other path under this API is a JSON 404.
    re_path(r"", NoSuchEndpointApi.as_view()),
]
