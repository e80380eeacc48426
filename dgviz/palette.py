"""The one colour language of dgviz, shared by the widget (sent to JS) and the plotly figures.

Colours are from the Okabe-Ito palette, which stays distinguishable with the common forms of
colour blindness; continuous scales are perceptually uniform (cividis for confidence, magma for
entropy), readable in greyscale too.
"""

from __future__ import annotations

# Position states (`dgviz.trace.RENOISED, NEW, KEPT, FINAL, MASKED, HELD`), in that order. MASKED
# (a masked-diffusion position still holding the mask token, LLaDA2) is a dark neutral grey:
# "empty", apart from the pale grey of a re-noised (random) token. HELD (a token the user fixed:
# hold=, a branch's edit) is Okabe-Ito's reddish purple, apart from every model-made state.
STATE_COLORS = ("#BBBBBB", "#E69F00", "#56B4E9", "#009E73", "#4A4A4A", "#CC79A7")
# re-noised text is dim but readable: #444 on #BBB is 5:1 (WCAG AA)
STATE_TEXT_COLORS = ("#444444", "#000000", "#000000", "#FFFFFF", "#FFFFFF", "#000000")

CONFIDENCE_SCALE = "Cividis"
ENTROPY_SCALE = "Magma_r"
LOAD_SCALE = "Blues"

# Categorical colours for experts (Okabe-Ito, then Paul Tol's muted): expert e gets
# EXPERT_COLORS[e % len(EXPERT_COLORS)]. With more experts than colours, views say which
# experts share a colour (hover shows the id).
EXPERT_COLORS = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000",
    "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255",
)


def expert_color(expert: int) -> str:
    return EXPERT_COLORS[int(expert) % len(EXPERT_COLORS)]


# Categorical colours for schedules in comparison figures, drawn as thin lines and small
# markers on white: the expert colours without the two pale yellows (Okabe-Ito's #F0E442, Tol's
# #DDCC77), which are faint as lines. Okabe-Ito first, then Paul Tol's muted.
LABEL_COLORS = tuple(c for c in EXPERT_COLORS if c not in ("#F0E442", "#DDCC77"))


def label_color(index: int) -> str:
    """The colour of the ``index``-th schedule in every comparison figure (`LABEL_COLORS`)."""
    return LABEL_COLORS[index % len(LABEL_COLORS)]


def as_dict() -> dict:
    """Everything above, JSON-ready (the widget sends it to the front end)."""
    return {
        "states": list(STATE_COLORS),
        "stateText": list(STATE_TEXT_COLORS),
        "experts": list(EXPERT_COLORS),
        "confidence": CONFIDENCE_SCALE,
        "entropy": ENTROPY_SCALE,
    }
