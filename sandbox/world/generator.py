"""Deterministic world generation: the same seed and sizes always give the same world.

Every random choice comes from one ``random.Random(seed)`` consumed in a fixed order, hashes are
derived from the seed, and timestamps are drawn from a pool that never hands out a value twice (so
``updated_on > X`` boundaries in tests are exact).
"""

import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta

from sandbox.world.store import (
    FORK_POLICIES,
    Account,
    Commit,
    Project,
    PullRequest,
    Repository,
    Workspace,
    WorldStore,
)

WORKSPACE_NAMES = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell"]
PROJECTS = [
    ("PLAT", "Platform"),
    ("PAY", "Payments"),
    ("DATA", "Data"),
    ("WEB", "Web"),
    ("MOB", "Mobile"),
    ("OPS", "Operations"),
    ("SEC", "Security"),
    ("ML", "Machine Learning"),
]
NOUNS = [
    "billing",
    "checkout",
    "catalog",
    "search",
    "auth",
    "identity",
    "ledger",
    "invoice",
    "shipping",
    "inventory",
    "pricing",
    "profile",
    "notification",
    "gateway",
    "reporting",
    "analytics",
    "scheduler",
    "payments",
    "orders",
    "audit",
    "media",
    "feeds",
    "storage",
    "metrics",
]
SUFFIXES = ["service", "api", "worker", "web", "lib", "sdk", "cli", "jobs", "ui", "proxy"]
LANGUAGES = ["python", "java", "go", "javascript", "typescript", "kotlin", "ruby", "scala", ""]
FIRST_NAMES = ["Ada", "Brian", "Chen", "Dana", "Emeka", "Freya", "Goran", "Hana", "Ivan", "Jun"]
LAST_NAMES = ["Lovelace", "Kernighan", "Wei", "Scully", "Obi", "Nilsen", "Petrov", "Sato", "Ray"]
VERBS = ["Fix", "Add", "Refactor", "Document", "Speed up", "Harden", "Remove", "Rename", "Test"]
THINGS = [
    "retry logic",
    "pagination",
    "config loading",
    "error messages",
    "the health check",
    "logging",
    "input validation",
    "the cache layer",
    "timeouts",
    "the CI pipeline",
]
EXTERNAL_AUTHORS = ["CI Bot <ci-bot@example.com>", "Renovate <bot@renovateapp.com>"]
SOURCE_FILES = {
    "python": ("src/main.py", "def main() -> None:\n    print('hello')\n"),
    "java": ("src/main/java/App.java", "class App { public static void main(String[] a) {} }\n"),
    "go": ("main.go", "package main\n\nfunc main() {}\n"),
    "javascript": ("index.js", "console.log('hello');\n"),
    "typescript": ("src/index.ts", "export const hello = (): string => 'hello';\n"),
}
YEAR = timedelta(days=365)


