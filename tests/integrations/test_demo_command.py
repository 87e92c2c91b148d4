import io
import threading

import pytest
from django.core.management import call_command

from integrations.management.commands import demo as demo_module
from integrations.models import DiscoveredEntity, Integration, SyncRun


@pytest.mark.django_db
def test_demo_starts_a_sandbox_syncs_it_and_serves(settings, monkeypatch):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    served = []
    real_call_command = demo_module.call_command

    def call(name, *args, **kwargs):
        if name == "runserver":
            served.append(args)
            return None
        return real_call_command(name, *args, **kwargs)

    monkeypatch.setattr(demo_module, "call_command", call)
    out = io.StringIO()
    call_command("demo", "127.0.0.1:8126", "--repos", "12", "--sandbox-port", "0", stdout=out)
    assert served == [("127.0.0.1:8126",)]
    integration = Integration.objects.get(name="demo-cloud")
    assert SyncRun.objects.get(integration=integration).state == "succeeded"
    assert DiscoveredEntity.objects.filter(integration=integration).count() == 12
    # The hand-made look-alikes make Merge recommendations appear.
    assert DiscoveredEntity.objects.filter(recommended_action="merge").count() == 3
    assert "Demo admin: admin / " in out.getvalue()
    # Its in-process scheduler stopped with it: it never enqueues syncs into later work.
    beats = [thread for thread in threading.enumerate() if thread.name == "demo-beat"]
    for thread in beats:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in beats)


@pytest.mark.django_db
def test_demo_refuses_to_start_when_loopback_is_not_allowed(settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="LANTERN_OUTBOUND_ALLOWLIST=127.0.0.1"):
        call_command("demo", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_demo_check_serves_the_populated_catalog_over_http_and_stops(settings):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    out = io.StringIO()
    call_command("demo", "--repos", "10", "--check", stdout=out)
    assert "Demo check passed: 10 discovered, 6 imported entities" in out.getvalue()
