"""What real Bitbucket data has and generated worlds do not, on both sandboxes: personal projects
(``~user``), repositories in no project, unicode and spaces in names, a repository deleted between
the listing and the read of its pull requests (commits, files), reads that answer 403, and a
visibility control — each through the world's Python API and the ``/_sandbox`` control API."""

import ssl

import httpx
import pytest

from sandbox.world import Invalid, personal_project_key
from tests.sandbox.fixtures import DC_TOKEN, cloud_world_factory, dc_world_factory
from tests.sandbox.helpers import api_client
from tests.sandbox.test_dc_sandbox import SPEC, _spec, validate_response

WS = "acme"


def dc_client(server) -> httpx.Client:
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=server.ca_pem)
    return httpx.Client(
        base_url=server.api_url,
        verify=context,
        headers={"Authorization": f"Bearer {DC_TOKEN}"},
        timeout=10.0,
    )


def control(server, method: str, path: str, **kwargs) -> httpx.Response:
    verify = True
    if server.url.startswith("https://"):
        verify = ssl.create_default_context()
        verify.load_verify_locations(cadata=server.ca_pem)
    return httpx.request(
        method, f"{server.url}/_sandbox{path}", verify=verify, timeout=10, **kwargs
    )


def jdoe_world(factory):
    """A world whose first workspace has the member ``jdoe`` and the edge-case repositories,
    ``jdoe`` owning the personal ones."""
    world = factory()
    ws = world.workspaces[next(iter(world.workspaces))]
    account = world.add_account(nickname="jdoe", display_name="Jane Doe", email="jdoe@example.com")
    ws.members.append(account.uuid)
    return world, world.edge_cases(workspace=ws.slug, user="jdoe", projectless=True)


@pytest.fixture
def dc_edge(make_dc_sandbox):
    world, cases = jdoe_world(dc_world_factory)
    return make_dc_sandbox(world), cases


@pytest.fixture
def cloud_edge(make_cloud_sandbox):
    world, cases = jdoe_world(cloud_world_factory)
    return make_cloud_sandbox(world), cases


def dc_path(repo) -> str:
    return f"projects/{repo.project_key}/repos/{repo.slug}"


# -- names and slugs ---------------------------------------------------------------------------


def test_edge_case_names_get_the_slugs_bitbucket_makes():
    world, cases = jdoe_world(dc_world_factory)
    assert cases["unicode"].name == "Café Über Service"
    assert cases["unicode"].slug == "caf-ber-service"
    assert cases["spaces"].name == "data pipeline (v2)"
    assert cases["spaces"].slug == "data-pipeline-v2"
    assert cases["dots"].slug == "config.v1.2"
    assert len(cases["long"].name) == 90 and cases["long"].slug.startswith("a-very-long-")
    assert cases["personal"].project_key == "~JDOE" == personal_project_key("jdoe")
    assert cases["personal_empty"].mainbranch is None
    assert cases["projectless"].project_key is None


def test_a_dumped_world_keeps_personal_projects_and_projectless_repositories():
    world, cases = jdoe_world(cloud_world_factory)
    loaded = type(world).load(world.dump())
    ws = loaded.workspaces[cases["personal"].workspace]
    assert (
        ws.projects["~JDOE"].personal
        and ws.projects["~JDOE"].owner == loaded.find_account("jdoe").uuid
    )
    assert ws.repositories["loose-scripts"].project_key is None


# -- Data Center: personal projects ------------------------------------------------------------


def test_dc_lists_personal_repositories_with_a_personal_project_and_its_owner(dc_edge):
    server, cases = dc_edge
    with dc_client(server) as client:
        listing = client.get("repos", params={"limit": 1000}).json()["values"]
    personal = {r["slug"]: r for r in listing if r["project"]["key"] == "~JDOE"}
    assert set(personal) == {"personal-notes", "scratch"}
    project = personal["personal-notes"]["project"]
    assert project["type"] == "PERSONAL" and project["name"] == "Jane Doe"
    assert project["owner"]["slug"] == "jdoe" and project["owner"]["name"] == "jdoe"
    assert project["links"]["self"][0]["href"].endswith("/users/jdoe")
    links = personal["personal-notes"]["links"]
    assert links["self"][0]["href"].endswith("/users/jdoe/repos/personal-notes/browse")
    assert {c["href"].rsplit("/", 2)[-2] for c in links["clone"]} == {"~jdoe"}
    assert "loose-scripts" not in {r["slug"] for r in listing}  # no project: not on DC
    normal = [r for r in listing if r["project"]["key"] != "~JDOE"]
    assert normal and all(r["project"]["type"] == "NORMAL" for r in normal)


