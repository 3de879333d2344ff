"""Any OpenAI-compatible chat endpoint (vLLM's server, TGI, llama.cpp's server, hosted APIs).

Plain ``httpx`` over the chat completions schema, so no SDK is needed.  Each
:class:`~comptrust.types.GenRow` is one request with ``n = 1`` and its own
``seed`` (the row seed folded to 31 bits, which every server accepts), so a
sample's draws map to the same (sample, draw index, seed) cache entries as the
hf backend's.  Requests run on a bounded thread pool; results are handed to
``on_result`` on the calling thread (the SQLite cache is single-threaded).
Rate limits (429), server errors (5xx), timeouts and dropped connections are
retried with exponential backoff; anything else fails at once with the
server's own message.  MMLU's choice log-likelihoods come from ``/completions``
with ``echo`` and ``logprobs`` where the server offers it (vLLM does).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from comptrust.backends.base import OnResult
from comptrust.chat import collapse
from comptrust.divergence import from_top_dicts
from comptrust.errors import BackendError, ConfigError, error_message, retry_after_seconds
from comptrust.types import Completion, GenRow, Message, stable_hash

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
UNSUPPORTED_STATUS = {400, 404, 405, 422, 501}  # how servers refuse /completions with echo + logprobs
MAX_BACKOFF_S = 60.0


LOGLIK_HINT = ("MMLU needs a server with /v1/completions, echo and logprobs (vLLM's does); or run MMLU with "
               "--backend hf")


DIVERGENCE_HINT = ("divergence from dense needs /v1/completions with echo, logprobs and token ids "
                   "(vLLM's server: return_tokens_as_token_ids); or evaluate with --backend hf, llamacpp or vllm")


def _token_id(key: str) -> int:
    """vLLM's ``return_tokens_as_token_ids`` writes tokens as ``token_id:123``."""
    if not key.startswith("token_id:"):
        raise BackendError(f"the server named a token {key[:30]!r}, not its id", DIVERGENCE_HINT)
    return int(key[len("token_id:"):])


def echoed_tables(data: dict[str, Any], ids: Sequence[int], start: int) -> list[dict[int, float]]:
    """``{token id: logprob}`` per position ``start..len(ids)-1`` of an echo + logprobs answer."""
    try:
        logprobs = data["choices"][0]["logprobs"]
        tokens, values, tops = logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]
        tables = []
        for q in range(start, len(ids)):
            table = {_token_id(t): float(v) for t, v in (tops[q] or {}).items()}
            if _token_id(tokens[q]) != ids[q]:
                raise BackendError(f"the server echoed token {tokens[q]!r} where token_id:{ids[q]} was sent",
                                   DIVERGENCE_HINT)
            if values[q] is not None:
                table[ids[q]] = float(values[q])
            tables.append(table)
        return tables
    except (KeyError, IndexError, TypeError, ValueError):
        raise BackendError("the server returned no per-token top log-probabilities for the prompt",
                           DIVERGENCE_HINT) from None


def continuation_logprob(context: Sequence[str], tokens: Sequence[str], values: Sequence[float | None],
                         choice: str) -> float:
    """Sum of the log-probabilities of the tokens that follow ``context`` in ``tokens``."""
    n = len(context)
    if len(tokens) <= n or list(tokens[:n]) != list(context):
        raise BackendError(f"the server tokenizes the prompt's end together with the choice {choice!r}, so its "
                           "probability cannot be separated", "run MMLU with --backend hf, which splits as lm-eval")
    picked = values[n:]
    if any(v is None for v in picked):
        raise BackendError("the server returned no log-probability for a choice token", LOGLIK_HINT)
    return float(sum(picked))  # type: ignore[arg-type]


def request_messages(messages: Sequence[Message]) -> list[Message]:
    """DecodingTrust's semantics (the last system message wins), then the server's own template."""
    conv = collapse(messages)
    head = [{"role": "system", "content": conv.system}] if conv.system is not None else []
    return head + [dict(t) for t in conv.turns]


def request_body(model: str, row: GenRow) -> dict[str, Any]:
    """The chat completions payload of one row."""
    body: dict[str, Any] = {"model": model, "messages": request_messages(row.messages), "n": 1,
                            "max_tokens": row.params.max_tokens, "temperature": row.params.temperature,
                            "seed": row.row_seed & 0x7FFFFFFF}
    if row.params.temperature > 0 and row.params.top_p < 1.0:
        body["top_p"] = row.params.top_p
    return body


