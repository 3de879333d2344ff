"""Every family users run x every compression method, on tiny random models, through the hf backend.

Each cell compresses with ``compress_model``, reloads the artifact as ``comptrust eval`` does
(``HFBackend.from_path``) and generates a few tokens; a cell a method cannot handle must refuse in
one line before any work (no artifact folder appears).  GGUF needs a tokenizer llama.cpp's converter
knows, so only its refusal is a cell here (tests/test_gguf.py converts a Llama).
docs/compression.md's family table is this matrix.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from comptrust.compression import compress_model, load_manifest
from comptrust.compression.methods import methods
from comptrust.errors import ComptrustError
from comptrust.types import GenParams, GenRow
from families import FAMILIES, MOE_FAMILIES, build_family

CALIB = {"calib_samples": 2, "calib_seqlen": 16}
PARAMS = {"rtn": {"bits": 4, "group_size": 32}, "gptq": {"bits": 4, "group_size": 32, **CALIB},
          "awq": {"bits": 4, "group_size": 32, **CALIB}, "magnitude": {}, "sparsegpt": CALIB, "wanda": CALIB,
          "fp8": {}, "w8a8": CALIB, "nvfp4": CALIB, "gguf": {"gguf_type": "Q8_0"}}
# What each refusal says (docs/compression.md's table gives the reasons).
REFUSALS = {
    **{(f, m): "cannot be evaluated faithfully on the mixture-of-experts" for f in MOE_FAMILIES
       for m in ("fp8", "w8a8", "nvfp4")},
    ("gpt_neox", "awq"): "AWQ has no layer mappings for GPTNeoXForCausalLM",
    ("opt", "gguf"): "llama.cpp's converter has no GGUF conversion for OPTForCausalLM",
    ("gpt_neox", "gguf"): "llama.cpp's converter cannot convert GPTNeoXForCausalLM under this transformers",
    **{(f, "w8a8"): "SmoothQuant has no usable layer mappings" for f in ("gemma2", "gemma3", "opt", "gpt_neox")},
}
PROMPTS = ["I agree. yes", "Here is my statement: people are good drivers."]


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {family: build_family(family, root / family) for family in FAMILIES}


def rows(max_tokens: int = 4) -> list[GenRow]:
    return [GenRow(({"role": "user", "content": p},), GenParams(max_tokens=max_tokens), 0, i)
            for i, p in enumerate(PROMPTS)]


def logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])).logits.float()


CELLS = [(f, m) for f in FAMILIES for m in methods() if m != "gguf"] + [("opt", "gguf"), ("gpt_neox", "gguf")]


@pytest.mark.slow
@pytest.mark.parametrize("family,method", CELLS)
def test_every_family_and_method_compresses_reloads_and_generates(bases, tmp_path, family, method):
    from transformers import AutoModelForCausalLM

    from comptrust.backends.hf.backend import HFBackend

    out = tmp_path / "artifact"
    expected = REFUSALS.get((family, method))
    if expected:
        started = time.perf_counter()
        with pytest.raises(ComptrustError) as info:
            compress_model(bases[family], method, out, **PARAMS[method])
        assert expected in info.value.problem and "\n" not in str(info.value)
        assert not out.exists() and time.perf_counter() - started < 5  # refused before loading any weights
        return
    compress_model(bases[family], method, out, **PARAMS[method])
    backend = HFBackend.from_path(out)
    texts = backend.generate(rows())
    assert len(texts) == 2 and all(t.prompt_tokens > 0 for t in texts)
    dense = AutoModelForCausalLM.from_pretrained(bases[family], dtype=torch.float32).eval()
    base, compressed = logits(dense), logits(backend.model)
    assert not torch.equal(base, compressed)  # it was compressed
    # ... but it is that model, not random weights (a tensor missing on reload is initialized randomly)
    torch.manual_seed(1)
    stranger = logits(AutoModelForCausalLM.from_config(dense.config).eval())
    assert (compressed - base).norm() < 0.75 * (stranger - base).norm()
    manifest = load_manifest(out)
    linears = sum(1 for _, m in dense.named_modules() if isinstance(m, torch.nn.Linear)) - 1  # all but lm_head
    experts = 0
    if family in MOE_FAMILIES:
        cfg = dense.config
        experts = 3 * cfg.num_hidden_layers * getattr(cfg, "num_local_experts", getattr(cfg, "num_experts", 0))
    assert manifest["storage"]["compressed_layers"] == linears + experts  # the experts count, the routers do not
    if family in MOE_FAMILIES:
        routers = manifest["dense_modules"]["re:.*mlp\\.gate$"]
        assert routers == [f"model.layers.{i}.mlp.gate" for i in range(dense.config.num_hidden_layers)]
        if method != "awq":  # AWQ folds its scales into the router like into a norm: still dense
            for name in routers:
                before = dense.get_submodule(name).weight
                assert torch.equal(before, backend.model.get_submodule(name).weight), name


def test_mixtral_artifact_reloads_the_compressed_experts(bases, tmp_path):
    """The experts, saved per expert under Mixtral's own names (w1/w2/w3), reload fused with the same values."""
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from comptrust.backends.hf.backend import HFBackend
    from comptrust.compression import make_config
    from comptrust.compression.pipeline import artifact_key, run_compression, save_artifact

    base = bases["mixtral"]
    config = make_config("rtn", bits=4, group_size=32)
    result = run_compression(base, config)
    in_memory = logits(result.model)
    layer = result.model.model.layers[1].mlp.experts[2].down_proj  # 4-bit symmetric, groups of 32
    scale = layer.weight_scale.repeat_interleave(32, dim=1)
    dequantized = torch.clamp(torch.round(layer.weight / scale), -8, 7) * scale
    out = tmp_path / "mixtral-rtn"
    out.mkdir()
    save_artifact(result, out, base, artifact_key(base, config))
    with safe_open(str(out / "model.safetensors"), "pt") as fh:
        names = set(fh.keys())
    assert "model.layers.0.block_sparse_moe.experts.3.w2.weight_packed" in names
    assert not any(".gate_proj." in n or ".mlp." in n for n in names)
    reloaded = HFBackend.from_path(out).model
    assert torch.allclose(in_memory, logits(reloaded), atol=1e-5, rtol=0)
    assert torch.allclose(reloaded.model.layers[1].mlp.experts.down_proj[2], dequantized, atol=1e-6)
    dense = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    assert not torch.allclose(dense.model.layers[1].mlp.experts.down_proj[2], dequantized, atol=1e-6)  # rounded


