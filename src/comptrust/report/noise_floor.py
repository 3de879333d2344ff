"""Sentences about the noise floor: how far the dense model moves when merely rerun, and which changes lie inside it.

The floor is one rerun of the dense model under a recorded perturbation (``comptrust eval
--noise-floor``) or the dense model's second run: one draw of "same model, other run".  A change
inside it (``|change| <= |rerun's change|`` on the same measure) is said to be so; a significant
change inside it is flagged, since its interval then understates what a rerun alone does.
"""

from __future__ import annotations

from typing import Any


def noise_findings(base: Any, noise_flips: dict[str, Any] | None, titles: dict[str, str]) -> list[str]:
    """The base's noise-floor sentence, then one per compressed variant with changes inside it."""
    floor = base.noise
    if floor is None:
        return []
    moved = {m: c.value for m, c in floor.changes.items() if c.value is not None and m in titles}
    if not moved:
        return []
    out = []
    largest = max(moved, key=lambda m: abs(moved[m]))
    sentence = (f"Noise floor of {base.name} ({floor.label}): rerunning the dense model moves its scores by up to "
                f"{abs(moved[largest]):.1f} points ({titles[largest]}: {moved[largest]:+.1f})")
    shares = {m: f.shares["flipped"].value for m, f in (noise_flips or {}).items() if "flipped" in f.shares}
    if shares:
        most = max(shares, key=lambda m: shares[m])
        sentence += f" and flips up to {shares[most]:.1f}% of samples ({titles[most]})"
    still = [titles[m] for m, v in moved.items() if v == 0 and shares.get(m, 0.0) == 0.0]
    if still:
        why = " (greedy scenarios: the seed does not enter)" if _kind(floor) == "seed" else ""
        sentence += f"; {', '.join(still)} did not move at all under this perturbation{why}"
    out.append(sentence + ".")
    for variant in base.compressed():
        inside = [m for m, d in variant.deltas.items() if m in titles and d.within_noise_floor]
        if not inside:
            continue
        flagged = [m for m in inside if variant.deltas[m].significant]
        compared = sum(1 for m in variant.deltas if m in titles)
        names = ", ".join(titles[m] for m in inside)
        text = (f"{variant.label}: {len(inside)} of its {compared} score changes lie inside the noise floor "
                f"(no larger than the rerun's): {names}")
        if flagged:
            text += (f"; of these, {', '.join(titles[m] for m in flagged)} are marked significant, but rerunning "
                     "the dense model moved them as much: treat those marks with caution")
        out.append(text + ".")
    return out


def _kind(floor: Any) -> str | None:
    perturbation = floor.replicate.perturbation
    return perturbation.kind if perturbation is not None else None
