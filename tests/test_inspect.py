"""``comptrust inspect``: an incomplete manifest names its missing fields; files are checked (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comptrust.cli import main
from comptrust.compression import compress_model


@pytest.fixture()
def artifact(tiny_llama, tmp_path) -> Path:
    return compress_model(tiny_llama, "magnitude", tmp_path / "mag", sparsity=0.5)


def _inspect(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["inspect", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_complete_artifact(artifact, capsys):
    code, out, _ = _inspect(capsys, str(artifact))
    assert code == 0 and "None" not in out and "missing" not in out and "?" not in out
    n_files = len(json.loads((artifact / "comptrust.json").read_text())["files"])
    assert f"files      {n_files} recorded, sizes as recorded" in out
    code, out, _ = _inspect(capsys, str(artifact), "--verify")
    assert code == 0 and "every SHA-256 re-read and as recorded" in out


def test_an_incomplete_manifest_names_what_it_lacks(artifact, capsys):
    path = artifact / "comptrust.json"
    manifest = json.loads(path.read_text())
    for field in ("method", "key", "storage", "created_utc"):
        del manifest[field]
    del manifest["base_model"]["weights_sha256"]
    manifest["wall_time_s"] = None
    path.write_text(json.dumps(manifest))
    code, out, _ = _inspect(capsys, str(artifact))
    assert code == 1 and "None" not in out
    assert ("missing    comptrust.json lacks key, method, base_model.weights_sha256, "
            "storage.effective_bits_per_weight, storage.compressed_layers, storage.bits_per_parameter, "
            "wall_time_s, created_utc (shown as '?')") in out
    assert "method     ? (pruning)" in out and "key        ?  (created ?)" in out
    assert "sha256:?" in out and "storage    ? bits/weight in ? compressed layers" in out
    code, out, err = _inspect(capsys, str(artifact), "--json")
    assert code == 1 and json.loads(out) == manifest and "comptrust.json lacks key, method" in err


def test_changed_files_are_reported(artifact, capsys):
    weights = artifact / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte flipped inside the last tensor
    weights.write_bytes(bytes(data))
    code, out, _ = _inspect(capsys, str(artifact))
    assert code == 0  # sizes agree: only a re-read can tell
    code, out, _ = _inspect(capsys, str(artifact), "--verify")
    assert code == 1
    assert "files      DIFFER from the record: model.safetensors differs from the SHA-256 recorded" in out
    (artifact / "tokenizer.json").unlink()
    code, out, _ = _inspect(capsys, str(artifact))
    assert code == 1 and "files      DIFFER from the record: tokenizer.json is missing" in out


def test_not_an_artifact_and_not_json(tmp_path, capsys):
    code, _, err = _inspect(capsys, str(tmp_path))
    assert code == 2 and "is not a comptrust artifact" in err
    (tmp_path / "comptrust.json").write_text("[1, 2]")
    code, _, err = _inspect(capsys, str(tmp_path))
    assert code == 2 and "comptrust.json is not a JSON object" in err
