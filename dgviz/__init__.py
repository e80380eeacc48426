"""dgviz: see text diffusion.

Record what DiffusionGemma's sampler does at every denoising step (`record`), keep it as a
`Trace`, and look at it: a replayable widget, plotly figures, schedule comparisons.
"""

__version__ = "0.1.0"

from .record import StepEvent, record
from .trace import Trace, TraceFormatError, load_trace

__all__ = ["StepEvent", "Trace", "TraceFormatError", "__version__", "load_trace", "record"]
