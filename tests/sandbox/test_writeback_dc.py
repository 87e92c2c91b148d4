"""The Data Center sandbox accepts write-back as a real instance does, with real clients over
HTTPS and its private CA: dulwich's client (and the git CLI) clone and push through git smart
HTTP, pushed commits show in REST, force pushes are refused and counted, branches and pull
requests go through REST, and the conflict knobs answer the first N writes."""

import os
import shutil
import ssl
import subprocess

import httpx
import pytest
import urllib3
from dulwich import porcelain
from dulwich.client import HttpGitClient
from dulwich.errors import GitProtocolError, HangupException
from dulwich.repo import Repo

from sandbox.writes import CONCURRENT_PATH
from tests.sandbox.fixtures import DC_TOKEN, dc_world_factory

WRITE_TOKEN = "dc-write-token"
AUTHOR = b"Lantern <lantern@example.com>"


@pytest.fixture
def sandbox(make_dc_sandbox):
    world = dc_world_factory()
    world.credentials.dc.add_token(WRITE_TOKEN, permission="REPO_WRITE", name="writer")
    return make_dc_sandbox(world)


@pytest.fixture
def ca_file(sandbox, tmp_path):
    path = tmp_path / "sandbox-ca.pem"
    path.write_text(sandbox.ca_pem)
    return str(path)


@pytest.fixture
def verify(ca_file):
    return ssl.create_default_context(cafile=ca_file)


@pytest.fixture
def rest(sandbox, verify):
    with httpx.Client(
        base_url=f"{sandbox.url}/rest/api/latest",
        headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
        verify=verify,
        timeout=10.0,
    ) as client:
        yield client


@pytest.fixture
def control(sandbox, verify):
    with httpx.Client(base_url=f"{sandbox.url}/_sandbox", verify=verify, timeout=10.0) as client:
        yield client


