"""Write-back on Bitbucket Cloud over the sandbox's real socket: a direct commit and a pull
request through the provider's own client, conflicts retried on the new head (and given up
after five with nothing written), a file changed upstream reported, and a missing write scope
named."""

import logging

import pytest

from integrations.providers.writes import (
    FileChange,
    UpstreamChanged,
    WriteAccessMissing,
    WriteConflict,
    WriteRequest,
    blob_id,
)
from tests.integrations.writeback.conftest import (
    CLOUD_READ_TOKEN,
    CLOUD_WRITE_TOKEN,
    cloud_provider,
    control,
)

pytestmark = pytest.mark.django_db

CONTENT = b"apiVersion: backstage.io/v1alpha1\nkind: Component\n"


def _repo(server):
    """A repository of the token's workspace with commits and no catalog-info.yaml yet."""
    workspace = server.world.workspaces[server.workspace]
    for repo in server.world.iter_repositories():
        if repo.workspace not in (workspace.uuid, server.workspace) or not repo.mainbranch:
            continue
        if (
            repo.read_file(repo.commits[repo.branches[repo.mainbranch]], "catalog-info.yaml")
            is None
        ):
            return repo
    raise AssertionError("no repository with commits and without catalog-info.yaml")


def _record(provider, repo):
    return provider.get_repository(repo.uuid)


def _request(record, *, mode="pull_request", expected=None, **values):
    values.setdefault("branch", f"lantern/catalog-info-{record.data['slug']}")
    return WriteRequest(
        repo=record,
        files=(FileChange("catalog-info.yaml", CONTENT),),
        message="Add catalog-info.yaml",
        mode=mode,
        title="Add catalog-info.yaml",
        description="Lantern writes the entity's catalog file so the repository declares itself.",
        expected={} if expected is None else expected,
        **values,
    )


def _tip(server, repo, branch=None):
    return repo.branches.get(branch or repo.mainbranch)


def test_a_direct_commit_lands_on_the_default_branch_parented_on_its_head(cloud):
    provider = cloud_provider(cloud)
    repo = _repo(cloud)
    record = _record(provider, repo)
    before = _tip(cloud, repo)
    result = provider.write_files(
        _request(record, mode="commit", expected={"catalog-info.yaml": None})
    )
    assert result.mode == "commit" and result.attempts == 1
    assert result.branch == repo.mainbranch
    assert _tip(cloud, repo) == result.commit
    assert repo.commits[result.commit].parents == [before]
    assert provider.read_file(record, "catalog-info.yaml") == CONTENT


def test_a_pull_request_from_its_own_branch_and_reused_the_second_time(cloud):
    provider = cloud_provider(cloud)
    repo = _repo(cloud)
    record = _record(provider, repo)
    main = _tip(cloud, repo)
    first = provider.write_files(_request(record))
    branch = f"lantern/catalog-info-{repo.slug}"
    assert first.branch == branch and first.pull_request_id and not first.pull_request_reused
    assert first.pull_request_url.endswith(f"/pull-requests/{first.pull_request_id}")
    assert _tip(cloud, repo) == main  # the default branch is untouched
    assert repo.commits[repo.branches[branch]].parents == [main]
    pr = repo.pull_requests[int(first.pull_request_id)]
    assert pr.state == "OPEN" and pr.source_branch == branch
    assert "declares itself" in pr.description

    again = provider.write_files(_request(record))
    assert again.pull_request_id == first.pull_request_id and again.pull_request_reused
    assert again.commit == first.commit  # the branch held the files already: no new commit
    assert len([p for p in repo.pull_requests.values() if p.source_branch == branch]) == 1


@pytest.mark.parametrize("times", [1, 4])
def test_conflicts_are_retried_on_the_new_head_then_the_commit_lands(cloud, times):
    provider = cloud_provider(cloud)
    repo = _repo(cloud)
    record = _record(provider, repo)
    with control(cloud) as knobs:
        knobs.put("/write-faults", json={"commit": times})
        result = provider.write_files(_request(record, mode="commit"))
        assert knobs.get("/write-faults").json()["answered"]["commit"] == times
    assert result.attempts == times + 1
    head = repo.commits[_tip(cloud, repo)]
    assert head.hash == result.commit
    assert repo.commits[head.parents[0]].message.startswith("Concurrent change")