def test_dc_serves_a_personal_repository_under_users_and_under_tilde_keys(dc_edge):
    server, cases = dc_edge
    with dc_client(server) as client:
        for prefix in ("users/jdoe", "projects/~jdoe", "projects/~JDOE"):
            repo = client.get(f"{prefix}/repos/personal-notes")
            assert repo.status_code == 200, (prefix, repo.text)
            assert repo.json()["project"]["key"] == "~JDOE"
            commits = client.get(f"{prefix}/repos/personal-notes/commits")
            assert commits.status_code == 200 and commits.json()["size"] == 1
            raw = client.get(f"{prefix}/repos/personal-notes/raw/README.md")
            assert raw.status_code == 200 and raw.text == "# Edge case\n"
        listed = client.get("users/jdoe/repos").json()
        assert sorted(r["slug"] for r in listed["values"]) == ["personal-notes", "scratch"]
        projects = client.get("projects", params={"limit": 1000}).json()["values"]
    assert "~JDOE" not in {p["key"] for p in projects}


def test_dc_personal_projects_can_be_made_through_the_control_api(make_dc_sandbox):
    server = make_dc_sandbox(dc_world_factory())
    nickname = server.world.accounts[server.world.workspaces[WS].members[1]].nickname
    made = control(server, "POST", "/personal-projects", json={"workspace": WS, "user": nickname})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert key == personal_project_key(nickname)
    body = {"workspace": WS, "project": key, "name": "Mine", "files": {"a.txt": "a"}}
    assert control(server, "POST", "/repositories", json=body).status_code == 201
    with dc_client(server) as client:
        repo = client.get(f"users/{nickname}/repos/mine").json()
    assert repo["project"]["type"] == "PERSONAL" and repo["project"]["key"] == key


# -- Cloud: odd names and repositories in no project --------------------------------------------


def test_cloud_shows_a_repository_in_no_project_without_project(cloud_edge):
    server, cases = cloud_edge
    with api_client(server) as client:
        loose = client.get(f"repositories/{WS}/loose-scripts").json()
        unicode_ = client.get(f"repositories/{WS}/caf-ber-service").json()
        listing = client.get(f"repositories/{WS}", params={"pagelen": 100}).json()["values"]
    assert "project" not in loose and loose["name"] == "Loose Scripts"
    assert unicode_["name"] == "Café Über Service" and unicode_["full_name"] == (
        f"{WS}/caf-ber-service"
    )
    by_slug = {r["slug"]: r for r in listing}
    assert {"loose-scripts", "caf-ber-service", "data-pipeline-v2", "config.v1.2"} <= set(by_slug)
    assert by_slug["data-pipeline-v2"]["name"] == "data pipeline (v2)"


# -- a repository deleted between the listing and the read ---------------------------------------


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [("pull_requests", "pull-requests"), ("commits", "commits"), ("files", "raw/README.md")],
)
def test_dc_delete_on_read_deletes_the_repository_and_answers_404(dc_edge, kind, suffix):
    server, cases = dc_edge
    repo = cases["spaces"]
    server.world.delete_on_read(repo, kind=kind)
    with dc_client(server) as client:
        assert client.get(dc_path(repo)).status_code == 200  # other reads do not spring it
        assert client.get(f"{dc_path(repo)}/branches/default").status_code == 200
        response = client.get(f"{dc_path(repo)}/{suffix}")
        assert response.status_code == 404
        error = response.json()["errors"][0]
        assert error["exceptionName"].endswith("NoSuchRepositoryException")
        assert error["message"] == f"Repository {repo.project_key}/{repo.slug} does not exist."
        assert client.get(dc_path(repo)).status_code == 404
        listing = client.get("repos", params={"limit": 1000}).json()["values"]
    assert repo.slug not in {r["slug"] for r in listing}
    assert not server.world.read_traps


@pytest.mark.parametrize(
    ("kind", "suffix"),
    [("pull_requests", "pullrequests"), ("commits", "commits"), ("files", "src/main/README.md")],
)
def test_cloud_delete_on_read_deletes_the_repository_and_answers_404(cloud_edge, kind, suffix):
    server, cases = cloud_edge
    repo = cases["unicode"]
    server.world.delete_on_read(f"{WS}/{repo.slug}", kind=kind)
    with api_client(server) as client:
        response = client.get(f"repositories/{WS}/{repo.slug}/{suffix}")
        assert response.status_code == 404
        assert response.json()["type"] == "error"
        assert response.json()["error"]["message"] == f"Repository {WS}/{repo.slug} not found"
        assert client.get(f"repositories/{WS}/{repo.slug}").status_code == 404


def test_delete_on_read_is_set_through_the_control_api(make_dc_sandbox):
    world, cases = jdoe_world(dc_world_factory)
    server = make_dc_sandbox(world)
    repo = cases["dots"]
    path = f"/repositories/{WS}/{repo.slug}/read-traps"
    made = control(server, "POST", path, json={"kind": "pull_requests", "action": "delete"})
    assert made.status_code == 201 and made.json()["action"] == "delete"
    with dc_client(server) as client:
        assert client.get(f"{dc_path(repo)}/pull-requests").status_code == 404
    assert repo.slug not in world.workspaces[WS].repositories


# -- reads that answer 403 ----------------------------------------------------------------------


