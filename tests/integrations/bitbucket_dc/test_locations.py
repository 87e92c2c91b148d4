"""A catalog location on Bitbucket Data Center: a browse or raw URL of the instance is read
through the integration whose projects hold the repository (its token and private CA)."""

import pytest
import yaml

from catalog.models import Entity, Location
from tests.integrations.bitbucket_dc.conftest import make_connector, make_integration

ENTITY = {
    "apiVersion": "backstage.io/v1alpha1",
    "kind": "Component",
    "metadata": {"name": "dc-located"},
    "spec": {"type": "service", "lifecycle": "production", "owner": "team-a"},
}


@pytest.fixture
def setup(db, sandbox, make_user, bearer_client):
    server = sandbox.default
    repos = [r for r in server.world.iter_repositories() if r.mainbranch]
    chosen = repos[0]
    other = next(r for r in repos if r.project_key != chosen.project_key)
    workspace = next(iter(server.world.workspaces))
    for repo in (chosen, other):
        server.world.file_write(
            workspace=workspace,
            slug=repo.slug,
            path="catalog-info.yaml",
            content=yaml.safe_dump(ENTITY),
            branch=repo.mainbranch,
        )
    make_integration(make_connector(server), target={"projects": [chosen.project_key]})
    api = bearer_client(make_user("locator", "catalog.add_location"))
    return server, chosen, other, api


def browse(server, repo, view: str = "browse") -> str:
    return (
        f"{server.url}/projects/{repo.project_key}/repos/{repo.slug}/{view}/catalog-info.yaml"
        f"?at=refs/heads/{repo.mainbranch}"
    )


@pytest.mark.parametrize("view", ["browse", "raw"])
def test_a_file_of_the_integrations_project_is_read_through_it(setup, view):
    server, chosen, _, api = setup
    target = browse(server, chosen, view)
    response = api.post("/api/catalog/locations", {"target": target}, format="json")
    assert response.status_code == 201, response.content
    entity = Entity.objects.get(name="dc-located")
    assert entity.annotations["backstage.io/managed-by-location"] == f"url:{target}"
    assert entity.location_id == Location.objects.get().pk
    raw_reads = [e for e in server.api.log.entries() if "/raw/catalog-info.yaml" in e.path]
    assert raw_reads and all(e.path.startswith("/rest/api/1.0/projects/") for e in raw_reads)


def test_a_repository_of_another_project_is_not_the_integrations(setup):
    server, _, other, api = setup
    response = api.post("/api/catalog/locations", {"target": browse(server, other)}, format="json")
    assert response.status_code == 404, response.content
    assert "is not a repository of the integration" in response.json()["error"]["message"]
    assert not Location.objects.exists() and not Entity.objects.exists()


def test_analyzing_the_repository_finds_its_catalog_file(setup):
    server, chosen, _, api = setup
    url = f"{server.url}/projects/{chosen.project_key}/repos/{chosen.slug}"
    response = api.post(
        "/api/catalog/analyze-location", {"location": {"type": "url", "target": url}}, format="json"
    )
    assert response.status_code == 200, response.content
    (found,) = response.json()["existingEntityFiles"]
    assert found["location"]["target"] == browse(server, chosen)
    assert found["entity"]["metadata"]["name"] == "dc-located"
