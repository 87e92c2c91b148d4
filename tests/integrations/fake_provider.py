"""An in-test provider: a real Provider implementation serving a generated, mutable world.

Tests register it under the key ``fake`` and point a connector at a world by name
(``connector.config["world"]``). Requests and pages are counted as a real client would.

A process that does not hold the world in :data:`WORLDS` (a Celery worker started by a test)
loads it from the JSON file at ``connector.config["world_file"]`` (:meth:`World.save`).
"""

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from integrations.providers.base import (
    AuthKindSpec,
    CommitRecord,
    ProbeResult,
    Provider,
    PullRequestRecord,
    RepoRecord,
)

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
# The fake reads an in-process world: nothing to authenticate.
NO_AUTH = AuthKindSpec(key="none", label="None (tests)")


@dataclass
class FakeRepo:
    uid: str
    name: str
    description: str = ""
    project_key: str = "PRJ"
    updated_on: datetime = EPOCH
    pull_requests: list[PullRequestRecord] = field(default_factory=list)
    commits: list[CommitRecord] = field(default_factory=list)

    def data(self) -> dict:
        return {
            "uuid": self.uid,
            "name": self.name,
            "slug": self.name.lower(),
            "description": self.description,
            "project": {"key": self.project_key},
            "links": {"html": {"href": f"https://fake.example/{self.name}"}},
            "updated_on": self.updated_on.isoformat(),
        }


@dataclass
class World:
    repos: list[FakeRepo] = field(default_factory=list)
    pagelen: int = 100
    honour_since: bool = False
    fail_after_pages: int | None = None  # raise after serving this many repository pages
    # raise on the next pull-request/commit fetch once this many were served (then reset it)
    fail_after_secondary_fetches: int | None = None
    secondary_fetches: int = 0
    name: str = ""

    def add_repo(self, name: str, *, prs: int = 0, commits: int = 0, **kwargs) -> FakeRepo:
        index = len(self.repos)
        repo = FakeRepo(uid=f"{{repo-{index:06d}}}", name=name, **kwargs)
        for number in range(prs):
            self.add_pull_request(repo, number)
        for number in range(commits):
            self.add_commit(repo, number)
        self.repos.append(repo)
        return repo

    @staticmethod
    def add_pull_request(repo: FakeRepo, number: int, *, when: datetime | None = None):
        # Unique, increasing timestamps per repository.
        stamp = when or EPOCH + timedelta(hours=number)
        repo.pull_requests.append(
            PullRequestRecord(
                external_id=str(number + 1),
                title=f"{repo.name} change {number + 1}",
                state="MERGED" if number % 3 else "OPEN",
                updated_on=stamp,
                created_on=stamp - timedelta(minutes=5),
                author="ada",
                source_branch=f"feature/{number}",
                destination_branch="main",
                url=f"https://fake.example/{repo.name}/pull/{number + 1}",
                raw={"id": number + 1},
            )
        )

    @staticmethod
    def add_commit(repo: FakeRepo, number: int, *, when: datetime | None = None):
        stamp = when or EPOCH + timedelta(hours=number, minutes=30)
        repo.commits.append(
            CommitRecord(
                hash=f"{abs(hash((repo.uid, number))):040x}"[:40],
                date=stamp,
                message=f"commit {number}",
                author="Ada <ada@example.com>",
                raw={"n": number},
            )
        )

    def repo(self, uid: str) -> FakeRepo:
        return next(repo for repo in self.repos if repo.uid == uid)

    # -- JSON, for processes that do not share WORLDS ---------------------------------------------

    def to_json(self) -> dict:
        def stamps(item) -> dict:
            return {
                key: value.isoformat() if isinstance(value, datetime) else value
                for key, value in asdict(item).items()
            }

        return {
            "pagelen": self.pagelen,
            "repos": [
                {
                    "uid": repo.uid,
                    "name": repo.name,
                    "description": repo.description,
                    "project_key": repo.project_key,
                    "updated_on": repo.updated_on.isoformat(),
                    "pull_requests": [stamps(pr) for pr in repo.pull_requests],
                    "commits": [stamps(commit) for commit in repo.commits],
                }
                for repo in self.repos
            ],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json()))

    @classmethod
    def from_json(cls, payload: dict) -> "World":
        def when(value):
            return datetime.fromisoformat(value) if value else None

        world = cls(pagelen=payload.get("pagelen", 100))
        for item in payload["repos"]:
            world.repos.append(
                FakeRepo(
                    uid=item["uid"],
                    name=item["name"],
                    description=item["description"],
                    project_key=item["project_key"],
                    updated_on=when(item["updated_on"]),
                    pull_requests=[
                        PullRequestRecord(
                            **{
                                **pr,
                                "updated_on": when(pr["updated_on"]),
                                "created_on": when(pr["created_on"]),
                            }
                        )
                        for pr in item["pull_requests"]
                    ],
                    commits=[
                        CommitRecord(**{**commit, "date": when(commit["date"])})
                        for commit in item["commits"]
                    ],
                )
            )
        return world

    @classmethod
    def load(cls, path: str | Path) -> "World":
        return cls.from_json(json.loads(Path(path).read_text()))