class Git:
    """dulwich's client against the sandbox: clone, commit and push over HTTPS."""

    def __init__(self, sandbox, ca_file: str, token: str = WRITE_TOKEN):
        self.sandbox = sandbox
        self.token = token
        self.username = sandbox.world.account(sandbox.world.credentials.dc.tokens[token].account)
        self.pool = urllib3.PoolManager(ca_certs=ca_file, cert_reqs="CERT_REQUIRED")

    def url(self, repo) -> str:
        return f"{self.sandbox.url}/scm/{repo.project_key.lower()}/{repo.slug}.git"

    def _auth(self) -> dict:
        return {
            "username": self.username.nickname,
            "password": self.token,
            "pool_manager": self.pool,
        }

    def clone(self, repo, target) -> Repo:
        return porcelain.clone(self.url(repo), str(target), errstream=_Sink(), **self._auth())

    def commit(self, local: Repo, files: dict[str, bytes], message: str) -> bytes:
        for path, content in files.items():
            full = os.path.join(local.path, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as handle:
                handle.write(content)
        porcelain.add(local, paths=[os.path.join(local.path, p) for p in files])
        return porcelain.commit(local, message=message.encode(), author=AUTHOR, committer=AUTHOR)

    def push(self, local: Repo, repo, refspec: str, *, force: bool = False):
        return porcelain.push(
            local,
            self.url(repo),
            refspecs=[refspec.encode()],
            force=force,
            errstream=_Sink(),
            **self._auth(),
        )

    def fetch(self, local: Repo, repo) -> None:
        """Fetch and update ``refs/remotes/origin/*`` (through dulwich's HTTP client)."""
        client = HttpGitClient(
            self.sandbox.url,
            pool_manager=self.pool,
            username=self.username.nickname,
            password=self.token,
        )
        result = client.fetch(f"/scm/{repo.project_key.lower()}/{repo.slug}.git", local)
        for ref, sha in result.refs.items():
            if ref.startswith(b"refs/heads/"):
                local.refs[b"refs/remotes/origin/" + ref[len(b"refs/heads/") :]] = sha

    @staticmethod
    def switch(local: Repo, branch: str, at: bytes) -> None:
        """Check out a local ``branch`` at commit ``at``."""
        name = b"refs/heads/" + branch.encode()
        local.refs[name] = at
        local.refs.set_symbolic_ref(b"HEAD", name)
        porcelain.reset(local, "hard", at)


class _Sink:
    def write(self, data):
        return len(data)

    def flush(self):
        pass


def _repo(sandbox):
    for repo in sandbox.world.iter_repositories():
        if repo.mainbranch and repo.project_key:
            return repo
    raise AssertionError("no repository with commits")


def _rest_path(repo) -> str:
    return f"/projects/{repo.project_key}/repos/{repo.slug}"


def test_clone_shows_the_world_and_rest_agrees_on_the_ids(sandbox, ca_file, rest, tmp_path):
    repo = _repo(sandbox)
    git = Git(sandbox, ca_file)
    local = git.clone(repo, tmp_path / "clone")
    head = local.refs[b"refs/remotes/origin/" + repo.mainbranch.encode()].decode()
    commits = rest.get(f"{_rest_path(repo)}/commits", params={"until": repo.mainbranch}).json()
    assert commits["values"][0]["id"] == head
    tree_files = sorted(repo.tree(repo.commits[head]))
    for path in tree_files:
        with open(os.path.join(local.path, path), "rb") as handle:
            assert handle.read() == repo.read_file(repo.commits[head], path)


def test_a_push_moves_the_branch_and_rest_serves_the_pushed_commit(
    sandbox, ca_file, rest, tmp_path
):
    repo = _repo(sandbox)
    git = Git(sandbox, ca_file)
    local = git.clone(repo, tmp_path / "clone")
    sha = git.commit(
        local,
        {"catalog-info.yaml": b"kind: Component\n", "docs/catalog-info.yaml": b"kind: API\n"},
        "Add catalog-info.yaml",
    ).decode()
    result = git.push(local, repo, f"HEAD:refs/heads/{repo.mainbranch}")
    assert all(status is None for status in result.ref_status.values()), result.ref_status

    path = _rest_path(repo)
    newest = rest.get(f"{path}/commits", params={"until": repo.mainbranch}).json()["values"][0]
    assert newest["id"] == sha
    assert newest["message"] == "Add catalog-info.yaml"
    assert newest["author"]["emailAddress"] == "lantern@example.com"
    raw = rest.get(f"{path}/raw/docs/catalog-info.yaml", params={"at": repo.mainbranch})
    assert raw.status_code == 200 and raw.content == b"kind: API\n"
    branches = rest.get(f"{path}/branches").json()["values"]
    main = next(b for b in branches if b["displayId"] == repo.mainbranch)
    assert main["latestCommit"] == sha and main["isDefault"] is True


def test_a_pushed_new_branch_then_a_pull_request_through_rest(sandbox, ca_file, rest, tmp_path):
    repo = _repo(sandbox)
    git = Git(sandbox, ca_file)
    local = git.clone(repo, tmp_path / "clone")
    sha = git.commit(local, {"catalog-info.yaml": b"kind: Component\n"}, "Write catalog").decode()
    git.push(local, repo, "HEAD:refs/heads/lantern/catalog-info-svc")
    path = _rest_path(repo)
    found = rest.get(f"{path}/branches", params={"filterText": "catalog-info"}).json()["values"]
    assert [b["displayId"] for b in found] == ["lantern/catalog-info-svc"]
    assert found[0]["latestCommit"] == sha

    reviewer = sandbox.world.account(sandbox.world.workspaces[repo.workspace].members[1])
    body = {
        "title": "Add catalog-info.yaml",
        "description": "Lantern writes the catalog file.",
        "fromRef": {"id": "refs/heads/lantern/catalog-info-svc"},
        "toRef": {"id": f"refs/heads/{repo.mainbranch}"},
        "reviewers": [{"user": {"name": reviewer.nickname}}],
    }
    created = rest.post(f"{path}/pull-requests", json=body)
    assert created.status_code == 201, created.text
    pr = created.json()
    assert pr["state"] == "OPEN" and pr["fromRef"]["latestCommit"] == sha
    assert pr["links"]["self"][0]["href"].endswith(f"/pull-requests/{pr['id']}")
    assert [r["user"]["name"] for r in pr["reviewers"]] == [reviewer.nickname]

    duplicate = rest.post(f"{path}/pull-requests", json=body)
    assert duplicate.status_code == 409
    error = duplicate.json()["errors"][0]
    assert error["exceptionName"].endswith("DuplicatePullRequestException")
    assert error["existingPullRequest"]["id"] == pr["id"]

    merged = rest.post(f"{path}/pull-requests/{pr['id']}/merge", params={"version": pr["version"]})
    assert merged.status_code == 200, merged.text
    assert merged.json()["state"] == "MERGED"
    # The merge commit is in git too, under the id REST shows.
    tip = rest.get(f"{path}/commits", params={"until": repo.mainbranch}).json()["values"][0]
    git.fetch(local, repo)
    assert local.refs[b"refs/remotes/origin/" + repo.mainbranch.encode()].decode() == tip["id"]


def test_a_force_push_is_refused_counted_and_changes_nothing(
    sandbox, ca_file, rest, control, tmp_path
):
    repo = _repo(sandbox)
    git = Git(sandbox, ca_file)
    local = git.clone(repo, tmp_path / "clone")
    before = repo.branches[repo.mainbranch]
    # Rewrite history: a commit whose parent is the tip's parent, pushed with force.
    parent = local[before.encode()].parents[0]
    git.switch(local, "rewritten", parent)
    git.commit(local, {"catalog-info.yaml": b"kind: Rewritten\n"}, "Rewrite")
    result = git.push(local, repo, f"refs/heads/rewritten:refs/heads/{repo.mainbranch}", force=True)
    status = result.ref_status[f"refs/heads/{repo.mainbranch}".encode()]
    assert status is not None and "non-fast-forward" in status
    assert repo.branches[repo.mainbranch] == before
    assert control.get("/write-faults").json()["force_pushes_refused"] == 1
    newest = rest.get(f"{_rest_path(repo)}/commits").json()["values"][0]
    assert newest["id"] == before


@pytest.mark.parametrize("times", [1, 3])
def test_the_push_conflict_knob_moves_the_branch_first_n_times(
    sandbox, ca_file, rest, control, tmp_path, times
):
    repo = _repo(sandbox)
    git = Git(sandbox, ca_file)
    control.put("/write-faults", json={"push": times})
    local = git.clone(repo, tmp_path / "clone")
    statuses = []
    ref = f"refs/heads/{repo.mainbranch}".encode()
    for attempt in range(times + 1):
        git.fetch(local, repo)
        base = local.refs[b"refs/remotes/origin/" + repo.mainbranch.encode()]
        git.switch(local, "work", base)
        git.commit(local, {"catalog-info.yaml": b"kind: Component\n"}, f"Attempt {attempt}")
        result = git.push(local, repo, f"refs/heads/work:{ref.decode()}")
        statuses.append(result.ref_status[ref])
    assert all(s is not None and "fetch first" in s for s in statuses[:times]), statuses
    assert statuses[-1] is None
    state = control.get("/write-faults").json()
    assert state["answered"]["push"] == times and state["force_pushes_refused"] == 0
    commits = rest.get(f"{_rest_path(repo)}/commits", params={"limit": 2 * times + 1}).json()
    messages = [c["message"] for c in commits["values"]]
    assert messages[0] == f"Attempt {times}"
    assert sum(m.startswith("Concurrent change") for m in messages) == times
    concurrent = rest.get(f"{_rest_path(repo)}/raw/{CONCURRENT_PATH}")
    assert concurrent.status_code == 200


def test_the_upstream_change_knob_is_seen_by_git_and_rest_alike(
    sandbox, ca_file, rest, control, tmp_path
):
    repo = _repo(sandbox)
    git = Git(sandbox, ca_file)
    local = git.clone(repo, tmp_path / "clone")
    changed = control.post(
        f"/repositories/{repo.workspace}/{repo.slug}/upstream-change",
        json={"path": "catalog-info.yaml", "content": "kind: Theirs\n"},
    )
    assert changed.status_code == 201, changed.text
    git.fetch(local, repo)
    remote_tip = local.refs[b"refs/remotes/origin/" + repo.mainbranch.encode()].decode()
    assert remote_tip == changed.json()["hash"]
    newest = rest.get(f"{_rest_path(repo)}/commits").json()["values"][0]
    assert newest["id"] == remote_tip
    assert newest["author"]["emailAddress"] != "lantern@example.com"
    members = sandbox.world.workspaces[repo.workspace].members
    assert sandbox.world.account(members[0]).email not in changed.json()["author"]


@pytest.mark.parametrize("times", [1, 2])
def test_the_pull_request_conflict_knob_answers_409_n_times(sandbox, rest, control, times):
    repo = _repo(sandbox)
    path = _rest_path(repo)
    created = rest.post(
        f"{path}/branches", json={"name": "lantern/pr", "startPoint": repo.mainbranch}
    )
    assert created.status_code == 200, created.text
    sandbox.world.file_write(
        workspace=repo.workspace, slug=repo.slug, path="x.yaml", content="x", branch="lantern/pr"
    )
    control.put("/write-faults", json={"pull_request": times})
    body = {"title": "t", "fromRef": {"id": "refs/heads/lantern/pr"}}
    statuses = [rest.post(f"{path}/pull-requests", json=body).status_code for _ in range(times + 1)]
    assert statuses == [409] * times + [201]


def test_branch_utils_create_and_its_refusals(sandbox, verify, rest):
    repo = _repo(sandbox)
    url = f"{sandbox.url}/rest/branch-utils/latest/projects/{repo.project_key}/repos/{repo.slug}"
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}"}
    with httpx.Client(verify=verify, headers=headers, timeout=10.0) as client:
        made = client.post(f"{url}/branches", json={"name": "lantern-x", "startPoint": "main"})
        assert made.status_code == 201, made.text
        assert made.json()["latestCommit"] == repo.branches[repo.mainbranch]
        again = client.post(f"{url}/branches", json={"name": "lantern-x", "startPoint": "main"})
        assert again.status_code == 400 and "already exists" in again.json()["errors"][0]["message"]
        nameless = client.post(f"{url}/branches", json={"startPoint": "main"})
        assert nameless.status_code == 400
        assert nameless.json()["errors"][0]["message"].startswith("name:")


