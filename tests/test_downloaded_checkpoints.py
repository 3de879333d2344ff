"""Downloaded quantized checkpoints are compressed variants: read, loaded on a CPU, paired with their base.

Each format is made here the way its own tool packs it (comptrust's artifacts with their manifests
removed stand for compressed-tensors releases; GPTQ and AWQ are packed by hand, bit by bit, with
loops independent of comptrust's vectorized unpacking; bitsandbytes quantizes with its own CPU code).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from comptrust.errors import ConfigError, ModelError
from conftest import build_tiny_llama

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
GROUP = 32


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("downloads") / "tiny-base")


def without_manifest(artifact: Path, dest: Path, keep_recipe: bool = True) -> Path:
    """A comptrust artifact as a hub download would be: no comptrust.json (and maybe no recipe)."""
    shutil.copytree(artifact, dest)
    (dest / "comptrust.json").unlink()
    if not keep_recipe:
        (dest / "recipe.yaml").unlink()
    return dest


def pack_stream(values: list[int], bits: int) -> list[int]:
    """Values as one little-endian bit stream of 32-bit words (how GPTQ packs 2/3/4/8-bit integers)."""
    words = [0] * ((len(values) * bits + 31) // 32)
    for k, value in enumerate(values):
        pos = k * bits
        words[pos // 32] |= (value << (pos % 32)) & 0xFFFFFFFF
        if pos % 32 + bits > 32:
            words[pos // 32 + 1] |= value >> (32 - pos % 32)
    return [w - (1 << 32) if w >= 1 << 31 else w for w in words]  # int32 two's complement


def minmax_quantize(weight, bits: int, g_idx):
    """Asymmetric round-to-nearest per (group, output): integers [in, out], zeros and fp16 scales [groups, out]."""
    import torch

    groups = int(g_idx.max()) + 1
    w = weight.t()  # [in, out]
    scales = torch.empty(groups, w.shape[1])
    zeros = torch.empty(groups, w.shape[1], dtype=torch.int64)
    for g in range(groups):
        rows = w[g_idx == g]
        lo, hi = rows.min(0).values.clamp(max=0), rows.max(0).values.clamp(min=0)
        scales[g] = ((hi - lo) / (2**bits - 1)).clamp(min=1e-6)
        zeros[g] = torch.round(-lo / scales[g]).to(torch.int64)
    scales = scales.to(torch.float16)
    q = torch.clamp(torch.round(w / scales[g_idx].float()) + zeros[g_idx], 0, 2**bits - 1).to(torch.int64)
    return q, zeros, scales


AWQ_NIBBLE_COLUMNS = (0, 2, 4, 6, 1, 3, 5, 7)  # nibble i of a word holds column 8c + this


def awq_pack(matrix):
    """AutoAWQ's gemm packing along the output dimension, eight 4-bit columns per word, interleaved."""
    import torch

    rows = []
    for row in matrix.tolist():
        rows.append(pack_stream([row[c + AWQ_NIBBLE_COLUMNS[i]] for c in range(0, len(row), 8) for i in range(8)], 4))
    return torch.tensor(rows, dtype=torch.int32)