WORLDS: dict[str, World] = {}


class FakeProvider(Provider):
    key = "fake"
    name = "Fake"
    properties_key = "Fake"
    auth_kinds = (NO_AUTH,)
    target_keys = ("workspace",)
    default_field_mappings = {
        "metadata.description": "description",
        'metadata.annotations."fake.example/repo-url"': "links.html.href",
    }
    first_sync_page = 50

    @classmethod
    def instance_key(cls, connector) -> str:
        # Each world is an instance of its own (its repositories' ids start again at 0).
        return f"{super().instance_key(connector)}#{(connector.config or {}).get('world', '')}"

    @property
    def world(self) -> World:
        config = self.connector.config
        world = WORLDS.get(config.get("world", ""))
        if world is not None:
            return world
        if not hasattr(self, "_loaded_world"):
            if not config.get("world_file"):
                raise KeyError(f"No world {config.get('world')!r} and no world_file")
            self._loaded_world = World.load(config["world_file"])
        return self._loaded_world

    def _request(self) -> None:
        self.stats.requests += 1

    def probe(self) -> ProbeResult:
        self._request()
        return ProbeResult(True, f"{len(self.world.repos)} repositories visible")

    def iter_repositories(self, since=None, known=None) -> Iterator[list[RepoRecord]]:
        # ``since`` is a hint a provider may ignore; with ``honour_since`` the world answers like
        # Bitbucket's ``q=updated_on > since`` (its timestamps must then be real ones).
        honour = since is not None and self.world.honour_since
        repos = [r for r in self.world.repos if not honour or r.updated_on > since]
        size = self.world.pagelen
        for page_number, start in enumerate(range(0, max(len(repos), 1), size)):
            failing = self.world.fail_after_pages
            if failing is not None and page_number >= failing:
                raise RuntimeError(f"injected crash after {failing} pages")
            self._request()
            self.stats.pages += 1
            yield [
                RepoRecord(repo.uid, repo.name, repo.data(), updated_at=repo.updated_on)
                for repo in repos[start : start + size]
            ]

    def get_repository(self, external_id, name=None):
        self._request()
        repo = next((r for r in self.world.repos if r.uid == external_id), None)
        return RepoRecord(repo.uid, repo.name, repo.data(), repo.updated_on) if repo else None

    def _bounded(self, items, stamp, since, until, limit):
        ordered = sorted(items, key=stamp, reverse=True)
        selected = [
            item
            for item in ordered
            if (since is None or stamp(item) > since) and (until is None or stamp(item) < until)
        ][:limit]
        pages = max(1, -(-len(selected) // self.first_sync_page))
        self.stats.requests += pages
        self.stats.pages += pages
        return iter(selected)

    def _secondary_fetch(self) -> None:
        world = self.world
        if world.fail_after_secondary_fetches is not None:
            if world.secondary_fetches >= world.fail_after_secondary_fetches:
                world.fail_after_secondary_fetches = None
                raise RuntimeError("injected crash while fetching pull requests/commits")
        world.secondary_fetches += 1

    def iter_pull_requests(self, repo, *, since=None, until=None, limit):
        self._secondary_fetch()
        items = self.world.repo(repo["uuid"]).pull_requests
        return self._bounded(items, lambda pr: pr.updated_on, since, until, limit)

    def iter_commits(self, repo, *, since=None, until=None, limit):
        self._secondary_fetch()
        items = self.world.repo(repo["uuid"]).commits
        return self._bounded(items, lambda commit: commit.date, since, until, limit)

    def read_file(self, repo, path):
        return None

    @classmethod
    def properties(cls, data: dict) -> dict:
        return {
            "name": data["name"],
            "url": data["links"]["html"]["href"],
            "project_key": data["project"]["key"],
        }
