"""Plotly figures and animated exports of a recorded `Trace`.

Every figure function takes a `Trace` (plus ``row``, the batch row, and usually ``canvas``:
``None`` shows all canvases on the run's global step timeline, an int shows one canvas) and
returns a static `plotly.graph_objects.Figure`. Show it (``fig.show()``), save it
(`save_figure`, PNG/SVG through kaleido) or restyle it like any plotly figure.

The figures speak the model's language:

- the x axis of step figures is the *global* step (all canvases one after another, as in the
  Trace arrays); a second axis on top shows transformers' own count down, the steps left in
  the canvas's budget, this one included (N … 1); canvas boundaries are drawn as vertical lines;
- colours come from `dgviz.palette` (the same as the widget's; colour-blind safe);
- hovering a cell shows the token text (whitespace made visible) and the values.

Steps where the row had already stopped (``trace.active`` False) are left blank: their values
mean nothing. Heatmaps beyond ``max_cells`` cells average (or sample) neighbouring steps and say
so in their title.

`canvas_gif` renders the canvas evolving, one frame per step, with Pillow (no browser needed);
`Trace.to_gif` calls it.

The modules, by family: ``steps`` (heatmaps, lock-in map, convergence, accepted per step),
``explainer`` (the sampler explainer), ``routing`` (MoE routing), ``comparison`` (the figures
of a `dgviz.comparison.Comparison`), ``export`` (`all_figures`, `save_figure`) and ``gif``
(`canvas_gif`). Importing this package needs numpy and plotly only: no torch, no Pillow.
"""

# The API reference lists the functions in this order: by family, as the gallery shows them.
# isort: off
from .steps import (
    confidence_heatmap, entropy_heatmap, lock_in_map, convergence_curve, accepted_per_step,
)
from .explainer import sampler_explainer
from .routing import (
    expert_weights, expert_load, expert_churn, router_entropy, expert_map, encoder_routing,
    routing_similarity,
)
from .export import all_figures, save_figure
from .gif import canvas_gif
from .explainer import _explainer_step as _explainer_step  # scripts/render_gallery.py
# isort: on

__all__ = [
    "MAX_CELLS",
    "MAX_MARKERS",
    "accepted_per_step",
    "all_figures",
    "canvas_gif",
    "confidence_heatmap",
    "convergence_curve",
    "encoder_routing",
    "entropy_heatmap",
    "expert_churn",
    "expert_load",
    "expert_map",
    "expert_weights",
    "lock_in_map",
    "router_entropy",
    "routing_similarity",
    "sampler_explainer",
    "save_figure",
]

#: Heatmaps with more cells than this average (or sample) neighbouring steps. Read at call
#: time: ``dgviz.plots.MAX_CELLS = ...`` changes every figure's default.
MAX_CELLS = 120_000
#: Flip markers drawn on the lock-in map at most (beyond, flips are in the hover only).
MAX_MARKERS = 4_000
