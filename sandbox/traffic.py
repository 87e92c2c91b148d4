"""What the sandbox does to traffic besides answering it: the request log, rate limits and
fault injection. Provider-neutral; each server decides which requests they apply to."""

import random
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields

# -- request log -------------------------------------------------------------------------------


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    status: int
    endpoint: str
    credential: str | None
    fault: str | None
    at: float


class RequestLog:
    """Every request, with counts per endpoint (``GET /2.0/repositories/{workspace}``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[LoggedRequest] = []

    def record(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._entries)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(entry.endpoint for entry in self._entries))

    def count(self, endpoint: str) -> int:
        return self.counts().get(endpoint, 0)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()

    def as_json(self) -> dict:
        entries = self.entries()
        return {
            "total": len(entries),
            "counts": dict(Counter(entry.endpoint for entry in entries)),
            "requests": [asdict(entry) for entry in entries],
        }


# -- rate limits -------------------------------------------------------------------------------


@dataclass
class RateLimitConfig:
    """Rolling-window budgets per credential and resource. ``retry_after`` is None by default
    because Bitbucket's 429s usually carry no ``Retry-After``."""

    limits: dict[str, int] = field(
        default_factory=lambda: {"api-repositories": 1000, "raw": 5000, "anonymous": 60}
    )
    window: float = 3600.0
    retry_after: int | None = None
    near_limit_ratio: float = 0.2  # NearLimit once less than this share of the budget is left


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int | None
    remaining: int | None
    resource: str
    retry_after: int | None = None


class RateLimiter:
    def __init__(self, now=time.time, config: RateLimitConfig | None = None):
        self._now = now
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self.config = config or RateLimitConfig()

    def configure(self, **values) -> RateLimitConfig:
        with self._lock:
            self.config = RateLimitConfig(**{**asdict(self.config), **values})
            return self.config

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def hit(self, credential: str, resource: str) -> RateDecision:
        """Count one request; refused ones are not counted."""
        with self._lock:
            limit = self.config.limits.get(resource)
            if limit is None:
                return RateDecision(True, None, None, resource)
            now = self._now()
            hits = self._hits.setdefault((credential, resource), deque())
            while hits and hits[0] <= now - self.config.window:
                hits.popleft()
            if len(hits) >= limit:
                return RateDecision(False, limit, 0, resource, self.config.retry_after)
            hits.append(now)
            return RateDecision(True, limit, limit - len(hits), resource)

    def is_near(self, decision: RateDecision) -> bool:
        if decision.limit is None or decision.remaining is None:
            return False
        return decision.remaining < decision.limit * self.config.near_limit_ratio


# -- faults ------------------------------------------------------------------------------------

BEFORE = ("429", "500", "502", "503", "slow", "drop")
AFTER = ("truncated", "malformed", "empty_page", "repeat_next")
KINDS = BEFORE + AFTER


@dataclass
class FaultConfig:
    """Rates (0..1) of each fault, drawn from a seeded RNG, plus an optional ``script``: the
    faults of the next eligible requests in order (``None`` for a clean one). Scripted page faults
    wait for the next response they apply to. Off by default."""

    seed: int = 0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    rate_slow: float = 0.0
    rate_drop: float = 0.0
    rate_truncated: float = 0.0
    rate_malformed: float = 0.0
    rate_empty_page: float = 0.0
    rate_repeat_next: float = 0.0
    retry_after: list[int] = field(default_factory=lambda: [0, 1])
    slow_seconds: float = 0.5
    path_pattern: str = r"^/2\.0/"
    script: list[str | None] = field(default_factory=list)


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()
        self.configure()

    def configure(self, **values) -> FaultConfig:
        known = {f.name for f in fields(FaultConfig)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"Unknown fault settings: {', '.join(sorted(unknown))}")
        for kind in values.get("script") or []:
            if kind is not None and kind not in KINDS:
                raise ValueError(f"Unknown fault {kind!r}; known: {', '.join(KINDS)}")
        with self._lock:
            self.config = FaultConfig(**values)
            self._rng = random.Random(self.config.seed)
            self._script = list(self.config.script)
            self.injected = Counter()
            return self.config

    def reset(self) -> None:
        self.configure()

    def _pick(self, kinds: tuple[str, ...], applicable) -> str | None:
        if self._script:
            head = self._script[0]
            if head is None and kinds is BEFORE:
                self._script.pop(0)
                return None
            if head in kinds and applicable(head):
                self._script.pop(0)
                self.injected[head] += 1
                return head
            return None
        roll = self._rng.random()
        total = 0.0
        for kind in kinds:
            total += getattr(self.config, f"rate_{kind}")
            if roll < total:
                if applicable(kind):
                    self.injected[kind] += 1
                    return kind
                return None
        return None

    def before(self) -> str | None:
        """A fault to inject instead of handling the request (or ``slow`` before it)."""
        with self._lock:
            return self._pick(BEFORE, lambda kind: True)

    def after(self, *, has_body: bool, page_next: bool, continuation: bool) -> str | None:
        """A fault to apply to a successful JSON response."""

        def applicable(kind: str) -> bool:
            if kind == "empty_page":
                return page_next
            if kind == "repeat_next":
                return continuation
            return has_body

        with self._lock:
            return self._pick(AFTER, applicable)

    def retry_after(self) -> int:
        with self._lock:
            return self._rng.choice(self.config.retry_after or [0])
