"""`canvas_gif`: the canvas evolving, one frame per step, drawn with Pillow (no browser needed).

Pillow is imported inside the functions only, so that ``import dgviz.plots`` does not need it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import palette
from ..trace import FINAL, STATE_NAMES, Trace
from ._common import BUDGET_LEFT, INK, MUTED, texts, view

_DIRS = ("", "/usr/share/fonts/truetype/dejavu/", "/usr/share/fonts/dejavu/", "/Library/Fonts/",
         "C:/Windows/Fonts/")


def canvas_gif(
    trace: Trace,
    path: str | Path,
    row: int = 0,
    canvas: int | None = None,
    *,
    columns: int | None = None,
    cell_width: int | None = None,
    font_size: int = 15,
    ms_per_step: int = 400,
    hold_last_ms: int = 2000,
    title: str | None = None,
) -> Path:
    """Write an animated GIF of the canvas evolving: one frame per step, for slides.

    Each frame shows the canvas after that step (the draft tokens, whitespace made visible) in
    the widget's state colours, with the step counter (global step, canvas, steps left in the
    budget)
    and how many positions were accepted and already final. ``canvas=None`` plays every canvas
    in turn. ``columns`` / ``cell_width`` default to fit the canvas length and the longest
    token; ``title`` adds a line of your own (e.g. the prompt). The last frame is held
    ``hold_last_ms``. Needs Pillow (``dgviz[export]``).
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError as err:
        raise ImportError("canvas_gif needs Pillow: pip install 'dgviz[export]'.") from err
    v = view(trace, row, canvas)
    cells = texts(trace, trace.draft[row, v.steps])
    heads = [_head(trace, s) for s in v.steps]
    box = _Box.fit(trace, cells, heads, columns, cell_width, font_size)
    to_p = _Paletter(_gif_palette(trace.state_values))
    frames = []
    for i, s in enumerate(v.steps):
        img = Image.new("RGB", (box.width, box.height), "#FFFFFF")
        _draw_frame(ImageDraw.Draw(img), box, trace, row, int(s), heads[i], cells[i], title or "")
        frames.append(to_p(img))
    durations = [ms_per_step] * len(frames)
    durations[-1] = max(ms_per_step, hold_last_ms)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        path, format="GIF", save_all=True, append_images=frames[1:], duration=durations,
        loop=0, optimize=False, disposal=1,
    )
    return path


def _head(trace: Trace, s: int) -> str:
    c = int(trace.step_canvas[s])
    return (f"step {s} · canvas {c} · {BUDGET_LEFT}: {int(trace.step_remaining[s])} "
            f"(step {s - int(trace.canvas_bounds[c, 0]) + 1} of the canvas)")


@dataclass(frozen=True)
class _Box:
    """Fonts and the geometry of every frame (all frames share one size)."""

    font: Any
    small: Any
    bold: Any
    font_size: int
    cols: int
    cell_width: int
    width: int
    height: int
    grid_end: int
    pad: int = 16
    gap: int = 4

    @property
    def cell_h(self) -> int:
        return self.font_size + 16

    @property
    def head_h(self) -> int:
        return 2 * self.font_size + 28

    @classmethod
    def fit(cls, trace: Trace, cells: np.ndarray, heads: list[str], columns: int | None,
            cell_width: int | None, font_size: int) -> _Box:
        from PIL import Image, ImageDraw

        length = trace.canvas_length
        cols = columns or (16 if length >= 64 else 8 if length > 8 else length)
        font, small = _load_font(font_size), _load_font(max(10, font_size - 3))
        bold = _load_font(font_size + 1, bold=True)
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        if cell_width is None:
            longest = max((probe.textlength(str(t), font=font) for t in np.unique(cells)),
                          default=10.0)
            cell_width = int(min(120, max(40, longest + 16)))
        pad, gap = cls.pad, cls.gap
        head_w = max(probe.textlength(h, font=bold) for h in heads)
        width = max(2 * pad + cols * cell_width + (cols - 1) * gap, 640,
                    2 * pad + math.ceil(head_w))
        grid_end = (2 * font_size + 28) + pad + math.ceil(length / cols) * (
            font_size + 16 + gap) - gap
        height = grid_end + 2 * gap + (font_size + 10) + pad  # the legend below the grid
        return cls(font, small, bold, font_size, cols, cell_width, width, height, grid_end)


