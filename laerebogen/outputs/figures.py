"""Blank matplotlib figures and their PNG bytes, shared by the report's plots and the task map.

Figures come from matplotlib's object API (no pyplot, no display: it runs headless on any node)
and are saved without the software stamp, so the same figure gives the same bytes.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # matplotlib is imported only to draw
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100


def figure(columns: int = 1, width: float = 7.0, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    """A figure of ``columns`` panels side by side, each ``width`` by ``height`` inches."""
    from matplotlib.figure import Figure

    drawn = Figure(figsize=(width * columns, height), dpi=DPI, layout="constrained")
    return drawn, [drawn.add_subplot(1, columns, index + 1) for index in range(columns)]


def png(drawn: Figure) -> bytes:
    """The figure as PNG bytes, without metadata that would differ between runs."""
    buffer = io.BytesIO()
    drawn.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
