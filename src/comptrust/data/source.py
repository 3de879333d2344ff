"""Where DecodingTrust files come from: a local folder, the pinned hub dataset, or
the smoke suite shipped inside the package.

Every source exposes the same relative layout as the benchmark's ``data/``
folder (``stereotype/dataset/stereotype_bias_data.jsonl`` ...), so a
perspective names a file once and works with all three.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from comptrust import __version__
from comptrust.data.records import located
from comptrust.errors import DataError
from comptrust.store.paths import comptrust_home

HUB_DATASET = "AI-Secure/DecodingTrust"
# The pinned commit of the hub dataset: the newest "main" visible in its public history
# ("Fix typo in stereotype", 2024-02-18; it changed only stereotype_bias_data.jsonl, which
# therefore differs from the GitHub copy).  ``--hub-revision`` or $COMPTRUST_DT_REVISION moves
# the pin (docs/reproducibility.md); every run records the pin and the commit it resolved to.
PINNED_HUB_REVISION = "e09291321093000acaa15a2a5517dc896a179c92"
HUB_REVISION = os.environ.get("COMPTRUST_DT_REVISION", PINNED_HUB_REVISION)


class EntryMissing(DataError):
    """The data source definitely lacks a file (as opposed to: it could not be reached)."""


class DataSource(Protocol):
    """A place holding files laid out like DecodingTrust's ``data/`` folder."""

    kind: str

    def path(self, relpath: str) -> Path:
        """Local path of ``relpath``; raises :class:`DataError` naming the fix if absent."""

    def exists(self, relpath: str) -> bool: ...

    def describe(self) -> dict[str, Any]:
        """What a run records about its data (kind, location, revision)."""


@dataclass
class LocalFolder:
    """A folder laid out like the benchmark's ``data/`` (``--data-dir``)."""

    root: Path
    kind: str = "local"

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser()
        if not self.root.is_dir():
            raise DataError(
                f"data folder {self.root} does not exist",
                "pass --data-dir pointing at a copy of DecodingTrust's data/ folder, or use --smoke",
            )

    def exists(self, relpath: str) -> bool:
        return (self.root / relpath).is_file()

    def path(self, relpath: str) -> Path:
        p = self.root / relpath
        if not p.is_file():
            raise EntryMissing(
                f"data file {relpath} is missing from {self.root}",
                "copy it from DecodingTrust's data/ folder (or the hub dataset) into that folder, "
                "or run without the scenario that needs it",
            )
        return p

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root.resolve()), "revision": _local_revision(self.root)}


def _local_revision(root: Path) -> str | None:
    """A local copy's revision if it states one (MANIFEST.md names the upstream commit)."""
    manifest = root / "MANIFEST.md"
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8", errors="replace").splitlines():
            if "commit `" in line:
                return line.split("commit `", 1)[1].split("`", 1)[0]
    return None


class SmokeSuite(LocalFolder):
    """comptrust's own tiny smoke suite (not the benchmark), shipped in the package."""

    def __init__(self) -> None:
        root = Path(str(resources.files("comptrust.data") / "smoke"))
        super().__init__(root=root, kind="smoke")

    def describe(self) -> dict[str, Any]:
        return {"kind": "smoke", "root": str(self.root), "revision": f"comptrust-{__version__}",
                "note": "comptrust smoke suite: tiny hand-written sets, not the DecodingTrust benchmark"}


