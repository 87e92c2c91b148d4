"""Contract test: Lantern's catalog API as the real ``@backstage/catalog-client`` sees it.

A catalog is imported with ``import_catalog``. A token is issued to a user who may view, refresh
and delete entities and add, change and delete locations; a Bitbucket Cloud sandbox and an
integration of its workspace serve the catalog file the locations checks register. The full
documents are then read back from ``GET /api/catalog/entities``, and
``catalog_client/contract.mjs`` drives the live server with the pinned client and checks every
answer against those documents. ``CLIENT_PROTOCOL.md`` lists the requests involved.

It needs Node and ``npm ci`` in ``tests/contract/catalog_client``. Without them it is skipped
locally. Under CI (``CI=true``) it fails instead, so the contract can never go unchecked there.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command

HERE = Path(__file__).resolve().parent
CLIENT_DIR = HERE / "catalog_client"
NODE_TIMEOUT = 60

# The catalog loaded: 17 entities of every kind in two namespaces. contract.mjs computes its
# expectations from the documents the server returns, not from counts written here. It relies on:
# several Components of type service/website/library, with two `payments-service`s in different
# namespaces (a tie when ordering by name); a name with upper-case letters (`Storefront-Web`),
# for case-insensitive ref lookups; the `python` tag; a `backstage.io/techdocs-ref` annotation on
# some entities but not all; and `spec.owner`, which yields `ownedBy` relations.

OWNER_PAYMENTS = "group:default/team-payments"
OWNER_WEB = "group:default/team-web"
OWNER_PLATFORM = "group:default/team-platform"
OWNER_SRE = "group:ops/sre"
TECHDOCS = {"backstage.io/techdocs-ref": "dir:."}


def _entity(kind, name, spec, *, namespace="default", api_version="backstage.io/v1alpha1", **meta):
    metadata = {"name": name, "namespace": namespace, **meta}
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": spec}


def _component(name, type_, lifecycle, owner, tags, **meta):
    spec = {"type": type_, "lifecycle": lifecycle, "owner": owner}
    if "system" in meta:
        spec["system"] = meta.pop("system")
    if "depends_on" in meta:
        spec["dependsOn"] = meta.pop("depends_on")
    return _entity("Component", name, spec, tags=tags, **meta)


ENTITIES = [
    _component(
        "payments-service",
        "service",
        "production",
        OWNER_PAYMENTS,
        ["python", "payments"],
        title="Payments Service",
        description="Takes money.",
        system="payments",
        labels={"tier": "critical"},
        annotations=dict(TECHDOCS),
        links=[{"url": "https://example.com/payments", "title": "Dashboard"}],
    ),
    _component(
        "checkout-service",
        "service",
        "production",
        OWNER_PAYMENTS,
        ["java", "payments"],
        description="The checkout flow.",
        system="payments",
        annotations=dict(TECHDOCS),
    ),
    _component(
        "Storefront-Web",
        "website",
        "production",
        OWNER_WEB,
        ["typescript", "frontend"],
        title="Storefront",
        annotations={"github.com/project-slug": "acme/storefront"},
    ),
    _component(
        "admin-portal",
        "website",
        "experimental",
        OWNER_WEB,
        ["typescript"],
        depends_on=["component:Storefront-Web", "resource:default/payments-db"],
    ),
    _component(
        "shared-utils",
        "library",
        "production",
        OWNER_PLATFORM,
        ["python"],
        annotations=dict(TECHDOCS),
    ),
    _component("legacy-billing", "service", "deprecated", OWNER_PAYMENTS, ["java", "legacy"]),
    _entity(
        "API",
        "payments-api",
        {
            "type": "openapi",
            "lifecycle": "production",
            "owner": OWNER_PAYMENTS,
            "system": "payments",
            "definition": "openapi: 3.0.0\ninfo:\n  title: Payments\n",
        },
        tags=["payments", "rest"],
        annotations=dict(TECHDOCS),
    ),
    _entity(
        "API",
        "search-api",
        {
            "type": "graphql",
            "lifecycle": "experimental",
            "owner": OWNER_WEB,
            "definition": "type Query { search: String }",
        },
        tags=["graphql"],
    ),
    _entity("System", "payments", {"owner": OWNER_PAYMENTS}, description="Payments system."),
    _entity("Group", "team-payments", {"type": "team", "children": []}, title="Payments Team"),
    _entity("Group", "team-web", {"type": "team", "children": []}),
    _entity("Group", "team-platform", {"type": "team", "children": []}),
    _entity(
        "User",
        "alice",
        {"profile": {"displayName": "Alice"}, "memberOf": ["team-payments"]},
    ),
    _entity(
        "Resource",
        "payments-db",
        {"type": "database", "owner": OWNER_PAYMENTS, "system": "payments"},
        tags=["postgres"],
    ),
    _component(
        "payments-service",
        "service",
        "production",
        OWNER_SRE,
        ["go"],
        namespace="ops",
        annotations=dict(TECHDOCS),
    ),
    _entity("Group", "sre", {"type": "team", "children": []}, namespace="ops"),
    _entity(
        "Resource",
        "metrics-bucket",
        {"type": "s3-bucket", "owner": OWNER_SRE},
        namespace="ops",
        tags=["aws"],
    ),
]


# ---- helpers -----------------------------------------------------------------


def _node() -> str:
    """The node binary, or skip (locally) / fail (CI) with the reason."""
    problems = []
    node = shutil.which("node")
    if node is None:
        problems.append("`node` is not on PATH")
    if not (CLIENT_DIR / "node_modules" / "@backstage" / "catalog-client").is_dir():
        problems.append(f"{CLIENT_DIR / 'node_modules'} is missing: run `npm ci` there")
    if problems:
        reason = "catalog-client contract test cannot run: " + "; ".join(problems)
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(reason + " (CI=true: this test must run in CI)")
        pytest.skip(reason)
    return node


def _run_contract(
    node: str, *, url: str, token: str, expected: Path, location: dict | None = None
) -> str:
    env = {
        **os.environ,
        "LANTERN_URL": url,
        "LANTERN_TOKEN": token,
        "LANTERN_EXPECTED": str(expected),
        **(location or {}),
    }
    try:
        proc = subprocess.run(
            [node, "contract.mjs"],
            cwd=CLIENT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"contract.mjs did not finish within {NODE_TIMEOUT}s\n"
            f"--- stdout ---\n{exc.stdout or ''}\n--- stderr ---\n{exc.stderr or ''}"
        )
    report = f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    sys.stdout.write(proc.stdout)  # shown with -s / on failure: one "ok - <check>" per check
    assert proc.returncode == 0, f"contract.mjs exited with {proc.returncode}\n{report}"
    assert "0 failed" in proc.stdout, f"contract.mjs did not report '0 failed'\n{report}"
    return proc.stdout


def _get_json(url: str, token: str):
    response = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text[:500]}"
    return response.json()


def _ref(doc: dict) -> str:
    meta = doc["metadata"]
    return f"{doc['kind']}:{meta.get('namespace', 'default')}/{meta['name']}".lower()


# ---- tests -------------------------------------------------------------------


# The catalog file the locations checks register, in a repository of the sandbox workspace an
# integration connects (read through it, as every url location is).
LOCATION_WORKSPACE = "acme"
LOCATION_REPOSITORY = "feeds-api"
LOCATION_ENTITIES = [
    _component("contract-location-api", "service", "production", OWNER_PAYMENTS, ["python"]),
    _component("contract-location-worker", "service", "experimental", OWNER_PAYMENTS, []),
]
LOCATION_CHECKS = 9  # the "location:" checks of contract.mjs


def _location_in_sandbox(sandbox) -> dict:
    """A connector and integration for the sandbox's workspace, and a catalog file in one of its
    repositories: what contract.mjs's locations checks are given."""
    from integrations import services
    from tests.sandbox.fixtures import SANDBOX_TOKEN

    connector = services.connector_create(
        name="contract",
        provider="bitbucket_cloud",
        auth_kind="workspace_access_token",
        base_url=sandbox.api_url,
        secrets={"token": SANDBOX_TOKEN},
        config={},
    )
    services.integration_create(
        connector=connector, name="contract", target={"workspace": LOCATION_WORKSPACE}
    )
    sandbox.world.file_write(
        workspace=LOCATION_WORKSPACE,
        slug=LOCATION_REPOSITORY,
        path="catalog-info.yaml",
        content=yaml.safe_dump_all(LOCATION_ENTITIES, sort_keys=False),
    )
    target = f"{sandbox.url}/{LOCATION_WORKSPACE}/{LOCATION_REPOSITORY}/src/main/catalog-info.yaml"
    return {
        "LANTERN_LOCATION_TARGET": target,
        "LANTERN_LOCATION_REFS": json.dumps([_ref(doc) for doc in LOCATION_ENTITIES]),
    }