class _TimePool:
    """Unique microsecond timestamps drawn at random inside requested intervals."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[int] = set()

    def draw(self, low: datetime, high: datetime) -> datetime:
        lo, hi = _micros(low) + 1, _micros(high) - 1
        if hi < lo:
            hi = lo
        value = self.rng.randint(lo, hi)
        while value in self.used:
            value += 1
        self.used.add(value)
        return datetime.fromtimestamp(value / 1_000_000, UTC)


def _micros(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


class WorldGenerator:
    def __init__(
        self,
        world: WorldStore,
        *,
        seed: int,
        workspaces: int,
        projects: int,
        repos: int,
        prs_per_repo: int,
        commits_per_repo: int,
        users: int,
        now: datetime | None,
    ):
        self.world = world
        self.seed = seed
        self.rng = random.Random(seed)
        self.sizes = (workspaces, projects, repos, prs_per_repo, commits_per_repo, users)
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.end = (now or today) - timedelta(hours=1)
        self.start = self.end - YEAR
        self.times = _TimePool(self.rng)
        self._hashes = 0

    def uuid(self) -> str:
        return "{" + str(uuid.UUID(int=self.rng.getrandbits(128), version=4)) + "}"

    def hash(self, *parts: str) -> str:
        self._hashes += 1
        text = ":".join((str(self.seed), str(self._hashes), *parts))
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def run(self) -> None:
        n_workspaces, n_projects, n_repos, n_prs, n_commits, n_users = self.sizes
        accounts = [self._account(i) for i in range(max(1, n_users))]
        workspaces = [self._workspace(i, accounts) for i in range(max(1, n_workspaces))]
        for ws in workspaces:
            for index in range(max(1, n_projects)):
                self._project(ws, index)
        used_names: set[str] = set()
        for index in range(n_repos):
            ws = workspaces[index % len(workspaces)]
            project = self.rng.choice(sorted(ws.projects))
            repo = self._repository(ws, project, index, used_names)
            members = [self.world.accounts[m] for m in ws.members]
            if repo.mainbranch:
                self._history(repo, members, n_commits)
                self._pull_requests(repo, members, n_prs)
            ws.repositories[repo.slug] = repo
        self.world.not_before(self.end)

    # -- pieces --------------------------------------------------------------------------------

    def _account(self, index: int) -> Account:
        first = FIRST_NAMES[index % len(FIRST_NAMES)]
        last = LAST_NAMES[(index * 7 + index // len(FIRST_NAMES)) % len(LAST_NAMES)]
        suffix = "" if index < len(FIRST_NAMES) else str(index // len(FIRST_NAMES))
        nickname = f"{first.lower()}.{last.lower()}{suffix}"
        account = Account(
            uuid=self.uuid(),
            account_id=f"712020:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}",
            nickname=nickname,
            display_name=f"{first} {last}",
            email=f"{nickname}@example.com",
            created_on=self.times.draw(self.start - YEAR, self.start),
        )
        self.world.accounts[account.uuid] = account
        return account

    def _workspace(self, index: int, accounts: list[Account]) -> Workspace:
        base = WORKSPACE_NAMES[index % len(WORKSPACE_NAMES)]
        slug = base if index < len(WORKSPACE_NAMES) else f"{base}-{index // len(WORKSPACE_NAMES)}"
        ws = Workspace(
            uuid=self.uuid(),
            slug=slug,
            name=slug.replace("-", " ").title(),
            is_private=True,
            created_on=self.times.draw(self.start - YEAR, self.start),
            members=[a.uuid for a in accounts],
        )
        self.world.workspaces[slug] = ws
        return ws

    def _project(self, ws: Workspace, index: int) -> None:
        key, name = PROJECTS[index % len(PROJECTS)]
        if index >= len(PROJECTS):
            key, name = f"{key}{index // len(PROJECTS)}", f"{name} {index // len(PROJECTS)}"
        created = self.times.draw(ws.created_on, self.start)
        ws.projects[key] = Project(
            uuid=self.uuid(),
            key=key,
            name=name,
            description=f"{name} team repositories",
            is_private=True,
            created_on=created,
            updated_on=self.times.draw(created, self.start),
        )

    def _repository(self, ws: Workspace, project: str, index: int, used: set[str]) -> Repository:
        rng = self.rng
        base = f"{rng.choice(NOUNS)}-{rng.choice(SUFFIXES)}"
        slug, serial = base, 2
        while slug in used:
            slug, serial = f"{base}-{serial}", serial + 1
        used.add(slug)
        # A few repositories carry a display name that differs from the slug, as real ones do.
        name = slug.replace("-", " ").title().replace(" ", "-") if rng.random() < 0.1 else slug
        language = rng.choice(LANGUAGES)
        empty = rng.random() < 0.03
        created = self.times.draw(self.start, self.end - timedelta(days=3))
        description = "" if rng.random() < 0.15 else f"The {base.replace('-', ' ')} of {ws.name}"
        return Repository(
            uuid=self.uuid(),
            slug=slug,
            name=name,
            workspace=ws.slug,
            project_key=project,
            description=description,
            language=language,
            is_private=rng.random() < 0.9,
            created_on=created,
            updated_on=self.times.draw(created, created + timedelta(hours=1)),
            size=rng.randint(20_000, 40_000_000) if not empty else 0,
            mainbranch=None if empty else rng.choice(["main"] * 8 + ["master", "develop"]),
            fork_policy=rng.choice(FORK_POLICIES),
            website="" if rng.random() < 0.8 else f"https://{slug}.example.com",
            has_issues=rng.random() < 0.3,
            has_wiki=rng.random() < 0.2,
        )

    def _author(self, members: list[Account]) -> str:
        if self.rng.random() < 0.15:
            return self.rng.choice(EXTERNAL_AUTHORS)
        return self.rng.choice(members).raw_author

    def _initial_files(self, repo: Repository) -> dict[str, bytes | None]:
        files: dict[str, bytes | None] = {
            "README.md": f"# {repo.name}\n\n{repo.description}\n".encode()
        }
        if self.rng.random() < 0.75:
            kind = self.rng.choice(["service"] * 6 + ["library"] * 3 + ["website"])
            tags = f"\n  tags:\n    - {repo.language}" if repo.language else ""
            files["catalog-info.yaml"] = (
                "apiVersion: backstage.io/v1alpha1\n"
                "kind: Component\n"
                "metadata:\n"
                f"  name: {repo.slug}\n"
                f"  description: {repo.description or repo.name}\n"
                "  annotations:\n"
                f"    bitbucket.org/project-slug: {repo.full_name}{tags}\n"
                "spec:\n"
                f"  type: {kind}\n"
                f"  lifecycle: {self.rng.choice(['production', 'experimental', 'deprecated'])}\n"
                f"  owner: team-{repo.project_key.lower()}\n"
            ).encode()
        if repo.language in SOURCE_FILES:
            path, content = SOURCE_FILES[repo.language]
            files[path] = content.encode()
        return files

    def _history(self, repo: Repository, members: list[Account], count: int) -> None:
        count = max(1, count)
        last = repo.updated_on
        parent: str | None = None
        changelog = ""
        for index in range(count):
            date = self.times.draw(last, self.end - timedelta(days=2) * (count - index) / count)
            if date <= last:
                date = self.times.draw(last, last + timedelta(minutes=5))
            if index == 0:
                message, changes = "Initial commit", self._initial_files(repo)
            else:
                message = f"{self.rng.choice(VERBS)} {self.rng.choice(THINGS)}"
                changelog += f"- {message}\n"
                changes = {"CHANGELOG.md": changelog.encode()}
            commit = Commit(
                hash=self.hash(repo.uuid, str(index)),
                date=date,
                message=message,
                author=self._author(members),
                parents=[parent] if parent else [],
                changes=changes,
            )
            repo.commits[commit.hash] = commit
            parent, last = commit.hash, date
        repo.branches[repo.mainbranch] = parent
        repo.updated_on = self.times.draw(last, last + timedelta(hours=2))

    def _pull_requests(self, repo: Repository, members: list[Account], count: int) -> None:
        rng = self.rng
        main = sorted(repo.history(repo.branches[repo.mainbranch]), key=lambda c: c.date)
        first = main[0].date
        for pr_id in range(1, count + 1):
            created = self.times.draw(first, self.end - timedelta(hours=2))
            base = max((c for c in main if c.date < created), key=lambda c: c.date)
            topic = f"{rng.choice(NOUNS)}-{pr_id}"
            source_branch = f"{rng.choice(['feature', 'bugfix', 'chore'])}/{topic}"
            title = f"{rng.choice(VERBS)} {rng.choice(THINGS)}"
            source = Commit(
                hash=self.hash(repo.uuid, "pr", str(pr_id)),
                date=self.times.draw(base.date, created),
                message=title,
                author=self._author(members),
                parents=[base.hash],
                changes={f"changes/{topic}.md": f"# {title}\n".encode()},
            )
            repo.commits[source.hash] = source
            state = rng.choices(
                ["OPEN", "MERGED", "DECLINED", "SUPERSEDED"], weights=[40, 40, 15, 5]
            )[0]
            later = [c for c in main if c.date > created]
            if state == "MERGED" and not later:
                state = "OPEN"
            author = rng.choice(members)
            others = [m for m in members if m.uuid != author.uuid]
            reviewers = rng.sample(others, k=min(len(others), rng.randint(0, 2)))
            pr = PullRequest(
                id=pr_id,
                title=title,
                description="" if rng.random() < 0.3 else f"This pull request {title.lower()}.",
                state=state,
                author=author.uuid,
                source_branch=source_branch,
                source_commit=source.hash,
                destination_branch=repo.mainbranch,
                destination_commit=base.hash,
                created_on=created,
                updated_on=created,
                comment_count=rng.randint(0, 12),
                task_count=rng.randint(0, 3),
                close_source_branch=rng.random() < 0.7,
                reviewers=[r.uuid for r in reviewers],
                approvals=[r.uuid for r in reviewers if rng.random() < 0.5],
            )
            if state == "MERGED":
                merge = later[0]
                pr.merge_commit = merge.hash
                pr.updated_on = self.times.draw(merge.date, merge.date + timedelta(minutes=30))
            else:
                pr.updated_on = self.times.draw(created, self.end - timedelta(hours=1))
            if state in ("MERGED", "DECLINED"):
                pr.closed_by = rng.choice(members).uuid
            if state == "DECLINED":
                pr.reason = rng.choice(["", "Superseded by a simpler approach", "Not needed"])
            if state == "OPEN" or not pr.close_source_branch:
                repo.branches[source_branch] = source.hash
            repo.pull_requests[pr_id] = pr