def test_dc_forbidden_pull_requests_answer_403_while_the_repository_reads(dc_edge):
    server, cases = dc_edge
    repo = cases["personal"]
    server.world.forbid(repo, kind="pull_requests", status=403)
    with dc_client(server) as client:
        for _ in range(2):  # every read, not only the first
            response = client.get(f"{dc_path(repo)}/pull-requests", params={"state": "ALL"})
            assert response.status_code == 403
            assert response.json() == {
                "errors": [
                    {
                        "context": None,
                        "message": "You are not permitted to access this resource",
                        "exceptionName": "com.atlassian.bitbucket.AuthorisationException",
                    }
                ]
            }
        assert client.get(dc_path(repo)).status_code == 200
        assert client.get(f"{dc_path(repo)}/commits").status_code == 200
        server.world.read_traps_clear(repo)
        assert client.get(f"{dc_path(repo)}/pull-requests").status_code == 200


def test_dc_forbidden_with_401_answers_as_data_center_does_for_a_missing_permission(dc_edge):
    server, cases = dc_edge
    server.world.forbid(cases["unicode"], kind="files", status=401)
    with dc_client(server) as client:
        response = client.get(f"{dc_path(cases['unicode'])}/raw/README.md")
    assert response.status_code == 401 and "WWW-Authenticate" in response.headers
    assert (
        response.json()["errors"][0]["message"] == "You are not permitted to access this resource"
    )


def test_cloud_forbidden_commits_answer_403_in_cloud_error_shape(cloud_edge):
    server, cases = cloud_edge
    repo = cases["spaces"]
    response = control(
        server,
        "POST",
        f"/repositories/{WS}/{repo.slug}/read-traps",
        json={"kind": "commits", "action": "forbid", "status": 403},
    )
    assert response.status_code == 201
    with api_client(server) as client:
        denied = client.get(f"repositories/{WS}/{repo.slug}/commits")
        assert denied.status_code == 403
        assert denied.json()["type"] == "error"
        assert denied.json()["error"]["message"] == "Forbidden"
        assert client.get(f"repositories/{WS}/{repo.slug}/pullrequests").status_code == 200
        cleared = control(server, "DELETE", f"/repositories/{WS}/{repo.slug}/read-traps")
        assert cleared.json() == {"cleared": 1}
        assert client.get(f"repositories/{WS}/{repo.slug}/commits").status_code == 200


def test_read_traps_refuse_unknown_kinds_and_statuses():
    world, cases = jdoe_world(cloud_world_factory)
    with pytest.raises(Invalid):
        world.forbid(cases["dots"], kind="issues")
    with pytest.raises(Invalid):
        world.forbid(cases["dots"], status=200)


# -- visibility --------------------------------------------------------------------------------


def test_dc_visibility_control_flips_public(dc_edge):
    server, cases = dc_edge
    repo = cases["dots"]
    with dc_client(server) as client:
        assert client.get(dc_path(repo)).json()["public"] is False
        made = control(
            server, "PUT", f"/repositories/{WS}/{repo.slug}/visibility", json={"public": True}
        )
        assert made.status_code == 200 and made.json()["is_private"] is False
        assert client.get(dc_path(repo)).json()["public"] is True
        public = client.get("repos", params={"visibility": "public", "limit": 1000}).json()
        assert repo.slug in {r["slug"] for r in public["values"]}
        server.world.repository_set_visibility(workspace=WS, slug=repo.slug, private=True)
        assert client.get(dc_path(repo)).json()["public"] is False


def test_cloud_visibility_control_flips_is_private_and_bumps_updated_on(cloud_edge):
    server, cases = cloud_edge
    repo = cases["unicode"]
    before = repo.updated_on
    path = f"/repositories/{WS}/{repo.slug}/visibility"
    assert control(server, "PUT", path, json={"is_private": False}).status_code == 200
    with api_client(server) as client:
        assert client.get(f"repositories/{WS}/{repo.slug}").json()["is_private"] is False
    assert repo.updated_on > before
    assert control(server, "PUT", path, json={}).status_code == 400


# -- contract ----------------------------------------------------------------------------------


@pytest.mark.skipif(not SPEC.exists(), reason="the Bitbucket Data Center spec is not present")
def test_dc_edge_case_responses_validate_against_the_published_spec(dc_edge):
    server, cases = dc_edge
    spec = _spec()
    base = "/api/latest/projects/{projectKey}/repos/{repositorySlug}"
    server.world.forbid(cases["unicode"], kind="pull_requests", status=401)
    with dc_client(server) as client:
        listing = client.get("repos", params={"limit": 1000})
        validate_response(spec, "/api/latest/repos", listing.json())
        personal = client.get("users/jdoe/repos")
        validate_response(spec, "/api/latest/projects/{projectKey}/repos", personal.json())
        branch = client.get(f"{dc_path(cases['personal'])}/branches/default")
        validate_response(spec, f"{base}/branches/default", branch.json())
        assert branch.json()["latestCommit"] == cases["personal"].branches["main"]
        assert client.get(f"{dc_path(cases['personal_empty'])}/branches/default").status_code == 204
        denied = client.get(f"{dc_path(cases['unicode'])}/pull-requests")
        validate_response(spec, f"{base}/pull-requests", denied.json(), "401")