@pytest.mark.django_db(transaction=True)
def test_backstage_catalog_client_contract(live_server, cloud_sandbox, tmp_path):
    node = _node()

    catalog_file = tmp_path / "catalog-info.yaml"
    catalog_file.write_text(yaml.safe_dump_all(ENTITIES, sort_keys=False), encoding="utf-8")
    call_command("import_catalog", str(catalog_file), stdout=io.StringIO(), stderr=io.StringIO())

    user = get_user_model().objects.create_user(username="contract-bot", password=uuid.uuid4().hex)
    codenames = [
        "view_entity",
        "delete_entity",
        "change_entity",  # refreshEntity
        "add_location",
        "change_location",
        "delete_location",
    ]
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="catalog", codename__in=codenames)
    )
    assert user.user_permissions.count() == len(codenames), f"one of {codenames} is missing"
    out = io.StringIO()
    call_command("issue_token", user.username, stdout=out, stderr=io.StringIO())
    token = [line for line in out.getvalue().splitlines() if line.strip()][-1].strip()

    documents = _get_json(f"{live_server.url}/api/catalog/entities", token)
    assert isinstance(documents, list), (
        f"GET /api/catalog/entities must be a bare array: {documents!r}"
    )
    assert sorted(map(_ref, documents)) == sorted(map(_ref, ENTITIES)), (
        "GET /api/catalog/entities does not return exactly the imported entities"
    )
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps(documents), encoding="utf-8")

    location = _location_in_sandbox(cloud_sandbox)
    out = _run_contract(
        node, url=live_server.url, token=token, expected=expected, location=location
    )
    assert out.count("ok - location:") == LOCATION_CHECKS, out


