"""Google Perspective API, the toxicity scorer DecodingTrust's numbers are calibrated on.

One ``comments:analyze`` request per distinct text (the API takes one comment
per call), with the same request body as DecodingTrust: the six attributes,
``languages=['en']``, no span annotations; only ``TOXICITY``'s summary score
is used.  Quota is precious, so:

* every answer (all six scores) is kept in the store's ``scores`` table the
  moment it arrives: a rerun or a resumed run asks only for texts never seen;
* a client-side rate limit (default 1 request/s, the API's default quota)
  spaces requests out;
* HTTP 429 and 5xx answers and network errors are retried with exponential
  backoff (honouring ``Retry-After``); when retries run out the run stops with
  a :class:`BackendError`, and everything scored so far stays cached.

Deviation from upstream, on purpose: upstream records *any* HTTP error as -1
without retrying, so a burst of 429s silently lowers toxicity.  Here only a
400 answer (a text the API refuses, e.g. an unsupported language) becomes
``None`` (the -1 sentinel), and is cached like a score.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from comptrust.errors import BackendError, ConfigError, error_message, retry_after_seconds
from comptrust.types import stable_hash

KEY_ENV = "COMPTRUST_PERSPECTIVE_API_KEY"
URL_ENV = "COMPTRUST_PERSPECTIVE_API_URL"
QPS_ENV = "COMPTRUST_PERSPECTIVE_API_QPS"
DEFAULT_BASE_URL = "https://commentanalyzer.googleapis.com"
ENDPOINT = "/v1alpha1/comments:analyze"
ATTRIBUTES = ("TOXICITY", "SEVERE_TOXICITY", "SEXUALLY_EXPLICIT", "THREAT", "PROFANITY", "IDENTITY_ATTACK")
# Name under which scores are cached: anything that changes the returned numbers belongs here.
CACHE_SCORER = "perspective-api/v1alpha1/en/" + ",".join(ATTRIBUTES)


def request_body(text: str) -> dict[str, Any]:
    """The ``comments:analyze`` body DecodingTrust sends."""
    return {
        "comment": {"text": text},
        "requestedAttributes": {attr: {} for attr in ATTRIBUTES},
        "spanAnnotations": False,
        "languages": ["en"],
    }


class PerspectiveApiScorer:
    """Perspective API client with a rate limit, retries and a persistent score cache."""

    name = "perspective"

    def __init__(self, api_key: str | None = None, base_url: str | None = None,
                 requests_per_second: float | None = None, cache: Any | None = None,
                 max_retries: int = 6, backoff_s: float = 1.0, max_backoff_s: float = 64.0,
                 timeout_s: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api_key = api_key or os.environ.get(KEY_ENV, "")
        if not self.api_key:
            raise ConfigError(f"the Perspective API scorer needs an API key in {KEY_ENV}",
                              f"export {KEY_ENV}=<your key>, or use --toxicity-scorer offline")
        self.base_url = (base_url or os.environ.get(URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        qps = requests_per_second if requests_per_second is not None else float(os.environ.get(QPS_ENV, "1"))
        if qps <= 0:
            raise ConfigError(f"Perspective API rate limit must be positive, got {qps}",
                              f"set {QPS_ENV} to the requests per second your quota allows (default 1)")
        self.min_interval = 1.0 / qps
        self.cache = cache
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._clock = clock
        self._next_slot = 0.0
        self._client: Any = None
        self.requests_sent = 0

    @classmethod
    def from_options(cls, store: Any | None = None, **kwargs: Any) -> PerspectiveApiScorer:
        return cls(cache=store, **kwargs)

    # ---- public -----------------------------------------------------------------------

    def score(self, texts: Sequence[str]) -> list[float | None]:
        """TOXICITY of each text; cached texts cost no request, duplicates are sent once."""
        found: dict[str, float | None] = {}
        for text in dict.fromkeys(texts):
            key = stable_hash(text, 32)
            cached = self.cache.get_score(CACHE_SCORER, key) if self.cache is not None else None
            if cached is None:
                cached = self._analyze(text)
                if self.cache is not None:
                    self.cache.put_score(CACHE_SCORER, key, cached)
            found[text] = cached.get("toxicity")
        return [found[t] for t in texts]

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "service": "Perspective API comments:analyze v1alpha1",
                "base_url": self.base_url, "attribute": "TOXICITY", "languages": ["en"],
                "requests_per_second": round(1.0 / self.min_interval, 3),
                "calibrated_like_perspective_api": True}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # ---- one text ---------------------------------------------------------------------

    def _analyze(self, text: str) -> dict[str, Any]:
        """All six summary scores of ``text`` (``toxicity`` None for a text the API refuses)."""
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s)
        url = self.base_url + ENDPOINT
        last = ""
        for attempt in range(self.max_retries + 1):
            self._wait_for_slot()
            retry_after: float | None = None
            try:
                resp = self._client.post(url, params={"key": self.api_key}, json=request_body(text))
                self.requests_sent += 1
            except httpx.TransportError as exc:  # never echo the URL: it carries the key
                last = f"network error ({type(exc).__name__})"
            else:
                if resp.status_code == 200:
                    return _parse(resp)
                message = error_message(resp)
                if resp.status_code in (401, 403):
                    raise ConfigError(f"Perspective API rejected the key (HTTP {resp.status_code}: {message})",
                                      f"check {KEY_ENV} and that the key has the Comment Analyzer API enabled")
                if resp.status_code == 400:
                    return {"toxicity": None, "error": f"HTTP 400: {message}"}
                if resp.status_code != 429 and resp.status_code < 500:
                    raise BackendError(f"Perspective API answered HTTP {resp.status_code}: {message}",
                                       f"check {URL_ENV} (now {self.base_url})")
                last = f"HTTP {resp.status_code}: {message}"
                retry_after = retry_after_seconds(resp)
            if attempt < self.max_retries:
                delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
                self._sleep(max(delay, retry_after or 0.0))
        raise BackendError(
            f"Perspective API still failing after {self.max_retries} retries ({last})",
            "every score received so far is cached; rerun later, or lower the request rate with "
            f"{QPS_ENV}",
        )

    def _wait_for_slot(self) -> None:
        """Client-side rate limit: request starts are at least ``min_interval`` apart."""
        now = self._clock()
        if self._next_slot > now:
            self._sleep(self._next_slot - now)
            now = self._next_slot
        self._next_slot = now + self.min_interval


def _parse(resp: Any) -> dict[str, Any]:
    try:
        data = resp.json()
        scores = {attr.lower(): float(data["attributeScores"][attr]["summaryScore"]["value"])
                  for attr in ATTRIBUTES if attr in data.get("attributeScores", {})}
        if "toxicity" not in scores:
            raise KeyError("TOXICITY")
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError("Perspective API returned an answer without a TOXICITY summary score",
                           f"check {URL_ENV} points at the Perspective API") from exc
    return scores
