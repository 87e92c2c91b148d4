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
    ours = [hook for hook in server.api.hooks.values() if hook.url == integration.webhook_url]
    assert sorted(hook.project for hook in ours) == sorted(keys)
    assert {hook.secret for hook in ours} == {integration.webhook_secret}

    services.integration_suspend(integration=integration)
    assert [h for h in server.api.hooks.values() if h.url == integration.webhook_url] == []
