"""Write-back on Bitbucket Data Center over the HTTPS sandbox and its private CA: dulwich (and,
past the size threshold, the git CLI) pushing without force, pull requests through REST,
conflicts retried on the new head, upstream changes reported, REPO_WRITE named when missing,
credentials kept out of logs and errors, and the clone cache reused and bounded."""

import logging
import shutil
import socket

import pytest

from integrations.providers import gitcache
from integrations.providers.outbound import OutboundAddressError
from integrations.providers.writes import (
    FileChange,
    UpstreamChanged,
    WriteAccessMissing,
    WriteConflict,
    WriteRequest,
    blob_id,
)
from tests.integrations.writeback.conftest import DC_TOKEN, DC_WRITE_TOKEN, control, dc_provider

pytestmark = pytest.mark.django_db

CONTENT = b"apiVersion: backstage.io/v1alpha1\nkind: Component\n"


def _repos(server):
    """Repositories with commits and no catalog-info.yaml (listed at once: the world's
    iterator holds its lock, which the sandbox's threads need)."""
    found = []
    for repo in server.world.iter_repositories():
        if repo.mainbranch and repo.project_key:
            tip = repo.commits[repo.branches[repo.mainbranch]]
            if repo.read_file(tip, "catalog-info.yaml") is None:
                found.append(repo)
    return iter(found)


def _repo(server):
    return next(_repos(server))


def _record(provider, repo):
    return provider.get_repository("", f"{repo.project_key}/{repo.slug}")


def _request(record, *, mode="pull_request", expected=None, path="catalog-info.yaml"):
    return WriteRequest(
        repo=record,
        files=(FileChange(path, CONTENT),),
        message="Add catalog-info.yaml",
        mode=mode,
        branch=f"lantern/catalog-info-{record.data['slug']}",
        title="Add catalog-info.yaml",
        description="Lantern writes the entity's catalog file so the repository declares itself.",
        expected={} if expected is None else expected,
    )


def provider_file(provider, record):
    return provider.read_file(record, "catalog-info.yaml")


def _faults(server):
    with control(server) as knobs:
        return knobs.get("/write-faults").json()


def test_a_direct_commit_is_pushed_onto_the_default_branch(dc):
    provider = dc_provider(dc)
    repo = _repo(dc)
    record = _record(provider, repo)
    result = provider.write_files(_request(record, mode="commit"))
    assert result.mode == "commit" and result.attempts == 1
    assert repo.branches[repo.mainbranch] == result.commit
    assert provider.read_file(record, "catalog-info.yaml") == CONTENT
    state = _faults(dc)
    assert state["pushes_accepted"] == 1 and state["force_pushes_refused"] == 0


def test_a_pull_request_from_a_pushed_branch_and_reused_the_second_time(dc):
    provider = dc_provider(dc)
    repo = _repo(dc)
    record = _record(provider, repo)
    first = provider.write_files(_request(record, path="services/api/catalog-info.yaml"))
    branch = f"lantern/catalog-info-{repo.slug}"
    assert first.branch == branch and not first.pull_request_reused
    # The default branch is untouched: the commit sits on its head, on the new branch only.
    assert repo.commits[first.commit].parents == [repo.branches[repo.mainbranch]]
    assert repo.branches[branch] == first.commit
    assert repo.read_file(repo.commits[first.commit], "services/api/catalog-info.yaml") == CONTENT
    pr = repo.pull_requests[int(first.pull_request_id)]
    assert pr.state == "OPEN" and pr.source_branch == branch
    assert first.pull_request_url.endswith(f"/pull-requests/{first.pull_request_id}")

    again = provider.write_files(_request(record, path="services/api/catalog-info.yaml"))
    assert again.pull_request_reused and again.pull_request_id == first.pull_request_id
    assert again.commit == first.commit
    assert _faults(dc)["force_pushes_refused"] == 0