@dataclass
class HubDataset:
    """The Hugging Face dataset ``AI-Secure/DecodingTrust`` at a pinned revision.

    Files are downloaded one at a time into ``$COMPTRUST_HOME/hub`` on first use.
    Offline (or with ``HF_HUB_OFFLINE=1``) a missing file fails fast with a fix.
    """

    repo_id: str = HUB_DATASET
    revision: str = HUB_REVISION
    kind: str = "hub"
    resolved_commit: str | None = None

    def exists(self, relpath: str) -> bool:
        """Whether the pinned revision has ``relpath``: False only when the hub (or the cache's record of
        an earlier answer) says it is absent; a network failure is a :class:`DataError`, not a False."""
        try:
            self.path(relpath)
            return True
        except EntryMissing:
            return False

    def path(self, relpath: str) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import RemoteEntryNotFoundError, RevisionNotFoundError

        cache_dir = str(comptrust_home() / "hub")
        try:
            local = Path(hf_hub_download(
                self.repo_id, relpath, repo_type="dataset", revision=self.revision,
                cache_dir=cache_dir, etag_timeout=10,
            ))
        except RemoteEntryNotFoundError as exc:
            raise EntryMissing(f"{relpath} is not in {self.repo_id}@{self.revision[:10]}",
                               "pass --data-dir with a local copy that has it") from exc
        except RevisionNotFoundError as exc:
            raise DataError(f"revision {self.revision} does not exist in the hub dataset {self.repo_id}",
                            "pass an existing commit or branch with --hub-revision (or unset "
                            "COMPTRUST_DT_REVISION for the pinned default)") from exc
        except Exception as exc:  # offline, network errors: all mean the same to a user
            if self._known_absent(relpath, cache_dir):
                raise EntryMissing(f"{relpath} is not in {self.repo_id}@{self.revision[:10]}",
                                   "pass --data-dir with a local copy that has it") from exc
            raise DataError(
                f"cannot download {relpath} from the Hugging Face hub ({type(exc).__name__})",
                "check the network, or pass --data-dir with a local copy of DecodingTrust's data/ folder",
            ) from exc
        parts = local.parts
        if "snapshots" in parts:
            self.resolved_commit = parts[parts.index("snapshots") + 1]
        return local

    def _known_absent(self, relpath: str, cache_dir: str) -> bool:
        """The cache remembers the hub said 404 for this file at this revision (works offline)."""
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.file_download import _CACHED_NO_EXIST

        try:
            found = try_to_load_from_cache(self.repo_id, relpath, cache_dir=cache_dir, revision=self.revision,
                                           repo_type="dataset")
        except Exception:  # a malformed cache is no proof of absence
            return False
        return found is _CACHED_NO_EXIST

    def describe(self) -> dict[str, Any]:
        """The revision asked for (``default_pin``: whether it is comptrust's pin) and the commit the downloads resolved
        to (None before any download; the runner records it again after each perspective)."""
        return {"kind": self.kind, "repo_id": self.repo_id, "revision": self.revision,
                "default_pin": self.revision == PINNED_HUB_REVISION, "resolved_commit": self.resolved_commit}


def open_source(data_dir: str | os.PathLike[str] | None, smoke: bool = False,
                hub_revision: str | None = None) -> DataSource:
    """The data source a command line asks for: ``--smoke``, ``--data-dir`` or the hub."""
    if smoke:
        return SmokeSuite()
    if data_dir:
        return LocalFolder(Path(data_dir))
    return HubDataset(revision=hub_revision or HUB_REVISION)


# ---- readers with errors that name the file and line -------------------------------------


RESTORE = "restore the file from the original data set"


def read_jsonl(source: DataSource, relpath: str, check: Callable[[Any], object] | None = None,
               fix: str = RESTORE) -> list[Any]:
    """All records of a JSONL file; a malformed line is a :class:`DataError` naming it.

    ``check`` validates each record (see :mod:`comptrust.data.records`); a record it
    rejects is a :class:`DataError` naming ``file:line`` and the field.  Every line is
    parsed before any is checked, so broken JSON is reported first.
    """
    path = source.path(relpath)
    parsed: list[tuple[int, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                parsed.append((lineno, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno} is not valid JSON ({exc.msg})", RESTORE) from exc
    if check is not None:
        for lineno, record in parsed:
            with located(f"{path}:{lineno}", fix):
                check(record)
    return [record for _lineno, record in parsed]


def read_json(source: DataSource, relpath: str) -> Any:
    path = source.path(relpath)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})", RESTORE) from exc


def read_csv(source: DataSource, relpath: str) -> list[dict[str, str]]:
    path = source.path(relpath)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV file ({exc})", RESTORE) from exc


def read_npy(source: DataSource, relpath: str) -> Any:
    """A numpy array, never unpickled (``allow_pickle=False``): data files are untrusted."""
    import numpy as np

    path = source.path(relpath)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a plain .npy array ({exc})", RESTORE) from exc
