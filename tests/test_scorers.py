"""Toxicity scorers: the offline classifier, Perspective API against a local server, Detoxify's errors."""

from __future__ import annotations

import json
import sys
import threading
import types
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from comptrust.errors import BackendError, ConfigError, ModelError
from comptrust.scorers.base import ToxicityScorer, make_scorer
from comptrust.scorers.detoxify import DetoxifyScorer
from comptrust.scorers.offline import OfflineToxicityScorer
from comptrust.scorers.perspective_api import ATTRIBUTES, CACHE_SCORER, KEY_ENV, PerspectiveApiScorer
from comptrust.store.cache import Cache
from comptrust.types import stable_hash
from conftest import load_benchmark
from json_http import JSONHandler

# ---- offline -------------------------------------------------------------------------------


def test_offline_scorer_separates_insults_from_plain_text_in_batches():
    scorer = make_scorer("offline")
    assert isinstance(scorer, ToxicityScorer)
    texts = ["Have a lovely afternoon at the park.", "you are a fucking idiot", "Thanks for the help!",
             "shut up you stupid bitch"]
    one_batch = scorer.score(texts)
    small_batches = OfflineToxicityScorer(batch_size=3).score(texts)
    assert one_batch == pytest.approx(small_batches)
    assert one_batch[0] < 0.5 and one_batch[2] < 0.5
    assert one_batch[1] > 0.5 and one_batch[3] > 0.5
    assert all(0.0 <= v <= 1.0 for v in one_batch)
    info = scorer.info()
    assert info["calibrated_like_perspective_api"] is False
    assert "not calibrated like Perspective API" in info["note"]


def test_unknown_scorer_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown toxicity scorer 'gpt-judge'.*offline"):
        make_scorer("gpt-judge")


# ---- benchmarks/toxicity_agreement.py: the agreement figures in docs/perspectives/toxicity.md --------


def test_agreement_metrics_by_hand():
    bench = load_benchmark("toxicity_agreement")
    # Spearman with ties: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    assert bench.spearman([0.1, 0.5, 0.5, 0.9], [1, 2, 3, 4]) == pytest.approx(0.9486833, abs=1e-6)
    assert bench.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    # AUC: positives 0.8 and 0.4, negatives 0.4 and 0.1 -> pairs won 1 + 1 + 0.5 (tie) + 1 = 3.5 of 4
    assert bench.auc([True, True, False, False], [0.8, 0.4, 0.4, 0.1]) == pytest.approx(0.875)
    # Perspective > 0.5 on texts 1-2; the candidate on texts 2-3: 1 TP, 1 FP, 1 FN, 1 TN
    stats = bench.threshold_stats([0.9, 0.7, 0.2, 0.1], [0.3, 0.8, 0.6, 0.5])  # 0.5 itself is not toxic
    assert stats["accuracy"] == pytest.approx(0.5) and stats["f1"] == pytest.approx(0.5)
    assert stats["kappa"] == pytest.approx(0.0)  # chance agreement is 0.5 here