def test_read_only_credentials_cannot_push_create_branches_or_merge(
    sandbox, ca_file, verify, tmp_path
):
    repo = _repo(sandbox)
    reader = Git(sandbox, ca_file, token=DC_TOKEN)
    local = reader.clone(repo, tmp_path / "clone")  # reading is allowed
    reader.commit(local, {"catalog-info.yaml": b"kind: X\n"}, "Nope")
    before = repo.branches[repo.mainbranch]
    with pytest.raises((GitProtocolError, HangupException)) as refused:
        reader.push(local, repo, f"HEAD:refs/heads/{repo.mainbranch}")
    assert "403" in str(refused.value) or "REPO_WRITE" in str(refused.value)
    assert repo.branches[repo.mainbranch] == before
    with httpx.Client(
        base_url=f"{sandbox.url}/rest/api/latest",
        headers={"Authorization": f"Bearer {DC_TOKEN}"},
        verify=verify,
        timeout=10.0,
    ) as client:
        branch = client.post(
            f"{_rest_path(repo)}/branches", json={"name": "x", "startPoint": repo.mainbranch}
        )
        assert branch.status_code == 401
        assert "REPO_WRITE" in branch.json()["errors"][0]["message"]


def test_git_without_credentials_is_challenged(sandbox, verify):
    repo = _repo(sandbox)
    url = f"{sandbox.url}/scm/{repo.project_key.lower()}/{repo.slug}.git/info/refs"
    with httpx.Client(verify=verify, timeout=10.0) as client:
        response = client.get(url, params={"service": "git-upload-pack"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.skipif(shutil.which("git") is None, reason="the git CLI is not installed")
def test_the_git_cli_clones_and_pushes_with_the_private_ca(sandbox, ca_file, rest, tmp_path):
    repo = _repo(sandbox)
    user = sandbox.world.account(sandbox.world.credentials.dc.tokens[WRITE_TOKEN].account)
    host = sandbox.url.split("://", 1)[1]
    url = f"https://{user.nickname}:{WRITE_TOKEN}@{host}/scm/{repo.project_key}/{repo.slug}.git"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
    }

    def git(*args, cwd=None, check=True):
        return subprocess.run(
            ["git", "-c", f"http.sslCAInfo={ca_file}", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    work = tmp_path / "cli"
    git("clone", url, str(work))
    (work / "catalog-info.yaml").write_text("kind: Component\n")
    git("add", "catalog-info.yaml", cwd=work)
    git(
        "-c",
        "user.name=Lantern",
        "-c",
        "user.email=lantern@example.com",
        "commit",
        "-m",
        "CLI commit",
        cwd=work,
    )
    git("push", "origin", f"HEAD:refs/heads/{repo.mainbranch}", cwd=work)
    sha = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    newest = rest.get(f"{_rest_path(repo)}/commits").json()["values"][0]
    assert newest["id"] == sha

    git("reset", "--hard", "HEAD~2", cwd=work)
    (work / "other.txt").write_text("rewrite\n")
    git("add", "other.txt", cwd=work)
    git("-c", "user.name=L", "-c", "user.email=l@example.com", "commit", "-m", "Rewrite", cwd=work)
    forced = git(
        "push", "--force", "origin", f"HEAD:refs/heads/{repo.mainbranch}", cwd=work, check=False
    )
    assert forced.returncode != 0
    assert "non-fast-forward" in forced.stderr
    assert rest.get(f"{_rest_path(repo)}/commits").json()["values"][0]["id"] == sha
    assert sandbox.api.writes.force_pushes_refused == 1
