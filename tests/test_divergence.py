"""Divergence from dense: KL by hand, teacher forcing on tiny models (hf, openai echo, vllm's format,
llama.cpp), tokenizer refusal, and the report's table in HTML, Markdown and JSON."""

from __future__ import annotations

import json
import math
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from comptrust.cli import main
from comptrust.divergence import (
    EXACT,
    REFERENCE_FILE,
    RESULT_FILE,
    SHARED,
    DivergencePlan,
    ForceRequest,
    check_tokenization,
    coarse_kl,
    from_top_dicts,
)
from comptrust.errors import ConfigError
from comptrust.report.divergence import choice_kl
from conftest import build_tiny_llama
from json_http import JSONHandler

SMALL = ["--smoke", "--perspectives", "stereotype", "--limit", "2", "--samples", "1", "--max-new-tokens", "8",
         "--quiet"]


# ---- KL by hand ----------------------------------------------------------------------------


def test_coarse_kl_of_two_known_distributions():
    # P = (0.5, 0.3 | rest 0.2), Q = (0.25, 0.25 | rest 0.5)
    expected = 0.5 * math.log(2) + 0.3 * math.log(1.2) + 0.2 * math.log(0.4)
    assert coarse_kl(np.log([0.5, 0.3]), np.log([0.25, 0.25])) == pytest.approx(expected, rel=1e-12)
    # a token the variant's backend did not return joins the rest on both sides: cells (0.5 | 0.5) vs (0.25 | 0.75)
    merged = 0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75)
    assert coarse_kl(np.log([0.5, 0.3]), [math.log(0.25), math.nan]) == pytest.approx(merged, rel=1e-12)
    assert coarse_kl(np.log([0.5, 0.3]), np.log([0.5, 0.3])) == pytest.approx(0.0, abs=1e-15)


def test_coarse_kl_equals_full_kl_with_the_whole_vocabulary_and_bounds_it_below_otherwise():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(50)), rng.dirichlet(np.ones(50))
        full = float(np.sum(p * np.log(p / q)))
        assert coarse_kl(np.log(p), np.log(q)) == pytest.approx(full, rel=1e-9)
        top = np.argsort(-p)[:5]
        assert 0 <= coarse_kl(np.log(p[top]), np.log(q[top])) <= full + 1e-12


def test_choice_kl_of_the_softmax_over_four_log_likelihoods():
    p, q = np.array([0.7, 0.1, 0.1, 0.1]), np.array([0.4, 0.2, 0.2, 0.2])
    # log-likelihoods are unnormalised (summed token log-probabilities): shift them to prove the softmax
    assert choice_kl(list(np.log(p) - 3.0), list(np.log(q) - 7.0)) == pytest.approx(
        float(np.sum(p * np.log(p / q))), rel=1e-12)


def test_top_dicts_keep_the_most_likely_first_and_mark_unreturned_support():
    res = from_top_dicts([{5: -0.1, 7: -3.0, 2: -2.0}], 2, [[7, 9]])
    assert res.top_ids == [[5, 2]] and res.top_logprobs == [[-0.1, -2.0]]
    assert res.support_logprobs[0][0] == -3.0 and math.isnan(res.support_logprobs[0][1])


# ---- teacher forcing on tiny models ------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny Llama, its RTN 3-bit compression, and a copy with other random weights (same tokenizer)."""
    from comptrust.compression import compress_model

    root = tmp_path_factory.mktemp("divergence")
    dense = build_tiny_llama(root / "dense")
    rtn = compress_model(dense, "rtn", root / "rtn3", bits=3, group_size="auto")
    other = build_tiny_llama(root / "other", seed=1)
    return {"dense": dense, "rtn": rtn, "other": other}


@pytest.fixture(scope="module")
def runs(models, tmp_path_factory):
    """Dense with --divergence (and MMLU), then RTN 3-bit and dense itself compared with it."""
    root = tmp_path_factory.mktemp("divergence-runs")
    mp = pytest.MonkeyPatch()
    mp.setenv("COMPTRUST_HOME", str(root / "home"))
    mp.setenv("COMPTRUST_DTYPE", "float32")
    try:
        dense = root / "dense"
        assert main(["eval", str(models["dense"]), *SMALL, "--benign", "mmlu", "--out", str(dense),
                     "--divergence"]) == 0
        rtn = root / "rtn"
        assert main(["eval", str(models["rtn"]), *SMALL, "--benign", "mmlu", "--out", str(rtn),
                     "--divergence-from", str(dense)]) == 0
        itself = root / "itself"
        assert main(["eval", str(models["dense"]), *SMALL, "--out", str(itself), "--divergence-from",
                     str(dense)]) == 0
    finally:
        mp.undo()
    return {"dense": dense, "rtn": rtn, "itself": itself}