def test_agreement_benchmark_reproduces_the_documented_default_figures(dt_data, tmp_path, capsys):
    bench = load_benchmark("toxicity_agreement")
    out = tmp_path / "offline.json"
    bench.main(["--data", str(dt_data), "score", "--candidate", "offline", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["n"] == 7173 and result["texts_per_s"] > 0 and "alt-profanity-check" in result["description"]
    bench.main(["--data", str(dt_data), "table", str(out)])
    table = capsys.readouterr().out
    # the rows docs/perspectives/toxicity.md quotes for the default (alt-profanity-check 1.9.1)
    assert ("| offline | RTP continuations | 2,377 | 0.81 | 0.81 | 0.92 | 0.81 | 0.75 | 0.61 | "
            "0.47 / 0.34 | 0.47 / 0.31 |") in table
    assert "| offline | RTP prompts | 2,396 | 0.86 | 0.80 | 0.95 | 0.90 | 0.88 | 0.80 |" in table
    assert "| offline | GPT-3.5/4 prompts | 2,400 |" in table


def test_agreement_benchmark_refuses_an_unknown_candidate_in_one_line(dt_data, tmp_path):
    bench = load_benchmark("toxicity_agreement")
    with pytest.raises(SystemExit, match="unknown candidate 'gpt-judge'.*offline, cuss-inspect"):
        bench.main(["--data", str(dt_data), "score", "--candidate", "gpt-judge", "--out", str(tmp_path / "x.json")])


# ---- Perspective API against a local server speaking the same JSON ----------------------------


class FakePerspective:
    """State of the local server: answers like commentanalyzer v1alpha1 comments:analyze."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.failed_once: set[str] = set()
        self.always_503 = False
        self.lock = threading.Lock()


def _handler(state: FakePerspective):
    class Handler(JSONHandler):
        def do_POST(self):  # noqa: N802 (http.server API)
            url = urlparse(self.path)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = body["comment"]["text"]
            with state.lock:
                state.requests.append({"path": url.path, "query": parse_qs(url.query), "body": body})
            if url.path != "/v1alpha1/comments:analyze":
                return self.reply(404, {"error": {"code": 404, "message": "no such method"}})
            if parse_qs(url.query).get("key") != ["test-key"]:
                return self.reply(403, {"error": {"code": 403, "message": "API key not valid"}})
            if state.always_503:
                return self.reply(503, {"error": {"code": 503, "message": "backend unavailable"}})
            if "flaky" in text and text not in state.failed_once:
                state.failed_once.add(text)
                return self.reply(429, {"error": {"code": 429, "message": "quota exceeded"}},
                                  {"Retry-After": "0"})
            if "klingon" in text:
                return self.reply(400, {"error": {"code": 400, "message": "LANGUAGE_NOT_SUPPORTED_BY_ATTRIBUTE"}})
            tox = 0.92 if "idiot" in text else 0.07
            scores = {attr: {"summaryScore": {"value": tox if attr == "TOXICITY" else 0.01, "type": "PROBABILITY"}}
                      for attr in body["requestedAttributes"]}
            return self.reply(200, {"attributeScores": scores, "languages": ["en"]})

    return Handler


@pytest.fixture
def perspective_server():
    state = FakePerspective()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class FakeClock:
    """Time that only moves when the scorer sleeps, so rate limits and backoff cost no real time."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def _scorer(url: str, cache=None, clock: FakeClock | None = None, **kw) -> PerspectiveApiScorer:
    clock = clock or FakeClock()
    return PerspectiveApiScorer(api_key="test-key", base_url=url, cache=cache, timeout_s=5,
                                sleep=clock.sleep, clock=clock.clock, **kw)


def test_perspective_scores_sends_upstream_body_and_caches_everything(perspective_server, tmp_path):
    url, state = perspective_server
    cache = Cache(tmp_path / "cache.db")
    clock = FakeClock()
    scorer = _scorer(url, cache=cache, clock=clock)
    texts = ["you idiot", "what a nice day", "you idiot", "a flaky one", "tlhIngan klingon Hol"]
    assert scorer.score(texts) == [0.92, 0.07, 0.92, 0.07, None]
    # 4 distinct texts, one retried after a 429: 5 requests; the duplicate was sent once.
    assert len(state.requests) == 5
    first = state.requests[0]["body"]
    assert first["languages"] == ["en"] and first["spanAnnotations"] is False
    assert sorted(first["requestedAttributes"]) == sorted(ATTRIBUTES)
    # Rate limit 1 request/s (fake time): requests 2, 3 and 5 waited 1 s for their slot; the 429 cost
    # a 1 s backoff (Retry-After 0), after which the retry's slot was already free.
    assert clock.sleeps == [1.0, 1.0, 1.0, 1.0]
    assert cache.get_score(CACHE_SCORER, stable_hash("you idiot", 32)) == {
        "toxicity": 0.92, "severe_toxicity": 0.01, "sexually_explicit": 0.01, "threat": 0.01,
        "profanity": 0.01, "identity_attack": 0.01}
    scorer.close()

    # A rerun with the same store costs no quota, including the text the API refused.
    again = _scorer(url, cache=Cache(tmp_path / "cache.db"))
    assert again.score(texts) == [0.92, 0.07, 0.92, 0.07, None]
    assert len(state.requests) == 5 and again.requests_sent == 0


def test_perspective_rate_limit_spaces_requests(perspective_server):
    url, state = perspective_server
    clock = FakeClock()
    scorer = _scorer(url, clock=clock, requests_per_second=4)
    scorer.score(["a", "b", "c"])
    assert len(state.requests) == 3
    assert clock.sleeps == [0.25, 0.25]


def test_perspective_gives_up_with_backoff_and_a_clear_error(perspective_server):
    url, state = perspective_server
    state.always_503 = True
    clock = FakeClock()
    scorer = _scorer(url, clock=clock, requests_per_second=1000, max_retries=3, backoff_s=0.5)
    with pytest.raises(BackendError, match="still failing after 3 retries.*HTTP 503"):
        scorer.score(["hello"])
    assert len(state.requests) == 4
    backoffs = [s for s in clock.sleeps if s >= 0.5]
    assert backoffs == [0.5, 1.0, 2.0]


def test_perspective_bad_key_and_missing_key(perspective_server, monkeypatch):
    url, _ = perspective_server
    bad = PerspectiveApiScorer(api_key="wrong", base_url=url, timeout_s=5, sleep=lambda s: None)
    with pytest.raises(ConfigError, match="rejected the key.*403"):
        bad.score(["hello"])
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=KEY_ENV):
        PerspectiveApiScorer(base_url=url)


# ---- Detoxify ------------------------------------------------------------------------------


def test_detoxify_absent_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "detoxify", None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'comptrust\[detoxify\]'"):
        DetoxifyScorer().score(["hello"])


def test_detoxify_offline_checkpoint_fails_clearly(monkeypatch):
    class Unreachable:
        def __init__(self, *a, **k):
            raise OSError("Temporary failure in name resolution")

    monkeypatch.setitem(sys.modules, "detoxify", types.SimpleNamespace(Detoxify=Unreachable))
    with pytest.raises(ModelError, match="offline"):
        DetoxifyScorer().score(["hello"])


def test_detoxify_scores_in_batches(monkeypatch):
    calls: list[list[str]] = []

    class Fake:
        def __init__(self, model_type, device="cpu"):
            assert model_type == "original"

        def predict(self, texts):
            calls.append(list(texts))
            return {"toxicity": [0.9 if "idiot" in t else 0.1 for t in texts], "insult": [0.0] * len(texts)}

    monkeypatch.setitem(sys.modules, "detoxify", types.SimpleNamespace(Detoxify=Fake))
    scorer = DetoxifyScorer(batch_size=2)
    assert scorer.score(["idiot", "hi", "ok", "idiot!"]) == [0.9, 0.1, 0.1, 0.9]
    assert calls == [["idiot", "hi"], ["ok", "idiot!"]]
    assert scorer.info()["calibrated_like_perspective_api"] is False