class OpenAIBackend:
    """Chat completions against ``base_url`` for the served ``model``."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                 timeout: float = 120.0, max_retries: int = 5, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx

        if concurrency < 1:
            raise ConfigError(f"concurrency {concurrency} is below 1", "pass --concurrency 1 or more")
        if timeout <= 0:
            raise ConfigError(f"timeout {timeout} is not positive", "pass a timeout in seconds, e.g. 120")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.sleep = sleep
        key = os.environ.get(api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout),
                                   limits=httpx.Limits(max_connections=concurrency))
        self.requests = 0  # HTTP requests sent (retries included), for tests and logs
        self.served = self._served_model()
        self.fingerprint = "openai-" + stable_hash([self.base_url, model, self.served], 16)

    @classmethod
    def from_spec(cls, spec: str, batch_size: int | None = None, chat_template: str | None = None,
                  base_url: str | None = None, api_key_env: str | None = None, concurrency: int | None = None,
                  timeout: float | None = None, max_retries: int | None = None, **_: Any) -> OpenAIBackend:
        """``spec`` is the served model name; ``batch_size`` doubles as concurrency when that is unset."""
        if chat_template not in (None, "model"):
            raise ConfigError(f"--chat-template {chat_template} cannot apply to a served model",
                              "the server formats prompts with its own template; start it with the one you want")
        url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        return cls(url, spec, api_key_env=api_key_env or "OPENAI_API_KEY",
                   concurrency=concurrency or batch_size or 8, timeout=timeout or 120.0,
                   max_retries=5 if max_retries is None else max_retries)

    # ---- HTTP -------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One call with retries; returns the JSON body or raises a one-line BackendError."""
        import httpx

        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                resp = self.client.request(method, path, json=body)
            except httpx.TimeoutException:
                problem = f"{self.base_url}{path} did not answer within {self.timeout:g} s"
                retry_after = None
            except httpx.TransportError as exc:
                problem = f"cannot reach {self.base_url} ({type(exc).__name__})"
                retry_after = None
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError:
                        raise BackendError(f"{self.base_url}{path} answered with non-JSON text",
                                           "check that --base-url points at an OpenAI-compatible /v1 API") from None
                detail = error_message(resp)
                if resp.status_code in (401, 403):
                    raise BackendError(f"{self.base_url} refused the request ({resp.status_code}: {detail})",
                                       f"set the API key in ${self.api_key_env} (or pass --api-key-env NAME)")
                if resp.status_code not in RETRY_STATUS:
                    error = BackendError(f"{self.base_url}{path} returned {resp.status_code}: {detail}",
                                         "check the model name and request options")
                    error.status = resp.status_code  # type: ignore[attr-defined]
                    raise error
                problem = f"{self.base_url}{path} returned {resp.status_code} ({detail})"
                retry_after = retry_after_seconds(resp)
            if attempt > self.max_retries:
                raise BackendError(f"{problem}, {self.max_retries} retries exhausted",
                                   "check that the server is up (or raise --timeout / lower --concurrency)")
            delay = retry_after if retry_after is not None else self.backoff * 2 ** (attempt - 1)
            self.sleep(min(MAX_BACKOFF_S, delay))

    def _served_model(self) -> dict[str, Any]:
        """The server's entry for ``model`` from ``GET /models`` (proves the server is reachable)."""
        listing = self._request("GET", "/models").get("data") or []
        ids = [m.get("id") for m in listing if isinstance(m, dict)]
        for entry in listing:
            if isinstance(entry, dict) and entry.get("id") == self.model:
                return {k: entry[k] for k in ("id", "root", "owned_by") if k in entry}
        if ids:
            shown = ", ".join(str(i) for i in ids[:10])
            raise BackendError(f"{self.base_url} does not serve a model named {self.model!r}",
                               f"pass one of: {shown}")
        return {"id": self.model}

    # ---- protocol ---------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        import httpx

        return {"backend": self.name, "fingerprint": self.fingerprint, "name": self.model,
                "base_url": self.base_url, "served": self.served, "concurrency": self.concurrency,
                "chat_template": "server", "compression": None, "versions": {"httpx": httpx.__version__}}

    def complete(self, row: GenRow) -> Completion:
        data = self._request("POST", "/chat/completions", request_body(self.model, row))
        try:
            text = data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.base_url} answered without choices[0].message.content",
                               "check that the server implements OpenAI chat completions") from None
        usage = data.get("usage") or {}
        return Completion(text=text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))

    def generate(self, rows: Sequence[GenRow], on_result: OnResult | None = None) -> list[Completion]:
        """All rows, at most ``concurrency`` in flight; the first hard error stops the rest."""
        return self._parallel(self.complete, rows, on_result)

    def _parallel(self, call: Callable[[Any], Any], items: Sequence[Any],
                  on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
        """``call`` on every item on the thread pool, results in order; ``on_result`` runs on this thread."""
        results: list[Any] = [None] * len(items)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="comptrust-openai") as pool:
            pending: dict[Future[Any], int] = {}
            next_item = 0
            while next_item < len(items) or pending:
                while next_item < len(items) and len(pending) < 2 * self.concurrency:
                    pending[pool.submit(call, items[next_item])] = next_item
                    next_item += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        result = fut.result()
                    except BaseException:
                        for other in pending:
                            other.cancel()
                        raise
                    results[i] = result
                    if on_result:
                        on_result(i, result)
        return results

    # ---- log-likelihoods (benign MMLU) ----------------------------------------------------

    def prompt_logprobs(self, text: str) -> tuple[list[str], list[float | None]]:
        """The prompt's tokens and their log-probabilities, from ``/completions`` with ``echo`` and ``logprobs``.

        This is how lm-eval's ``local-completions`` model scores choices on vLLM's and other
        servers; chat-only APIs do not offer it.
        """
        body = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "logprobs": 1,
                "echo": True}
        try:
            data = self._request("POST", "/completions", body)
        except BackendError as exc:
            if getattr(exc, "status", None) in UNSUPPORTED_STATUS:  # no such endpoint or option here
                raise BackendError(f"{exc.problem} (MMLU needs prompt log-probabilities)", LOGLIK_HINT) from exc
            raise
        try:
            logprobs = data["choices"][0]["logprobs"]
            tokens, values = list(logprobs["tokens"]), list(logprobs["token_logprobs"])
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"{self.base_url} returned no prompt log-probabilities (completions with echo "
                               "and logprobs)", LOGLIK_HINT) from None
        usage = data.get("usage") or {}
        n_prompt = int(usage.get("prompt_tokens") or len(tokens) - int(usage.get("completion_tokens") or 1))
        return tokens[:n_prompt], values[:n_prompt]

    def choice_logprobs(self, prompts: list[str], choices: list[str]) -> list[list[float]]:
        """``LoglikelihoodBackend``: log p(choice | prompt) from the server's prompt log-probabilities.

        Each prompt is sent alone and with each choice appended; the choice's tokens are those
        after the prompt's, so the server's own tokenizer decides the split (checked to be a
        clean one: the prompt's tokens must be a prefix of the joint tokens).
        """
        texts = list(dict.fromkeys(prompts + [p + c for p in prompts for c in choices]))
        answers = dict(zip(texts, self._parallel(self.prompt_logprobs, texts), strict=True))
        out = []
        for prompt in prompts:
            context, _ = answers[prompt]
            row = []
            for choice in choices:
                tokens, values = answers[prompt + choice]
                row.append(continuation_logprob(context, tokens, values, choice))
            out.append(row)
        return out

    def teacher_force(self, requests: list[Any], k: int) -> list[Any]:
        """Divergence from dense: ``/completions`` on the reference's token ids with ``echo`` and ``logprobs``.

        The server returns its own top ``k`` per position (and the prompt token's), keyed by token id
        with vLLM's ``return_tokens_as_token_ids``; dense top-K tokens outside those are merged into
        the rest cell.  OpenAI's own API allows at most 5 and no token ids: it cannot do this.
        """
        def one(request: Any) -> Any:
            body = {"model": self.model, "prompt": list(request.ids), "max_tokens": 1, "temperature": 0.0,
                    "logprobs": k, "echo": True, "return_tokens_as_token_ids": True}
            try:
                data = self._request("POST", "/completions", body)
            except BackendError as exc:
                if getattr(exc, "status", None) in UNSUPPORTED_STATUS:
                    raise BackendError(f"{exc.problem} (divergence needs prompt log-probabilities)",
                                       DIVERGENCE_HINT) from exc
                raise
            return from_top_dicts(echoed_tables(data, request.ids, request.start), k, request.support)

        return self._parallel(one, requests)

    def close(self) -> None:
        self.client.close()
