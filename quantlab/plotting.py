"""matplotlib, the optional `chart` extra, on its file-only backend: imported only where a chart is drawn."""

from __future__ import annotations


def pyplot_or_none():
    """matplotlib.pyplot on the Agg backend (no display needed); None where matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt
