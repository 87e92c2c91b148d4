"""Reading Backstage ``catalog-info.yaml`` files: every document with its position."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import yaml

YAML_SUFFIXES = {".yaml", ".yml"}


# What one YAML document may expand to. Aliases share the node they point at, so a few hundred
# bytes of nested aliases ("billion laughs") stand for billions of values once the document is
# validated, stored or serialized; each alias counts as the values it stands for.
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 100_000


class BoundedLoader(yaml.SafeLoader):
    """Safe YAML, bounded, for files Lantern does not control (catalog files from repositories,
    configuration): a document nested deeper than :data:`MAX_YAML_DEPTH`, expanding (through
    aliases) to more than :data:`MAX_YAML_VALUES` values, or holding a recursive alias is a
    ``ComposerError`` with its line, like any other invalid YAML.
    """

    def compose_document(self):
        self._expanded_sizes: dict[int, int] = {}
        self._depth = 0
        return super().compose_document()

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            if id(node) not in self._expanded_sizes:  # the anchor is still being composed
                raise yaml.composer.ComposerError(None, None, "found a recursive alias", mark)
            return node
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {MAX_YAML_DEPTH} levels",
                self.peek_event().start_mark,
            )
        node = super().compose_node(parent, index)
        self._depth -= 1
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._expanded_sizes[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(
                self._expanded_sizes[id(key)] + self._expanded_sizes[id(value)]
                for key, value in node.value
            )
        if size > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"the document holds more than {MAX_YAML_VALUES} values, counting each alias as "
                "the values it repeats",
                node.start_mark,
            )
        self._expanded_sizes[id(node)] = size
        return node


class CatalogLoader(BoundedLoader):
    """Bounded safe YAML without the timestamp resolver: ``2021-03-01`` stays a string, as
    Backstage's YAML 1.2 parser reads it (and as JSON can carry it)."""


CatalogLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class CatalogFileError(ValueError):
    """A file that cannot be read as YAML, with the file and line."""


@dataclass(frozen=True)
class SourceDocument:
    path: str
    index: int  # 1-based position of the document in its file
    line: int
    document: object

    @property
    def label(self) -> str:
        return f"{self.path}: document {self.index} (line {self.line})"


def catalog_files(paths: Iterable[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(
                sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise CatalogFileError(f"{raw}: no such file or directory")
    return files


def read_documents(path: Path) -> Iterator[SourceDocument]:
    """The file's documents, one at a time: the file is read as the parser goes, so a large
    file is never held whole in memory."""
    try:
        stream = path.open(encoding="utf-8")
    except OSError as exc:
        raise CatalogFileError(f"{path}: cannot be read ({exc})") from exc
    with stream:
        try:
            yield from parse_documents(stream, str(path))
        except (OSError, UnicodeDecodeError) as exc:
            raise CatalogFileError(f"{path}: cannot be read ({exc})") from exc


def parse_documents(text: str | TextIO, label: str) -> Iterator[SourceDocument]:
    """The documents of one catalog file's text or open stream (``label`` names it in errors),
    lazily: a caller that stops early does not parse the rest."""
    loader = CatalogLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            document = loader.construct_document(node)
            if document is None:
                continue
            yield SourceDocument(label, index, node.start_mark.line + 1, document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogFileError(f"{label}:{where}: invalid YAML: {problem}") from exc
    finally:
        loader.dispose()
