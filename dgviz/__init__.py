"""dgviz: see text diffusion.

Record what DiffusionGemma's sampler does at every denoising step (`record`), keep it as a
`Trace`, and look at it: a replayable widget (`Timeline`, live with `show`), plotly figures
(`dgviz.plots`), schedule comparisons (`sweep`, `compare`); branch a run at any step and let it
resume with edited tokens (`branch`).

Names are imported on first use, so ``import dgviz; dgviz.load_trace(path)`` needs only numpy
and safetensors: torch, transformers, plotly and anywidget load when a name that needs them is
first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "record": "recording",
    "StepEvent": "recording",
    "branch": "branching",
    "Trace": "trace",
    "TraceFormatError": "trace",
    "load_trace": "tracefile",
    "Timeline": "widget",
    "show": "widget",
    "Comparison": "comparison",
    "compare": "comparison",
    "load_comparison": "comparison",
    "sweep": "comparison",
    "Schedule": "schedules",
    "presets": "schedules",
}
_SUBMODULES = ("plots", "palette", "schedules", "comparison", "recording", "branching", "trace",
               "tracefile", "trace_checks", "payload", "widget", "html", "demo", "testing")

if TYPE_CHECKING:  # for IDEs and type checkers; at run time __getattr__ imports on demand
    from . import plots
    from .branching import branch
    from .comparison import Comparison, compare, load_comparison, sweep
    from .recording import StepEvent, record
    from .schedules import Schedule, presets
    from .trace import Trace, TraceFormatError
    from .tracefile import load_trace
    from .widget import Timeline, show


def demo_model(task: str | None = None):
    """``(model, tokenizer)``: a tiny trained DiffusionGemma shipped with dgviz (offline); the
    task's own checkpoint where it has one (``"sudoku"``: the 9x9 specialist), else the
    multi-task one. See `dgviz.demo.demo_model`."""
    from .demo import demo_model as load

    return load(task)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'dgviz' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


__all__ = [
    "Comparison",
    "Schedule",
    "StepEvent",
    "Timeline",
    "Trace",
    "TraceFormatError",
    "__version__",
    "branch",
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
