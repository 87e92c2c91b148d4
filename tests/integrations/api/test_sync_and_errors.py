"""Full sync on demand, and what could not be handled, through the API: a record's processing
errors on each discovered item and behind ``?state=error``, a run's grouped errors, name
conflicts, and linked entities whose repository is gone (``source_gone``).

The rows are made directly (the engine fills them; its own tests prove that); the last tests run
a real sync over the Bitbucket Cloud and Data Center sandboxes and read the result back through
the API and the CLI."""

import io
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.choices import DiscoveredState, ImportAction, LinkState, SyncState
from integrations.models import DiscoveredEntity, ImportedEntity, Integration, SyncRun
from integrations.providers.bitbucket_cloud import client as client_module
from integrations.providers.http import RetryPolicy
from tests.integrations.api.conftest import API
from tests.integrations.conftest import component_doc
from tests.sandbox.fixtures import make_cloud_sandbox, make_dc_sandbox  # noqa: F401

NOW = timezone.now().replace(microsecond=0)


def _error(stage: str, reason: str, *, run_id: int | None = 7, days: int = 0) -> dict:
    since = (NOW - timedelta(days=days)).isoformat()
    return {
        "message": f"{stage} failed",
        "reason": reason,
        "hint": f"fix the {stage}",
        "since": since,
        "at": NOW.isoformat(),
        "run_id": run_id,
    }


def _discovered(integration: Integration, name: str, **values) -> DiscoveredEntity:
    errors = values.pop("processing_errors", {})
    since = min((e["since"] for e in errors.values()), default=None)
    return DiscoveredEntity.objects.create(
        integration=integration,
        external_id="{" + name + "}",
        name=name,
        kind="Component",
        last_seen_at=NOW,
        processing_errors=errors,
        error_since=since,
        **values,
    )


# -- full sync on demand ----------------------------------------------------------------------


@pytest.fixture
def listed(world, make_integration):
    """An integration whose last full listing was just now: a plain sync would be incremental."""
    world.add_repo("billing")
    integration = make_integration()
    Integration.objects.filter(pk=integration.pk).update(
        last_full_sync_at=timezone.now(), last_listing_at=timezone.now()
    )
    return integration


