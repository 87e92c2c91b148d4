"""Reading Backstage ``catalog-info.yaml`` files: every document with its position."""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

YAML_SUFFIXES = {".yaml", ".yml"}


class CatalogLoader(yaml.SafeLoader):
    """Safe YAML without the timestamp resolver: ``2021-03-01`` stays a string, as Backstage's
    YAML 1.2 parser reads it (and as JSON can carry it)."""


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
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogFileError(f"{path}: cannot be read ({exc})") from exc
    loader = CatalogLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            document = loader.construct_document(node)
            if document is None:
                continue
            yield SourceDocument(str(path), index, node.start_mark.line + 1, document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise CatalogFileError(f"{path}:{where}: invalid YAML: {problem}") from exc
    finally:
        loader.dispose()
