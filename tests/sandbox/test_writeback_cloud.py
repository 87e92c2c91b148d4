"""The Cloud sandbox accepts write-back as api.bitbucket.org does, over its real socket: atomic
multi-file commits (``POST /src``), branches, pull requests created, merged and declined, the write
scopes, and the conflict knobs of the control API."""

import httpx
import pytest

from sandbox.writes import CONCURRENT_PATH
from tests.sandbox.fixtures import cloud_world_factory
from tests.sandbox.helpers import Receiver, api_client, first_repo

WRITE_TOKEN = "cloud-write-token"
READ_ONLY_TOKEN = "cloud-read-token"


@pytest.fixture
def sandbox(make_cloud_sandbox):
    world = cloud_world_factory()
    workspace = next(iter(world.workspaces))
    world.credentials.add_access_token(
        WRITE_TOKEN,
        workspace=workspace,
        scopes=("repository:write", "pullrequest:write", "webhook"),
        name="writer",
    )
    world.credentials.add_access_token(
        READ_ONLY_TOKEN, workspace=workspace, scopes=("repository", "pullrequest"), name="reader"
    )
    return make_cloud_sandbox(world)


@pytest.fixture
def client(sandbox):
    with api_client(sandbox, WRITE_TOKEN) as client:
        yield client


@pytest.fixture
def control(sandbox):
    with httpx.Client(base_url=f"{sandbox.url}/_sandbox", timeout=10.0) as client:
        yield client


def _repo_path(repo) -> str:
    return f"/repositories/{repo.full_name}"


def _tip(client, repo, branch: str) -> str:
    response = client.get(f"{_repo_path(repo)}/refs/branches/{branch}")
    assert response.status_code == 200, response.text
    return response.json()["target"]["hash"]


def test_multipart_src_post_commits_every_file_at_once_and_shows_everywhere(sandbox, client):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    before = client.get(path).json()["updated_on"]
    parent = _tip(client, repo, repo.mainbranch)
    response = client.post(
        f"{path}/src",
        data={
            "message": "Add catalog-info.yaml",
            "author": "Lantern <lantern@example.com>",
            "branch": repo.mainbranch,
            "parents": parent,
        },
        files={
            "/catalog-info.yaml": ("catalog-info.yaml", b"apiVersion: backstage.io/v1alpha1\n"),
            "/services/api/catalog-info.yaml": ("catalog-info.yaml", b"kind: Component\n"),
        },
    )
    assert response.status_code == 201, response.text
    new_hash = response.headers["Location"].rsplit("/", 1)[-1]

    commits = client.get(f"{path}/commits/{repo.mainbranch}").json()["values"]
    assert commits[0]["hash"] == new_hash
    assert commits[0]["parents"][0]["hash"] == parent
    assert commits[0]["author"]["raw"] == "Lantern <lantern@example.com>"
    assert _tip(client, repo, repo.mainbranch) == new_hash
    top = client.get(f"{path}/src/{new_hash}/catalog-info.yaml")
    nested = client.get(f"{path}/src/{repo.mainbranch}/services/api/catalog-info.yaml")
    assert top.content == b"apiVersion: backstage.io/v1alpha1\n"
    assert nested.content == b"kind: Component\n"
    assert client.get(path).json()["updated_on"] > before


def test_src_post_on_a_new_branch_starts_it_from_parents_and_deletes_listed_files(sandbox, client):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    main_tip = _tip(client, repo, repo.mainbranch)
    existing = sorted(repo.tree(repo.commits[main_tip]))[0]
    response = client.post(
        f"{path}/src",
        data={
            "branch": "lantern/catalog-info-x",
            "parents": main_tip,
            "message": "Write catalog-info.yaml",
            "/catalog-info.yaml": "kind: Component\n",
            "files": existing,
        },
    )
    assert response.status_code == 201, response.text
    branches = [b["name"] for b in client.get(f"{path}/refs/branches").json()["values"]]
    assert "lantern/catalog-info-x" in branches
    head = client.get(f"{path}/commits/lantern/catalog-info-x").json()["values"][0]
    assert head["parents"][0]["hash"] == main_tip
    gone = client.get(f"{path}/src/{head['hash']}/{existing}")
    assert gone.status_code == 404
    assert _tip(client, repo, repo.mainbranch) == main_tip  # main untouched


