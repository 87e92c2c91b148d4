"""Valid values, whatever Bitbucket holds: the JMESPath functions that make text a valid entity
name, label value or tag (or drop what breaks a rule), and the default mappings of both
providers importing every repository of a world with a personal project (``~JDOE``), unicode,
spaces, dots and over-long names into entities that pass Backstage's validation."""

import pytest
from django.core.cache import cache

from catalog.models import Entity
from catalog.rendering import entity_document
from catalog.validation import (
    LABEL_VALUE_RE,
    MAX_NAME_LENGTH,
    TAG_RE,
    name_errors,
    validate_entity_document,
)
from integrations import services
from integrations.choices import DiscoveredState, SyncState
from integrations.engine.mapping import ExpressionError, compile_expression, search
from integrations.models import DiscoveredEntity
from integrations.providers.bitbucket_cloud import client as cloud_client
from integrations.providers.bitbucket_dc import client as dc_client
from integrations.providers.http import RetryPolicy
from tests.integrations.engine.conftest import sync
from tests.sandbox.fixtures import (
    DC_TOKEN,
    SANDBOX_TOKEN,
    cloud_world_factory,
    dc_world_factory,
    make_cloud_sandbox,  # noqa: F401 (fixture)
    make_dc_sandbox,  # noqa: F401 (fixture)
)

HOSTILE_TEXTS = [
    "~jdoe",
    "~JDOE",
    "Café Über Service",
    "data pipeline (v2)",
    "config.v1.2",
    ".hidden",
    "trailing.",
    "_under_",
    "a" * 100,
    "A very long repository name that keeps going and going and going and going on",
    "日本語のサービス",
    "日本語-api",
    "🚀 launch",
    "straße",
    "  padded  ",
    "x",
    "--",
    42,
]


def is_label_value(value) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_NAME_LENGTH
        and LABEL_VALUE_RE.fullmatch(value) is not None
    )


def is_tag(value) -> bool:
    return (
        isinstance(value, str)
        and len(value) <= MAX_NAME_LENGTH
        and TAG_RE.fullmatch(value) is not None
    )


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_every_text_becomes_a_valid_name_label_value_and_tag_idempotently(text):
    name = search("to_entity_name(@)", text)
    label = search("to_label_value(@)", text)
    tag = search("to_tag(@)", text)
    assert name_errors(name) is None, name
    assert is_label_value(label), label
    assert tag is None or is_tag(tag), tag
    # Idempotent: a value already valid is kept as it is.
    assert search("to_entity_name(@)", name) == name
    assert search("to_label_value(@)", label) == label
    assert tag is None or search("to_tag(@)", tag) == tag
    # Deterministic: the same text always gives the same value.
    assert search("to_entity_name(@)", text) == name


def test_valid_names_are_kept_exactly_and_invalid_ones_readably():
    assert search("to_entity_name(@)", "Payments.API_v2") == "Payments.API_v2"
    assert search("to_entity_name(@)", "~JDOE") == "JDOE"
    assert search("to_entity_name(@)", "data pipeline (v2)") == "data-pipeline-v2"
    assert search("to_entity_name(@)", "Café Über Service") == "Cafe-Uber-Service"
    assert search("to_tag(@)", "Visual Basic") == "visual-basic"
    assert search("to_tags(@)", ["Java", "java", "C++", "日本", "Visual Basic"]) == [
        "java",
        "c++",
        "visual-basic",
    ]
    assert search("to_entity_name(@)", "") is None
    assert search("to_label_value(@)", "") == ""


def test_names_that_differ_beyond_what_fits_stay_different():
    long_a, long_b = "service-" * 12 + "alpha", "service-" * 12 + "beta"
    assert search("to_entity_name(@)", long_a) != search("to_entity_name(@)", long_b)
    assert search("to_entity_name(@)", "日本語-api") != search("to_entity_name(@)", "中文-api")
    assert search("to_entity_name(@)", "日本語-api").startswith("api-")
    assert len(search("to_entity_name(@)", long_a)) == MAX_NAME_LENGTH


def test_if_valid_keeps_a_value_that_satisfies_its_rule_and_drops_one_that_does_not():
    data = {"key": "~JDOE", "ok": "CORE", "owner": "Team A", "team": "group:default/team-a"}
    assert search("if_valid(key, 'label_value')", data) is None
    assert search("if_valid(ok, 'label_value')", data) == "CORE"
    assert search("if_valid(owner, 'entity_ref')", data) is None
    assert search("if_valid(team, 'entity_ref')", data) == "group:default/team-a"
    assert search("if_valid(missing, 'string') || ok", data) == "CORE"
    with pytest.raises(ExpressionError, match="unknown rule 'bogus'"):
        search("if_valid(ok, 'bogus')", data)


def test_an_unknown_function_is_refused_when_the_expression_is_saved():
    with pytest.raises(ExpressionError, match=r"unknown function to_slug\(\)"):
        compile_expression("to_slug(name)")
    with pytest.raises(ExpressionError, match=r"unknown function nope\(\)"):
        compile_expression("to_tags(nope(name))")
    compile_expression("to_entity_name(name)")  # Lantern's own and JMESPath's are known
    compile_expression("join('-', [project_key, to_label_value(name)])")


# -- both providers over the sandbox -------------------------------------------------------------

HOSTILE_CATALOG_INFO = """\
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: whatever
  description: 42
  tags: [Java, "Visual Basic", "日本語", ok]
spec:
  type: service
  owner: Team A
  lifecycle: 3
  system: my system
"""
HUNDRED = "A hundred characters " + "x" * 79


