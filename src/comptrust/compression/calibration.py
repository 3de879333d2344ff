"""Calibration text -> seeded, fixed-length token samples, described for the manifest.

Sources: ``builtin`` (the English reference pages that ship with Python itself
in ``pydoc_data``, so calibration never needs a network), ``file`` (a local
UTF-8 text file split at blank lines, or JSONL with a ``text`` field), and
``c4`` / ``wikitext`` from the Hugging Face hub.  As in the GPTQ reference
code, each sample is a random window of ``seqlen`` tokens of the concatenated
text; with ``chat_template`` each window is rendered as a user/assistant turn
through the model's own chat template (how the paper calibrated chat models).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comptrust.compression.config import CalibConfig
from comptrust.errors import ConfigError, DataError

HELDOUT_EVERY = 10  # builtin: every 10th pydoc topic is held out for perplexity, never calibrated on
HUB_DOCS = 5000  # documents read from a hub dataset before sampling
HUB_SOURCES = {
    "c4": {"path": "allenai/c4", "data_files": {"train": "en/c4-train.00000-of-01024.json.gz"},
           "split": "train"},
    "wikitext": {"path": "Salesforce/wikitext", "name": "wikitext-2-raw-v1", "split": "train"},
}


@dataclass(frozen=True)
class Calibration:
    """Token samples plus the description the manifest records."""

    input_ids: list[list[int]]
    description: dict[str, Any]

    def dataloader(self) -> Any:
        """A batch-size-1 DataLoader of ``{input_ids, attention_mask}`` as llm-compressor expects."""
        import torch
        from torch.utils.data import DataLoader

        rows = [{"input_ids": torch.tensor(ids, dtype=torch.long),
                 "attention_mask": torch.ones(len(ids), dtype=torch.long)} for ids in self.input_ids]
        return DataLoader(rows, batch_size=1, shuffle=False)


def builtin_documents(split: str = "calibration") -> list[str]:
    """Python's own help pages (``pydoc_data.topics``), split into calibration / held-out."""
    from pydoc_data.topics import topics

    # Several topic keys share one page: split distinct texts, or held-out text would leak.
    texts = sorted({text.strip() for text in topics.values() if text.strip()})
    if split == "heldout":
        return texts[::HELDOUT_EVERY]
    if split == "calibration":
        return [t for i, t in enumerate(texts) if i % HELDOUT_EVERY]
    raise ValueError(split)


def source_fingerprint(calib: CalibConfig) -> str:
    """Hash of the text a source provides, so an edited file or another Python's help
    pages give a new artifact key.  Hub sources are named, not hashed (reading them is slow)."""
    if calib.source == "builtin":
        payload = "\0".join(builtin_documents("calibration")).encode("utf-8")
    elif calib.source == "file":
        assert calib.file is not None
        path = Path(calib.file)
        payload = path.read_bytes() if path.is_file() else b""
    else:
        payload = json.dumps(HUB_SOURCES[calib.source], sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def file_documents(path: Path) -> list[str]:
    """Paragraphs of a text file, or the ``text`` field of each JSONL line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read calibration file {path} ({type(exc).__name__})",
                        "pass a readable UTF-8 text file") from None
    if path.suffix == ".jsonl":
        docs = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path}:{lineno} is not valid JSON", "write one JSON object per line") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise DataError(f"{path}:{lineno} has no string 'text' field", 'write {"text": "..."} lines')
            docs.append(record["text"])
    else:
        docs = [p.strip() for p in text.split("\n\n")]
    docs = [d for d in docs if d]
    if not docs:
        raise DataError(f"calibration file {path} has no text", "pass a file with some English text")
    return docs


def hub_documents(source: str) -> list[str]:
    """The first documents of C4 or WikiText (needs network or a warm datasets cache)."""
    spec = dict(HUB_SOURCES[source])
    try:
        from datasets import load_dataset

        data = load_dataset(**spec, streaming=True)
        docs = []
        for row in data:
            if row["text"].strip():
                docs.append(row["text"].strip())
            if len(docs) >= HUB_DOCS:
                break
    except Exception as exc:  # offline, hub errors: the user's choice is the same either way
        raise DataError(f"cannot load calibration data {spec['path']} from the hub ({type(exc).__name__})",
                        "check the network, or use --calib-source builtin or --calib-file PATH") from None
    return docs


def documents(calib: CalibConfig) -> list[str]:
    if calib.source == "builtin":
        return builtin_documents("calibration")
    if calib.source == "file":
        assert calib.file is not None
        return file_documents(Path(calib.file))
    return hub_documents(calib.source)


def build_calibration(tokenizer: Any, calib: CalibConfig, seed: int) -> Calibration:
    """Draw ``calib.samples`` windows of ``calib.seqlen`` tokens with ``random.Random(seed)``."""
    docs = documents(calib)
    rng = random.Random(seed)
    if calib.chat_template:
        samples = _chat_samples(tokenizer, docs, calib, rng)
    else:
        stream = tokenizer("\n\n".join(docs), add_special_tokens=False)["input_ids"]
        if len(stream) < calib.seqlen:
            raise DataError(f"calibration text has only {len(stream)} tokens, fewer than one sample "
                            f"of {calib.seqlen}", "pass a longer text or a smaller --calib-seqlen")
        starts = [rng.randrange(len(stream) - calib.seqlen + 1) for _ in range(calib.samples)]
        samples = [list(stream[s:s + calib.seqlen]) for s in starts]
    digest = hashlib.sha256(json.dumps(samples, separators=(",", ":")).encode()).hexdigest()
    description = {"source": calib.source, "file": calib.file, "source_sha256": source_fingerprint(calib),
                   "samples": calib.samples,
                   "seqlen": calib.seqlen, "chat_template": calib.chat_template, "seed": seed,
                   "tokens": sum(len(s) for s in samples), "token_ids_sha256": digest}
    if calib.source in HUB_SOURCES:
        description["dataset"] = HUB_SOURCES[calib.source]["path"]
    return Calibration(samples, {k: v for k, v in description.items() if v is not None})


def _chat_samples(tokenizer: Any, docs: list[str], calib: CalibConfig, rng: random.Random) -> list[list[int]]:
    """Random text windows rendered as one user turn and one assistant turn."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("--calib-chat-template: this model's tokenizer has no chat template",
                          "drop --calib-chat-template")
    text = "\n\n".join(docs)
    width = calib.seqlen * 6  # characters: comfortably more than seqlen tokens of English
    samples = []
    for _ in range(calib.samples):
        start = rng.randrange(max(1, len(text) - width))
        window = text[start:start + width]
        cut = window.find(" ", len(window) // 3)
        cut = cut if cut > 0 else len(window) // 2
        messages = [{"role": "user", "content": window[:cut].strip()},
                    {"role": "assistant", "content": window[cut:].strip()}]
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
        ids = tokenizer(rendered, add_special_tokens=False)["input_ids"][:calib.seqlen]
        samples.append(list(ids))
    return samples
