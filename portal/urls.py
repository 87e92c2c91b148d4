from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from integrations import webhooks
from integrations.urls import entity_tab_patterns
from integrations.views import connector_oauth_callback
from portal import health, views
from scorecards.urls import entity_tab_patterns as scorecards_entity_tab_patterns

urlpatterns = [
    path("", views.home, name="home"),
    # Browsers ask for /favicon.ico on pages without an icon link (the admin's, the API's).
    path(
        "favicon.ico",
        RedirectView.as_view(url=static("portal/favicon.svg"), permanent=True),
        name="favicon",
    ),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("catalog/", include("catalog.urls")),
    path("catalog/", include(entity_tab_patterns)),
    path("catalog/", include(scorecards_entity_tab_patterns)),
    path("integrations/", include("integrations.urls")),
    path("scorecards/", include("scorecards.urls")),
    # The redirect URL of a Data Center application link (what its admin registers there).
    path(
        "org/bitbucket-dc/<int:connector_id>/callback",
        connector_oauth_callback,
        name="connector-oauth-callback-dc",
    ),
    path("api/catalog/", include("catalog.api.urls")),
    path("api/integrations/", include("integrations.api.urls")),
    path("api/scorecards/", include("scorecards.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "webhooks/bitbucket-cloud/<int:integration_id>",
        webhooks.webhook_receive,
        {"provider": "bitbucket_cloud"},
        name="webhook-bitbucket-cloud",
    ),
    path(
        "webhooks/bitbucket-dc/<int:integration_id>",
        webhooks.webhook_receive,
        {"provider": "bitbucket_dc"},
        name="webhook-bitbucket-dc",
    ),
    path(
        "webhooks/bitbucket-cloud/subscriptions/<int:subscription_id>",
        webhooks.subscription_webhook_receive,
        {"provider": "bitbucket_cloud"},
        name="webhook-subscription-bitbucket-cloud",
    ),
    path(
        "webhooks/bitbucket-dc/subscriptions/<int:subscription_id>",
        webhooks.subscription_webhook_receive,
        {"provider": "bitbucket_dc"},
        name="webhook-subscription-bitbucket-dc",
    ),
]
