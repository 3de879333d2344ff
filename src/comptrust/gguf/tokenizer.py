"""A correct Hugging Face tokenizer for Gemma GGUF files, whose transformers conversion is wrong.

Why?  A Gemma GGUF stores a SentencePiece-style vocabulary (``tokenizer.ggml.model = "llama"``)
whose scores are BPE merge ranks (token ``i`` scores ``-i``).  transformers 5.17 turns it into a
*Unigram* model (``GGUFGemmaConverter``), and a folder saved from it reloads as ``GemmaTokenizer``,
a BPE without merges: Gemma 3 270M's "Hello" became five one-letter tokens and "Is the sky blue?"
eleven tokens where llama.cpp (and Google's tokenizer) uses five.  Prompts several times too long,
in tokens the model never saw together, made its texts meaningless and its generation slow.

The fix rebuilds what the vocabulary is: a byte-fallback BPE whose merges follow from the scores
(``transformers.convert_slow_tokenizer.generate_merges``, as for SentencePiece BPE models), spaces
as ``▁`` with no prefix space, ``<bos>`` added in front (``tokenizer.ggml.add_bos_token``), and the
control / user-defined tokens (``<start_of_turn>``, runs of newlines) matched whole first, as
llama.cpp does.  ``tests/test_gemma3.py`` checks it token for token against llama.cpp's own
tokenizer on DecodingTrust prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from comptrust.model_files import GGUF_FIXED
from comptrust.store.files import building
from comptrust.store.paths import models_dir

CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types (gguf.TokenType)


def _field(reader: Any, key: str) -> Any:
    field = reader.fields.get(key)
    return None if field is None or not field.data else field


def _scalar(reader: Any, key: str) -> Any:
    field = _field(reader, key)
    return None if field is None else field.parts[field.data[0]][0]


_STRING, _ARRAY = 8, 9


def header_strings(gguf: Path, keys: set[str]) -> dict[str, str]:
    """String values of ``keys`` from a GGUF's metadata, reading only up to the last of them.

    ``gguf.GGUFReader`` parses every field, the 262,144-entry vocabulary included, which is slow
    (docs/benchmarks.md, "Integrity checks (issue 15)"); the architecture and the tokenizer kind
    come first in the file.
    """
    import struct

    found: dict[str, str] = {}
    with gguf.open("rb") as fh:
        def read(n: int) -> bytes:
            data = fh.read(n)
            if len(data) != n:
                raise EOFError
            return data

        def string() -> bytes:
            return read(struct.unpack("<Q", read(8))[0])

        def skip(kind: int) -> None:
            if kind == _STRING:
                string()
            elif kind == _ARRAY:
                item, count = struct.unpack("<IQ", read(12))
                if item in GGUF_FIXED:
                    fh.seek(GGUF_FIXED[item] * count, 1)
                else:
                    for _ in range(count):
                        skip(item)
            else:
                fh.seek(GGUF_FIXED[kind], 1)

        try:
            if read(4) != b"GGUF":
                return found
            _version, _tensors, entries = struct.unpack("<IQQ", read(20))
            for _ in range(entries):
                key = string().decode("utf-8", "replace")
                kind = struct.unpack("<I", read(4))[0]
                if key in keys and kind == _STRING:
                    found[key] = string().decode("utf-8", "replace")
                    if len(found) == len(keys):
                        break
                else:
                    skip(kind)
        except (EOFError, KeyError, struct.error):  # a damaged file is model_files' to report
            pass
    return found


def needs_rebuild(gguf: Path) -> bool:
    """Whether ``gguf`` is a Gemma file with a SentencePiece-style vocabulary (what transformers converts wrongly)."""
    meta = header_strings(gguf, {"general.architecture", "tokenizer.ggml.model"})
    return meta.get("general.architecture", "").startswith("gemma") and meta.get("tokenizer.ggml.model") == "llama"


def gguf_hf_tokenizer(gguf: Path) -> Any | None:
    """The rebuilt tokenizer of a Gemma GGUF (None for others), built once, kept in ``$COMPTRUST_HOME/models``."""
    import hashlib

    from transformers import AutoTokenizer

    if not needs_rebuild(gguf):
        return None
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{TOKENIZER_VERSION}".encode())
    target = models_dir() / f"{gguf.stem}-tokenizer-{tag.hexdigest()[:12]}"
    if not (target / "tokenizer.json").is_file():
        with building(target) as tmp:
            gemma_tokenizer(gguf).save_pretrained(tmp)
    return AutoTokenizer.from_pretrained(target)


TOKENIZER_VERSION = 1  # bump when gemma_tokenizer changes: cached rebuilds are then made again


def gemma_tokenizer(gguf: Path) -> Any:
    """The ``PreTrainedTokenizerFast`` a Gemma GGUF's vocabulary describes (BPE with byte fallback)."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import generate_merges

    reader = GGUFReader(str(gguf))
    tokens_field = reader.fields["tokenizer.ggml.tokens"]
    tokens = [bytes(tokens_field.parts[i]).decode("utf-8") for i in tokens_field.data]
    scores_field = reader.fields["tokenizer.ggml.scores"]
    scores = [float(scores_field.parts[i][0]) for i in scores_field.data]
    types_field = _field(reader, "tokenizer.ggml.token_type")
    types = [int(types_field.parts[i][0]) for i in types_field.data] if types_field else [1] * len(tokens)
    vocab = {t: i for i, t in enumerate(tokens)}
    special = {i for i, ty in enumerate(types) if ty == CONTROL}
    whole = {i for i, ty in enumerate(types) if ty == USER_DEFINED}
    skip = {tokens[i] for i in special | whole}
    merges = generate_merges(vocab, list(zip(tokens, scores, strict=True)), skip_tokens=skip)

    def token_at(key: str) -> str | None:
        index = _scalar(reader, key)
        return tokens[int(index)] if index is not None and 0 <= int(index) < len(tokens) else None

    unk = token_at("tokenizer.ggml.unknown_token_id")
    bos, eos, pad = (token_at(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "padding"))
    model = BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True, ignore_merges=False)
    tok = Tokenizer(model)
    tok.normalizer = normalizers.Replace(" ", "▁")
    tok.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i in sorted(whole)])
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i in sorted(special)])
    add_bos = _scalar(reader, "tokenizer.ggml.add_bos_token")
    if bos is not None and (add_bos is None or bool(add_bos)):
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token=unk,
                                   pad_token=pad or eos, add_bos_token=add_bos is None or bool(add_bos))
