"""A GGUF file as a Hugging Face folder, for --backend hf: dequantized by transformers once, cached
under ``$COMPTRUST_HOME/models``, with the GGUF's chat template and (for Gemma) a correct tokenizer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from comptrust.compression.base import MANIFEST_NAME
from comptrust.errors import ModelError
from comptrust.gguf.header import gguf_chat_template, gguf_in
from comptrust.gguf.tokenizer import TOKENIZER_VERSION, gguf_hf_tokenizer
from comptrust.model_files import check_gguf_file, check_model_files, repair_hint
from comptrust.runtime.quiet import quiet_transformers
from comptrust.store.files import building
from comptrust.store.paths import models_dir

GGUF_SOURCE_NAME = "comptrust-source.json"  # in a folder converted from a GGUF: which file it came from


def convert_gguf(gguf: Path, name: str | None = None) -> Path:
    """Dequantize a GGUF file into a normal HF folder under ``$COMPTRUST_HOME/models``.

    The conversion writes into a temporary folder and renames it at the end, so
    an interrupted conversion leaves nothing half-written and simply reruns.
    """
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()).hexdigest()[:12]
    target = models_dir() / f"{name or gguf.stem}-{tag}"
    if (target / "config.json").is_file():
        check_model_files(target, repair_hint(target))
        _keep_chat_template(target, gguf)  # folders converted before the template was carried over
        _repair_gemma_tokenizer(target, gguf)  # folders converted with transformers' wrong Gemma tokenizer
        return target
    check_gguf_file(gguf)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    try:
        # a staging folder beside target (mkdir: the umask's permissions, so a shared COMPTRUST_HOME can
        # read it), published by one rename; a killed conversion's leftovers are removed next time
        with building(target) as tmp:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            tokenizer = _gemma_tokenizer(gguf) or tokenizer  # transformers converts Gemma's vocabulary wrongly
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # The loaded model still carries the GGUF quantizer; save_pretrained would refuse
            # or write a "quantized" config.  The weights are already dequantized floats.
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.is_quantized = False
            # GGUF metadata can name <|im_start|> as EOS; the model config knows the real one.
            eos_id = model.config.eos_token_id
            if isinstance(eos_id, int) and eos_id < len(tokenizer):
                tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos_id)
            tokenizer.pad_token = tokenizer.eos_token
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            _keep_chat_template(tmp, gguf)
            (tmp / GGUF_SOURCE_NAME).write_text(json.dumps({"gguf": str(gguf.resolve()),
                                                            "tokenizer": TOKENIZER_VERSION}))
    except (ValueError, KeyError) as exc:  # an intact file that transformers cannot convert
        raise ModelError(f"transformers cannot convert {gguf} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200].rstrip('.') if str(exc) else ''})",
                         "pass a Hugging Face model folder instead, or a GGUF of an architecture "
                         "transformers supports") from exc
    return target


def _gemma_tokenizer(gguf: Path) -> Any | None:
    """The tokenizer a Gemma GGUF's vocabulary describes (comptrust.gguf.tokenizer says why), None for others.

    Its EOS and padding are set as convert_gguf sets transformers' (the model config's EOS, pad = EOS).
    """
    if gguf.parent.joinpath("tokenizer.json").is_file():
        return None  # a 'compress --method gguf' folder: its own tokenizer files are used
    return gguf_hf_tokenizer(gguf)


def source_record(folder: Path) -> dict[str, Any]:
    """What a folder converted from a GGUF records of its source (``gguf``: the file, ``tokenizer``: the
    rebuild's version); empty for any other folder, or when the record is damaged (it is only a note)."""
    source = folder / GGUF_SOURCE_NAME
    try:
        record = json.loads(source.read_text(encoding="utf-8")) if source.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _repair_gemma_tokenizer(folder: Path, gguf: Path) -> None:
    """Rewrite the tokenizer of a Gemma folder converted before comptrust rebuilt Gemma's tokenizer."""
    source = folder / GGUF_SOURCE_NAME
    record = source_record(folder)
    if record.get("tokenizer") == TOKENIZER_VERSION:
        return
    tokenizer = _gemma_tokenizer(gguf)
    if tokenizer is not None:
        old = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        tokenizer.eos_token, tokenizer.pad_token = old.get("eos_token"), old.get("pad_token")
        tokenizer.save_pretrained(folder)
        record["tokenizer"] = TOKENIZER_VERSION
        source.write_text(json.dumps(record))


def _keep_chat_template(folder: Path, gguf: Path) -> None:
    """Write the GGUF's chat template into a converted folder whose tokenizer has none.

    Loading a GGUF that sits beside tokenizer files (a 'compress --method gguf' folder) takes them
    and drops the GGUF's own template; the prompts need it.
    """
    config = folder / "tokenizer_config.json"
    if (folder / "chat_template.jinja").is_file() or '"chat_template"' in config.read_text(encoding="utf-8"):
        return
    template = gguf_chat_template(gguf)
    if template:
        (folder / "chat_template.jinja").write_text(template, encoding="utf-8")


def gguf_artifact_file(folder: Path) -> Path | None:
    """The .gguf of a folder written by 'comptrust compress --method gguf' (None for any other folder)."""
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file() or (folder / "config.json").is_file():
        return None
    try:
        method = json.loads(manifest.read_text(encoding="utf-8")).get("method")
    except (json.JSONDecodeError, AttributeError):
        return None
    return gguf_in(folder) if method == "gguf" else None


def convert_gguf_artifact(folder: Path) -> Path:
    """A GGUF artifact dequantized for --backend hf, keeping its manifest so reports know what it is."""
    gguf = gguf_artifact_file(folder)
    assert gguf is not None
    target = convert_gguf(gguf)
    if not (target / MANIFEST_NAME).is_file():
        shutil.copy2(folder / MANIFEST_NAME, target / MANIFEST_NAME)
    return target
