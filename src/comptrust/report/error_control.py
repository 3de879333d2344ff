"""The report's family-wise error control: the level every claim is made at and Holm's step-down
procedure, shared by the score changes' marks (:mod:`.decisions`) and the flip tests (:mod:`.flips`).

Its own module because both of those use it and :mod:`.decisions` also counts flips.
"""

from __future__ import annotations

ALPHA = 0.05


def holm(p_values: list[float], alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm's step-down adjusted p-values (monotone, capped at 1) and which are rejected at ``alpha``."""
    k = len(p_values)
    order = sorted(range(k), key=lambda i: p_values[i])
    adjusted = [1.0] * k
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted, [a <= alpha for a in adjusted]