@pytest.mark.parametrize("times", [1, 4])
def test_rejected_pushes_are_rebased_on_the_new_head_then_land(dc, times):
    provider = dc_provider(dc)
    repo = _repo(dc)
    record = _record(provider, repo)
    with control(dc) as knobs:
        knobs.put("/write-faults", json={"push": times})
    result = provider.write_files(_request(record, mode="commit"))
    assert result.attempts == times + 1
    head = repo.commits[repo.branches[repo.mainbranch]]
    assert head.hash == result.commit
    assert repo.commits[head.parents[0]].message.startswith("Concurrent change")
    state = _faults(dc)
    assert state["answered"]["push"] == times and state["force_pushes_refused"] == 0


def test_five_rejected_pushes_give_up_with_nothing_written(dc):
    provider = dc_provider(dc)
    repo = _repo(dc)
    record = _record(provider, repo)
    with control(dc) as knobs:
        knobs.put("/write-faults", json={"push": 5})
    with pytest.raises(WriteConflict) as failed:
        provider.write_files(_request(record, mode="commit"))
    assert failed.value.attempts == 5 and "Nothing was written" in failed.value.message
    assert provider.read_file(record, "catalog-info.yaml") is None
    history = repo.history(repo.branches[repo.mainbranch])[:5]
    assert all(c.message.startswith("Concurrent change") for c in history)
    state = _faults(dc)
    assert state["pushes_accepted"] == 0 and state["force_pushes_refused"] == 0


def test_the_pull_request_conflict_is_retried(dc):
    provider = dc_provider(dc)
    record = _record(provider, _repo(dc))
    with control(dc) as knobs:
        knobs.put("/write-faults", json={"pull_request": 2})
    result = provider.write_files(_request(record))
    assert result.pull_request_id and not result.pull_request_reused
    assert _faults(dc)["answered"]["pull_request"] == 2


def test_a_file_changed_upstream_is_reported_not_overwritten(dc):
    provider = dc_provider(dc)
    repo = _repo(dc)
    record = _record(provider, repo)
    with control(dc) as knobs:
        changed = knobs.post(
            f"/repositories/{repo.workspace}/{repo.slug}/upstream-change",
            json={"path": "catalog-info.yaml", "content": "kind: Theirs\n"},
        ).json()
    with pytest.raises(UpstreamChanged) as refused:
        provider.write_files(
            _request(record, mode="commit", expected={"catalog-info.yaml": blob_id(None)})
        )
    assert refused.value.path == "catalog-info.yaml"
    assert refused.value.commit == repo.branches[repo.mainbranch]
    # The control API answered the world's id before git first saw the repository; git's id
    # names the same change (message and author).
    assert repo.commits[refused.value.commit].message == changed["message"]
    assert refused.value.author == changed["author"]
    assert provider.read_file(record, "catalog-info.yaml") == b"kind: Theirs\n"


def test_missing_repo_write_is_named_and_write_access_says_so(dc):
    reader = dc_provider(dc, DC_TOKEN, name="reader")
    writer = dc_provider(dc)
    repo = _repo(dc)
    record = _record(reader, repo)
    before = len(repo.commits)
    with pytest.raises(WriteAccessMissing) as refused:
        reader.write_files(_request(record, mode="commit"))
    assert refused.value.missing == "REPO_WRITE"
    assert len(repo.commits) == before  # (git gave the commits their ids; none was added)
    assert provider_file(reader, record) is None
    allowed, reason = reader.write_access(record)
    assert allowed is False and "REPO_WRITE" in reason
    assert writer.write_access(record) == (True, "")
    assert writer.write_access() == (True, "")