@pytest.mark.parametrize("mode", ["commit", "pull_request"])
def test_five_conflicts_give_up_with_the_reason_and_nothing_written(cloud, mode):
    provider = cloud_provider(cloud)
    repo = _repo(cloud)
    record = _record(provider, repo)
    with control(cloud) as knobs:
        knobs.put("/write-faults", json={"commit": 5})
        with pytest.raises(WriteConflict) as failed:
            provider.write_files(_request(record, mode=mode))
    assert failed.value.attempts == 5
    assert "5 tries" in failed.value.message and "Nothing was written" in failed.value.message
    assert provider.read_file(record, "catalog-info.yaml") is None
    assert f"lantern/catalog-info-{repo.slug}" not in repo.branches
    assert not [p for p in repo.pull_requests.values() if p.source_branch.startswith("lantern/")]
    messages = [c.message for c in repo.history(repo.branches[repo.mainbranch])[:5]]
    assert all(m.startswith("Concurrent change") for m in messages)


def test_a_file_changed_upstream_since_the_preview_is_reported_not_overwritten(cloud):
    provider = cloud_provider(cloud)
    repo = _repo(cloud)
    record = _record(provider, repo)
    previewed = provider.read_file(record, "catalog-info.yaml")
    with control(cloud) as knobs:
        changed = knobs.post(
            f"/repositories/{repo.full_name}/upstream-change",
            json={"path": "catalog-info.yaml", "content": "kind: Theirs\n"},
        ).json()
    with pytest.raises(UpstreamChanged) as refused:
        provider.write_files(
            _request(record, mode="commit", expected={"catalog-info.yaml": blob_id(previewed)})
        )
    assert refused.value.path == "catalog-info.yaml"
    assert refused.value.commit == changed["hash"]
    assert (
        "catalog-info.yaml" in refused.value.message
        and changed["hash"][:12] in refused.value.message
    )
    assert provider.read_file(record, "catalog-info.yaml") == b"kind: Theirs\n"
    assert _tip(cloud, repo) == changed["hash"]


def test_an_upstream_change_between_two_tries_is_caught_on_the_retry(cloud):
    """The first try meets a conflict; before the retry someone changes the file itself."""
    provider = cloud_provider(cloud)
    repo = _repo(cloud)
    record = _record(provider, repo)
    http = provider.client.http
    original_sleep = http.sleep

    def change_then_sleep(delay):
        with control(cloud) as knobs:
            knobs.post(
                f"/repositories/{repo.full_name}/upstream-change",
                json={"path": "catalog-info.yaml", "content": "kind: Theirs\n"},
            )
        original_sleep(delay)

    http.sleep = change_then_sleep
    with control(cloud) as knobs:
        knobs.put("/write-faults", json={"commit": 1})
    with pytest.raises(UpstreamChanged):
        provider.write_files(_request(record, mode="commit"))
    assert provider.read_file(record, "catalog-info.yaml") == b"kind: Theirs\n"


def test_missing_write_scope_is_named_and_write_access_says_so(cloud):
    reader = cloud_provider(cloud, CLOUD_READ_TOKEN, name="reader")
    writer = cloud_provider(cloud, CLOUD_WRITE_TOKEN)
    repo = _repo(cloud)
    record = _record(reader, repo)
    before = _tip(cloud, repo)
    with pytest.raises(WriteAccessMissing) as refused:
        reader.write_files(_request(record, mode="commit"))
    assert refused.value.missing == "repository:write"
    assert _tip(cloud, repo) == before

    allowed, reason = reader.write_access(record)
    assert allowed is False
    assert "repository:write" in reason and "pullrequest:write" in reason
    assert writer.write_access(record) == (True, "")
    assert writer.write_access() == (True, "")
    assert _tip(cloud, repo) == before  # the checks wrote nothing


def test_the_token_never_appears_in_logs_or_errors(cloud, caplog):
    caplog.set_level(logging.DEBUG)
    reader = cloud_provider(cloud, CLOUD_READ_TOKEN, name="reader")
    writer = cloud_provider(cloud, CLOUD_WRITE_TOKEN)
    repo = _repo(cloud)
    with pytest.raises(WriteAccessMissing) as refused:
        reader.write_files(_request(_record(reader, repo), mode="commit"))
    with control(cloud) as knobs:
        knobs.put("/write-faults", json={"commit": 5})
    with pytest.raises(WriteConflict) as conflict:
        writer.write_files(_request(_record(writer, repo)))
    text = caplog.text + str(refused.value) + str(conflict.value)
    assert "integrations.writeback.conflict" in caplog.text
    for token in (CLOUD_READ_TOKEN, CLOUD_WRITE_TOKEN):
        assert token not in text
