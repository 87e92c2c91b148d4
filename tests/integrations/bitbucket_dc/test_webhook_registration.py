"""An enabled Data Center integration registers a hook on each chosen project by itself and
removes it when suspended."""

import pytest

from integrations import services
from integrations.choices import WebhookRegistration
from tests.integrations.bitbucket_dc.conftest import make_connector, make_integration


@pytest.mark.django_db(transaction=True)
def test_project_hooks_are_registered_on_enable_and_removed_on_suspend(sandbox, settings):
    settings.LANTERN_WEBHOOKS_AUTO_REGISTER = True
    server = sandbox.default
    keys = sorted({repo.project_key for repo in server.world.iter_repositories()})[:2]
    integration = make_integration(make_connector(server), target={"projects": keys})
    integration.refresh_from_db()
    assert integration.webhook_registration == WebhookRegistration.REGISTERED, (
        integration.webhook_registration_detail
    )
    secrets = {s.url: s.secret for s in integration.webhook_subscriptions.all()}
    ours = [hook for hook in server.api.hooks.values() if hook.url in secrets]
    assert sorted(hook.project for hook in ours) == sorted(keys)
    assert all(hook.secret == secrets[hook.url] for hook in ours)

    services.integration_suspend(integration=integration)
    assert [h for h in server.api.hooks.values() if h.url in secrets] == []
