"""Geometry of the server-rendered charts (the templates draw it as SVG): a scorecard's level
distribution as one stacked bar, and a weekly trend as points joined by lines, broken where a
week has no value. Computed here so a test can check the numbers the browser draws, and so
the pages need no JavaScript library."""

from dataclasses import dataclass
from datetime import date

NO_LEVEL = "No level"
# From the highest level down (the top level is always green); "No level" is grey. Readable
# without colour too: each segment carries its label and count in its title and the legend.
LEVEL_COLOURS = ("#13795b", "#2450c8", "#7fa7d8", "#e0a526", "#c8553d", "#5b3a9b")
NO_LEVEL_COLOUR = "#b7bdc9"


@dataclass(frozen=True)
class BarSegment:
    label: str
    count: int
    x: float  # percent of the bar's width
    width: float
    colour: str


@dataclass(frozen=True)
class LevelBar:
    total: int
    segments: list[BarSegment]

    @property
    def summary(self) -> str:
        """The bar in words (its accessible name)."""
        parts = [f"{segment.label} {segment.count}" for segment in self.segments]
        return f"{', '.join(parts)} of {self.total} entities" if self.total else "No entities"


def levels_ascending(levels: list[dict]) -> list[dict]:
    return sorted(levels, key=lambda level: level["threshold"])


def level_bar(*, distribution: dict[str, int], levels: list[dict]) -> LevelBar:
    """Segments from "No level" up to the highest level, each as wide as its share; levels
    with no entity keep their place in the legend with a width of 0. A level no longer among
    the scorecard's (results older than a change) is shown after the others, by name."""
    ordered = [(NO_LEVEL, distribution.get("", 0), NO_LEVEL_COLOUR)]
    known = set()
    ascending = levels_ascending(levels)
    for index, level in enumerate(ascending):
        known.add(level["name"])
        colour = LEVEL_COLOURS[(len(ascending) - 1 - index) % len(LEVEL_COLOURS)]
        ordered.append((level["name"], distribution.get(level["name"], 0), colour))
    for name in sorted(set(distribution) - known - {""}):
        ordered.append((name, distribution[name], NO_LEVEL_COLOUR))
    total = sum(count for _, count, _ in ordered)
    segments, x = [], 0.0
    for label, count, colour in ordered:
        width = round(100 * count / total, 2) if total else 0.0
        segments.append(BarSegment(label, count, round(x, 2), width, colour))
        x += width
    return LevelBar(total, segments)


@dataclass(frozen=True)
class TrendPoint:
    week: date
    value: float | None
    n: int
    x: float = 0.0
    y: float | None = None


@dataclass(frozen=True)
class Trend:
    width: int
    height: int
    top: int
    bottom: int
    left: int
    maximum: float
    points: list[TrendPoint]
    lines: list[str]  # SVG path data, one per run of consecutive weeks with a value

    @property
    def has_values(self) -> bool:
        return any(point.value is not None for point in self.points)

    @property
    def ticks(self) -> list[tuple[float, float]]:
        """(value, y) of the axis lines: 0, half the maximum, the maximum."""
        middle = (self.top + self.bottom) / 2
        return [(0.0, self.bottom), (self.maximum / 2, middle), (self.maximum, self.top)]


def _nice_ceiling(value: float) -> float:
    """A round axis maximum at or above the value: 1, 2, 5 × a power of ten."""
    if value <= 0:
        return 1.0
    scale = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    for step in (1, 2, 5, 10):
        if value <= step * scale:
            return float(step * scale)
    return float(10 * scale)


def weekly_trend(
    points: list[TrendPoint],
    *,
    width: int = 600,
    height: int = 180,
    left: int = 40,
    right: int = 24,
) -> Trend:
    """Places each week left to right and its value on a 0..maximum axis; a week without a
    value gets no point, and the line stops there (a gap, never a 0)."""
    top, bottom = 12, height - 28
    values = [p.value for p in points if p.value is not None]
    maximum = _nice_ceiling(max(values)) if values else 1.0
    step = (width - left - right) / max(len(points) - 1, 1)
    placed, lines, run = [], [], []
    for index, point in enumerate(points):
        x = round(left + index * step, 1)
        y = None
        if point.value is not None:
            y = round(bottom - (bottom - top) * point.value / maximum, 1)
            run.append(f"{x},{y}")
        elif run:
            lines.append(run)
            run = []
        placed.append(TrendPoint(point.week, point.value, point.n, x, y))
    if run:
        lines.append(run)
    paths = ["M" + " L".join(segment) for segment in lines if len(segment) > 1]
    return Trend(width, height, top, bottom, left, maximum, placed, paths)
