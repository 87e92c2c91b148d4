"""An in-test provider: a real Provider implementation serving a generated, mutable world.

Tests register it under the key ``fake`` and point a connector at a world by name
(``connector.config["world"]``). Requests and pages are counted as a real client would.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from integrations.providers.base import (
    CommitRecord,
    ProbeResult,
    Provider,
    PullRequestRecord,
    RepoRecord,
)

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


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
    fail_after_pages: int | None = None  # raise after serving this many repository pages

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


WORLDS: dict[str, World] = {}


class FakeProvider(Provider):
    key = "fake"
    name = "Fake"
    properties_key = "Fake"
    auth_kinds = ("none",)
    target_keys = ("workspace",)
    default_field_mappings = {
        "metadata.description": "description",
        'metadata.annotations."fake.example/repo-url"': "links.html.href",
    }
    first_sync_page = 50

    @property
    def world(self) -> World:
        return WORLDS[self.connector.config["world"]]

    def _request(self) -> None:
        self.stats.requests += 1

    def probe(self) -> ProbeResult:
        self._request()
        return ProbeResult(True, f"{len(self.world.repos)} repositories visible")

    def iter_repositories(self, since=None) -> Iterator[list[RepoRecord]]:
        repos = list(self.world.repos)
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

    def iter_pull_requests(self, repo, *, since=None, until=None, limit):
        items = self.world.repo(repo["uuid"]).pull_requests
        return self._bounded(items, lambda pr: pr.updated_on, since, until, limit)

    def iter_commits(self, repo, *, since=None, until=None, limit):
        items = self.world.repo(repo["uuid"]).commits
        return self._bounded(items, lambda commit: commit.date, since, until, limit)

    def read_file(self, repo, path):
        return None

    @classmethod
    def properties(cls, data: dict) -> dict:
        return {"name": data["name"], "url": data["links"]["html"]["href"],
                "project_key": data["project"]["key"]}