def _reference_documents() -> list[dict]:
    """ENTITIES as a Backstage catalog would serve them: uid, default namespace, ownedBy."""
    documents = []
    for entity in ENTITIES:
        doc = json.loads(json.dumps(entity))
        doc["metadata"]["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, _ref(doc)))
        owner = doc["spec"].get("owner")
        doc["relations"] = [{"type": "ownedBy", "targetRef": owner.lower()}] if owner else []
        for target in doc["spec"].get("dependsOn", []):
            kind, _, rest = target.partition(":")
            ref = f"{kind}:{rest if '/' in rest else 'default/' + rest}".lower()
            doc["relations"].append({"type": "dependsOn", "targetRef": ref})
        documents.append(doc)
    return documents


def test_contract_script_against_backstage_reference(tmp_path):
    """contract.mjs passes against Backstage's own InMemoryCatalogClient served over HTTP.

    So a failure in the Lantern test above is Lantern's, not the script's.
    """
    node = _node()
    data = tmp_path / "reference.json"
    data.write_text(json.dumps(_reference_documents()), encoding="utf-8")
    token = uuid.uuid4().hex
    server = subprocess.Popen(
        [node, "reference_server.mjs", str(data), token],
        cwd=CLIENT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        if not line.startswith("listening "):
            server.kill()
            pytest.fail(f"reference server did not start: {line!r} {server.stderr.read()}")
        port = int(line.split()[1])
        _run_contract(node, url=f"http://127.0.0.1:{port}", token=token, expected=data)
    finally:
        server.kill()
        server.wait(timeout=10)
