"""Bad input gets one line naming the problem and the fix, a non-zero exit, and no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from comptrust.cli import main


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_perspective(tiny_llama, capsys):
    assert main(["eval", str(tiny_llama), "--perspectives", "stereotyp", "--smoke"]) == 2
    err = _err(capsys)
    assert "unknown perspective 'stereotyp'" in err and "stereotype" in err


def test_missing_model_path(capsys, tmp_path):
    assert main(["eval", str(tmp_path / "nope"), "--perspectives", "stereotype", "--smoke"]) == 2
    assert "not found" in _err(capsys)


def test_model_folder_without_weights_and_pickle_refusal(tmp_path, tiny_llama, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    assert main(["eval", str(empty), "--smoke"]) == 2
    assert "has no weight files" in _err(capsys)
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_llama, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    assert main(["eval", str(pickled), "--smoke"]) == 2
    err = _err(capsys)
    assert "pickle" in err and "--allow-pickle" in err


def test_hub_id_offline_fails_fast(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["eval", "some-org/some-model", "--smoke"]) == 2
    err = _err(capsys)
    assert "cannot download some-org/some-model" in err and "local model folder" in err


def test_data_folder_missing_a_file(tiny_llama, tmp_path, capsys):
    (tmp_path / "data").mkdir()
    assert main(["eval", str(tiny_llama), "--perspectives", "stereotype", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run")]) == 2
    err = _err(capsys)
    assert "stereotype/dataset/stereotype_bias_data.jsonl is missing" in err


def test_corrupt_data_file_names_the_line(tiny_llama, tmp_path, capsys):
    target = tmp_path / "data" / "stereotype" / "dataset"
    target.mkdir(parents=True)
    (target / "stereotype_bias_data.jsonl").write_text('{"prompt": {}}\n{not json\n')
    assert main(["eval", str(tiny_llama), "--perspectives", "stereotype", "--data-dir", str(tmp_path / "data"),
                 "--out", str(tmp_path / "run")]) == 2
    assert "stereotype_bias_data.jsonl:2 is not valid JSON" in _err(capsys)


def test_limit_zero(tiny_llama, capsys):
    assert main(["eval", str(tiny_llama), "--perspectives", "stereotype", "--smoke", "--limit", "0"]) == 2
    assert "--limit must be at least 1" in _err(capsys)


def test_unwritable_output_folder(tiny_llama, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["eval", str(tiny_llama), "--perspectives", "stereotype", "--smoke", "--limit", "1",
                 "--out", str(blocker / "run")]) == 2
    assert "cannot write to output folder" in _err(capsys)


def test_malformed_responses_jsonl(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"perspective": "stereotype", "scenario": "benign"}) + "\n")
    assert main(["score", "--responses", str(path)]) == 2
    assert "r.jsonl:1 lacks record, responses" in _err(capsys)


def test_interrupted_demo_model_conversion_is_redone(monkeypatch, tmp_path):
    """A conversion killed halfway leaves only a temp folder, never a half model that later loads."""
    from comptrust import models
    from conftest import write_small_gguf

    gguf = write_small_gguf(tmp_path / "x.gguf")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", boom)
    with pytest.raises(KeyboardInterrupt):
        models.convert_gguf(gguf)
    assert not any(p.name.startswith("x-") for p in models.models_dir().iterdir())


def test_debug_flag_shows_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "comptrust", "score", "--responses", str(tmp_path / "none"),
                             "--debug"], capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" in result.stderr
