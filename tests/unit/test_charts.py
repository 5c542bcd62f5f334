"""The dashboard's bar charts (kassa.dashboard.charts): integer values in, SVG out, scaled
without floats, well-formed, named for assistive technology, and every text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from kassa.dashboard.charts import (
    BOTTOM,
    HEIGHT,
    MAX_DAY_LABELS,
    RIGHT,
    TOP,
    WIDTH,
    Bar,
    axis_bounds,
    bar_chart,
    nice_step,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def rects(svg: ET.Element) -> list[ET.Element]:
    return svg.findall(f"{SVG}rect")


@pytest.mark.parametrize(
    ("span", "step"),
    [
        (0, 1),
        (1, 1),
        (4, 1),
        (5, 2),
        (8, 2),
        (9, 5),
        (20, 5),
        (21, 10),
        (1239, 500),
        (10**15, 5 * 10**14),
    ],
)
def test_the_step_is_one_two_or_five_times_a_power_of_ten_covering_the_span_in_four(
    span: int, step: int
) -> None:
    assert nice_step(span) == step


def test_the_axis_holds_zero_and_every_value_in_whole_steps() -> None:
    assert axis_bounds([]) == (0, 1, 1)
    assert axis_bounds([0, 0]) == (0, 1, 1)
    assert axis_bounds([7]) == (0, 8, 2)
    assert axis_bounds([-5, 1234]) == (-500, 1500, 500)
    assert axis_bounds([-300, -100]) == (-300, 0, 100)


def test_the_greatest_value_fills_the_plot_and_each_bar_is_in_proportion() -> None:
    svg = parse(bar_chart("c", "Net", [Bar("d1", 1000), Bar("d2", 250), Bar("d3", 0)]))
    drawn = rects(svg)
    assert len(drawn) == 2  # a zero draws no bar
    plot = HEIGHT - TOP - BOTTOM
    heights = [Decimal(r.get("height", "")) for r in drawn]
    assert heights[0] == plot  # 1000 is the axis' top: 0..1000 in steps of 250
    assert heights[1] == Decimal(plot) / 4
    assert all(
        Decimal(r.get("y", "")) + Decimal(r.get("height", "")) == HEIGHT - BOTTOM for r in drawn
    )


def test_a_negative_value_hangs_below_the_zero_line() -> None:
    svg = parse(bar_chart("c", "Net", [Bar("d1", 300), Bar("d2", -100)]))
    up, down = rects(svg)
    zero = next(line for line in svg.findall(f"{SVG}line") if line.get("class") == "zero")
    assert Decimal(up.get("y", "")) + Decimal(up.get("height", "")) == Decimal(zero.get("y1", ""))
    assert down.get("y") == zero.get("y1") and "negative" in (down.get("class") or "")
    assert Decimal(down.get("height", "")) * 3 == Decimal(up.get("height", ""))


def test_coordinates_are_written_to_a_tenth_of_a_pixel_at_most() -> None:
    svg = parse(bar_chart("c", "Net", [Bar(str(i), 1 + i * 7) for i in range(31)]))
    for rect in rects(svg):
        for name in ("x", "y", "width", "height"):
            value = rect.get(name, "")
            assert Decimal(value) == Decimal(value).quantize(Decimal("0.1")), (name, value)


def test_the_chart_is_an_image_named_by_its_title_with_each_value_as_a_tooltip() -> None:
    svg = parse(bar_chart("net-eur", "Net sales", [Bar("2026-12-01", 1250)], lambda v: f"EUR {v}"))
    assert svg.get("role") == "img"
    assert svg.get("aria-labelledby") == "net-eur-title"
    title = svg.find(f"{SVG}title")
    assert title is not None and title.get("id") == "net-eur-title" and title.text == "Net sales"
    tooltip = rects(svg)[0].find(f"{SVG}title")
    assert tooltip is not None and tooltip.text == "2026-12-01: EUR 1250"
    ticks = [t.text for t in svg.findall(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks[0] == "EUR 0" and ticks[-1] == "EUR 1500"  # steps of 500


def test_every_text_is_escaped() -> None:
    markup = bar_chart('x"', "<script>alert(1)</script>", [Bar("<b>", 5)], lambda v: f"<i>{v}</i>")
    assert "<script>" not in markup and "<b>" not in markup and "<i>" not in markup
    svg = parse(markup)  # still well-formed
    title = svg.find(f"{SVG}title")
    assert title is not None and title.text == "<script>alert(1)</script>"
    assert svg.get("id") == 'x"'


def test_a_long_series_labels_a_few_days_the_first_and_the_last_among_them() -> None:
    days = [Bar(f"day{i}", i) for i in range(366)]
    texts = [
        t for t in parse(bar_chart("c", "t", days)).findall(f"{SVG}text") if t.get("class") == "day"
    ]
    assert len(texts) == MAX_DAY_LABELS
    assert (texts[0].text, texts[0].get("text-anchor")) == ("day0", "start")
    assert (texts[-1].text, texts[-1].get("text-anchor")) == ("day365", "end")
    assert Decimal(texts[-1].get("x", "")) == WIDTH - RIGHT  # ends inside the chart


def test_an_empty_series_is_still_a_chart() -> None:
    svg = parse(bar_chart("c", "Nothing yet", []))
    assert svg.get("role") == "img" and rects(svg) == []
