"""The world as JSON: ``dump``/``load`` and their files (what ``--dump`` and ``--data`` use)."""

import base64
import json
from pathlib import Path
from typing import Any, Self

from sandbox.world.store import (
    Account,
    Commit,
    Project,
    PullRequest,
    Repository,
    Workspace,
    WorldStore,
    format_time,
    parse_time,
)


class WorldPersistence(WorldStore):
    # -- JSON ----------------------------------------------------------------------------------

    def dump(self) -> dict:
        with self.lock:
            return {
                "version": 1,
                "accounts": [_account_json(a) for a in self.accounts.values()],
                "workspaces": [_workspace_json(ws) for ws in self.workspaces.values()],
                "credentials": self.credentials.dump(),
            }

    def dump_to(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.dump(), indent=1))

    @classmethod
    def load(cls, data: dict) -> Self:
        world = cls()
        for item in data.get("accounts", []):
            account = Account(
                **{**item, "created_on": parse_time(item["created_on"])}  # type: ignore[arg-type]
            )
            world.accounts[account.uuid] = account
        for item in data.get("workspaces", []):
            ws = _workspace_from_json(item)
            world.workspaces[ws.slug] = ws
        world.credentials.load(data.get("credentials") or {})
        for repo in world.iter_repositories():
            world.not_before(repo.updated_on)
            for item in [*repo.pull_requests.values(), *repo.commits.values()]:
                world.not_before(getattr(item, "updated_on", None) or item.date)
        return world

    @classmethod
    def load_from(cls, path: str | Path) -> Self:
        return cls.load(json.loads(Path(path).read_text()))


# -- JSON helpers ------------------------------------------------------------------------------


def _content_json(content: bytes | None) -> Any:
    if content is None:
        return None
    try:
        return content.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(content).decode()}


def _content_from_json(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return base64.b64decode(value["base64"])
    return value.encode()


def _account_json(account: Account) -> dict:
    return {**account.__dict__, "created_on": format_time(account.created_on)}


def _workspace_json(ws: Workspace) -> dict:
    return {
        "uuid": ws.uuid,
        "slug": ws.slug,
        "name": ws.name,
        "is_private": ws.is_private,
        "created_on": format_time(ws.created_on),
        "members": ws.members,
        "projects": [
            {
                **p.__dict__,
                "created_on": format_time(p.created_on),
                "updated_on": format_time(p.updated_on),
            }
            for p in ws.projects.values()
        ],
        "repositories": [_repository_json(r) for r in ws.repositories.values()],
    }


def _repository_json(repo: Repository) -> dict:
    data = {
        key: value
        for key, value in repo.__dict__.items()
        if key not in ("commits", "pull_requests", "created_on", "updated_on")
    }
    data["created_on"] = format_time(repo.created_on)
    data["updated_on"] = format_time(repo.updated_on)
    data["commits"] = [
        {
            "hash": c.hash,
            "date": format_time(c.date),
            "message": c.message,
            "author": c.author,
            "parents": c.parents,
            "changes": {path: _content_json(v) for path, v in c.changes.items()},
        }
        for c in repo.commits.values()
    ]
    data["pull_requests"] = [
        {
            **pr.__dict__,
            "created_on": format_time(pr.created_on),
            "updated_on": format_time(pr.updated_on),
        }
        for pr in repo.pull_requests.values()
    ]
    return data


def _workspace_from_json(item: dict) -> Workspace:
    ws = Workspace(
        uuid=item["uuid"],
        slug=item["slug"],
        name=item["name"],
        is_private=item.get("is_private", True),
        created_on=parse_time(item["created_on"]),
        members=list(item.get("members", [])),
    )
    for p in item.get("projects", []):
        project = Project(
            **{
                **p,
                "created_on": parse_time(p["created_on"]),
                "updated_on": parse_time(p["updated_on"]),
            }
        )
        ws.projects[project.key] = project
    for r in item.get("repositories", []):
        commits = {
            c["hash"]: Commit(
                hash=c["hash"],
                date=parse_time(c["date"]),
                message=c["message"],
                author=c["author"],
                parents=list(c["parents"]),
                changes={p: _content_from_json(v) for p, v in c.get("changes", {}).items()},
            )
            for c in r.get("commits", [])
        }
        prs = {
            pr["id"]: PullRequest(
                **{
                    **pr,
                    "created_on": parse_time(pr["created_on"]),
                    "updated_on": parse_time(pr["updated_on"]),
                }
            )
            for pr in r.get("pull_requests", [])
        }
        fields = {k: v for k, v in r.items() if k not in ("commits", "pull_requests")}
        fields["created_on"] = parse_time(fields["created_on"])
        fields["updated_on"] = parse_time(fields["updated_on"])
        repo = Repository(**fields, commits=commits, pull_requests=prs)
        ws.repositories[repo.slug] = repo
    return ws
