"""Contract: sandbox responses validate against Atlassian's published Swagger definitions.

The spec is Swagger 2.0, so definitions are JSON Schema draft 4 (``allOf`` composes the
``object`` base); ``$ref``s resolve against the document's ``definitions``. Where real traffic is
known to differ from the spec, the schema is patched here, each patch with its reason — never the
sandbox bent away from what Bitbucket really sends.
"""

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from tests.sandbox.helpers import api_client, first_repo

SPEC = Path("/work/shared/bitbucket-specs/bitbucket-cloud-2.0-swagger.json")
WS = "acme"

# Swagger 2.0 cannot say "nullable"; Bitbucket sends null for these (an empty repository's
# mainbranch, an unmerged pull request's merge_commit, a reviewer who has not acted yet).
NULLABLE = [
    ("repository", "mainbranch"),
    ("pullrequest", "merge_commit"),
    ("pullrequest", "closed_by"),
    ("participant", "state"),
    ("participant", "participated_on"),
]


def _properties(definition: dict) -> dict:
    """The properties of a plain or ``allOf``-composed definition (its own part)."""
    if "properties" in definition:
        return definition["properties"]
    return next(part["properties"] for part in definition["allOf"] if "properties" in part)


def _definitions() -> dict:
    definitions = copy.deepcopy(json.loads(SPEC.read_text())["definitions"])
    for name, prop in NULLABLE:
        properties = _properties(definitions[name])
        properties[prop] = {"anyOf": [properties[prop], {"type": "null"}]}
    # Real repositories link their branches, tags and source too (the spec's own narrative
    # example shows branches and tags), while the schema closes ``links``.
    links = _properties(definitions["repository"])["links"]["properties"]
    for name in ("branches", "tags", "source"):
        links[name] = copy.deepcopy(links["self"])
    # ``attributes`` is a list in real responses and in the spec's own ``format=meta`` example.
    attributes = _properties(definitions["commit_file"])["attributes"]
    _properties(definitions["commit_file"])["attributes"] = {"type": "array", "items": attributes}
    return definitions


DEFINITIONS = _definitions() if SPEC.exists() else {}
pytestmark = pytest.mark.skipif(not SPEC.exists(), reason="the Bitbucket spec is not present")


def validate(document, definition: str) -> None:
    schema = {"$ref": f"#/definitions/{definition}", "definitions": DEFINITIONS}
    validator = Draft4Validator(schema, format_checker=Draft4Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:10]
    )


@pytest.fixture
def client(cloud_sandbox):
    with api_client(cloud_sandbox) as client:
        yield client


def test_repositories_match_the_spec(cloud_sandbox, client):
    cloud_sandbox.world.repository_create(workspace=WS, project="PLAT", name="empty-one")
    page = client.get(f"repositories/{WS}", params={"pagelen": 100}).json()
    validate(page, "paginated_repositories")
    for value in page["values"]:
        validate(value, "repository")
    validate(client.get(f"repositories/{WS}/empty-one").json(), "repository")


def test_workspace_projects_and_user_match_the_spec(client):
    validate(client.get(f"workspaces/{WS}").json(), "workspace")
    projects = client.get(f"workspaces/{WS}/projects").json()
    validate(projects, "paginated_projects")
    validate(projects["values"][0], "project")
    user = client.get("user").json()
    validate(user, "account")
    validate(user, "user")


def test_pull_requests_match_the_spec(cloud_sandbox, client):
    repo = max(cloud_sandbox.world.iter_repositories(), key=lambda r: len(r.pull_requests))
    path = f"repositories/{WS}/{repo.slug}/pullrequests"
    states = [("state", s) for s in ("OPEN", "MERGED", "DECLINED", "SUPERSEDED")]
    page = client.get(path, params=[*states, ("fields", "+values.participants")]).json()
    validate(page, "paginated_pullrequests")
    assert {v["state"] for v in page["values"]} >= {"OPEN"}
    for value in page["values"]:
        validate(value, "pullrequest")
        validate(client.get(f"{path}/{value['id']}").json(), "pullrequest")


def test_commits_and_files_match_the_spec(cloud_sandbox, client):
    repo = first_repo(cloud_sandbox)
    base = f"repositories/{WS}/{repo.slug}"
    page = client.get(f"{base}/commits/{repo.mainbranch}", params={"pagelen": 3}).json()
    validate(page, "paginated_changeset")
    for value in page["values"]:
        validate(value, "commit")
        validate(client.get(f"{base}/commit/{value['hash']}").json(), "commit")
    meta = client.get(f"{base}/src/{repo.mainbranch}/README.md", params={"format": "meta"})
    validate(meta.json(), "commit_file")
    listing = client.get(f"{base}/src/{repo.mainbranch}/").json()
    validate(listing, "paginated_treeentries")


def test_webhook_subscriptions_match_the_spec(cloud_sandbox, client):
    repo = first_repo(cloud_sandbox)
    body = {"url": "http://127.0.0.1:9/hook", "events": ["repo:push"], "secret": "s"}
    created = client.post(f"repositories/{WS}/{repo.slug}/hooks", json=body).json()
    validate(created, "webhook_subscription")
    workspace_hook = client.post(f"workspaces/{WS}/hooks", json=body).json()
    validate(workspace_hook, "webhook_subscription")
    listing = client.get(f"repositories/{WS}/{repo.slug}/hooks").json()
    validate(listing, "paginated_webhook_subscriptions")


def test_errors_match_the_spec(cloud_sandbox, client):
    cloud_sandbox.world.credentials.add_access_token("narrow", workspace=WS, scopes=["project"])
    repo = first_repo(cloud_sandbox)
    errors = [
        client.get("repositories/nowhere"),
        client.get(f"repositories/{WS}", params={"pagelen": 1000}),
        client.get(f"repositories/{WS}", params={"q": "broken ="}),
        client.get(f"repositories/{WS}", headers={"Authorization": "Bearer wrong"}),
        client.get(
            f"repositories/{WS}/{repo.slug}/pullrequests",
            headers={"Authorization": "Bearer narrow"},
        ),
    ]
    assert [e.status_code for e in errors] == [404, 400, 400, 401, 403]
    for error in errors:
        validate(error.json(), "error")