def test_a_stale_parent_is_a_409_and_nothing_is_written(sandbox, client):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    old_tip = _tip(client, repo, repo.mainbranch)
    sandbox.world.file_write(
        workspace=repo.workspace, slug=repo.slug, path="README.md", content="moved\n"
    )
    moved = _tip(client, repo, repo.mainbranch)
    response = client.post(
        f"{path}/src",
        data={"branch": repo.mainbranch, "parents": old_tip, "/a.yaml": "a", "/b.yaml": "b"},
    )
    assert response.status_code == 409
    assert response.json()["type"] == "error"
    assert _tip(client, repo, repo.mainbranch) == moved
    assert client.get(f"{path}/src/{repo.mainbranch}/a.yaml").status_code == 404


@pytest.mark.parametrize("times", [1, 4])
def test_the_commit_conflict_knob_answers_409_n_times_then_the_commit_lands(
    sandbox, client, control, times
):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    armed = control.put("/write-faults", json={"commit": times})
    assert armed.json()["pending"]["commit"] == times
    statuses = []
    for _attempt in range(times + 1):
        tip = _tip(client, repo, repo.mainbranch)
        response = client.post(
            f"{path}/src",
            data={"branch": repo.mainbranch, "parents": tip, "/catalog-info.yaml": "kind: X\n"},
        )
        statuses.append(response.status_code)
    assert statuses == [409] * times + [201]
    state = control.get("/write-faults").json()
    assert state["answered"]["commit"] == times and state["pending"]["commit"] == 0
    # Each conflict was a real commit by someone else on the branch, not the caller's file.
    history = client.get(f"{path}/commits/{repo.mainbranch}", params={"pagelen": 20}).json()
    messages = [c["message"] for c in history["values"][: times + 1]]
    assert sum(m.startswith("Concurrent change") for m in messages) == times
    assert client.get(f"{path}/src/{repo.mainbranch}/{CONCURRENT_PATH}").status_code == 200
    bodies = client.get(f"{path}/src/{repo.mainbranch}/catalog-info.yaml")
    assert bodies.content == b"kind: X\n"


def test_upstream_change_knob_commits_the_file_as_someone_else(sandbox, client, control):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    response = control.post(
        f"/repositories/{repo.full_name}/upstream-change",
        json={"path": "catalog-info.yaml", "content": "kind: Theirs\n"},
    )
    assert response.status_code == 201, response.text
    head = client.get(f"{path}/commits/{repo.mainbranch}").json()["values"][0]
    assert head["hash"] == response.json()["hash"]
    members = sandbox.world.workspaces[repo.workspace].members
    first = sandbox.world.account(members[0])
    assert first.email not in head["author"]["raw"]
    read = client.get(f"{path}/src/{repo.mainbranch}/catalog-info.yaml")
    assert read.content == b"kind: Theirs\n"


def test_branch_create_and_listing(sandbox, client):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    tip = _tip(client, repo, repo.mainbranch)
    created = client.post(
        f"{path}/refs/branches", json={"name": "lantern/catalog-info-a", "target": {"hash": tip}}
    )
    assert created.status_code == 201, created.text
    assert created.json()["target"]["hash"] == tip
    assert created.json()["type"] == "branch"
    again = client.post(
        f"{path}/refs/branches", json={"name": "lantern/catalog-info-a", "target": {"hash": tip}}
    )
    assert again.status_code == 400
    assert "name" in again.json()["error"]["message"]
    missing = client.post(f"{path}/refs/branches", json={"name": "x", "target": {"hash": "nope"}})
    assert missing.status_code == 400
    assert "target.hash" in missing.json()["error"]["message"]


