"""``write_report``: run folders in, report.html / report.md / scores.csv / scores.json out."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from comptrust.errors import ConfigError
from comptrust.report import DEFAULT_BOOTSTRAP, plots
from comptrust.report.aggregate import AVERAGE, Table, average_of_nine, build_table
from comptrust.report.divergence import divergence_section, formatted
from comptrust.report.drilldown import drilldown
from comptrust.report.findings import DETECTABLE_DROP, findings
from comptrust.report.flips import flip_section, flips_json
from comptrust.report.html import build_context, render_html, render_markdown
from comptrust.report.paper import CITATION, compare
from comptrust.report.runs import MEASURES
from comptrust.store.files import atomic_write_json, atomic_write_text


def _csv(table: Table) -> str:
    """One row per run (not per variant), so seeds can be re-analysed elsewhere."""
    fields = ["variant", "kind", "base_model", "run_dir", "run_id", "seed", "method", "bits", "sparsity",
              "pattern", "size_bytes", "compression_s", "tokens_per_s", *MEASURES, AVERAGE,
              *[f"{m}_refusal" for m in MEASURES], "partial"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for v in table.variants:
        for run in v.runs:
            scores = {m: run.score(m) for m in MEASURES}
            partial = [m for m in MEASURES if (run.result(m) or {}).get("partial")]
            row: dict[str, Any] = {
                "variant": v.label, "kind": "dense" if run.is_dense else "compressed", "base_model": v.base,
                "run_dir": str(run.path), "run_id": run.run_id, "seed": run.seed, "method": run.method,
                "bits": run.bits, "sparsity": run.sparsity, "pattern": run.pattern, "size_bytes": run.size_bytes,
                "compression_s": run.compression_seconds, "tokens_per_s": run.tokens_per_second(),
                **scores, AVERAGE: average_of_nine(scores),
                **{f"{m}_refusal": run.refusal(m) for m in MEASURES}, "partial": ";".join(partial)}
            writer.writerow({k: ("" if val is None else val) for k, val in row.items()})  # empty = missing
    return buf.getvalue()


def write_report(run_dirs: list[Path], out_dir: Path, n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0,
                 top_samples: int = 3, detectable_drop: float = DETECTABLE_DROP,
                 on_warning: Callable[[str], None] | None = None,
                 pairs: dict[Path, Path] | None = None) -> dict[str, Path]:
    """Write the four report files (plus figures/) to ``out_dir`` and return their paths by kind.

    ``pairs`` (``--pair VARIANT_RUN=DENSE_RUN``) names the dense run of a downloaded checkpoint that
    recorded no base model.

    ``detectable_drop`` is the margin of the recommendation's gates; ``on_warning`` receives each
    warning about runs that were not evaluated alike (they are in the report's caveats too).
    """
    if not detectable_drop > 0:
        raise ConfigError(f"--detectable-drop must be a positive number of points, not {detectable_drop}",
                          "use e.g. --detectable-drop 5")
    if n_bootstrap < 0:
        raise ConfigError(f"--bootstrap must be 0 or more, not {n_bootstrap}", "use e.g. --bootstrap 500")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create report folder {out_dir} ({exc.strerror})",
                          "choose a writable folder with --out") from exc
    started = time.perf_counter()
    table = build_table([Path(p) for p in run_dirs], n_bootstrap=n_bootstrap, seed=seed, pairs=pairs)
    for note in table.notes:
        if note.startswith("Warning:") and on_warning is not None:
            on_warning(note)
    flips = flip_section(table)
    found = findings(table, detectable_drop, flips)
    paper = compare(table)
    drill = {b.name: drilldown(b, top_samples) for b in table.bases}

    paths: dict[str, Path] = {}
    figures: dict[str, dict[str, Any]] = {}
    fig_dir = out_dir / "figures"
    for i, base in enumerate(table.bases):
        entry: dict[str, Any] = {"radars": []}
        for j, v in enumerate(base.variants):
            if v.is_dense and len(base.variants) > 1:
                continue  # the dense model appears on every variant's radar
            png = plots.radar(v, None if v.is_dense else base.dense)
            if png is not None:
                name = f"radar-{i}-{j}.png"
                fig_dir.mkdir(exist_ok=True)
                (fig_dir / name).write_bytes(png)
                paths[f"radar-{i}-{j}"] = fig_dir / name
                entry["radars"].append({"label": v.label, "png": png, "file": f"figures/{name}"})
        bars = plots.delta_bars(base)
        if bars is not None:
            fig_dir.mkdir(exist_ok=True)
            (fig_dir / f"deltas-{i}.png").write_bytes(bars)
            paths[f"deltas-{i}"] = fig_dir / f"deltas-{i}.png"
            entry["bars"] = {"png": bars, "file": f"figures/deltas-{i}.png"}
        figures[base.name] = entry

    context = build_context(table, found, paper, drill, figures, flips)
    divergence = divergence_section(table)
    by_base = {d["base"]: d for d in divergence}
    for shown in context["bases"]:
        shown["divergence"] = formatted(by_base.get(shown["name"]))
    paths["html"] = out_dir / "report.html"
    atomic_write_text(paths["html"], render_html(context))
    paths["markdown"] = out_dir / "report.md"
    atomic_write_text(paths["markdown"], render_markdown(context))
    paths["csv"] = out_dir / "scores.csv"
    atomic_write_text(paths["csv"], _csv(table))
    paths["json"] = out_dir / "scores.json"
    atomic_write_json(paths["json"], {**table.to_json(), **found, "paper": paper, "paper_citation": CITATION,
                                      "drilldown": drill, "flips": flips_json(flips),
                                      "divergence": divergence,
                                      "noise_floor": {b.name: b.noise.to_json() for b in table.bases if b.noise},
                                      "seconds": round(time.perf_counter() - started, 3)})
    return paths