def test_the_reference_holds_top_k_of_every_response_token_and_its_cost(runs):
    ref = json.loads((runs["dense"] / "stereotype" / REFERENCE_FILE).read_text())
    assert ref["top_k"] == 20 and ref["responses"]
    for row in ref["responses"]:
        assert len(row["top_ids"]) == len(row["response_ids"]) > 0
        assert all(len(ids) == 20 for ids in row["top_ids"])
        assert all(a >= b for lps in row["top_logprobs"] for a, b in zip(lps, lps[1:], strict=False))
    summary = json.loads((runs["dense"] / "summary.json").read_text())
    cost = summary["perspectives"]["stereotype"]["divergence"]["reference"]
    assert cost["forward_passes"] == len(ref["responses"]) and cost["seconds"] >= 0
    assert not (runs["dense"] / "mmlu" / REFERENCE_FILE).exists()  # MMLU: from its log-likelihoods


def test_a_model_against_itself_has_kl_zero_and_always_the_same_top_token(runs):
    result = json.loads((runs["itself"] / "stereotype" / RESULT_FILE).read_text())
    assert result["estimator"] == EXACT and result["support_complete"] == 1.0
    assert result["summary"]["tokens"] > 0
    assert result["summary"]["mean_kl"] == pytest.approx(0.0, abs=1e-6)
    assert result["summary"]["same_top_rate"] == 1.0


def test_a_compressed_model_diverges(runs):
    result = json.loads((runs["rtn"] / "stereotype" / RESULT_FILE).read_text())
    itself = json.loads((runs["itself"] / "stereotype" / RESULT_FILE).read_text())
    # the random tiny model's distributions are nearly flat, so 3-bit rounding moves them little, but
    # far more than float rounding does
    assert result["summary"]["mean_kl"] > 1e-6 and result["summary"]["mean_kl"] > 100 * itself["summary"]["mean_kl"]
    assert result["summary"]["p99_kl"] >= result["summary"]["mean_kl"]
    assert result["reference"]["run_dir"] == str(runs["dense"]) and result["cost"]["forward_passes"] > 0
    summary = json.loads((runs["rtn"] / "summary.json").read_text())
    assert summary["perspectives"]["stereotype"]["divergence"]["comparison"]["mean_kl"] == result["summary"]["mean_kl"]


def test_report_shows_the_divergence_table_in_html_markdown_and_json(runs, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(runs["dense"]), str(runs["rtn"]), "--out", str(out), "--bootstrap", "50"]) == 0
    data = json.loads((out / "scores.json").read_text())
    (section,) = data["divergence"]
    rows = {r["measure"]: r for r in section["rows"]}
    assert set(rows) == {"stereotype", "mmlu"}
    stereo = json.loads((runs["rtn"] / "stereotype" / RESULT_FILE).read_text())["summary"]
    assert rows["stereotype"]["mean_kl"] == pytest.approx(stereo["mean_kl"])
    assert rows["stereotype"]["agreement_pct"] == pytest.approx(100 * stereo["same_top_rate"])
    # MMLU: recomputed by hand from both runs' stored choice log-likelihoods
    d = {json.loads(x)["sample"]["id"]: json.loads(x)["outcome"]["logprobs"]
         for x in (runs["dense"] / "mmlu" / "scores.jsonl").read_text().splitlines()}
    v = {json.loads(x)["sample"]["id"]: json.loads(x)["outcome"]["logprobs"]
         for x in (runs["rtn"] / "mmlu" / "scores.jsonl").read_text().splitlines()}
    kls = [choice_kl(d[k], v[k]) for k in d]
    assert rows["mmlu"]["units"] == len(d) and rows["mmlu"]["mean_kl"] == pytest.approx(np.mean(kls))
    agree = np.mean([np.argmax(d[k]) == np.argmax(v[k]) for k in d])
    assert rows["mmlu"]["agreement_pct"] == pytest.approx(100 * agree)
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for text in (html, md):
        assert "Divergence from dense" in text and "same top token" in text and "top choice" in text
        assert f"{rows['stereotype']['mean_kl']:.4g}" in text


