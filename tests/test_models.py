"""Model resolution: the bundled demo GGUF becomes a reusable safetensors folder; hub ids fail fast offline."""

from __future__ import annotations

import json
import os
import time

import pytest

from comptrust.errors import ModelError
from comptrust.model_files import weights_fingerprint
from comptrust.models import DEMO_ALIAS, resolve_model


@pytest.mark.slow
def test_demo_alias_converts_once_and_generates():
    from transformers import AutoTokenizer

    from comptrust.backends.hf.backend import HFBackend
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


def test_a_ggufs_chat_template_is_read_and_written_into_a_converted_folder_lacking_one(tmp_path):
    """A 'compress --method gguf' folder converted for --backend hf lost the GGUF's chat template (prompts failed)."""
    import numpy as np
    from gguf import GGUFWriter

    from comptrust.gguf.header import gguf_chat_template
    from comptrust.gguf.to_hf import _keep_chat_template

    template = "{% for m in messages %}<|im_start|>{{ m['content'] }}{% endfor %}"
    path = tmp_path / "with.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_chat_template(template)
    writer.add_tensor("w", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    from conftest import write_small_gguf

    bare = write_small_gguf(tmp_path / "bare.gguf")
    assert gguf_chat_template(path) == template
    assert gguf_chat_template(bare) is None

    folder = tmp_path / "converted"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text('{"eos_token": "<|im_end|>"}')
    _keep_chat_template(folder, path)
    assert (folder / "chat_template.jinja").read_text() == template
    (folder / "chat_template.jinja").write_text("mine")
    _keep_chat_template(folder, path)  # a template already there is left alone
    assert (folder / "chat_template.jinja").read_text() == "mine"
    other = tmp_path / "other"
    other.mkdir()
    (other / "tokenizer_config.json").write_text("{}")
    _keep_chat_template(other, bare)  # nothing to carry over: nothing written
    assert not (other / "chat_template.jinja").exists()


def test_a_gguf_conversion_whose_weights_do_not_fit_its_config_points_to_llamacpp(tiny_llama, tmp_path):
    """transformers' GGUF loader rebuilds some architectures (Qwen3's q/k norms) in other shapes than their
    config: converting again cannot help, so the error names the backend that runs the file as it is."""
    import shutil

    from comptrust.errors import DataError
    from comptrust.gguf.to_hf import GGUF_SOURCE_NAME
    from comptrust.models import load_causal_lm

    folder = shutil.copytree(tiny_llama, tmp_path / "converted")
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 96  # the saved MLP weights are 128 wide
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError) as plain:
        load_causal_lm(folder)
    assert "other shapes than its config.json" in plain.value.problem
    assert "llamacpp" not in plain.value.fix  # a folder not converted from a GGUF: the usual repair hint

    (folder / GGUF_SOURCE_NAME).write_text(json.dumps({"gguf": "/models/qwen3-0.6b.Q8_0.gguf", "tokenizer": 1}))
    with pytest.raises(DataError) as converted:
        load_causal_lm(folder)
    assert converted.value.fix == ("transformers' GGUF loader cannot rebuild qwen3-0.6b.Q8_0.gguf for --backend hf "
                                   "(known for Qwen3 and Qwen3-MoE); evaluate the .gguf with --backend llamacpp")