@pytest.fixture(autouse=True)
def sandbox_settings(settings, monkeypatch):
    settings.LANTERN_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    settings.BITBUCKET_DC_ENABLED = True
    cache.clear()
    fast = lambda: RetryPolicy(base_delay=0.002, max_delay=0.01)  # noqa: E731
    monkeypatch.setattr(cloud_client, "retry_policy", fast)
    monkeypatch.setattr(dc_client, "retry_policy", fast)
    yield
    cache.clear()


def hostile_world(factory):
    """A small world with the sandbox's edge cases (``jdoe``'s personal project, unicode,
    spaces, dots, a long name), a 100-character name and a catalog-info.yaml whose values
    break every rule."""
    world = factory(projects=2, repos=6, prs_per_repo=0, commits_per_repo=1)
    ws = world.workspaces[next(iter(world.workspaces))]
    account = world.add_account(nickname="jdoe", display_name="Jane Doe", email="jdoe@example.com")
    ws.members.append(account.uuid)
    cases = world.edge_cases(workspace=ws.slug, user="jdoe")
    project = cases["unicode"].project_key
    world.repository_create(
        workspace=ws.slug, project=project, name=HUNDRED, files={"README.md": "# long\n"}
    )
    world.repository_create(
        workspace=ws.slug,
        project=cases["personal"].project_key,
        name="Hostile catalog file",
        description="From Bitbucket",
        files={"catalog-info.yaml": HOSTILE_CATALOG_INFO},
    )
    return world


def cloud_integration(server, **values):
    """An auto-importing integration of the sandbox's first workspace (``values``: more of
    its settings; no secondary kinds unless given)."""
    connector = services.connector_create(
        name="cloud",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=server.api_url,
        secrets={"token": SANDBOX_TOKEN},
    )
    workspace = next(iter(server.world.workspaces))
    return services.integration_create(
        **{
            "connector": connector,
            "name": "cloud",
            "target": {"workspace": workspace},
            "auto_import": True,
            "secondary_kinds": [],
            **values,
        }
    )


def dc_integration(server, **values):
    """An auto-importing integration of the whole Data Center sandbox (``values`` as above)."""
    connector = services.connector_create(
        name="dc",
        provider="bitbucket_dc",
        auth_kind="personal_access_token",
        base_url=server.url,
        secrets={"token": DC_TOKEN},
        ca_pem=server.ca_pem,
    )
    return services.integration_create(
        **{
            "connector": connector,
            "name": "dc",
            "auto_import": True,
            "secondary_kinds": [],
            **values,
        }
    )


@pytest.fixture(params=["cloud", "dc"])
def hostile(request, make_cloud_sandbox, make_dc_sandbox):  # noqa: F811
    """(integration, sandbox) over :func:`hostile_world`, on each provider."""
    if request.param == "cloud":
        server = make_cloud_sandbox(hostile_world(cloud_world_factory))
        return cloud_integration(server), server
    server = make_dc_sandbox(hostile_world(dc_world_factory))
    return dc_integration(server), server


def documents() -> dict[str, dict]:
    return {entity.name: entity_document(entity) for entity in Entity.objects.all()}


@pytest.mark.django_db
def test_default_mappings_import_every_repository_as_a_valid_entity(hostile):
    integration, server = hostile
    repos = list(server.world.iter_repositories())
    personal_key = "~JDOE"
    assert any(repo.project_key == personal_key for repo in repos)
    assert any(len(repo.slug) > MAX_NAME_LENGTH for repo in repos)

    run = sync(integration)

    assert (run.state, run.errors, run.error_summary) == (SyncState.SUCCEEDED, 0, [])
    rows = DiscoveredEntity.objects.filter(integration=integration)
    assert rows.count() == len(repos) == run.imported
    assert set(rows.values_list("state", flat=True)) == {DiscoveredState.IMPORTED}
    assert not rows.exclude(processing_errors={}).exists()
    for name, document in documents().items():
        assert validate_entity_document(document) == [], name

    by_project = {}
    for entity in Entity.objects.all():
        key = entity.annotations["bitbucket.org/project-key"]
        by_project.setdefault(key, []).append(entity)
    assert len(by_project[personal_key]) == 3  # Personal Notes, scratch, the catalog file
    for key, entities in by_project.items():
        for entity in entities:
            # The raw key is always annotated; the label only where the key is a valid value.
            assert entity.labels.get("bitbucket.org/project") == (
                None if key == personal_key else key
            )


@pytest.mark.django_db
def test_a_catalog_file_value_that_breaks_its_rule_is_left_out_and_tags_are_made_valid(hostile):
    integration, _ = hostile
    assert sync(integration).state == SyncState.SUCCEEDED
    entity = Entity.objects.get(name="hostile-catalog-file")
    assert entity.description == "From Bitbucket"  # 42 is not a description
    assert entity.tags == ["java", "visual-basic", "ok"]
    assert (entity.owner, entity.lifecycle, entity.system) == ("unknown", "production", "")


@pytest.mark.django_db
def test_a_second_sync_renames_nothing_and_changes_nothing(hostile):
    integration, _ = hostile
    sync(integration)
    before = {entity.uid: entity_document(entity) for entity in Entity.objects.all()}
    run = sync(integration, full=True)
    assert (run.state, run.imported, run.errors) == (SyncState.SUCCEEDED, 0, 0)
    after = {entity.uid: entity_document(entity) for entity in Entity.objects.all()}
    assert after == before
