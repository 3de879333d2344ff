"""Model resolution: the bundled demo GGUF becomes a reusable safetensors folder; hub ids fail fast offline."""

from __future__ import annotations

import json
import os
import time

import pytest

from comptrust.errors import ModelError
from comptrust.models import DEMO_ALIAS, resolve_model, weights_fingerprint


@pytest.mark.slow
def test_demo_alias_converts_once_and_generates():
    from transformers import AutoTokenizer

    from comptrust.backends.hf import HFBackend
    from comptrust.types import GenParams, GenRow

    ref = resolve_model(DEMO_ALIAS)
    assert (ref.path / "model.safetensors").is_file() and ref.source == "alias"
    config = json.loads((ref.path / "config.json").read_text())
    assert "quantization_config" not in config
    # not private to whoever converted it first (a shared $COMPTRUST_HOME): what the umask allows
    umask = os.umask(0)
    os.umask(umask)
    assert ref.path.stat().st_mode & 0o777 == 0o777 & ~umask
    tok = AutoTokenizer.from_pretrained(ref.path)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == tok.eos_token
    stamp = (ref.path / "model.safetensors").stat().st_mtime_ns
    started = time.perf_counter()
    assert resolve_model(DEMO_ALIAS).path == ref.path  # reused, not converted again
    assert time.perf_counter() - started < 2
    assert (ref.path / "model.safetensors").stat().st_mtime_ns == stamp

    backend = HFBackend.from_path(DEMO_ALIAS, batch_size=2)
    messages = ({"role": "user", "content": "What is the capital of France? Answer in one word."},)
    (out,) = backend.generate([GenRow(messages, GenParams(max_tokens=8), 0, 0)])
    assert "Paris" in out.text
    assert backend.info()["weights_sha256"] == weights_fingerprint(ref.path)


def test_hub_id_offline_is_a_model_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="cannot download org/model"):
        resolve_model("org/model")


def test_fingerprint_changes_with_weights(tiny_llama, tmp_path):
    import shutil

    from conftest import build_tiny_llama

    other = build_tiny_llama(tmp_path / "other", seed=1)
    assert weights_fingerprint(tiny_llama) != weights_fingerprint(other)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama, copy)
    assert weights_fingerprint(copy) == weights_fingerprint(tiny_llama)  # content, not path
