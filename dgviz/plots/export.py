"""Every figure at once (`all_figures`) and static images (`save_figure`)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from ..trace import Trace
from .explainer import _explainer_step, sampler_explainer
from .routing import (
    encoder_routing,
    expert_churn,
    expert_load,
    expert_map,
    expert_weights,
    router_entropy,
    routing_similarity,
)
from .steps import (
    accepted_per_step,
    confidence_heatmap,
    convergence_curve,
    entropy_heatmap,
    lock_in_map,
)


def all_figures(trace: Trace, row: int = 0) -> dict[str, go.Figure]:
    """Every figure for one row, with default choices (step, layer), keyed by a short name."""
    figs: dict[str, go.Figure] = {
        "confidence": confidence_heatmap(trace, row),
        "entropy": entropy_heatmap(trace, row),
        "lock_in": lock_in_map(trace, row),
        "convergence": convergence_curve(trace, row),
        "accepted": accepted_per_step(trace, row),
        "sampler": sampler_explainer(trace, _explainer_step(trace, row), row),
    }
    if trace.has_routing:
        mid = int(trace.canvas_steps(0)[len(trace.canvas_steps(0)) // 2])
        figs["expert_weights"] = expert_weights(trace, mid, 0, row)
        figs["expert_load"] = expert_load(trace, row)
        figs["expert_churn"] = expert_churn(trace, row)
        figs["expert_churn_position"] = expert_churn(trace, row, by="position")
        figs["router_entropy"] = router_entropy(trace, row)
        figs["expert_map"] = expert_map(trace, 0, row)
        figs["routing_similarity"] = routing_similarity(trace, row)
    if trace.encoder_expert_ids is not None:
        figs["encoder_routing"] = encoder_routing(trace, row)
    return figs


def save_figure(
    fig: go.Figure, path: str | Path, *, width: int | None = None, height: int | None = None,
    scale: float | None = None,
) -> Path:
    """Write a figure as a static image; the suffix chooses the format (.png, .svg, .pdf...).

    Uses plotly's kaleido, which drives a Chrome/Chromium: ``pip install 'dgviz[export]'`` and
    a Chrome or Chromium (Debian: ``apt-get install chromium``; kaleido finds it on ``PATH`` or
    through ``BROWSER_PATH``). ``.html`` works without either.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if not fmt:
        raise ValueError(f"{path} has no suffix: say .png, .svg, .pdf or .html.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("html", "htm"):
        fig.write_html(str(path), include_plotlyjs=True)
        return path
    try:
        import kaleido  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "Saving figures as PNG/SVG needs kaleido: pip install 'dgviz[export]' (and a Chrome "
            "or Chromium, e.g. Debian's `apt-get install chromium`)."
        ) from err
    try:
        fig.write_image(str(path), format=fmt, width=width, height=height, scale=scale)
    except Exception as err:
        msg = str(err)
        first_line = next((ln.strip() for ln in msg.splitlines() if ln.strip()), repr(err))
        if "chrom" in msg.lower() or "browser" in msg.lower() or type(err).__name__ in (
            "ChromeNotFoundError", "BrowserFailedError",
        ):
            raise RuntimeError(
                f"Could not export {path.name}: kaleido needs a Chrome or Chromium browser "
                "(Debian: `apt-get install chromium`; or set BROWSER_PATH to one), with "
                f"`pip install 'dgviz[export]'`. (kaleido: {first_line})"
            ) from err
        raise
    return path
