"""Sweep files know the deployed formats: gguf types, fp8/w8a8/nvfp4, KV-cache variants and per-artifact backends."""

from __future__ import annotations

import pytest

from comptrust.errors import ConfigError
from comptrust.sweep.config import parse_sweep
from comptrust.sweep.estimate import artifact_format
from comptrust.sweep.plan import build_plan


def _plan(compressions, **extra):
    data = {"models": ["m"], "compressions": compressions, "perspectives": ["stereotype"], **extra}
    return build_plan(parse_sweep(data))


def test_deployed_formats_expand_into_labelled_artifacts_with_their_backends():
    plan = _plan([{"method": "gguf", "type": ["Q4_K_M", "Q8_0"]}, {"method": "fp8"},
                  {"method": "w8a8", "calib_samples": 4}, {"method": "nvfp4", "calib_samples": 4},
                  {"method": "dense", "kv_cache": ["int4", "int2"]},
                  {"method": "gptq", "bits": 4, "kv_cache": "int4", "calib_samples": 4}], seeds=[0, 1])
    ids = [a.id for a in plan.artifacts]
    assert ids == ["m-dense", "m-gguf-Q4_K_M", "m-gguf-Q8_0", "m-fp8", "m-w8a8-s0", "m-w8a8-s1", "m-nvfp4-s0",
                   "m-nvfp4-s1", "m-dense-kvint4", "m-dense-kvint2", "m-gptq-4bit-s0-kvint4", "m-gptq-4bit-s1-kvint4"]
    by_id = {a.id: a for a in plan.artifacts}
    assert by_id["m-fp8"].seeds == [0, 1]  # no calibration: one artifact for both seeds
    assert plan.backend_name(by_id["m-gguf-Q4_K_M"]) == "llamacpp" and plan.backend_name(by_id["m-fp8"]) == "hf"
    assert by_id["m-gguf-Q8_0"].params == {"gguf_type": "Q8_0"}
    assert by_id["m-dense-kvint4"].dense and by_id["m-dense-kvint4"].kv_cache == "int4"
    assert artifact_format(by_id["m-fp8"]) == "W8A8 FP8" and artifact_format(by_id["m-w8a8-s0"]) == "W8A8 INT8"
    assert artifact_format(by_id["m-nvfp4-s0"]) == "W4A4 FP4"
    assert artifact_format(by_id["m-gguf-Q4_K_M"]) == "GGUF Q4_K_M"
    assert artifact_format(by_id["m-gptq-4bit-s0-kvint4"]) == "W4A16 int, KV int4"
    # a dense model is named by its stored dtype (SmolLM2 ships float32), never an assumed 16 bits
    assert artifact_format(by_id["m-dense-kvint4"], "float32") == "dense float32, KV int4"
    assert artifact_format(by_id["m-dense"]) == "dense (stored dtype unknown)"
    assert plan.to_json()["artifacts"][1]["backend"] == "llamacpp"


def test_a_gguf_entry_can_be_evaluated_dequantized_by_hf_as_its_own_artifact():
    plan = _plan([{"method": "gguf", "type": "Q4_K_M"}, {"method": "gguf", "type": "Q4_K_M", "backend": "hf"}])
    assert [plan.backend_name(a) for a in plan.artifacts[1:]] == ["llamacpp", "hf"]
    assert len({a.id for a in plan.artifacts}) == 3


@pytest.mark.parametrize("entry,message", [
    ({"method": "gguf"}, "needs --type"),
    ({"method": "gguf", "type": "Q9"}, "unknown GGUF type"),
    ({"method": "dense", "bits": 4}, "method dense takes no compression parameter"),
    ({"method": "fp8", "kv_cache": "fp8"}, "bad value for 'compressions"),
])
def test_bad_entries_fail_in_one_line(entry, message):
    with pytest.raises(ConfigError, match=message):
        _plan([entry])


def test_report_labels_of_the_new_variants():
    from comptrust.report.runs import Run

    def run(model):
        return Run(path=__import__("pathlib").Path("x"), summary={"model": model})

    gguf = {"gguf_type": "Q4_K_M", "bits": 4}
    assert run({"backend": "llamacpp", "compression": {"method": "gguf", "params": gguf}}).describe() == "GGUF Q4_K_M"
    assert run({"backend": "hf", "compression": {"method": "gguf", "params": gguf}}).describe() \
        == "GGUF Q4_K_M (dequantized, hf)"
    fp8 = run({"compression": {"method": "fp8", "params": {"bits": 8},
                               "quantized_format": {"activation_bits": 8}}})
    assert fp8.describe() == "FP8" and fp8.bits == 8 and fp8.activation_bits == 8
    kv = run({"name": "smol", "kv_cache": {"type": "int4", "bits": 4}})
    assert kv.describe() == "dense + KV int4" and not kv.is_dense and kv.kv_bits == 4
    assert kv.config_key() != run({"name": "smol"}).config_key()
    both = run({"kv_cache": {"type": "int2"}, "compression": {"method": "w8a8", "params": {"bits": 8}}})
    assert both.describe() == "INT8 W8A8 + KV int2"