def test_pull_request_created_through_the_api_has_the_real_shape_and_webhook(
    sandbox, client, control
):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    reviewer = sandbox.world.account(sandbox.world.workspaces[repo.workspace].members[1])
    with Receiver() as receiver:
        hook = client.post(
            f"{path}/hooks",
            json={"url": receiver.url, "events": ["pullrequest:created", "pullrequest:fulfilled"]},
        )
        assert hook.status_code == 201, hook.text
        client.post(
            f"{path}/src", data={"branch": "lantern/catalog-info-b", "/catalog-info.yaml": "k\n"}
        )
        response = client.post(
            f"{path}/pullrequests",
            json={
                "title": "Add catalog-info.yaml",
                "description": "Lantern writes the catalog file.",
                "source": {"branch": {"name": "lantern/catalog-info-b"}},
                "destination": {"branch": {"name": repo.mainbranch}},
                "reviewers": [{"uuid": reviewer.uuid}],
                "close_source_branch": True,
            },
        )
        assert response.status_code == 201, response.text
        pr = response.json()
        assert response.headers["Location"] == pr["links"]["self"]["href"]
        assert pr["state"] == "OPEN" and pr["close_source_branch"] is True
        assert pr["links"]["html"]["href"].endswith(f"/pull-requests/{pr['id']}")
        assert pr["source"]["branch"]["name"] == "lantern/catalog-info-b"
        assert [r["uuid"] for r in pr["reviewers"]] == [reviewer.uuid]
        listed = client.get(f"{path}/pullrequests").json()["values"]
        assert pr["id"] in [p["id"] for p in listed]

        merged = client.post(f"{path}/pullrequests/{pr['id']}/merge", json={})
        assert merged.status_code == 200, merged.text
        assert merged.json()["state"] == "MERGED"
        assert sandbox.api.webhooks.wait_idle(5)
        assert [p["pullrequest"]["id"] for p in receiver.payloads("pullrequest:created")] == [
            pr["id"]
        ]
        assert receiver.payloads("pullrequest:fulfilled")[0]["pullrequest"]["state"] == "MERGED"
    branches = [b["name"] for b in client.get(f"{path}/refs/branches").json()["values"]]
    assert "lantern/catalog-info-b" not in branches  # closed with the merge


def test_pull_request_refusals_name_the_field(sandbox, client):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    no_title = client.post(f"{path}/pullrequests", json={"source": {"branch": {"name": "x"}}})
    assert no_title.status_code == 400
    assert no_title.json()["error"]["message"].startswith("title:")
    no_branch = client.post(
        f"{path}/pullrequests", json={"title": "t", "source": {"branch": {"name": "nope"}}}
    )
    assert no_branch.status_code == 400
    assert no_branch.json()["error"]["message"].startswith("source:")


def test_decline_through_the_api(sandbox, client):
    repo = first_repo(sandbox)
    path = _repo_path(repo)
    client.post(f"{path}/src", data={"branch": "lantern/c", "/catalog-info.yaml": "k\n"})
    pr = client.post(
        f"{path}/pullrequests", json={"title": "t", "source": {"branch": {"name": "lantern/c"}}}
    ).json()
    declined = client.post(f"{path}/pullrequests/{pr['id']}/decline")
    assert declined.status_code == 200 and declined.json()["state"] == "DECLINED"
    states = client.get(f"{path}/pullrequests/{pr['id']}").json()["state"]
    assert states == "DECLINED"


@pytest.mark.parametrize(
    ("method", "suffix", "scope"),
    [
        ("POST", "/src", "repository:write"),
        ("POST", "/refs/branches", "repository:write"),
        ("POST", "/pullrequests", "pullrequest:write"),
        ("POST", "/pullrequests/1/merge", "pullrequest:write"),
        ("POST", "/pullrequests/1/decline", "pullrequest:write"),
    ],
)
def test_writes_without_the_write_scope_get_a_403_naming_it(sandbox, method, suffix, scope):
    repo = first_repo(sandbox, with_prs=True)
    tip = repo.branches[repo.mainbranch]
    with api_client(sandbox, READ_ONLY_TOKEN) as reader:
        response = reader.request(method, f"{_repo_path(repo)}{suffix}", data={"/f": "x"})
        assert response.status_code == 403
        assert scope in response.json()["error"]["message"]
    assert repo.branches[repo.mainbranch] == tip
