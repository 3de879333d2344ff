"""The written report: escaping of untrusted text, the CLI, and rendering in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from comptrust.cli import main
from comptrust.report.build import write_report
from comptrust.report.runs import MEASURES
from report_fakes import compressed_model, dense_model, scored_samples, write_run

EVIL = '<script>document.title="pwned"</script> </textarea><b>bold</b> {{ 7*7 }} {% if 1 %}x{% endif %} `` ``` |'


pytestmark = pytest.mark.usefixtures("fake_perspectives")


def evil_runs(tmp_path):
    """Dense answers right, compressed answers with planted markup, so the drill-down shows it."""
    n = 6
    spec = [("a", True)] * n + [("b", True)] * n
    dense = write_run(tmp_path, "dense", dense_model(name='<img src=x onerror="boom()">model'),
                      {m: scored_samples(spec) for m in MEASURES})
    evil = {m: scored_samples(spec, responses=[EVIL] * (2 * n)) for m in MEASURES}
    comp = write_run(tmp_path, "comp", compressed_model("gptq", 3, base_sha="base-sha"), evil)
    return dense, comp


def test_untrusted_text_is_escaped_in_html_and_markdown(tmp_path):
    dense, comp = evil_runs(tmp_path)
    paths = write_report([dense, comp], tmp_path / "out", n_bootstrap=20)
    html = paths["html"].read_text()
    assert "<script" not in html.lower()  # the page has no script at all, planted or own
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in html
    assert "&lt;/textarea&gt;&lt;b&gt;bold&lt;/b&gt;" in html
    assert "</textarea>" not in html and "<b>bold</b>" not in html
    assert "{{ 7*7 }}" in html and "{% if 1 %}x{% endif %}" in html  # shown as text, never evaluated
    assert "&lt;img src=x onerror=&#34;boom()&#34;&gt;model (dense)" in html
    assert "<img src=x" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    md = paths["markdown"].read_text()
    assert "&lt;img src=x onerror=\"boom()\"&gt;model (dense)" in md  # table cells: no raw HTML
    fence = "````text\n"  # longer than the ``` inside the planted text, so it cannot be closed early
    assert fence + EVIL + "\n````" in md


def test_report_is_self_contained(tmp_path):
    dense, comp = evil_runs(tmp_path)
    html = write_report([dense, comp], tmp_path / "out", n_bootstrap=0)["html"].read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<link" not in html and "@import" not in html


def test_cli_report_writes_four_files(tmp_path, capsys):
    dense, comp = evil_runs(tmp_path)
    out = tmp_path / "report"
    assert main(["report", str(dense), str(comp), "--out", str(out), "--bootstrap", "30", "--seed", "5"]) == 0
    for name in ("report.html", "report.md", "scores.csv", "scores.json"):
        assert (out / name).is_file()
    data = json.loads((out / "scores.json").read_text())
    assert data["settings"]["bootstrap_resamples"] == 30 and data["settings"]["bootstrap_seed"] == 5
    assert str(out / "report.html") in capsys.readouterr().out


def test_cli_report_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "run folder" in err and "does not exist" in err and len(err.strip().splitlines()) == 1


# ---- a real browser -------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# In CI (.ci/run installs chromium) a missing browser is a failure, never a silent skip.
NO_BROWSER_SKIP = os.environ.get("CI") == "true"


def render(page, tmp_path, name):
    """Screenshot ``page`` headless; returns (png path, console lines, DOM)."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / ('profile-' + name)}", "--enable-logging=stderr", "--v=0"]
    png = tmp_path / f"{name}.png"
    shot = subprocess.run([CHROMIUM, *flags, f"--screenshot={png}", "--window-size=1280,2400", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    # Chromium logs every console message (errors, uncaught exceptions, CSP violations) as "CONSOLE".
    console = [ln for ln in (shot.stderr + dom.stderr).splitlines() if ":CONSOLE" in ln]
    return png, console, dom.stdout


def distinct_colours(png) -> tuple[int, float]:
    from PIL import Image

    img = Image.open(png).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20)
    top = max(c for c, _ in colours)
    return len(colours), top / (img.width * img.height)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None and not NO_BROWSER_SKIP,
                    reason="needs Debian's chromium (apt-get install -y chromium)")
def test_console_check_catches_a_javascript_error(tmp_path):
    """The detector used below must fail on a page that throws, or its silence proves nothing."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined();</script></body></html>")
    _, console, _ = render(page, tmp_path, "broken")
    assert any("Uncaught ReferenceError" in line for line in console)


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None and not NO_BROWSER_SKIP,
                    reason="needs Debian's chromium (apt-get install -y chromium)")
def test_report_renders_in_chromium_without_errors(tmp_path):
    dense, comp = evil_runs(tmp_path)
    paths = write_report([dense, comp], tmp_path / "out", n_bootstrap=50)
    png, console, dom = render(paths["html"], tmp_path, "report")
    assert console == []
    assert "<title>comptrust report" in dom and "Base model: &lt;img src=x" in dom
    assert "<img src=x" not in dom  # the planted model name stays text
    assert "<script" not in dom.lower()  # the planted script is text, not an element
    assert '&lt;script&gt;document.title="pwned"&lt;/script&gt;' in dom
    assert "pwned" not in dom.split("</title>")[0]
    n_colours, dominant = distinct_colours(png)
    assert n_colours > 50 and dominant < 0.97  # text, tables and charts, not a blank page


def test_a_single_dense_run_still_makes_a_report(tmp_path):
    """``comptrust demo`` reports one dense run: scores and a radar, no deltas, a note saying why."""
    dense = write_run(tmp_path, "dense", dense_model(), {m: scored_samples([("a", True), ("b", False)])
                                                         for m in MEASURES})
    paths = write_report([dense], tmp_path / "out")
    html = paths["html"].read_text()
    assert "Only the dense model tiny-llama was given" in html
    assert html.count("data:image/png;base64,") == 1  # its radar
    assert "Change vs dense" not in html
    data = json.loads(paths["json"].read_text())
    assert data["variants"][0]["scores"]["average"]["mean"] == 50.0
