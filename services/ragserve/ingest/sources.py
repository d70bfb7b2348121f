"""Where a run's files come from: discovery under a local folder or an object store URI, the source each
file is recorded as, and the run's origin (what ``--prune`` may delete)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Generic, TypeVar
from urllib.parse import quote as url_quote

from ragserve.config import IngestConfig
from ragserve.store.schema import API_ORIGIN

T = TypeVar("T")


class IngestError(ValueError):
    """Nothing can be ingested from the given path (missing, empty, no supported files)."""


@dataclass
class Discovered(Generic[T]):
    """What a run found under its root: the files to read, the count left out by extension, and the files
    refused with a reason (too large, a link leaving the root), reported as failed and never pruned."""

    files: list[T]
    skipped: int = 0
    refused: list[tuple[T, str]] = field(default_factory=list)


def discover(root: Path, cfg: IngestConfig) -> Discovered[Path]:
    """Supported files under ``root`` (or ``root`` itself), sorted. A file that resolves outside ``root``
    (a symbolic link to /etc/..., or into another tree) is refused: ingesting a folder never reads what
    lies outside it."""
    if not root.exists():
        raise IngestError(f"path does not exist: {root}")
    if root.is_file():
        return select_files([(root, (), root.name, root.stat().st_size)], cfg)
    real_root = root.resolve()
    found = select_files(
        (
            (p, p.relative_to(root).parts, p.name, p.stat().st_size)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        ),
        cfg,
    )
    outside = [p for p in found.files if not p.resolve().is_relative_to(real_root)]
    found.files = [p for p in found.files if p not in set(outside)]
    found.refused.extend((p, "a link to a file outside the ingested folder") for p in outside)
    return found


def is_object_store(root: str) -> bool:
    """s3://bucket/prefix and the other URIs pyarrow.fs opens (gs://, abfs://, file://): `ingest --ray`
    reads these (ingest/distributed.py); everything else is a local path."""
    return "://" in root


def shown(root: str) -> str:
    """``root`` as messages, logs and traces show it: an object store URI loses its ``user:secret@``."""
    return re.sub(r"(?<=://)[^/@]*@", "", root)


def select_files(
    candidates: Iterable[tuple[T, tuple[str, ...], str, int]], cfg: IngestConfig
) -> Discovered[T]:
    """The files to ingest among (file, the parts of its path under the root, its name, its size in bytes),
    in order: hidden files and folders left out; other extensions counted as skipped; files over
    ingest.max_file_mb refused (a file that grew past the limit keeps its stored chunks)."""
    max_bytes = int(cfg.max_file_mb * 1024 * 1024)
    found: Discovered[T] = Discovered([])
    for item, rel_parts, name, size in candidates:
        if any(part.startswith(".") for part in rel_parts):
            continue  # hidden files and folders (.git, .venv)
        if PurePosixPath(name).suffix.lower() not in cfg.extensions:
            found.skipped += 1
        elif size > max_bytes:
            found.refused.append((item, f"larger than ingest.max_file_mb ({cfg.max_file_mb} MB)"))
        else:
            found.files.append(item)
    return found


def origin_of(root: str | Path, base_url: str | None) -> str:
    """Who owns what a run writes: its base URL, else its root (an absolute local path, or an object store
    URI without credentials). ``--prune`` deletes only sources recorded with the run's own origin."""
    if base_url:
        origin = base_url.rstrip("/") + "/"
    elif is_object_store(str(root)):
        origin = shown(str(root)).rstrip("/")
    else:
        origin = str(Path(root).expanduser().resolve())
    if origin == API_ORIGIN:  # cannot happen for the forms above; kept explicit for the reader
        raise IngestError(f"{origin!r} is reserved for documents written through the API")
    return origin


def source_for(path: Path, root: Path, base_url: str | None) -> str:
    return source_of(path.name if root.is_file() else path.relative_to(root).as_posix(), base_url)


def source_of(rel: str, base_url: str | None) -> str:
    """How a file is recorded: its path relative to the ingested root, or BASE_URL/that path."""
    return f"{base_url.rstrip('/')}/{url_quote(rel)}" if base_url else rel


def discover_files(root: str, cfg: IngestConfig, base_url: str | None) -> Discovered[tuple[str, str]]:
    """(where to read it, source) of each file to ingest under ``root``, in order, with those skipped and
    refused (discover's rules). A URI is listed through pyarrow.fs: credentials and endpoint come
    from the usual variables (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...) or the URI's query
    (?endpoint_override=)."""
    if not is_object_store(root):
        local = Path(root).expanduser().resolve()
        paths = discover(local, cfg)
        named = [(str(p), source_for(p, local, base_url)) for p in paths.files]
        refused = [((str(p), source_for(p, local, base_url)), why) for p, why in paths.refused]
        return Discovered(named, paths.skipped, refused)
    from pyarrow import fs as pafs

    try:  # a bad URI is ValueError (ArrowInvalid), an unreachable or refusing store OSError
        filesystem, base = pafs.FileSystem.from_uri(root)
        base = base.rstrip("/")
        if not base:
            raise IngestError(f"{shown(root)}: name a bucket (and a prefix), e.g. s3://bucket/docs")
        top = filesystem.get_file_info(base)
        if top.type == pafs.FileType.File:  # one object: named by its own name, as a single local file is
            candidates = [((top.path, top.base_name), (), top.base_name, top.size)]
        elif top.type == pafs.FileType.Directory:
            infos = filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
            files = sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path)
            rels = [i.path[len(base) + 1 :] for i in files]
            candidates = [
                ((i.path, r), tuple(r.split("/")), i.base_name, i.size)
                for i, r in zip(files, rels, strict=True)
            ]
        else:
            raise IngestError(f"path does not exist: {shown(root)}")
    except (OSError, ValueError) as err:
        raise IngestError(f"cannot list {shown(root)}: {err}") from None
    found = select_files(candidates, cfg)

    def located(item: tuple[str, str]) -> tuple[str, str]:
        return item[0], source_of(item[1], base_url)

    return Discovered(
        [located(f) for f in found.files], found.skipped, [(located(f), why) for f, why in found.refused]
    )
