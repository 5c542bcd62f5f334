"""Bar charts of a daily series as inline SVG, drawn on the server: no script, no chart
library, nothing fetched, and the page's policy (no inline style) holds, since the SVG
is styled by classes of the dashboard's stylesheet.

Values are integers (minor units of money, or counts) and every coordinate is computed
with `Decimal` from them, rounded to a tenth of a pixel: no float touches an amount.
The chart is an `<svg role="img">` named by its `<title>`; a page shows the same numbers
in a table beside it for readers who cannot see it. Text (the title, labels, the values
as `value_text` writes them) is escaped by markupsafe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from markupsafe import Markup

WIDTH = 720
HEIGHT = 240
LEFT = 96  # room for the axis' value labels
RIGHT = 12
TOP = 12
BOTTOM = 28  # room for the date labels
MAX_DAY_LABELS = 6
TICKS = 4  # about this many steps between the axis' lowest and highest value
_TENTH = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # what the x axis says under it ("2026-12-01")
    value: int  # minor units or a count; negative values go below the zero line


def nice_step(span: int, ticks: int = TICKS) -> int:
    """The axis' step: 1, 2 or 5 times a power of ten, the least such that `ticks` steps
    cover `span` (a whole number: the values are integers)."""
    if span <= 0:
        return 1
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if step * ticks >= span:
                return step
        magnitude *= 10


def axis_bounds(values: Sequence[int]) -> tuple[int, int, int]:
    """(bottom, top, step): a range of whole steps that holds every value and zero."""
    low, high = min((0, *values)), max((0, *values))
    step = nice_step(high - low)
    top = -(-high // step) * step
    bottom = (low // step) * step
    if top == bottom:
        top = bottom + step
    return bottom, top, step


def _px(value: Decimal) -> str:
    """A coordinate as SVG writes it: a tenth of a pixel at most, no trailing zeros."""
    rounded = value.quantize(_TENTH, rounding=ROUND_HALF_UP)
    return f"{rounded:f}".removesuffix(".0")


class _Scale:
    """From a value to its y coordinate in the plot area, and the bars' x positions."""

    def __init__(self, bottom: int, top: int, count: int) -> None:
        self.bottom, self.top = bottom, top
        self.plot_h = Decimal(HEIGHT - TOP - BOTTOM)
        self.slot = Decimal(WIDTH - LEFT - RIGHT) / max(count, 1)

    def y(self, value: int) -> Decimal:
        return TOP + self.plot_h * (self.top - value) / (self.top - self.bottom)

    def x(self, index: int) -> Decimal:
        return LEFT + self.slot * index


def bar_chart(
    chart_id: str,
    title: str,
    bars: Sequence[Bar],
    value_text: Callable[[int], str] = str,
) -> Markup:
    """`bars` in order, left to right, on an axis from zero (or the least negative value)
    to the greatest value; each bar carries its label and value as a tooltip."""
    bottom, top, step = axis_bounds([bar.value for bar in bars])
    scale = _Scale(bottom, top, len(bars))
    title_id = f"{chart_id}-title"
    parts = [
        Markup(
            '<svg class="chart" id="{}" role="img" aria-labelledby="{}" viewBox="0 0 {} {}"'
            ' xmlns="http://www.w3.org/2000/svg">'
        ).format(chart_id, title_id, WIDTH, HEIGHT),
        Markup('<title id="{}">{}</title>').format(title_id, title),
    ]
    parts += _grid(scale, step, value_text)
    parts += _bars(scale, bars, value_text)
    parts += _day_labels(scale, bars)
    zero = _px(scale.y(0))
    parts.append(
        Markup('<line class="zero" x1="{}" y1="{}" x2="{}" y2="{}"/>').format(
            LEFT, zero, WIDTH - RIGHT, zero
        )
    )
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def _grid(scale: _Scale, step: int, value_text: Callable[[int], str]) -> list[Markup]:
    lines = []
    for value in range(scale.bottom, scale.top + 1, step):
        y = _px(scale.y(value))
        lines.append(
            Markup(
                '<line class="grid" x1="{}" y1="{}" x2="{}" y2="{}"/>'
                '<text class="tick" x="{}" y="{}" text-anchor="end" dominant-baseline="middle">'
                "{}</text>"
            ).format(LEFT, y, WIDTH - RIGHT, y, LEFT - 6, y, value_text(value))
        )
    return lines


def _bars(scale: _Scale, bars: Sequence[Bar], value_text: Callable[[int], str]) -> list[Markup]:
    gap = scale.slot / 5 if scale.slot >= 4 else Decimal(0)
    zero = scale.y(0)
    drawn = []
    for index, bar in enumerate(bars):
        if bar.value == 0:
            continue
        y = scale.y(bar.value)
        drawn.append(
            Markup(
                '<rect class="bar{}" x="{}" y="{}" width="{}" height="{}">'
                "<title>{}: {}</title></rect>"
            ).format(
                " negative" if bar.value < 0 else "",
                _px(scale.x(index) + gap / 2),
                _px(min(y, zero)),
                _px(scale.slot - gap),
                _px(abs(zero - y)),
                bar.label,
                value_text(bar.value),
            )
        )
    return drawn


def _day_labels(scale: _Scale, bars: Sequence[Bar]) -> list[Markup]:
    """At most `MAX_DAY_LABELS` labels, evenly spread, the first and last always."""
    count = len(bars)
    if count == 0:
        return []
    picked = sorted({i * (count - 1) // (MAX_DAY_LABELS - 1) for i in range(MAX_DAY_LABELS)})
    y = HEIGHT - BOTTOM + 18
    labels = []
    for index in picked:
        # the first label starts at its bar and the last ends at its bar, inside the chart
        if index == 0:
            x, anchor = scale.x(index), "start"
        elif index == count - 1:
            x, anchor = scale.x(index + 1), "end"
        else:
            x, anchor = scale.x(index) + scale.slot / 2, "middle"
        labels.append(
            Markup('<text class="day" x="{}" y="{}" text-anchor="{}">{}</text>').format(
                _px(x), y, anchor, bars[index].label
            )
        )
    return labels