def test_credentials_never_appear_in_logs_or_errors(dc, caplog, settings):
    caplog.set_level(logging.DEBUG)
    reader = dc_provider(dc, DC_TOKEN, name="reader")
    writer = dc_provider(dc)
    repos = _repos(dc)
    with pytest.raises(WriteAccessMissing) as refused:
        reader.write_files(_request(_record(reader, next(repos)), mode="commit"))
    with control(dc) as knobs:
        knobs.put("/write-faults", json={"push": 5})
    with pytest.raises(WriteConflict) as conflict:
        writer.write_files(_request(_record(writer, next(repos)), mode="commit"))
    if shutil.which("git"):
        settings.LANTERN_GIT_FALLBACK_THRESHOLD_MB = 0
        with control(dc) as knobs:
            knobs.put("/write-faults", json={"push": 1})
        writer.write_files(_request(_record(writer, next(repos)), mode="commit"))
        assert "integrations.writeback.git" in caplog.text
    text = caplog.text + str(refused.value) + str(conflict.value)
    assert "integrations.writeback.conflict" in caplog.text
    for secret in (DC_TOKEN, DC_WRITE_TOKEN):
        assert secret not in text


@pytest.mark.skipif(shutil.which("git") is None, reason="the git CLI is not installed")
def test_the_git_cli_path_pushes_retries_and_opens_the_pull_request(dc, settings, caplog):
    caplog.set_level(logging.DEBUG)
    settings.LANTERN_GIT_FALLBACK_THRESHOLD_MB = 0
    provider = dc_provider(dc)
    repos = _repos(dc)
    repo = next(repos)
    record = _record(provider, repo)
    with control(dc) as knobs:
        knobs.put("/write-faults", json={"push": 2})
    result = provider.write_files(_request(record, mode="commit"))
    assert result.attempts == 3 and repo.branches[repo.mainbranch] == result.commit
    pushes = [r for r in caplog.records if getattr(r, "git_command", None) == "push"]
    assert len(pushes) == 3 and "integrations.writeback.git_cli" in caplog.text
    assert provider.read_file(record, "catalog-info.yaml") == CONTENT

    other = next(repos)
    pr = provider.write_files(_request(_record(provider, other)))
    assert other.pull_requests[int(pr.pull_request_id)].source_branch == pr.branch
    assert _faults(dc)["force_pushes_refused"] == 0


def test_the_clone_cache_is_reused_within_its_window_and_evicted_past_its_size(dc, settings):
    provider = dc_provider(dc)
    repos = _repos(dc)
    first, second = next(repos), next(repos)
    cache = gitcache.clone_cache()
    provider.write_files(_request(_record(provider, first), mode="commit"))
    provider.write_files(_request(_record(provider, first)))
    assert (cache.stats.created, cache.stats.reused) == (1, 1)

    settings.LANTERN_GIT_CACHE_MAX_MB = 0  # a new cache over the same folder, bounded at 0
    small = gitcache.clone_cache()
    assert small.root == cache.root and small.entries()
    provider.write_files(_request(_record(provider, second), mode="commit"))
    assert small.stats.evicted >= 1
    assert small.entries() == []  # the clone in use was kept until its write ended

    settings.LANTERN_GIT_CACHE_MAX_MB = 200
    settings.LANTERN_GIT_CACHE_SECONDS = 0
    expiring = gitcache.clone_cache()
    provider.write_files(_request(_record(provider, second)))
    provider.write_files(_request(_record(provider, second)))
    assert expiring.stats.expired >= 1 and expiring.stats.reused == 0


def test_the_outbound_guard_refuses_the_git_host_before_any_connection(dc, settings, monkeypatch):
    provider = dc_provider(dc)
    record = _record(provider, _repo(dc))
    settings.LANTERN_OUTBOUND_ALLOWLIST = []
    attempts = []

    def connect(sock, address):
        attempts.append(address)
        raise OSError("no connection may be attempted")

    monkeypatch.setattr(socket.socket, "connect", connect)
    with pytest.raises(OutboundAddressError) as refused:
        provider.write_files(_request(record, mode="commit"))
    assert "internal address" in refused.value.message
    assert attempts == []
