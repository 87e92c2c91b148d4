"""``manage.py write_back`` against the Cloud sandbox: a dry run prints the diff and writes
nothing; a write prints one line per repository and exits 1 when any failed."""

import io

import pytest
from django.core.management import CommandError, call_command

from integrations.models import WriteBack
from tests.integrations.writeback.conftest import cloud_provider, control
from tests.integrations.writeback.helpers import imported, world_repo

pytestmark = pytest.mark.django_db


def _run(*args) -> tuple[str, int]:
    out = io.StringIO()
    try:
        call_command("write_back", *args, stdout=out)
    except SystemExit as exc:
        return out.getvalue(), exc.code
    return out.getvalue(), 0


def test_a_dry_run_prints_the_diff_and_writes_nothing(cloud):
    provider = cloud_provider(cloud)
    (record,) = imported(cloud, provider)
    out, code = _run(provider.integration.name, "--repository", record.name, "--dry-run")
    assert code == 0 and "--- /dev/null" in out and "+kind: Component" in out
    assert not WriteBack.objects.exists()


def test_a_write_prints_each_outcome_and_exits_1_when_one_failed(cloud):
    provider = cloud_provider(cloud)
    ok, changed = imported(cloud, provider, 2)
    with control(cloud) as knobs:
        knobs.post(
            f"/repositories/{world_repo(cloud, changed).full_name}/read-traps",
            json={"kind": "files", "action": "forbid", "status": 403},
        )
    out, code = _run(provider.integration.name, "--all-imported")
    assert code == 1
    assert f"{ok.name}: pull request http" in out
    assert f"{changed.name}: failed:" in out and "1 failed" in out


def test_refusals_name_the_reason(cloud):
    provider = cloud_provider(cloud)
    (record,) = imported(cloud, provider)
    with pytest.raises(CommandError, match="mode: .*writeback_mode"):
        call_command("write_back", provider.integration.name, "--all-imported", "--mode", "commit")
    with pytest.raises(CommandError, match="nope"):
        call_command("write_back", provider.integration.name, "--repository", "nope")
    with pytest.raises(CommandError, match="No integration"):
        call_command("write_back", "missing", "--all-imported")


def test_check_integration_reports_write_access(cloud):
    reading = "cloud-reads-projects-too-0123456789"
    cloud.world.credentials.add_access_token(
        reading, workspace=cloud.workspace, scopes=("repository", "pullrequest", "project")
    )
    writer = cloud_provider(cloud)
    reader = cloud_provider(cloud, token=reading, name="cloud-reader")
    out = io.StringIO()
    call_command("check_integration", writer.integration.name, stdout=out)
    assert "Write-back: allowed (pull request mode)" in out.getvalue()
    out = io.StringIO()
    call_command("check_integration", reader.integration.name, stdout=out)
    assert "Write-back: not allowed:" in out.getvalue() and "repository:write" in out.getvalue()