def _draw_frame(draw: Any, box: _Box, trace: Trace, row: int, s: int, head: str,
                cells: np.ndarray, label: str) -> None:
    """One frame: header, sub-header, the canvas's cells in their states, the legend."""
    pad, gap, length = box.pad, box.gap, trace.canvas_length
    st = trace.states[row, s]
    draw.text((pad, pad), head, fill=INK, font=box.bold)
    sub = (
        f"steps 0–{trace.num_steps - 1}, canvases 0–{trace.num_canvases - 1} · "
        f"accepted {int(trace.accepted[row, s].sum())}/{length} · final "
        f"{int((st == FINAL).sum())}/{length}"
        + ("" if trace.active[row, s] else " · row stopped")
    )
    if label:
        sub += " · " + label.replace("\n", " ↵ ")
    draw.text((pad, pad + box.font_size + 8), _fit(draw, sub, box.small, box.width - 2 * pad),
              fill=MUTED, font=box.small)
    for p in range(length):
        r, q = divmod(p, box.cols)
        x0 = pad + q * (box.cell_width + gap)
        y0 = box.head_h + pad + r * (box.cell_h + gap)
        k = int(st[p])
        draw.rounded_rectangle(
            (x0, y0, x0 + box.cell_width, y0 + box.cell_h), radius=4,
            fill=palette.STATE_COLORS[k],
        )
        t = _fit(draw, str(cells[p]), box.font, box.cell_width - 8)
        tw = draw.textlength(t, font=box.font)
        draw.text((x0 + (box.cell_width - tw) / 2, y0 + 7), t,
                  fill=palette.STATE_TEXT_COLORS[k], font=box.font)
    ly = box.grid_end + 2 * gap + 4
    lx = pad
    for k in trace.state_values:
        name = STATE_NAMES[k]
        draw.rectangle((lx, ly, lx + 14, ly + 14), fill=palette.STATE_COLORS[k])
        draw.text((lx + 20, ly - 1), name, fill=INK, font=box.small)
        lx += 28 + int(draw.textlength(name, font=box.small)) + 12


def _load_font(size: int, bold: bool = False) -> Any:
    from PIL import ImageFont

    names = (
        ["DejaVuSansMono-Bold.ttf", "DejaVuSans-Bold.ttf"] if bold else
        ["DejaVuSansMono.ttf", "DejaVuSans.ttf"]
    )
    for name in names:
        for d in _DIRS:
            try:
                return ImageFont.truetype(d + name, size)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _gif_palette(states: tuple[int, ...]) -> np.ndarray:
    """One fixed palette for every frame: the colours and text colours of the run's ``states``
    and the anti-aliasing shades between them (uint8 ``[K, 3]``). A shared palette lets the GIF
    store only what changed between frames."""
    pairs = [("#FFFFFF", INK), ("#FFFFFF", MUTED)]
    pairs += [(palette.STATE_COLORS[k], palette.STATE_TEXT_COLORS[k]) for k in sorted(states)]
    colors: list[tuple[int, ...]] = []
    for bg, fg in pairs:
        a, b = _hex(bg), _hex(fg)
        for t in np.linspace(0, 1, 8):
            c = tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
            if c not in colors:
                colors.append(c)
    return np.array(colors, dtype=np.uint8)


class _Paletter:
    """RGB image -> "P" image on a fixed palette, each colour to its nearest entry; exact colours
    stay exact, which Pillow's own quantizer does not promise. Colours seen once are cached in
    a 2^24 lookup table, so each frame costs one table lookup per pixel."""

    def __init__(self, pal: np.ndarray):
        self.pal = pal.astype(np.int32)
        self.lut = np.full(1 << 24, 255, dtype=np.uint8)
        self.flat = pal.ravel().tolist()

    def __call__(self, img: Any) -> Any:
        from PIL import Image

        rgb = np.asarray(img, dtype=np.uint8)
        r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
        packed = (r << 16) | (g << 8) | b
        index = self.lut[packed]
        unknown = index == 255
        if unknown.any():
            new = np.unique(packed[unknown])
            cols = np.stack([(new >> 16) & 255, (new >> 8) & 255, new & 255], axis=-1)
            dist = ((cols[:, None, :] - self.pal[None]) ** 2).sum(-1)
            self.lut[new] = dist.argmin(axis=1).astype(np.uint8)
            index = self.lut[packed]
        out = Image.frombytes("P", (packed.shape[1], packed.shape[0]), index.tobytes())
        out.putpalette(self.flat)
        return out
