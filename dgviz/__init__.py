"""dgviz: see text diffusion.

Record what DiffusionGemma's sampler does at every denoising step (`record`), keep it as a
`Trace`, and look at it: a replayable widget (`Timeline`, live with `show`), plotly figures
(`dgviz.plots`), schedule comparisons (`sweep`, `compare`).
"""

__version__ = "0.1.0"

from . import plots
from .comparison import Comparison, compare, load_comparison, sweep
from .record import StepEvent, record
from .schedules import Schedule, presets
from .trace import Trace, TraceFormatError, load_trace
from .widget import Timeline, show


def demo_model(task: str | None = None):
    """``(model, tokenizer)``: the tiny trained DiffusionGemma shipped with dgviz (offline)."""
    from .demo import demo_model as load

    return load(task)


__all__ = [
    "Comparison",
    "Schedule",
    "StepEvent",
    "Timeline",
    "Trace",
    "TraceFormatError",
    "__version__",
    "compare",
    "demo_model",
    "load_comparison",
    "load_trace",
    "plots",
    "presets",
    "record",
    "show",
    "sweep",
]
