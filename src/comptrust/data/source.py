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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from comptrust.errors import DataError
from comptrust.paths import comptrust_home

HUB_DATASET = "AI-Secure/DecodingTrust"
# Revision of the hub dataset.  This offline machine cannot look up a commit to pin, so the
# default is "main"; ``--hub-revision`` pins one, and every run records the commit that
# "main" resolved to (parsed from the download path), so results stay traceable.
HUB_REVISION = os.environ.get("COMPTRUST_DT_REVISION", "main")


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
            raise DataError(
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
        from comptrust import __version__

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
        try:
            self.path(relpath)
            return True
        except DataError:
            return False

    def path(self, relpath: str) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            local = Path(hf_hub_download(
                self.repo_id, relpath, repo_type="dataset", revision=self.revision,
                cache_dir=str(comptrust_home() / "hub"), etag_timeout=10,
            ))
        except EntryNotFoundError as exc:
            raise DataError(f"{relpath} is not in {self.repo_id}@{self.revision[:10]}",
                            "pass --data-dir with a local copy that has it") from exc
        except Exception as exc:  # network errors come in many types; all mean the same to a user
            raise DataError(
                f"cannot download {relpath} from the Hugging Face hub ({type(exc).__name__})",
                "check the network, or pass --data-dir with a local copy of DecodingTrust's data/ folder",
            ) from exc
        parts = local.parts
        if "snapshots" in parts:
            self.resolved_commit = parts[parts.index("snapshots") + 1]
        return local

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "repo_id": self.repo_id, "revision": self.revision,
                "resolved_commit": self.resolved_commit}


def open_source(data_dir: str | os.PathLike[str] | None, smoke: bool = False,
                hub_revision: str | None = None) -> DataSource:
    """The data source a command line asks for: ``--smoke``, ``--data-dir`` or the hub."""
    if smoke:
        return SmokeSuite()
    if data_dir:
        return LocalFolder(Path(data_dir))
    return HubDataset(revision=hub_revision or HUB_REVISION)


# ---- readers with errors that name the file and line -------------------------------------


def read_jsonl(source: DataSource, relpath: str) -> list[Any]:
    """All records of a JSONL file; a malformed line is a :class:`DataError` naming it."""
    path = source.path(relpath)
    records = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno} is not valid JSON ({exc.msg})",
                                "restore the file from the original data set") from exc
    return records


def read_json(source: DataSource, relpath: str) -> Any:
    path = source.path(relpath)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})",
                        "restore the file from the original data set") from exc


def read_csv(source: DataSource, relpath: str) -> list[dict[str, str]]:
    path = source.path(relpath)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh))
    except (csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not a readable CSV file ({exc})",
                        "restore the file from the original data set") from exc


def read_npy(source: DataSource, relpath: str) -> Any:
    """A numpy array, never unpickled (``allow_pickle=False``): data files are untrusted."""
    import numpy as np

    path = source.path(relpath)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a plain .npy array ({exc})",
                        "restore the file from the original data set") from exc
