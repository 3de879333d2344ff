"""Damaged or foreign model files: one line naming the file and the fix, for every loader (issue 15)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from comptrust.cli import main
from comptrust.errors import DataError, ModelError
from comptrust.model_files import gguf_problem, pickle_problem, safetensors_problem
from comptrust.models import demo_gguf_path, resolve_model
from conftest import write_small_gguf

EVAL = ["--perspectives", "stereotype", "--smoke", "--limit", "1", "--samples", "1", "--max-new-tokens", "4"]


def _eval_error(capsys, model: Path, *extra: str) -> str:
    """Run ``comptrust eval`` on a bad model: exit 2 and exactly one line on stderr."""
    capsys.readouterr()  # drop what earlier steps (e.g. compressing) printed
    assert main(["eval", str(model), *EVAL, "--out", str(model.parent / "run"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "internal error" not in err and len(err.splitlines()) == 1, err
    return err


def _copy(tiny_llama: Path, dest: Path) -> Path:
    shutil.copytree(tiny_llama, dest)
    return dest


def _cut(path: Path, keep: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep])


# ---------------------------------------------------------------- the four kinds of damage in the issue


def test_garbage_gguf(tmp_path, capsys):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(os.urandom(5000))
    err = _eval_error(capsys, bad)
    assert f"{bad} is not a GGUF file" in err and "download the GGUF file again" in err


def test_truncated_gguf(tmp_path, capsys):
    bad = tmp_path / "SmolLM2.gguf"
    with demo_gguf_path().open("rb") as fh:
        bad.write_bytes(fh.read(3_000_000))  # header intact, tensor data cut short
    err = _eval_error(capsys, bad)
    assert f"{bad} is truncated: its tensors need 98,362,432 bytes but the file holds 3,000,000" in err
    assert "download the GGUF file again" in err


def test_truncated_safetensors(tiny_llama, tmp_path, capsys):
    model = _copy(tiny_llama, tmp_path / "model")
    size = (model / "model.safetensors").stat().st_size
    _cut(model / "model.safetensors", size // 2)
    err = _eval_error(capsys, model)
    assert f"{model / 'model.safetensors'} is truncated" in err
    assert "download the model again, or save it again with save_pretrained" in err


def test_random_bytes_safetensors(tiny_llama, tmp_path, capsys):
    model = _copy(tiny_llama, tmp_path / "model")
    (model / "model.safetensors").write_bytes(os.urandom((model / "model.safetensors").stat().st_size))
    err = _eval_error(capsys, model)
    assert f"{model / 'model.safetensors'} is not a valid safetensors file" in err and "download the model" in err


# ---------------------------------------------------------------- pickle, artifacts, foreign weights


@pytest.mark.parametrize("damage", ["truncated", "random bytes"])
def test_damaged_pickle_with_allow_pickle(tiny_llama, tmp_path, capsys, damage):
    model = _copy(tiny_llama, tmp_path / "model")
    bin_path = model / "pytorch_model.bin"
    torch.save(load_file(model / "model.safetensors"), bin_path)
    (model / "model.safetensors").unlink()
    assert pickle_problem(bin_path) is None  # an intact checkpoint passes
    if damage == "truncated":
        _cut(bin_path, bin_path.stat().st_size // 2)
    else:
        bin_path.write_bytes(os.urandom(bin_path.stat().st_size))
    err = _eval_error(capsys, model, "--allow-pickle")
    expected = "is truncated" if damage == "truncated" else "is not a PyTorch checkpoint"
    assert f"{bin_path} {expected}" in err and "download the model again" in err


def test_damaged_compressed_tensors_artifact(tiny_llama, tmp_path, capsys):
    """An RTN artifact (packed compressed-tensors weights) cut short: the fix is to compress again."""
    from comptrust.compression import compress_model

    art = compress_model(tiny_llama, "rtn", tmp_path / "rtn", bits=4, group_size=32)
    assert json.loads((art / "config.json").read_text())["quantization_config"]["format"] == "pack-quantized"
    assert resolve_model(str(art)).path == art.resolve()  # intact: accepted
    _cut(art / "model.safetensors", (art / "model.safetensors").stat().st_size - 100)
    err = _eval_error(capsys, art)
    assert f"{art / 'model.safetensors'} is truncated" in err
    assert f"delete {art.resolve()} and run 'comptrust compress' again" in err
    # compressing again notices the damage and rebuilds the same artifact in place
    assert compress_model(tiny_llama, "rtn", art, bits=4, group_size=32) == art
    assert resolve_model(str(art)).path == art.resolve()


def test_artifact_file_sizes_are_checked_against_the_manifest(tiny_llama, tmp_path, capsys):
    from comptrust.compression import compress_model, load_manifest

    art = compress_model(tiny_llama, "magnitude", tmp_path / "mag", sparsity=0.5)
    files = load_manifest(art)["files"]
    assert files["model.safetensors"]["bytes"] == (art / "model.safetensors").stat().st_size
    assert len(files["tokenizer.json"]["sha256"]) == 64 and "comptrust.json" not in files
    _cut(art / "tokenizer.json", 100)  # not a weight file: only the manifest's record can tell
    err = _eval_error(capsys, art)
    assert f"{art.resolve()} is an incomplete comptrust artifact: tokenizer.json has 100 bytes" in err
    assert "run 'comptrust compress' again" in err


def test_damaged_artifact_manifest(tiny_llama, tmp_path, capsys):
    from comptrust.compression import compress_model

    art = compress_model(tiny_llama, "magnitude", tmp_path / "mag", sparsity=0.5)
    (art / "comptrust.json").write_text('{"method": "magnitude", "key": ')
    err = _eval_error(capsys, art)
    assert f"{art / 'comptrust.json'}" in err and "is not valid JSON" in err and "comptrust compress" in err


def test_weights_of_another_model_are_refused_not_replaced_by_random_numbers(tiny_llama, tmp_path, capsys):
    tensors = load_file(tiny_llama / "model.safetensors")
    renamed = _copy(tiny_llama, tmp_path / "renamed")
    save_file({f"bert.{k}": v for k, v in tensors.items()}, str(renamed / "model.safetensors"))
    err = _eval_error(capsys, renamed)
    assert "weight(s) its config.json needs are absent from its weight files" in err
    reshaped = _copy(tiny_llama, tmp_path / "reshaped")
    save_file({k: v[:, :32].contiguous() if v.dim() == 2 else v for k, v in tensors.items()},
              str(reshaped / "model.safetensors"))
    err = _eval_error(capsys, reshaped)
    assert "have other shapes than its config.json describes" in err and "another model" in err


def test_sharded_index_naming_a_missing_shard(tiny_llama, tmp_path):
    model = _copy(tiny_llama, tmp_path / "model")
    names = list(load_file(model / "model.safetensors"))
    index = {"metadata": {}, "weight_map": {n: "model-00002-of-00002.safetensors" for n in names}}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="names shard model-00002-of-00002.safetensors, which is missing"):
        resolve_model(str(model))


def test_damaged_config_json(tiny_llama, tmp_path):
    model = _copy(tiny_llama, tmp_path / "model")
    (model / "config.json").write_bytes(b"\x00\xff" * 10)
    with pytest.raises(DataError, match="config.json is not UTF-8 text"):
        resolve_model(str(model))


# ---------------------------------------------------------------- the checks themselves


def test_intact_files_pass_and_every_cut_of_a_safetensors_file_is_caught(tiny_llama, tmp_path):
    st = tiny_llama / "model.safetensors"
    assert safetensors_problem(st) is None
    assert gguf_problem(demo_gguf_path()) is None
    data = st.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    for keep in (0, 7, 8, 100, header_end - 1, header_end, header_end + 1, len(data) - 1):
        (tmp_path / "cut.safetensors").write_bytes(data[:keep])
        assert safetensors_problem(tmp_path / "cut.safetensors") is not None, keep
    (tmp_path / "long.safetensors").write_bytes(data + b"\0" * 16)
    assert "16 bytes follow the last tensor" in safetensors_problem(tmp_path / "long.safetensors")


def test_every_cut_of_a_gguf_header_is_caught(tmp_path):
    with demo_gguf_path().open("rb") as fh:
        head = fh.read(2_000_000)
    for keep in (0, 3, 4, 23, 24, 1000, 100_000, 1_785_663, 1_785_664, 2_000_000):
        (tmp_path / "cut.gguf").write_bytes(head[:keep])
        problem = gguf_problem(tmp_path / "cut.gguf")
        assert problem is not None and ("truncated" in problem or "not a GGUF file" in problem), (keep, problem)


def test_intact_gguf_of_an_unsupported_architecture_is_a_model_error(tmp_path):
    cut = write_small_gguf(tmp_path / "cut.gguf", "llama")
    assert gguf_problem(cut) is None  # a file the gguf library wrote parses
    _cut(cut, cut.stat().st_size - 1)
    assert "is truncated" in gguf_problem(cut)
    odd = write_small_gguf(tmp_path / "odd.gguf", "notanarch")
    with pytest.raises(ModelError, match="transformers cannot convert .*architecture notanarch is not supported"):
        resolve_model(str(odd))


@pytest.mark.parametrize("garbage", [b"\xff\xfe\x00 not text", b"[1, 2, 3]", b'{"cut": '])
def test_a_damaged_fingerprint_memo_is_only_a_lost_shortcut(tiny_llama, isolated_home, garbage):
    from comptrust.model_files import weights_fingerprint

    expected = weights_fingerprint(tiny_llama)
    (isolated_home / "fingerprints.json").write_bytes(garbage)
    assert weights_fingerprint(tiny_llama) == expected
    assert expected in json.loads((isolated_home / "fingerprints.json").read_text()).values()