def write_packed(base: Path, dest: Path, method: str, bits: int) -> dict[str, object]:
    """A GPTQ (act-order, v1 zeros) or AWQ gemm checkpoint of ``base``; returns the expected float16 weights."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(base / "model.safetensors"))
    out, expected = {}, {}
    gen = torch.Generator().manual_seed(0)
    for name, tensor in state.items():
        prefix = name.removesuffix(".weight")
        if not (name.endswith(".weight") and prefix.rsplit(".", 1)[-1] in LINEARS):
            out[name] = tensor
            continue
        in_features = tensor.shape[1]
        if method == "gptq":  # act-order: input rows assigned to groups in a shuffled order
            g_idx = (torch.randperm(in_features, generator=gen) // GROUP).to(torch.int64)
        else:
            g_idx = torch.arange(in_features) // GROUP
        q, zeros, scales = minmax_quantize(tensor, bits, g_idx)
        expected[name] = ((q - zeros[g_idx]).float() * scales[g_idx].float()).t().to(torch.float16)
        if method == "gptq":
            cols = [pack_stream(q[:, o].tolist(), bits) for o in range(q.shape[1])]
            out[f"{prefix}.qweight"] = torch.tensor(cols, dtype=torch.int32).t().contiguous()
            stored = (zeros - 1) & (2**bits - 1)  # v1 format stores zero - 1
            out[f"{prefix}.qzeros"] = torch.tensor([pack_stream(r.tolist(), bits) for r in stored], dtype=torch.int32)
            out[f"{prefix}.g_idx"] = g_idx.to(torch.int32)
        else:
            out[f"{prefix}.qweight"] = awq_pack(q)
            out[f"{prefix}.qzeros"] = awq_pack(zeros)
        out[f"{prefix}.scales"] = scales
    dest.mkdir(parents=True)
    save_file(out, str(dest / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((base / "config.json").read_text())
    if method == "gptq":
        config["quantization_config"] = {"quant_method": "gptq", "bits": bits, "group_size": GROUP, "desc_act": True,
                                         "sym": False, "checkpoint_format": "gptq"}
    else:
        config["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": GROUP, "zero_point": True,
                                         "version": "gemm"}
    (dest / "config.json").write_text(json.dumps(config))
    for path in base.iterdir():
        if path.name not in ("config.json", "model.safetensors"):
            shutil.copy2(path, dest / path.name)
    return expected


@pytest.mark.parametrize(("method", "bits"), [("gptq", 4), ("gptq", 3), ("awq", 4)])
def test_packed_gptq_and_awq_checkpoints_are_dequantized_to_their_own_integers(base, tmp_path, method, bits):
    from safetensors.torch import load_file

    from comptrust.models import resolve_model

    folder = tmp_path / f"someone-{method}-{bits}bit"
    expected = write_packed(base, folder, method, bits)
    ref = resolve_model(str(folder))
    assert ref.path != folder and ref.origin == folder.resolve()
    weights = load_file(str(ref.path / "model.safetensors"))
    for name, want in expected.items():
        assert weights[name].dtype == want.dtype and bool((weights[name] == want).all()), name
    assert not any(k.endswith((".qweight", ".qzeros", ".scales", ".g_idx")) for k in weights)
    assert "quantization_config" not in json.loads((ref.path / "config.json").read_text())
    record = ref.manifest()
    assert record["produced_by"] == "third party" and record["method"] == method
    assert record["params"]["bits"] == bits and record["params"]["group_size"] == GROUP
    assert "dequantized to float16 by comptrust" in record["runtime"]
    assert resolve_model(str(folder)).path == ref.path  # converted once, then reused


@pytest.mark.parametrize(("method", "bits"), [("gptq", 4), ("gptq", 3), ("gptq", 2), ("awq", 4)])
def test_dequantizing_a_few_columns_at_a_time_gives_the_same_integers(base, tmp_path, monkeypatch, method, bits):
    from safetensors.torch import load_file

    from comptrust.compression import dequantize
    from comptrust.models import resolve_model

    expected = write_packed(base, tmp_path / f"someone-{method}-{bits}bit", method, bits)
    # 96 columns of the 64-wide inputs at a time (gate/up's 128 outputs: 96 + 32), 32 of down_proj's 128
    monkeypatch.setattr(dequantize, "BLOCK_ELEMENTS", 64 * 96)
    weights = load_file(str(resolve_model(str(tmp_path / f"someone-{method}-{bits}bit")).path / "model.safetensors"))
    for name, want in expected.items():
        assert weights[name].dtype == want.dtype and bool((weights[name] == want).all()), name


def split_in_two(single: Path, dest: Path, straddling: str) -> None:
    """``single`` as a hub release cut in two shards with an index; ``straddling``'s qweight in the first
    shard, its qzeros/scales/g_idx in the second (a layer across the cut)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(single, dest)
    (dest / "model.safetensors").unlink()
    state = load_file(str(single / "model.safetensors"))
    names = sorted(state)
    first = set(names[: len(names) // 2]) - {f"{straddling}.{k}" for k in ("qzeros", "scales", "g_idx")}
    first.add(f"{straddling}.qweight")
    files = {"model-00001-of-00002.safetensors": sorted(first),
             "model-00002-of-00002.safetensors": sorted(set(names) - first)}
    for file, keys in files.items():
        save_file({k: state[k] for k in keys}, str(dest / file), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
             "weight_map": {k: file for file, keys in files.items() for k in keys}}
    (dest / "model.safetensors.index.json").write_text(json.dumps(index))


def test_a_sharded_gptq_download_is_converted_into_bounded_indexed_shards(base, tmp_path, monkeypatch):
    import re

    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from comptrust.compression import dequantize
    from comptrust.models import resolve_model

    single = tmp_path / "someone-gptq-single"
    expected = write_packed(base, single, "gptq", 4)
    straddling = "model.layers.0.mlp.down_proj"
    split_in_two(single, tmp_path / "someone-gptq-sharded", straddling)
    with safe_open(str(tmp_path / "someone-gptq-sharded" / "model-00001-of-00002.safetensors"), "pt") as first:
        assert f"{straddling}.qweight" in first.keys() and f"{straddling}.scales" not in first.keys()
    reference = load_file(str(resolve_model(str(single)).path / "model.safetensors"))  # one shard, as before

    limit = 40_000  # bytes: the tiny model's 2 layers of float16 Linears (~68 kB each) span several shards
    monkeypatch.setattr(dequantize, "MAX_SHARD_BYTES", limit)
    out = resolve_model(str(tmp_path / "someone-gptq-sharded")).path
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    assert len(shards) >= 3 and not (out / "model.safetensors").exists()
    assert all(re.fullmatch(rf"model-{i + 1:05d}-of-{len(shards):05d}\.safetensors", s) for i, s in enumerate(shards))
    assert set(index["weight_map"]) == set(reference) and set(index["weight_map"].values()) == set(shards)
    total = 0
    for shard in shards:
        tensors = load_file(str(out / shard))
        assert {k for k, v in index["weight_map"].items() if v == shard} == set(tensors)
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        assert size <= limit or len(tensors) == 1, (shard, size)  # only a tensor over the limit stands alone
        total += size
        for name, tensor in tensors.items():
            assert tensor.dtype == reference[name].dtype and torch.equal(tensor, reference[name]), name
    assert index["metadata"]["total_size"] == total

    model, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float16, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    state = model.state_dict()
    for name, want in expected.items():
        assert torch.equal(state[name], want), name


def test_a_damaged_or_mislabelled_packed_download_is_one_line(base, tmp_path):
    from comptrust.errors import ComptrustError
    from comptrust.models import resolve_model

    write_packed(base, tmp_path / "single", "gptq", 4)
    split_in_two(tmp_path / "single", tmp_path / "sharded", "model.layers.0.mlp.down_proj")
    (tmp_path / "sharded" / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ComptrustError, match="names shard model-00002-of-00002.safetensors, which is missing"):
        resolve_model(str(tmp_path / "sharded"))
    shutil.copy2(tmp_path / "single" / "model.safetensors", tmp_path / "single" / "model-copy.safetensors")
    with pytest.raises(ModelError, match="is in both model-copy.safetensors and model.safetensors") as info:
        resolve_model(str(tmp_path / "single"))
    assert "remove the stray" in info.value.one_line()
    (tmp_path / "single" / "model-copy.safetensors").unlink()
    config = json.loads((tmp_path / "single" / "config.json").read_text())
    config["quantization_config"]["bits"] = 3  # packed at 4 bits
    (tmp_path / "single" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="tensors disagree in shape .* for 3-bit gptq"):
        resolve_model(str(tmp_path / "single"))


def test_a_conversion_killed_half_way_leaves_nothing_taken_as_converted(base, tmp_path, monkeypatch):
    import safetensors.torch
    from safetensors.torch import load_file

    from comptrust.compression import dequantize
    from comptrust.models import resolve_model
    from comptrust.store.paths import models_dir

    folder = tmp_path / "someone-gptq"
    expected = write_packed(base, folder, "gptq", 4)
    monkeypatch.setattr(dequantize, "MAX_SHARD_BYTES", 40_000)
    real_save, written = safetensors.torch.save_file, []

    def save_then_die(tensors, filename, metadata=None):
        if written:
            raise MemoryError("killed while writing the second shard")
        written.append(filename)
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", save_then_die)
    with pytest.raises(MemoryError):
        resolve_model(str(folder))
    assert written and not [p for p in models_dir().iterdir() if not p.name.startswith(".")]
    monkeypatch.setattr(safetensors.torch, "save_file", real_save)
    out = resolve_model(str(folder)).path  # converted again, whole
    weights = {}
    for shard in json.loads((out / "model.safetensors.index.json").read_text())["weight_map"].values():
        weights.update(load_file(str(out / shard)))
    assert all(bool((weights[name] == want).all()) for name, want in expected.items())


MEMORY_PROBE = """
import json, sys
from pathlib import Path
import safetensors.torch, torch
from comptrust.compression.dequantize import dequantize_checkpoint

def rss(field):
    line = next(l for l in open("/proc/self/status") if l.startswith(field))
    return int(line.split()[1]) * 1024

folder, target = Path(sys.argv[1]), Path(sys.argv[2])
qc = json.loads((folder / "config.json").read_text())["quantization_config"]
start = rss("VmRSS:")
dequantize_checkpoint(folder, target, qc, max_shard_bytes=int(sys.argv[3]))
print(json.dumps({"start": start, "peak": rss("VmHWM:"), "anon": rss("RssAnon:"), "file": rss("RssFile:")}))
"""


def test_converting_needs_about_one_output_shard_of_ram_not_the_model(tmp_path):
    """A user converting a 13B GPTQ on a 24 GB laptop: peak memory follows the shard size, not the model."""
    import subprocess
    import sys

    import torch
    from safetensors.torch import save_file

    # 192 Linears of 1024 x 512: 192 MB of float16; each ~15 MB of temporaries while dequantized
    layers, out_features, in_features, group, shard = 192, 1024, 512, 128, 8 * 2**20
    gen = torch.Generator().manual_seed(0)
    folder = tmp_path / "big-gptq"
    folder.mkdir()
    weight_map = {}
    for part in range(4):  # four input shards of 48 layers, as a hub release comes
        tensors = {}
        for i in range(part * layers // 4, (part + 1) * layers // 4):
            prefix = f"model.layers.{i}.mlp.up_proj"
            tensors[f"{prefix}.qweight"] = torch.randint(-2**31, 2**31 - 1, (in_features // 8, out_features),
                                                         generator=gen, dtype=torch.int32)
            tensors[f"{prefix}.qzeros"] = torch.randint(-2**31, 2**31 - 1, (in_features // group, out_features // 8),
                                                        generator=gen, dtype=torch.int32)
            tensors[f"{prefix}.scales"] = torch.rand(in_features // group, out_features, generator=gen).half()
            tensors[f"{prefix}.g_idx"] = (torch.arange(in_features) // group).to(torch.int32)
            tensors[f"model.layers.{i}.norm.weight"] = torch.ones(out_features)
        name = f"model-{part + 1:05d}-of-00004.safetensors"
        save_file(tensors, str(folder / name), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(tensors, name)
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "gptq", "bits": 4,
                                                                            "checkpoint_format": "gptq"}}))
    (tmp_path / "out").mkdir()
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(folder), str(tmp_path / "out"), str(shard)],
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-2000:]
    rss = json.loads(probe.stdout)
    model_fp16 = sum(p.stat().st_size for p in (tmp_path / "out").glob("*.safetensors"))
    assert model_fp16 > 190 * 2**20 and len(list((tmp_path / "out").glob("*.safetensors"))) >= 12
    used = rss["peak"] - rss["start"]
    assert used < model_fp16 / 2, (used, model_fp16, rss)  # whole-model conversion needs more than model_fp16


def test_compressed_tensors_checkpoints_are_read_from_config_and_recipe(base, tmp_path):
    from comptrust.compression import compress_model
    from comptrust.models import resolve_model

    gptq = compress_model(base, "gptq", tmp_path / "gptq", bits=4, group_size=GROUP)
    fp8 = compress_model(base, "fp8", tmp_path / "fp8")
    with_recipe = resolve_model(str(without_manifest(gptq, tmp_path / "dl-gptq"))).manifest()
    params = with_recipe["params"]
    assert (with_recipe["method"], params["bits"], params["group_size"]) == ("gptq", 4, 32)
    assert with_recipe["read_from"] == "config.json quantization_config + recipe.yaml"
    bare = resolve_model(str(without_manifest(gptq, tmp_path / "dl-bare", keep_recipe=False))).manifest()
    assert bare["method"] == "compressed-tensors" and bare["params"]["bits"] == 4  # the algorithm is not recorded
    fp8_record = resolve_model(str(without_manifest(fp8, tmp_path / "dl-fp8"))).manifest()
    assert fp8_record["method"] == "fp8" and fp8_record["quantized_format"]["activation_bits"] == 8
    assert fp8_record["checkpoint"]["weights_sha256"] != with_recipe["checkpoint"]["weights_sha256"]


def test_pruned_checkpoints_saved_dense_are_read_from_their_recipe(tmp_path):
    from comptrust.compression.checkpoint import checkpoint_record

    folder = tmp_path / "pruned"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (folder / "recipe.yaml").write_text("stage:\n  mods:\n    SparseGPTModifier:\n      sparsity: 0.5\n"
                                        "      mask_structure: '2:4'\n")
    record = checkpoint_record(folder)
    assert (record["method"], record["kind"], record["params"]["sparsity"], record["params"]["pattern"]) == \
        ("sparsegpt", "pruning", 0.5, "2:4")
    (folder / "recipe.yaml").write_text("!!python/object/apply:os.system ['echo pwned']\n")  # never executed
    assert checkpoint_record(folder) is None


def test_quantization_configs_of_other_tools_are_described():
    from comptrust.compression.checkpoint import describe_quantization_config as describe

    bnb = describe({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})
    assert (bnb["method"], bnb["params"]["bits"], bnb["params"]["weight_type"]) == ("bitsandbytes", 4, "nf4")
    fp8 = describe({"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]})
    assert fp8["params"]["group_size"] == "128x128" and fp8["quantized_format"]["activation_bits"] == 8
    awq = describe({"quant_method": "awq", "w_bit": 4, "q_group_size": 128, "zero_point": True, "version": "GEMM"})
    assert (awq["params"]["bits"], awq["params"]["group_size"], awq["params"]["format"]) == (4, 128, "gemm")
    hqq = describe({"quant_method": "hqq", "quant_config": {}, "nbits": 4})
    assert hqq["method"] == "hqq" and hqq["params"]["bits"] == 4
    quanto = describe({"quant_method": "quanto", "weights": "int8"})
    assert quanto["params"]["bits"] == 8


def test_model_card_base_model_is_read_from_front_matter(tmp_path):
    from comptrust.compression.checkpoint import model_card_base

    (tmp_path / "README.md").write_text("---\nbase_model:\n- meta-llama/Llama-2-13b-chat-hf\nlicense: x\n---\n# hi\n")
    assert model_card_base(tmp_path) == {"name": "meta-llama/Llama-2-13b-chat-hf",
                                         "given_by": "model card (README.md base_model)"}
    (tmp_path / "README.md").write_text("# no front matter\nbase_model: nope\n")
    assert model_card_base(tmp_path) is None


def test_a_gguf_header_names_its_type_and_base(tmp_path):
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType

    from comptrust.gguf.record import gguf_manifest

    path = tmp_path / "m.Q4_K_M.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_file_type(LlamaFileType.MOSTLY_Q4_K_M)
    writer.add_uint32("general.base_model.count", 1)
    writer.add_string("general.base_model.0.name", "Llama 2 7b")
    writer.add_string("general.base_model.0.repo_url", "https://huggingface.co/meta-llama/Llama-2-7b-hf")
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    record = gguf_manifest(path)
    assert record["produced_by"] == "third party" and record["params"] == {"gguf_type": "Q4_K_M", "bits": 4}
    assert record["base_model"]["name"] == "meta-llama/Llama-2-7b-hf"


def test_a_missing_quantizer_package_is_a_one_line_error_before_loading(base, tmp_path, monkeypatch):
    import importlib.util

    from comptrust.models import resolve_model

    folder = tmp_path / "bnb-download"
    shutil.copytree(base, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (folder / "config.json").write_text(json.dumps(config))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(ModelError, match="bitsandbytes-quantized checkpoint.*needs the bitsandbytes package"):
        resolve_model(str(folder))


def test_a_quantizer_transformers_cannot_run_here_is_one_line(base, monkeypatch):
    import comptrust.backends.hf.backend as hf
    from comptrust.errors import BackendError

    def refuse(*_a, **_k):
        raise ImportError("Loading an AWQ quantized model requires gptqmodel. Please install it\nmore detail")

    monkeypatch.setattr(hf, "load_causal_lm", refuse)
    with pytest.raises(BackendError) as info:
        hf.HFBackend.from_path(str(base))
    line = info.value.one_line()
    assert "transformers cannot load" in line and "requires gptqmodel" in line and "more detail" not in line


def test_report_pair_errors_name_the_problem(tmp_path):
    from comptrust.commands.report import parse_pairs
    from comptrust.report.runs import Run, apply_pairs

    with pytest.raises(ConfigError, match="is not VARIANT_RUN=DENSE_RUN"):
        parse_pairs(["runs/only-one"])
    assert parse_pairs(["a=b"]) == {Path("a"): Path("b")}
    dense = Run(tmp_path / "dense", {"model": {"name": "base", "weights_sha256": "w0", "compression": None}})
    other = Run(tmp_path / "other", {"model": {"name": "x", "weights_sha256": "w1", "compression": None}})
    with pytest.raises(ConfigError, match="not among the run folders given"):
        apply_pairs([dense], {tmp_path / "missing": tmp_path / "dense"})
    apply_pairs([dense, other], {tmp_path / "other": tmp_path / "dense"})
    assert other.base_hashes() == {"w0"} and other.method == "unknown" and not other.is_dense
    with pytest.raises(ConfigError, match="is not a dense model's run"):
        apply_pairs([dense, other], {tmp_path / "dense": tmp_path / "other"})


def test_base_model_declared_at_eval_is_hashed_and_checked(base, tmp_path):
    from comptrust.api import declare_base_model
    from comptrust.compression.checkpoint import with_declared_base
    from comptrust.model_files import weights_fingerprint

    declared = declare_base_model(str(base))
    assert declared["weights_sha256"] == weights_fingerprint(base) and declared["given_by"] == "--base-model"
    offline = declare_base_model("meta-llama/Llama-2-13b-hf")  # not downloaded: kept by name
    assert offline == {"name": "meta-llama/Llama-2-13b-hf", "given_by": "--base-model"}
    with pytest.raises(ModelError, match="not found"):
        declare_base_model(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="is the evaluated model itself"):
        with_declared_base({"name": "x", "weights_sha256": declared["weights_sha256"], "compression": None}, declared)
    plain = with_declared_base({"name": "x", "weights_sha256": "other", "compression": None}, declared)
    assert plain["compression"]["method"] == "unknown" and plain["compression"]["base_model"] == declared


# ---- end to end: eval the download with --base-model, then report ----------------------------------------


def _eval(model: Path | str, out: Path, *extra: str) -> int:
    from comptrust.cli import main

    return main(["eval", str(model), "--smoke", "--perspectives", "stereotype,machine_ethics", "--limit", "3",
                 "--samples", "1", "--max-new-tokens", "4", "--out", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def dense_run(base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dense-run") / "dense"
    assert _eval(base, out) == 0
    return out


def _report(runs: list[Path], out: Path, *extra: str) -> dict:
    from comptrust.cli import main

    assert main(["report", *map(str, runs), "--out", str(out), "--bootstrap", "100", "--quiet", *extra]) == 0
    return json.loads((out / "scores.json").read_text())


def _variant(data: dict) -> dict:
    (variant,) = [v for v in data["variants"] if not v["dense"]]
    return variant


def _assert_compared(data: dict, label: str) -> None:
    assert len(data["bases"]) == 1, data["bases"]  # paired with the dense run, not a base of its own
    variant = _variant(data)
    assert variant["label"] == label
    delta = variant["deltas"]["stereotype"]
    assert delta["delta"] is not None and delta["paired"] is True
    assert delta["ci95"] is not None or delta.get("no_interval_reason")
    assert data["recommendations"] and any("downloaded checkpoint" in n for n in data["notes"])


def _make_format(kind: str, base: Path, root: Path) -> tuple[Path, str]:
    from comptrust.compression import compress_model

    if kind == "compressed-tensors":
        art = compress_model(base, "gptq", root / "art-gptq", bits=4, group_size=GROUP)
        return without_manifest(art, root / "dl-gptq"), "GPTQ 4-bit g32"
    if kind == "fp8":
        return without_manifest(compress_model(base, "fp8", root / "art-fp8"), root / "dl-fp8"), "FP8"
    if kind == "gptq":
        write_packed(base, root / "dl-gptq-packed", "gptq", 4)
        return root / "dl-gptq-packed", "GPTQ 4-bit g32"
    if kind == "awq":
        write_packed(base, root / "dl-awq", "awq", 4)
        return root / "dl-awq", "AWQ 4-bit g32"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32,
                                                 quantization_config=BitsAndBytesConfig(load_in_4bit=True,
                                                                                        bnb_4bit_quant_type="nf4"))
    model.save_pretrained(root / "dl-bnb")
    AutoTokenizer.from_pretrained(base).save_pretrained(root / "dl-bnb")
    return root / "dl-bnb", "bitsandbytes NF4"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["compressed-tensors", "fp8", "gptq", "awq", "bitsandbytes"])
def test_a_downloaded_checkpoint_with_base_model_gets_deltas_and_a_recommendation(base, dense_run, tmp_path, kind):
    folder, label = _make_format(kind, base, tmp_path)
    assert _eval(folder, tmp_path / "run", "--base-model", str(base)) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    record = summary["model"]["compression"]
    assert record["produced_by"] == "third party" and record["base_model"]["given_by"] == "--base-model"
    _assert_compared(_report([dense_run, tmp_path / "run"], tmp_path / "report"), label)


@pytest.mark.slow
def test_without_a_base_the_report_says_how_to_give_one_and_pair_fixes_it(base, dense_run, tmp_path):
    folder, label = _make_format("compressed-tensors", base, tmp_path)
    assert _eval(folder, tmp_path / "run") == 0
    alone = _report([dense_run, tmp_path / "run"], tmp_path / "alone")
    assert len(alone["bases"]) == 2 and _variant(alone)["deltas"] == {}
    note = next(n for n in alone["notes"] if "names no base model" in n)
    assert "--base-model BASE" in note and f"--pair {tmp_path / 'run'}=DENSE_RUN" in note
    paired = _report([dense_run, tmp_path / "run"], tmp_path / "paired", "--pair",
                     f"{tmp_path / 'run'}={dense_run}")
    _assert_compared(paired, label)
    from comptrust.cli import main

    assert main(["report", str(dense_run), str(tmp_path / "run"), "--out", str(tmp_path / "bad"), "--quiet",
                 "--pair", f"{dense_run}={tmp_path / 'run'}"]) != 0  # the dense run is not the variant
