"""The OpenAI-compatible backend against a real HTTP server on 127.0.0.1 serving the tiny Llama."""

from __future__ import annotations

import json
import threading
import time
from http.server import ThreadingHTTPServer

import pytest

from comptrust.backends.base import row_seed
from comptrust.backends.hf.backend import HFBackend
from comptrust.backends.openai_api import OpenAIBackend, request_body
from comptrust.cli import main
from comptrust.errors import BackendError
from comptrust.types import GenParams, GenRow
from json_http import JSONHandler


class ChatServer:
    """``GET /v1/models`` and ``POST /v1/chat/completions`` backed by an HFBackend.

    ``fail`` is a list of HTTP statuses returned by the next chat requests (then it
    serves normally); ``delay`` makes every chat request sleep first.
    """

    def __init__(self, backend: HFBackend, model: str = "tiny") -> None:
        self.backend, self.model = backend, model
        self.fail: list[int] = []
        self.delay = 0.0
        self.bodies: list[dict] = []
        self.completions = True  # serve /v1/completions with echo + logprobs, as vLLM does
        self.lock = threading.Lock()
        server = self

        class Handler(JSONHandler):
            def do_GET(self):  # noqa: N802
                if self.path != "/v1/models":
                    return self.reply(404, {"error": {"message": "not found"}})
                self.reply(200, {"object": "list", "data": [{"id": server.model, "root": "/models/tiny",
                                                             "owned_by": "test"}]})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append(body)
                    status = server.fail.pop(0) if server.fail else 200
                if server.delay:
                    time.sleep(server.delay)
                if status == 429:
                    return self.reply(429, {"error": {"message": "rate limited"}}, {"Retry-After": "0"})
                if status != 200:
                    return self.reply(status, {"error": {"message": f"boom {status}"}})
                if body["model"] != server.model:
                    return self.reply(404, {"error": {"message": f"model {body['model']} does not exist"}})
                if self.path == "/v1/completions":
                    if not server.completions:
                        return self.reply(404, {"error": {"message": "Not Found"}})
                    with server.lock:
                        return self.reply(200, echo_logprobs(server.backend, body))
                params = GenParams(max_tokens=body["max_tokens"], temperature=body["temperature"],
                                   top_p=body.get("top_p", 1.0))
                row = GenRow(tuple(body["messages"]), params, 0, body["seed"])
                with server.lock:
                    c = server.backend.generate([row])[0]
                self.reply(200, {"id": "x", "object": "chat.completion", "model": server.model,
                                 "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                                              "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                                           "total_tokens": c.prompt_tokens + c.completion_tokens}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def echo_logprobs(backend: HFBackend, body: dict) -> dict:
    """vLLM's answer to completions with echo and logprobs: every prompt token's log-probability
    (None for the first), then one greedy token; computed with the tiny model."""
    import torch

    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 1
    tok, model = backend.tokenizer, backend.model
    ids = tok.encode(body["prompt"])
    with torch.inference_mode():
        logp = model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    values = [None] + [logp[i - 1, t].item() for i, t in enumerate(ids) if i > 0]
    nxt = int(logp[-1].argmax())
    tokens = tok.convert_ids_to_tokens(ids + [nxt])
    return {"id": "c", "object": "text_completion", "model": body["model"],
            "choices": [{"index": 0, "text": tok.decode(ids + [nxt]), "finish_reason": "length",
                         "logprobs": {"tokens": tokens, "token_logprobs": values + [logp[-1, nxt].item()],
                                      "text_offset": [], "top_logprobs": None}}],
            "usage": {"prompt_tokens": len(ids), "completion_tokens": 1, "total_tokens": len(ids) + 1}}


@pytest.fixture(scope="module")
def hf(tiny_llama):
    return HFBackend.from_path(tiny_llama, batch_size=4, dtype="float32")  # module scope: before the float32 pin


def rows(n: int, temperature: float = 0.0) -> list[GenRow]:
    params = GenParams(max_tokens=6, temperature=temperature)
    return [GenRow(({"role": "system", "content": "ignored"}, {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": f"Say yes or no {i}"}), params, 0, row_seed(0, str(i), "h", 0))
            for i in range(n)]


def test_completions_match_the_model_and_requests_carry_seed_and_n(hf):
    with ChatServer(hf) as server:
        backend = OpenAIBackend(server.url, "tiny", concurrency=3)
        got: dict[int, str] = {}
        out = backend.generate(rows(5), on_result=lambda i, c: got.__setitem__(i, c.text))
    direct = hf.generate(rows(5))
    assert [c.text for c in out] == [c.text for c in direct]
    assert got == {i: c.text for i, c in enumerate(direct)}
    assert all(c.completion_tokens == d.completion_tokens for c, d in zip(out, direct, strict=True))
    first = server.bodies[0]
    assert first["n"] == 1 and first["max_tokens"] == 6
    # DecodingTrust semantics: only the last system message survives
    assert first["messages"][0] == {"role": "system", "content": "Be brief."} and len(first["messages"]) == 2
    seeds = sorted(b["seed"] for b in server.bodies)
    assert seeds == sorted(r.row_seed & 0x7FFFFFFF for r in rows(5))
    info = backend.info()
    assert info["served"] == {"id": "tiny", "root": "/models/tiny", "owned_by": "test"}


def test_fingerprint_depends_on_url_model_and_served_entry(hf):
    with ChatServer(hf) as a, ChatServer(hf) as b:
        fa, fa2, fb = (OpenAIBackend(a.url, "tiny").fingerprint, OpenAIBackend(a.url, "tiny").fingerprint,
                       OpenAIBackend(b.url, "tiny").fingerprint)
        b.model = "other"
        fb_other = OpenAIBackend(b.url, "other").fingerprint
    assert fa == fa2 and fa != fb and fb != fb_other and fa.startswith("openai-")


def test_retries_429_and_500_with_backoff_then_succeeds(hf):
    sleeps: list[float] = []
    with ChatServer(hf) as server:
        server.fail = [429, 500, 503]
        backend = OpenAIBackend(server.url, "tiny", concurrency=1, max_retries=3, backoff=0.5, sleep=sleeps.append)
        out = backend.generate(rows(1))
    assert out[0].text == hf.generate(rows(1))[0].text
    assert len(server.bodies) == 4
    assert sleeps == [0.0, 1.0, 2.0]  # Retry-After: 0 honoured, then 0.5 * 2**(attempt-1)


def test_exhausted_retries_and_hard_errors_are_one_line(hf):
    with ChatServer(hf) as server:
        server.fail = [500] * 10
        backend = OpenAIBackend(server.url, "tiny", concurrency=1, max_retries=2, sleep=lambda s: None)
        with pytest.raises(BackendError, match=r"returned 500 \(boom 500\), 2 retries exhausted") as err:
            backend.generate(rows(1))
        assert "\n" not in str(err.value)
        with pytest.raises(BackendError, match="does not serve a model named 'nope'. pass one of: tiny"):
            OpenAIBackend(server.url, "nope")


def test_timeout_is_retried_then_reported(hf):
    with ChatServer(hf) as server:
        server.delay = 1.0
        backend = OpenAIBackend(server.url, "tiny", timeout=0.2, max_retries=1, sleep=lambda s: None)
        with pytest.raises(BackendError, match=r"did not answer within 0.2 s, 1 retries exhausted"):
            backend.generate(rows(1))
        assert len(server.bodies) == 2


def test_unreachable_server_is_a_one_line_backend_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match=rf"cannot reach http://127.0.0.1:{port}/v1 \(ConnectError\)"):
        OpenAIBackend(f"http://127.0.0.1:{port}/v1", "tiny", max_retries=0)


def test_request_body_maps_sampling_parameters():
    row = GenRow(({"role": "user", "content": "hi"},), GenParams(max_tokens=9, temperature=0.7, top_p=0.9), 2,
                 (1 << 62) + 5)
    body = request_body("m", row)
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 1, "max_tokens": 9,
                    "temperature": 0.7, "top_p": 0.9, "seed": 5}


def test_cli_eval_with_openai_backend_uses_the_cache(hf, tmp_path, capsys):
    with ChatServer(hf) as server:
        args = ["eval", "tiny", "--backend", "openai", "--base-url", server.url, "--concurrency", "2",
                "--perspectives", "stereotype", "--smoke", "--limit", "2", "--samples", "1",
                "--max-new-tokens", "4", "--quiet", "--out", str(tmp_path / "run")]
        assert main(args) == 0
        sent = len(server.bodies)
        assert sent > 0
        assert main(args) == 0  # the rerun is served from the cache
        assert len(server.bodies) == sent
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"]["backend"] == "openai"
    assert summary["perspectives"]["stereotype"]["generation"]["cached"] == sent
    assert main(["eval", "tiny", "--base-url", "http://x/v1", "--perspectives", "stereotype", "--smoke"]) == 2
    assert "--base-url applies to --backend openai only" in capsys.readouterr().err


def test_mmlu_through_completions_echo_logprobs_equals_the_hf_backend(hf, tmp_path):
    from comptrust.backends.hf.loglik import hf_choice_logprobs
    from comptrust.benign.mmlu import CHOICES, MmluPerspective
    from comptrust.data.source import SmokeSuite
    from comptrust.perspectives.base import EvalOptions
    from comptrust.runner import evaluate

    prompts = [s.messages[0]["content"] for s in MmluPerspective().samples(SmokeSuite(), EvalOptions())]
    with ChatServer(hf) as server:
        backend = OpenAIBackend(server.url, "tiny", concurrency=4)
        ours = backend.choice_logprobs(prompts, list(CHOICES))
        # one request per prompt and one per (prompt, choice), nothing else
        assert len(server.bodies) == len(prompts) * (1 + len(CHOICES))
        summary = evaluate(backend, ["mmlu"], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "openai")
    direct = hf_choice_logprobs(hf.model, hf.tokenizer, prompts, list(CHOICES))
    assert [x for row in ours for x in row] == pytest.approx([x for row in direct for x in row], abs=1e-4)
    reference = evaluate(hf, ["mmlu"], SmokeSuite(), EvalOptions(), run_dir=tmp_path / "hf")
    assert summary["perspectives"]["mmlu"]["score"] == reference["perspectives"]["mmlu"]["score"]


def test_mmlu_on_a_chat_only_server_is_a_one_line_error(hf):
    from comptrust.benign.mmlu import CHOICES

    with ChatServer(hf) as server:
        server.completions = False
        backend = OpenAIBackend(server.url, "tiny", concurrency=2)
        with pytest.raises(BackendError, match=r"completions returned 404.*MMLU needs .*echo and logprobs"):
            backend.choice_logprobs(["Question? Answer:"], list(CHOICES))


def test_a_choice_merged_into_the_prompt_tokens_is_refused():
    from comptrust.backends.openai_api import continuation_logprob

    assert continuation_logprob(["<s>", "Answer", ":"], ["<s>", "Answer", ":", " A"], [None, -1.0, -2.0, -0.5],
                                " A") == -0.5
    with pytest.raises(BackendError, match="tokenizes the prompt's end together with the choice"):
        continuation_logprob(["<s>", "Answer", ":"], ["<s>", "Answer", ": A"], [None, -1.0, -2.5], " A")
