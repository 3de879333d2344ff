"""Calibration samples: seeded, the requested shape, from each offline source, described honestly."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from comptrust.compression.calibration import build_calibration, builtin_documents
from comptrust.compression.config import CalibConfig, make_config
from comptrust.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    return AutoTokenizer.from_pretrained(tiny_llama)


def test_builtin_split_keeps_heldout_text_out_of_calibration():
    calib, heldout = builtin_documents("calibration"), builtin_documents("heldout")
    assert len(heldout) >= 5 and len(calib) >= 5 * len(heldout)
    assert not set(calib) & set(heldout)


def test_seed_decides_the_samples(tokenizer):
    cfg = CalibConfig(samples=5, seqlen=24)
    a, b, c = (build_calibration(tokenizer, cfg, seed) for seed in (0, 0, 1))
    assert a.input_ids == b.input_ids and a.input_ids != c.input_ids
    assert [len(s) for s in a.input_ids] == [24] * 5
    assert a.description["token_ids_sha256"] == b.description["token_ids_sha256"]
    assert a.description["token_ids_sha256"] != c.description["token_ids_sha256"]
    assert a.description == {"source": "builtin", "samples": 5, "seqlen": 24, "chat_template": False,
                             "seed": 0, "tokens": 120, "source_sha256": a.description["source_sha256"],
                             "token_ids_sha256": a.description["token_ids_sha256"]}
    batch = next(iter(a.dataloader()))
    assert tuple(batch["input_ids"].shape) == (1, 24) and int(batch["attention_mask"].sum()) == 24


def test_file_sources(tokenizer, tmp_path):
    text = tmp_path / "calib.txt"
    text.write_text("I agree with the statement.\n\nYou are a helpful assistant. " * 20, encoding="utf-8")
    cal = build_calibration(tokenizer, CalibConfig(source="file", file=str(text), samples=3, seqlen=16), seed=0)
    assert all(tokenizer.decode(ids) in text.read_text() for ids in cal.input_ids)
    jsonl = tmp_path / "calib.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": "The answer is yes or no. " * 5}) for _ in range(4)))
    cal = build_calibration(tokenizer, CalibConfig(source="file", file=str(jsonl), samples=2, seqlen=8), seed=0)
    assert len(cal.input_ids) == 2 and cal.description["file"] == str(jsonl)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2 has no string 'text' field"):
        build_calibration(tokenizer, CalibConfig(source="file", file=str(bad), samples=1, seqlen=8), seed=0)
    short = tmp_path / "short.txt"
    short.write_text("yes")
    with pytest.raises(DataError, match="fewer than one sample of 64"):
        build_calibration(tokenizer, CalibConfig(source="file", file=str(short), samples=1, seqlen=64), seed=0)


def test_chat_template_renders_turns(tokenizer):
    cal = build_calibration(tokenizer, CalibConfig(samples=2, seqlen=40, chat_template=True), seed=0)
    first = tokenizer.decode(cal.input_ids[0])
    assert first.startswith("<|im_start|>user\n") and all(len(ids) <= 40 for ids in cal.input_ids)
    assert cal.description["chat_template"] is True


def test_calibration_options_are_validated(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        make_config("gptq", calib_file=str(tmp_path / "nope.txt"))
    with pytest.raises(ConfigError, match="unknown calibration source 'pile'"):
        make_config("wanda", calib_source="pile")
    with pytest.raises(ConfigError, match="needs --calib-file"):
        make_config("awq", calib_source="file")
    cfg = make_config("sparsegpt", calib_samples=8, calib_seqlen=64, seed=2)
    assert cfg.calib == CalibConfig(samples=8, seqlen=64) and cfg.seed == 2
    # RTN and magnitude use no data: the seed cannot change them, so it is not part of the key
    assert make_config("rtn", seed=5).key() == make_config("rtn", seed=0).key()
    assert make_config("gptq", seed=5).key() != make_config("gptq", seed=0).key()


def test_editing_the_calibration_file_gives_a_new_artifact_key(tiny_llama, tmp_path):
    from comptrust.compression.pipeline import artifact_key

    text = tmp_path / "calib.txt"
    text.write_text("one text " * 50)
    config = make_config("wanda", calib_file=str(text))
    first = artifact_key(tiny_llama, config)
    assert artifact_key(tiny_llama, config) == first
    text.write_text("another text " * 50)
    assert artifact_key(tiny_llama, config) != first