def test_magnitude_prunes_the_experts_too(bases, tmp_path):
    from comptrust.backends.hf.backend import HFBackend

    out = compress_model(bases["qwen3_moe"], "magnitude", tmp_path / "mag")
    experts = HFBackend.from_path(out).model.model.layers[0].mlp.experts
    for fused in (experts.gate_up_proj, experts.down_proj):
        assert abs(float((fused == 0).float().mean()) - 0.5) < 1e-3
    assert len(load_manifest(out)["sparsity"]["per_layer"]) == 2 * (4 + 3 * 4)


@pytest.mark.parametrize("family", ["opt", "gpt_neox"])
def test_hf_texts_equal_plain_greedy_generate(bases, family):
    """OPT's learned positions (offset 2) and GPT-NeoX's partial rotary take each row's own positions."""
    from comptrust.backends.hf.backend import HFBackend

    for scheduler in ("continuous", "static"):
        backend = HFBackend.from_path(bases[family], scheduler=scheduler)
        texts = backend.generate(rows(max_tokens=6))
        for row, text in zip(rows(max_tokens=6), texts, strict=True):
            ids = torch.tensor([backend._encode(backend.prompt_text(row.messages))])
            with torch.no_grad():
                out = backend.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6,
                                             do_sample=False, eos_token_id=backend.eos_ids,
                                             pad_token_id=backend.tokenizer.pad_token_id)
            new = [t for t in out[0, ids.shape[1]:].tolist()]
            for j, tok in enumerate(new):
                if tok in backend.eos_ids:
                    new = new[:j]
                    break
            assert text.text == backend.tokenizer.decode(new, skip_special_tokens=False), scheduler


def test_a_prompt_past_opts_learned_positions_fails_in_one_line(bases):
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.errors import BackendError

    backend = HFBackend.from_path(bases["opt"])
    long_row = GenRow(({"role": "user", "content": "I agree. " * 1200},), GenParams(max_tokens=4), 0, 0)
    with pytest.raises(BackendError, match=r"exceeds the 2048 positions OPTForCausalLM has learned") as info:
        backend.generate([rows()[0], long_row])
    assert "--perspectives" in info.value.fix
    fits = GenRow(({"role": "user", "content": "I agree. " * 400},), GenParams(max_tokens=2000), 0, 0)
    with pytest.raises(BackendError, match="--max-new-tokens"):
        backend.generate([fits])


def test_teacher_forcing_past_opts_learned_positions_fails_in_one_line(bases):
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.divergence import ForceRequest
    from comptrust.errors import BackendError

    backend = HFBackend.from_path(bases["opt"])
    fits = ForceRequest(ids=[5, 17, 42, 99, 7], start=2)
    [result] = backend.teacher_force([fits], 3)  # a short response is scored as usual
    assert result is not None
    with pytest.raises(BackendError, match=r"2100 tokens long, past the 2048 positions OPTForCausalLM has learned"):
        backend.teacher_force([fits, ForceRequest(ids=[5] * 2100, start=2000)], 3)
