"""Figures as PNG bytes (matplotlib, Agg backend): radar per variant vs dense, bars of deltas.

PNG bytes, not files, so the HTML report can embed them (base64) and stay one
self-contained file; the Markdown report links the same bytes written to disk.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from comptrust.report.aggregate import Base, Variant  # noqa: E402
from comptrust.report.paper import COLUMNS  # noqa: E402
from comptrust.report.runs import MEASURES  # noqa: E402

DENSE_COLOR = "#1f4e79"
VARIANT_COLOR = "#d9731a"
DROP_COLOR = "#c0392b"
GAIN_COLOR = "#2e8b57"
NEUTRAL_COLOR = "#9aa5b1"
REFUSAL_COLOR = "#7d5ba6"  # significant, but explained by a change in refusals


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def radar(variant: Variant, dense: Variant | None) -> bytes | None:
    """The paper's main figure: one axis per measure, the variant over its dense model.

    Only measures scored for both appear (a missing score is never drawn as 0);
    fewer than three axes make no radar.
    """
    axes = [m for m in MEASURES if variant.cells[m].mean is not None
            and (dense is None or dense.cells[m].mean is not None)]
    if len(axes) < 3:
        return None
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(4.6, 4.6), subplot_kw={"polar": True})
    series = ([(dense, DENSE_COLOR, "--")] if dense is not None else []) + [(variant, VARIANT_COLOR, "-")]
    for v, color, style in series:
        values = [v.cells[m].mean for m in axes]
        ax.plot(angles + angles[:1], values + values[:1], style, color=color, linewidth=2, label=v.label)
        ax.fill(angles + angles[:1], values + values[:1], color=color, alpha=0.12)
    ax.set_xticks(angles)
    ax.set_xticklabels([COLUMNS[m] for m in axes], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_yticks([25, 50, 75, 100])
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, frameon=False)
    return _png(fig)


def delta_bars(base: Base) -> bytes | None:
    """Compressed minus dense per measure, one bar group per measure, 95% intervals as error bars.

    A significant change explained by refusals is purple, never the green of a gain or the red of a drop.
    """
    variants = [v for v in base.variants if not v.is_dense and v.deltas]
    measures = [m for m in MEASURES if any(m in v.deltas for v in variants)]
    if not variants or not measures:
        return None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 * len(measures) * max(1, len(variants)) ** 0.5 + 2), 3.8))
    width = 0.8 / len(variants)
    x = np.arange(len(measures))
    hatches = ["", "//", "..", "xx", "\\\\", "++"]
    for i, v in enumerate(variants):
        vals, lows, highs, colors = [], [], [], []
        for m in measures:
            d = v.deltas.get(m)
            vals.append(d.value if d else np.nan)
            lows.append(d.value - d.ci[0] if d and d.ci else 0)
            highs.append(d.ci[1] - d.value if d and d.ci else 0)
            colors.append(REFUSAL_COLOR if d and d.refusal_driven else NEUTRAL_COLOR if not d or not d.significant
                          else (DROP_COLOR if d.value < 0 else GAIN_COLOR))
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, vals, width, yerr=[lows, highs], capsize=2,
               color=colors, edgecolor="#333333", hatch=hatches[i % len(hatches)], label=v.label)
    ax.axhline(0, color="#333333", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([COLUMNS[m] for m in measures], fontsize=8, rotation=20)
    ax.set_ylabel("change vs dense (points)")
    ax.set_title(f"{base.name}: red = significant drop, green = gain, purple = explained by refusals, "
                 "grey = no significant change or no interval", fontsize=9)
    ax.legend(fontsize=7, frameon=False, ncol=min(3, len(variants)))
    return _png(fig)
