"""The vLLM backend without vLLM (CPU machine): import guard, argument mapping, identical prompt tokens.

Generation through a real vLLM engine needs a CUDA GPU and is not run here (docs/scale.md).
"""

from __future__ import annotations

import importlib.util

import pytest

from comptrust import api
from comptrust.backends.base import row_seed
from comptrust.backends.hf.backend import HFBackend
from comptrust.backends.vllm import VLLMBackend, engine_kwargs, sampling_kwargs
from comptrust.cli import main
from comptrust.errors import BackendError, ConfigError
from comptrust.models import ModelRef
from comptrust.types import GenParams, GenRow

VLLM_ABSENT = importlib.util.find_spec("vllm") is None


@pytest.mark.skipif(not VLLM_ABSENT, reason="vllm is installed here")
def test_missing_vllm_is_a_one_line_error_with_install_hint(tiny_llama, capsys):
    with pytest.raises(BackendError, match=r"needs the vllm package .*make vllm-env.*--backend openai"):
        api.load_model(str(tiny_llama), backend="vllm")
    assert main(["eval", str(tiny_llama), "--backend", "vllm", "--smoke", "--perspectives", "stereotype"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "make vllm-env" in err


def test_sampling_kwargs_one_draw_per_row_with_its_own_seed():
    seed = row_seed(3, "s/1", "abc", 2)
    greedy = GenRow(({"role": "user", "content": "x"},), GenParams(max_tokens=7, temperature=0.0, top_p=0.5), 2, seed)
    assert sampling_kwargs(greedy, [2, 9]) == {
        "n": 1, "max_tokens": 7, "temperature": 0.0, "top_p": 1.0, "seed": seed, "stop_token_ids": [2, 9],
        "ignore_eos": False, "skip_special_tokens": False}
    sampled = GenRow(greedy.messages, GenParams(max_tokens=7, temperature=1.0, top_p=0.9, n=25), 24, seed + 1)
    kw = sampling_kwargs(sampled, [2], ignore_eos=True)
    assert (kw["n"], kw["temperature"], kw["top_p"], kw["seed"]) == (1, 1.0, 0.9, seed + 1)
    assert kw["ignore_eos"] is True and kw["stop_token_ids"] == []


def test_engine_kwargs_map_batch_size_and_reject_bad_memory_fraction():
    kw = engine_kwargs("/m", batch_size=64, max_model_len=4096, tensor_parallel_size=2)
    assert kw["model"] == kw["tokenizer"] == "/m"
    assert (kw["max_num_seqs"], kw["max_model_len"], kw["tensor_parallel_size"]) == (64, 4096, 2)
    assert kw["trust_remote_code"] is False and "max_num_seqs" not in engine_kwargs("/m")
    with pytest.raises(ConfigError, match="gpu_memory_utilization 1.5 is outside"):
        engine_kwargs("/m", gpu_memory_utilization=1.5)


@pytest.mark.parametrize("template", ["model", "llama-2"])
def test_prompt_tokens_and_fingerprint_scheme_match_the_hf_backend(tiny_llama, template):
    hf = HFBackend.from_path(tiny_llama, chat_template=template)
    v = VLLMBackend(llm=None, tokenizer=hf.tokenizer, ref=ModelRef(tiny_llama, "local", "tiny"),
                    chat_template=template, dtype="bfloat16")
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "I agree. Do you?"})
    assert v.encode(messages) == hf._encode(hf.prompt_text(messages))
    assert v.fingerprint == f"vllm-{hf.weights_hash}-{template}-bfloat16"
    assert v.eos_ids == [hf.tokenizer.eos_token_id]


def test_vllm_environment_lists_every_evaluation_dependency_with_our_torch_and_transformers():
    import re
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pins = {re.split(r"[=<>\[ ]", d)[0].lower(): d for d in project["dependencies"]}
    lines = [line.split("#")[0].strip() for line in (root / "requirements/vllm-env.txt").read_text().splitlines()]
    env = {re.split(r"[=<>\[ ]", line)[0].lower(): line for line in lines if line}
    assert set(pins) - {"llmcompressor", "compressed-tensors"} <= set(env)  # compression stays in the main env
    assert env["torch"] == pins["torch"] and env["transformers"] == pins["transformers"]
    assert re.fullmatch(r"vllm==[\d.]+", env["vllm"])
    assert "vllm" not in project["optional-dependencies"]  # an extra pip cannot resolve would be a trap
