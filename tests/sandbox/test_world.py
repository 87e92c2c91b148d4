"""The in-memory world: deterministic generation, JSON round trips and mutations."""

import json
from datetime import UTC, datetime

import pytest

from sandbox.world import Conflict, NotFound, World

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def small(seed: int = 3) -> World:
    return World.generate(seed, repos=30, prs_per_repo=5, commits_per_repo=6, now=NOW)


def test_the_same_seed_and_sizes_give_the_same_world():
    first, again, other = small(), small(), small(seed=4)
    assert json.dumps(first.dump()) == json.dumps(again.dump())
    assert json.dumps(first.dump()) != json.dumps(other.dump())


def test_sizes_are_honoured_and_timestamps_unique_within_the_year():
    world = World.generate(
        1, workspaces=2, projects=4, repos=40, prs_per_repo=3, commits_per_repo=4, now=NOW
    )
    repos = list(world.iter_repositories())
    assert len(repos) == 40 and len(world.workspaces) == 2
    assert all(len(ws.projects) == 4 for ws in world.workspaces.values())
    stamps = [r.created_on for r in repos] + [r.updated_on for r in repos]
    for repo in repos:
        stamps += [c.date for c in repo.commits.values()]
        stamps += [pr.created_on for pr in repo.pull_requests.values()]
        stamps += [pr.updated_on for pr in repo.pull_requests.values()]
        if repo.mainbranch:
            assert sorted(repo.pull_requests) == [1, 2, 3]
            tip = repo.commits[repo.branches[repo.mainbranch]]
            assert repo.updated_on >= tip.date
    assert len(stamps) == len(set(stamps))
    assert all(NOW.replace(year=2025) < s < NOW for s in stamps)


def test_generated_repositories_carry_catalog_files_and_some_are_empty():
    world = World.generate(5, repos=120, prs_per_repo=1, commits_per_repo=2, now=NOW)
    repos = list(world.iter_repositories())
    with_catalog = [
        r
        for r in repos
        if r.mainbranch
        and r.read_file(r.commits[r.branches[r.mainbranch]], "catalog-info.yaml") is not None
    ]
    assert 0.5 * len(repos) < len(with_catalog) < len(repos)
    assert any(r.mainbranch is None for r in repos)
    content = with_catalog[0].read_file(
        with_catalog[0].commits[with_catalog[0].branches[with_catalog[0].mainbranch]],
        "catalog-info.yaml",
    )
    assert content.startswith(b"apiVersion: backstage.io/v1alpha1\n")


def test_dump_and_load_round_trip_with_credentials():
    world = small()
    world.credentials.add_access_token("t", workspace="acme")
    loaded = World.load(json.loads(json.dumps(world.dump())))
    assert loaded.dump() == world.dump()
    assert loaded.credentials.authenticate("Bearer t").kind == "workspace_token"


def test_a_push_advances_the_branch_and_bumps_updated_on():
    world = small()
    events = []
    world.subscribe(events.append)
    repo = next(r for r in world.iter_repositories() if r.mainbranch)
    before, tip = repo.updated_on, repo.branches[repo.mainbranch]
    commits = world.commits_push(workspace="acme", slug=repo.slug, count=3)
    assert repo.branches[repo.mainbranch] == commits[-1].hash
    assert commits[0].parents == [tip]
    assert repo.updated_on > before
    assert [e.kind for e in events] == ["push"]
    assert events[0].data["changes"][0]["commits"] == list(reversed(commits))


def test_renames_change_the_slug_and_deletes_remove():
    world = small()
    repo = next(iter(world.iter_repositories()))
    old = repo.slug
    world.repository_rename(workspace="acme", slug=old, name="Shiny New Name")
    assert repo.slug == "shiny-new-name" and world.repository("acme", "shiny-new-name") is repo
    with pytest.raises(NotFound):
        world.repository("acme", old)
    world.repository_delete(workspace="acme", slug="shiny-new-name")
    with pytest.raises(NotFound):
        world.repository("acme", "shiny-new-name")


def test_a_stale_parent_conflicts():
    world = small()
    repo = next(r for r in world.iter_repositories() if r.mainbranch)
    tip = repo.branches[repo.mainbranch]
    world.file_write(workspace="acme", slug=repo.slug, path="a.txt", content="a")
    with pytest.raises(Conflict):
        world.commit_create(workspace="acme", slug=repo.slug, files={"b": "b"}, parents=[tip])


def test_merging_makes_a_merge_commit_and_closes_the_source_branch():
    world = small()
    repo = next(r for r in world.iter_repositories() if r.mainbranch)
    pr = world.pullrequest_open(
        workspace="acme",
        slug=repo.slug,
        title="Feature",
        source="feature/x",
        close_source_branch=True,
    )
    source_tip = repo.branches["feature/x"]
    world.pullrequest_merge(workspace="acme", slug=repo.slug, pr_id=pr.id)
    merge = repo.commits[repo.branches[repo.mainbranch]]
    assert pr.state == "MERGED" and pr.merge_commit == merge.hash
    assert merge.parents[1] == source_tip
    assert "feature/x" not in repo.branches
    with pytest.raises(Conflict):
        world.pullrequest_decline(workspace="acme", slug=repo.slug, pr_id=pr.id)


def test_the_management_command_prints_its_url_and_credentials(monkeypatch, tmp_path):
    from io import StringIO

    from django.core.management import call_command

    from sandbox import SandboxServer

    monkeypatch.setattr(SandboxServer, "serve_forever", SandboxServer.stop)
    out = StringIO()
    dump = tmp_path / "world.json"
    call_command(
        "bitbucket_sandbox",
        "--cloud",
        "--port",
        "0",
        "--repos",
        "5",
        "--dump",
        str(dump),
        stdout=out,
    )
    text = out.getvalue()
    assert "Bitbucket Cloud sandbox on http://127.0.0.1:" in text
    assert "workspace access token (acme): sandbox-token" in text
    assert "OAuth consumer: sandbox-client / sandbox-secret" in text
    loaded = World.load_from(dump)
    assert loaded.credentials.authenticate("Bearer sandbox-token").kind == "workspace_token"