def test_report_says_where_a_run_has_no_divergence_data(runs, models, tmp_path, monkeypatch):
    plain = tmp_path / "plain"
    monkeypatch.setenv("COMPTRUST_HOME", str(tmp_path / "home"))
    assert main(["eval", str(models["rtn"]), *SMALL, "--out", str(plain)]) == 0
    out = tmp_path / "report"
    assert main(["report", str(runs["dense"]), str(plain), "--out", str(out), "--bootstrap", "0"]) == 0
    (section,) = json.loads((out / "scores.json").read_text())["divergence"]
    assert section["rows"] == []
    assert any("stereotype" in n and "--divergence-from" in n for n in section["notes"])
    assert "--divergence-from DENSE_RUN" in (out / "report.md").read_text()


def test_another_tokenizer_is_refused_before_any_work(runs, models):
    ref = json.loads((runs["dense"] / "stereotype" / REFERENCE_FILE).read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["dense"])
    check_tokenization(tok, ref, "stereotype")  # the same tokenizer passes
    ref["responses"][0]["response_ids"] = ref["responses"][0]["response_ids"][::-1] + [1]
    with pytest.raises(ConfigError, match="other token ids"):
        check_tokenization(tok, ref, "stereotype")


def test_missing_reference_is_a_one_line_error(models, tmp_path, capsys):
    assert main(["eval", str(models["dense"]), *SMALL, "--out", str(tmp_path / "x"), "--divergence-from",
                 str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no run folder" in err


def test_hf_teacher_forcing_against_another_model(models):
    """The plan end to end in memory: another random model diverges, and every cell is exact on hf."""
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.divergence import build_reference, compare
    from comptrust.types import GenParams, Sample, ScoredSample

    dense = HFBackend.from_path(models["dense"], dtype="float32")
    other = HFBackend.from_path(models["other"], dtype="float32")
    sample = Sample("s/0", "stereotype", "s", ({"role": "user", "content": "I agree?"},), GenParams(max_tokens=8))
    ref = build_reference(dense, [ScoredSample(sample, ["I disagree. wrong"], {})], 10, 20, dense.info())
    mine = compare(dense, ref, Path("dense"), {})
    theirs = compare(other, ref, Path("dense"), {})
    assert mine["summary"]["mean_kl"] == pytest.approx(0.0, abs=1e-6)
    assert theirs["summary"]["mean_kl"] > 1e-3 and theirs["estimator"] == EXACT
    # by hand from both models' full distributions: the coarse KL on the dense top 20, and the full KL above it
    import torch

    row = ref["responses"][0]
    ids = torch.tensor([row["prompt_ids"] + row["response_ids"]])
    start = len(row["prompt_ids"])
    with torch.inference_mode():
        p = dense.model(input_ids=ids).logits[0, start - 1:-1].double().log_softmax(-1)
        q = other.model(input_ids=ids).logits[0, start - 1:-1].double().log_softmax(-1)
    for j, kl in enumerate(theirs["responses"][0]["kl"]):
        top = p[j].topk(20).indices
        pt, qt = p[j, top].exp(), q[j, top].exp()
        by_hand = float((pt * (pt / qt).log()).sum() + (1 - pt.sum()) * ((1 - pt.sum()) / (1 - qt.sum())).log())
        assert kl == pytest.approx(by_hand, rel=1e-4, abs=1e-9)
        assert kl <= float((p[j].exp() * (p[j] - q[j])).sum()) + 1e-9


# ---- openai backend: a fake vLLM server with echo + top logprobs ---------------------------------


class EchoServer:
    """``/v1/models`` and ``/v1/completions`` (echo, logprobs=k, token ids) computed by an hf backend."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.bodies: list[dict] = []
        server = self

        class Handler(JSONHandler):
            def do_GET(self):  # noqa: N802
                self.reply(200, {"object": "list", "data": [{"id": "tiny"}]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                self.reply(200, server.answer(body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, body: dict) -> dict:
        import torch

        ids, k = body["prompt"], body["logprobs"]
        with torch.inference_mode():
            logp = self.backend.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
        tops = [None] + [{f"token_id:{t}": v for v, t in zip(*(x.tolist() for x in logp[i - 1].topk(k)),
                                                                 strict=True)} for i in range(1, len(ids))]
        values = [None] + [logp[i - 1, t].item() for i, t in enumerate(ids) if i > 0]
        return {"choices": [{"index": 0, "text": "", "logprobs": {
            "tokens": [f"token_id:{t}" for t in ids], "token_logprobs": values, "top_logprobs": tops}}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1}}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_openai_echo_logprobs_give_zero_for_the_same_model_and_a_shared_support_bound_otherwise(models):
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.backends.openai_api import OpenAIBackend
    from comptrust.divergence import build_reference, compare
    from comptrust.types import GenParams, Sample, ScoredSample

    dense = HFBackend.from_path(models["dense"], dtype="float32")
    other = HFBackend.from_path(models["other"], dtype="float32")
    sample = Sample("s/0", "stereotype", "s", ({"role": "user", "content": "You are good?"},), GenParams(8))
    ref = build_reference(dense, [ScoredSample(sample, ["yes or no. I agree"], {})], 10, 20, dense.info())
    exact = compare(other, ref, Path("dense"), {})["summary"]["mean_kl"]
    for backend, same in ((dense, True), (other, False)):
        server = EchoServer(backend)
        try:
            api = OpenAIBackend(server.url, "tiny")
            result = compare(api, ref, Path("dense"), {})
        finally:
            server.close()
        assert server.bodies[-1]["echo"] is True and server.bodies[-1]["return_tokens_as_token_ids"] is True
        if same:  # the server's top 20 are the dense top 20: every cell known
            assert result["estimator"] == EXACT and result["summary"]["mean_kl"] == pytest.approx(0, abs=1e-6)
            assert result["summary"]["same_top_rate"] == 1.0
        else:  # fewer cells, so a looser lower bound of the exact coarse KL
            assert result["estimator"] == SHARED and 0 < result["summary"]["mean_kl"] <= exact + 1e-9


def test_openai_cannot_be_the_reference(models):
    class Served:
        name = "openai"

        def teacher_force(self, requests, k):  # pragma: no cover - refused first
            raise AssertionError

    with pytest.raises(ConfigError, match="server applies its own chat template"):
        DivergencePlan(reference=True).prepare(Served(), ["stereotype"])


# ---- vllm: its prompt_logprobs format ------------------------------------------------------------


def test_vllm_teacher_forcing_reads_prompt_logprobs(monkeypatch):
    from comptrust.backends import vllm as vllm_backend

    class Logprob:
        def __init__(self, logprob: float) -> None:
            self.logprob = logprob

    class Out:
        prompt_logprobs = [None, {4: Logprob(-0.2), 9: Logprob(-1.9)}, {9: Logprob(-0.05), 4: Logprob(-4.0)}]

    class FakeVllm:
        @staticmethod
        def SamplingParams(**kw):  # noqa: N802
            assert kw["prompt_logprobs"] == 2 and kw["max_tokens"] == 1
            return kw

    class LLM:
        def generate(self, prompts, params, use_tqdm=False):
            assert prompts == [{"prompt_token_ids": [1, 4, 9]}]
            return [Out()]

    monkeypatch.setattr(vllm_backend, "import_vllm", lambda: FakeVllm)
    backend = object.__new__(vllm_backend.VLLMBackend)
    backend.llm = LLM()
    (res,) = backend.teacher_force([ForceRequest([1, 4, 9], 1, [[4, 7], [9, 4]])], 2)
    assert res.top_ids == [[4, 9], [9, 4]]
    assert res.support_logprobs[0][0] == -0.2 and math.isnan(res.support_logprobs[0][1])
    assert res.support_logprobs[1] == [-0.05, -4.0]


# ---- llama.cpp ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_llamacpp_f32_gguf_matches_the_hf_reference(tmp_path):
    pytest.importorskip("llama_cpp")
    from comptrust.backends.hf.backend import HFBackend
    from comptrust.backends.llamacpp import LlamaCppBackend
    from comptrust.compression import compress_model
    from comptrust.divergence import build_reference, compare
    from comptrust.types import GenParams, Sample, ScoredSample
    from test_gguf import build_tiny_llama_smol_vocab

    base = build_tiny_llama_smol_vocab(tmp_path / "base")
    f32 = compress_model(base, "gguf", tmp_path / "f32", gguf_type="F32")
    q4 = compress_model(base, "gguf", tmp_path / "q4", gguf_type="Q4_K_M")
    dense = HFBackend.from_path(base, dtype="float32")
    sample = Sample("s/0", "stereotype", "s", ({"role": "user", "content": "Say hello."},), GenParams(8))
    ref = build_reference(dense, [ScoredSample(sample, ["Hello there, friend"], {})], 10, 20, dense.info())
    same = compare(LlamaCppBackend.from_spec(str(f32)), ref, Path("dense"), {})
    quant = compare(LlamaCppBackend.from_spec(str(q4)), ref, Path("dense"), {})
    assert same["estimator"] == EXACT
    assert same["summary"]["mean_kl"] < 1e-4  # F16 KV cache in llama.cpp: not bit-identical
    assert quant["summary"]["mean_kl"] > 10 * same["summary"]["mean_kl"]