def test_sync_with_full_true_runs_a_full_listing_though_none_is_due(
    listed, editor_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(f"{API}/{listed.pk}/sync", {"full": True}, format="json")
    assert response.status_code == 202
    assert response.json() == {
        "queued": True,
        "full": True,
        "detail": "Full sync of acme queued: every repository is listed again and those no "
        "longer listed are marked gone.",
    }
    run = SyncRun.objects.get(integration=listed)
    assert (run.trigger, run.mode) == ("manual", "full")


@pytest.mark.parametrize("body", [{}, {"full": False}, None])
def test_sync_without_full_leaves_the_listing_to_the_schedule(
    listed, editor_client, django_capture_on_commit_callbacks, body
):
    with django_capture_on_commit_callbacks(execute=True):
        response = editor_client.post(f"{API}/{listed.pk}/sync", body, format="json")
    assert response.status_code == 202
    assert response.json()["full"] is False
    assert SyncRun.objects.get(integration=listed).mode == "incremental"


@pytest.mark.parametrize("value", ["true", "yes", 1, 0, None, [], {}])
def test_sync_full_must_be_a_json_boolean(
    listed, editor_client, django_capture_on_commit_callbacks, value
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = editor_client.post(f"{API}/{listed.pk}/sync", {"full": value}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "full: must be true or false"
    assert error["details"] == {"full": ["must be true or false"]}
    assert callbacks == []
    assert not SyncRun.objects.exists()


@pytest.mark.parametrize("body", [[{"full": True}], True, "full"])
def test_sync_body_that_is_not_an_object_is_refused(
    listed, editor_client, django_capture_on_commit_callbacks, body
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = editor_client.post(f"{API}/{listed.pk}/sync", body, format="json")
    assert response.status_code == 400
    assert "Expected a dictionary" in response.json()["error"]["message"]
    assert callbacks == []


def test_full_sync_of_a_suspended_integration_is_a_conflict(listed, editor_client):
    editor_client.post(f"{API}/{listed.pk}/suspend")
    response = editor_client.post(f"{API}/{listed.pk}/sync", {"full": True}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["message"] == "Integration acme is suspended: resume it first"


def test_full_sync_needs_the_edit_permission(listed, reader_client):
    response = reader_client.post(f"{API}/{listed.pk}/sync", {"full": True}, format="json")
    assert response.status_code == 403


# -- processing errors on discovered records ------------------------------------------------


@pytest.fixture
def troubled(make_integration, make_entities):
    """Four records: healthy; failing two stages; gone with a failed import; a name conflict."""
    integration = make_integration()
    (holder,) = make_entities(component_doc("ledger"))
    records = {
        "billing": _discovered(integration, "billing"),
        "payments": _discovered(
            integration,
            "payments",
            processing_errors={
                "pull_requests": _error("pull_requests", "not permitted (403)", days=2),
                "catalog_file": _error("catalog_file", "invalid entity", run_id=None),
            },
        ),
        "archive": _discovered(
            integration,
            "archive",
            state=DiscoveredState.GONE,
            gone_at=NOW,
            processing_errors={"import": _error("import", "invalid entity")},
        ),
        "ledger": _discovered(
            integration, "ledger", recommended_action="conflict", name_holder=holder
        ),
    }
    return {"integration": integration, "records": records, "holder": holder}


def test_state_error_lists_the_records_that_need_attention_whatever_their_state(
    troubled, reader_client
):
    integration = troubled["integration"]
    body = reader_client.get(f"{API}/{integration.pk}/discovered", {"state": "error"}).json()
    assert [item["name"] for item in body["results"]] == ["archive", "payments"]
    assert body["count"] == 2
    archive, payments = body["results"]
    assert (archive["state"], archive["needs_attention"]) == ("gone", True)
    assert archive["gone_at"] is not None
    assert payments["needs_attention"] is True
    assert payments["error_since"] is not None


def test_each_discovered_item_carries_its_errors_in_pipeline_order(troubled, reader_client):
    integration = troubled["integration"]
    body = reader_client.get(f"{API}/{integration.pk}/discovered").json()
    items = {item["name"]: item for item in body["results"]}
    assert items["billing"]["processing_errors"] == []
    assert items["billing"]["needs_attention"] is False
    errors = items["payments"]["processing_errors"]
    assert [error["stage"] for error in errors] == ["catalog_file", "pull_requests"]
    assert errors[1] == {
        "stage": "pull_requests",
        "message": "pull_requests failed",
        "reason": "not permitted (403)",
        "hint": "fix the pull_requests",
        "since": (NOW - timedelta(days=2)).isoformat(),
        "at": NOW.isoformat(),
        "run_id": 7,
    }
    assert errors[0]["run_id"] is None


def test_a_name_conflict_names_the_entity_holding_the_name(troubled, reader_client):
    integration, holder = troubled["integration"], troubled["holder"]
    body = reader_client.get(
        f"{API}/{integration.pk}/discovered", {"recommended_action": "conflict"}
    ).json()
    (ledger,) = body["results"]
    assert ledger["recommended_action"] == "conflict"
    assert ledger["name_holder"] == {"id": holder.pk, "ref": "component:default/ledger"}
    assert ledger["needs_attention"] is False


def test_state_error_combines_with_search(troubled, reader_client):
    integration = troubled["integration"]
    body = reader_client.get(
        f"{API}/{integration.pk}/discovered", {"state": "error", "search": "PAY"}
    ).json()
    assert [item["name"] for item in body["results"]] == ["payments"]


# -- runs ---------------------------------------------------------------------------------------

SUMMARY = [
    {
        "stage": "pull_requests",
        "reason": "not permitted (403)",
        "hint": "grant read access",
        "count": 2,
        "examples": ["payments", "ledger"],
    },
    {
        "stage": "import",
        "reason": "invalid entity",
        "hint": "fix the mapping",
        "count": 1,
        "examples": ["archive"],
    },
]


def test_a_partial_run_carries_its_errors_grouped(make_integration, reader_client):
    integration = make_integration()
    SyncRun.objects.create(
        integration=integration,
        trigger="manual",
        mode="incremental",
        state=SyncState.PARTIAL,
        errors=3,
        error_summary=SUMMARY,
        unchanged=12,
        finished_at=NOW,
    )
    (run,) = reader_client.get(f"{API}/{integration.pk}/runs").json()["results"]
    assert (run["state"], run["mode"], run["errors"], run["unchanged"]) == (
        "partial",
        "incremental",
        3,
        12,
    )
    assert run["error_summary"] == SUMMARY


# -- imported: source gone ----------------------------------------------------------------------


@pytest.fixture
def links(make_integration, make_entities):
    """Three links: ``billing`` linked and listed, ``payments`` linked but its repository gone,
    ``search`` unlinked and gone (an unlinked entity is not this integration's any more)."""
    integration = make_integration()
    entities = make_entities(*(component_doc(name) for name in ("billing", "payments", "search")))
    result = {}
    for entity, gone, state in zip(
        entities,
        (False, True, True),
        (LinkState.LINKED, LinkState.LINKED, LinkState.UNLINKED),
        strict=True,
    ):
        discovered = _discovered(
            integration,
            entity.name,
            state=DiscoveredState.GONE if gone else DiscoveredState.IMPORTED,
            gone_at=NOW - timedelta(days=1) if gone else None,
        )
        result[entity.name] = ImportedEntity.objects.create(
            integration=integration,
            discovered=discovered,
            entity=entity,
            action=ImportAction.REGISTER,
            state=state,
        )
    return integration, result


def test_a_linked_entity_whose_repository_is_gone_is_source_gone(links, reader_client):
    integration, _ = links
    body = reader_client.get(f"{API}/{integration.pk}/imported").json()
    items = {item["entity_name"]: item for item in body["results"]}
    assert {name: item["state"] for name, item in items.items()} == {
        "billing": "linked",
        "payments": "source_gone",
        "search": "unlinked",
    }
    assert items["payments"]["source_gone_since"] == (NOW - timedelta(days=1)).isoformat().replace(
        "+00:00", "Z"
    )
    assert items["billing"]["source_gone_since"] is None
    assert items["search"]["source_gone_since"] is None


@pytest.mark.parametrize(
    ("state", "names"),
    [("source_gone", ["payments"]), ("linked", ["billing"]), ("unlinked", ["search"])],
)
def test_the_imported_state_filter_follows_the_state_shown(links, reader_client, state, names):
    integration, _ = links
    body = reader_client.get(f"{API}/{integration.pk}/imported", {"state": state}).json()
    assert [item["entity_name"] for item in body["results"]] == names


def test_unlinking_a_source_gone_entity_shows_it_unlinked(links, editor_client):
    integration, imported = links
    response = editor_client.post(
        f"{API}/{integration.pk}/imported/{imported['payments'].pk}/unlink"
    )
    assert response.status_code == 200
    assert (response.json()["state"], response.json()["source_gone_since"]) == ("unlinked", None)


# -- statement counts ---------------------------------------------------------------------------

MAX_QUERIES = 8


@pytest.fixture
def crowded(make_integration, make_entities):
    """25 records needing attention (with conflicts naming holders), 25 partial runs and 25
    source-gone links."""
    integration = make_integration()
    holders = make_entities(*(component_doc(f"holder-{i:02d}") for i in range(25)))
    entities = make_entities(*(component_doc(f"gone-{i:02d}") for i in range(25)))
    for index in range(25):
        _discovered(
            integration,
            f"repo-{index:02d}",
            recommended_action="conflict",
            name_holder=holders[index],
            suggested_entity=holders[index],
            processing_errors={"commits": _error("commits", "not found (404)")},
        )
        gone = _discovered(
            integration, f"gone-{index:02d}", state=DiscoveredState.GONE, gone_at=NOW
        )
        ImportedEntity.objects.create(
            integration=integration,
            discovered=gone,
            entity=entities[index],
            action=ImportAction.REGISTER,
        )
        SyncRun.objects.create(
            integration=integration,
            trigger="schedule",
            state=SyncState.PARTIAL,
            errors=3,
            error_summary=SUMMARY,
        )
    return integration


def _count(client, url, params) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as context:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(context), len(response.json()["results"])


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("discovered", {"state": "error"}),
        ("discovered", {"recommended_action": "conflict"}),
        ("imported", {"state": "source_gone"}),
        ("imported", {}),
        ("runs", {}),
    ],
)
def test_error_lists_cost_the_same_statements_whatever_the_page_size(
    crowded, reader_client, django_assert_max_num_queries, path, params
):
    url = f"{API}/{crowded.pk}/{path}"
    reader_client.get(url)  # the token's first use of the minute writes last_used_at
    few, few_items = _count(reader_client, url, {**params, "limit": 1})
    many, many_items = _count(reader_client, url, {**params, "limit": 25})
    assert (few_items, many_items) == (1, 25)
    assert few == many
    with django_assert_max_num_queries(MAX_QUERIES):
        reader_client.get(url, {**params, "limit": 25})


# -- end to end over the sandboxes ------------------------------------------------------------


@pytest.fixture(params=["cloud", "dc"])
def sandboxed(request, settings, monkeypatch, make_cloud_sandbox, make_dc_sandbox):  # noqa: F811
    """A sandbox (Bitbucket Cloud, then Data Center) of four repositories: ``(world,
    integrate)``, where ``integrate(**settings)`` makes an auto-importing integration over it."""
    from integrations.providers.bitbucket_dc import client as dc_client_module
    from tests.integrations.bitbucket_cloud import conftest as cloud
    from tests.integrations.bitbucket_dc import conftest as dc

    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.BITBUCKET_DC_ENABLED = True
    cache.clear()
    fast = lambda: RetryPolicy(base_delay=0.002, max_delay=0.01)  # noqa: E731
    monkeypatch.setattr(client_module, "retry_policy", fast)
    monkeypatch.setattr(dc_client_module, "retry_policy", fast)
    if request.param == "cloud":
        world = cloud.world(4, prs=2, commits=2)
        server = make_cloud_sandbox(world)
        connector = cloud.make_connector(server)
        yield world, lambda **values: cloud.make_integration(connector, **values)
    else:
        world = dc.world(4, projects=2, prs=2, commits=2)
        server = make_dc_sandbox(world)
        connector = dc.make_connector(server)
        yield world, lambda **values: dc.make_integration(connector, **values)
    cache.clear()


@pytest.fixture
def forbidden_sandbox(sandboxed):
    """The pull requests of one of the four repositories answer 403."""
    world, integrate = sandboxed
    forbidden = sorted(world.iter_repositories(), key=lambda repo: repo.slug)[1]
    world.forbid(forbidden, kind="pull_requests", status=403)
    return integrate(), forbidden


@pytest.mark.django_db(transaction=True)
def test_a_repository_whose_pull_requests_are_forbidden_shows_in_the_api_and_fails_strict(
    forbidden_sandbox, reader_client
):
    integration, forbidden = forbidden_sandbox
    out = io.StringIO()
    with pytest.raises(CommandError) as strict:
        call_command("sync", integration.name, "--strict", stdout=out, stderr=io.StringIO())
    message = str(strict.value)
    assert "partial: 1 repository could not be handled" in message
    assert "pull_requests: not permitted (403) — 1 (" in message
    assert forbidden.name in message
    assert "--strict" in message

    run = SyncRun.objects.filter(integration=integration).latest("started_at")
    assert (run.state, run.errors) == ("partial", 1)
    body = reader_client.get(f"{API}/{integration.pk}/discovered", {"state": "error"}).json()
    (item,) = body["results"]
    assert item["name"] == forbidden.name
    (error,) = item["processing_errors"]
    assert (error["stage"], error["reason"], error["run_id"]) == (
        "pull_requests",
        "not permitted (403)",
        run.pk,
    )
    (listed_run, *_) = reader_client.get(f"{API}/{integration.pk}/runs").json()["results"]
    assert listed_run["state"] == "partial"
    assert listed_run["error_summary"][0]["examples"] == [forbidden.name]

    # Without --strict the same run is reported, and the command succeeds.
    out = io.StringIO()
    call_command("sync", integration.name, stdout=out, stderr=io.StringIO())
    assert "partial: 1 repository could not be handled" in out.getvalue()
    assert "Could not be handled:" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_an_invalid_custom_mapping_is_an_error_on_each_record_in_the_api_the_run_and_the_cli(
    sandboxed, reader_client, client, make_user
):
    from integrations.providers import registry

    world, integrate = sandboxed
    integration = integrate()
    mappings = dict(registry.get(integration.provider).default_field_mappings)
    mappings["metadata.name"] = "join('', ['not valid ', name])"
    integration = integrate(name="invalid", field_mappings=mappings)

    out = io.StringIO()
    call_command("sync", integration.name, stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert "partial: 4 repositories could not be handled" in text
    assert "  import: invalid entity — 4 (" in text
    assert "Fix the field mapping for metadata.name" in text

    body = reader_client.get(f"{API}/{integration.pk}/discovered", {"state": "error"}).json()
    assert body["count"] == len(list(world.iter_repositories())) == 4
    for item in body["results"]:
        (error,) = item["processing_errors"]
        assert (error["stage"], error["reason"]) == ("import", "invalid entity")
        assert "is not a valid name" in error["message"]
    imported = reader_client.get(f"{API}/{integration.pk}/imported").json()
    assert imported["count"] == 0
    (run,) = reader_client.get(f"{API}/{integration.pk}/runs").json()["results"]
    assert (run["state"], run["errors"]) == ("partial", 4)
    assert run["error_summary"][0]["count"] == 4
    # And in the Discovered view: every record under Needs attention, each with its error.
    client.force_login(make_user("ui-reader"))
    page = client.get(f"/integrations/{integration.pk}/", {"state": "error"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Needs attention (4)" in html
    for repo in world.iter_repositories():
        assert repo.name in html
    assert html.count("invalid entity") >= 4
    assert "Fix the field mapping for metadata.name" in html
