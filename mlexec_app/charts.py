"""Charts as server-rendered SVG: no JavaScript, no CDN, readable in the admin and in email.

Every text that reaches the SVG goes through :func:`django.utils.html.escape`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from mlexec_app.methodology.diagnosis import Diagnosis, Problem, Verdict
from mlexec_app.methodology.error_analysis import CategoryCeiling

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")
VERDICT_COLOURS = {
    Verdict.PRESENT: "#d62728",
    Verdict.INCONCLUSIVE: "#ff7f0e",
    Verdict.ABSENT: "#2ca02c",
}
LABELS = {
    Problem.AVOIDABLE_BIAS: "Avoidable bias",
    Problem.VARIANCE: "Variance",
    Problem.DATA_MISMATCH: "Data mismatch",
    Problem.DEV_OVERFITTING: "Dev-set overfitting",
}


def _svg(width: int, height: int, title: str, body: Iterable[str]) -> SafeString:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="mlexec-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" font-size="12"><title>{escape(title)}</title>'
    )
    return mark_safe(head + "".join(body) + "</svg>")  # noqa: S308  (all text escaped)


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>{escape(text)}</text>'


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


# --- error decomposition -------------------------------------------------------------------------


def _bar_rows(d: Diagnosis) -> list[tuple[str, float, float, float, str]]:
    """(label, estimate, low, high, colour) per bar: the human level, then each gap."""
    rows = []
    if d.measurements.human is not None:
        h = d.measurements.human
        rows.append(("Human level", h, h, h, "#7f7f7f"))
    for problem, g in d.gaps.items():
        rows.append(
            (
                LABELS[problem],
                g.estimate,
                g.interval.low,
                g.interval.high,
                VERDICT_COLOURS[g.verdict],
            )
        )
    return rows


def error_decomposition(d: Diagnosis, width: int = 560) -> SafeString:
    """Horizontal bars: human level and each gap, with its 95% interval as a whisker."""
    rows = _bar_rows(d)
    if not rows:
        return _svg(width, 40, "Error decomposition", [_text(10, 24, "No measurements yet.")])
    left, right, row_h = 150, 70, 28
    top = max(max(r[3] for r in rows), 0.001)
    scale = (width - left - right) / top
    height = row_h * len(rows) + 30
    body = [f'<line x1="{left}" y1="8" x2="{left}" y2="{height - 20}" stroke="#333"/>']
    for i, (label, est, low, high, colour) in enumerate(rows):
        y = 10 + i * row_h
        body.append(_text(left - 8, y + 15, label, "end"))
        bar = max(est, 0.0) * scale
        body.append(
            f'<rect class="bar" x="{left}" y="{y + 4}" width="{bar:.1f}" height="16" '
            f'fill="{colour}"><title>{escape(label)}: {_pct(est)}</title></rect>'
        )
        if high > low:
            x1, x2 = left + max(low, 0.0) * scale, left + high * scale
            body.append(
                f'<line class="whisker" x1="{x1:.1f}" y1="{y + 12}" x2="{x2:.1f}" '
                f'y2="{y + 12}" stroke="#000" stroke-width="1.5"/>'
            )
        body.append(_text(left + max(bar, high * scale) + 6, y + 16, _pct(est)))
    body.append(
        _text(
            left,
            height - 4,
            "error-rate points; whiskers: 95% interval",
            extra='fill="#555" font-size="10"',
        )
    )
    return _svg(width, height, "Error decomposition", body)


def category_ceilings(rows: Sequence[CategoryCeiling], width: int = 560) -> SafeString:
    """Bars of each error category's ceiling (share of errors x dev error)."""
    if not rows:
        return _svg(width, 40, "Error categories", [_text(10, 24, "No error analysis yet.")])
    left, right, row_h = 150, 70, 24
    top = max(max(r.ceiling_high for r in rows), 0.001)
    scale = (width - left - right) / top
    body = []
    for i, r in enumerate(rows):
        y = 8 + i * row_h
        body.append(_text(left - 8, y + 14, r.category, "end"))
        body.append(
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{r.ceiling * scale:.1f}" '
            f'height="15" fill="{PALETTE[0]}"/>'
        )
        body.append(
            _text(
                left + r.ceiling_high * scale + 6,
                y + 15,
                f"{_pct(r.ceiling)} ({r.share.estimate:.0%} of errors)",
            )
        )
    return _svg(width, row_h * len(rows) + 16, "Error categories", body)


# --- metric history ------------------------------------------------------------------------------

Series = dict[str, list[tuple[int, float]]]


def _bounds(series: Series) -> tuple[int, int, float, float]:
    steps = [s for pts in series.values() for s, _ in pts]
    values = [v for pts in series.values() for _, v in pts]
    lo, hi = min(values), max(values)
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    return min(steps), max(max(steps), min(steps) + 1), lo, hi


def metric_history(series: Series, width: int = 560, height: int = 260) -> SafeString:
    """One line per metric key over steps, with axes, ticks and a legend."""
    series = {k: sorted(v) for k, v in series.items() if v}
    if not series:
        return _svg(width, 40, "Metric history", [_text(10, 24, "No metric history yet.")])
    s0, s1, lo, hi = _bounds(series)
    left, right, top, bottom = 56, 130, 12, 30
    plot_w, plot_h = width - left - right, height - top - bottom

    def xy(step: int, value: float) -> str:
        x = left + (step - s0) / (s1 - s0) * plot_w
        y = top + (hi - value) / (hi - lo) * plot_h
        return f"{x:.1f},{y:.1f}"

    body = [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>'
    ]
    for frac in (0.0, 0.5, 1.0):
        value = lo + frac * (hi - lo)
        y = top + (1 - frac) * plot_h
        body.append(_text(left - 6, y + 4, f"{value:.3g}", "end"))
        step = s0 + frac * (s1 - s0)
        body.append(_text(left + frac * plot_w, height - 12, f"{step:.0f}", "middle"))
    for i, (key, pts) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(xy(s, v) for s, v in pts)
        body.append(
            f'<polyline class="series" points="{path}" fill="none" stroke="{colour}" '
            f'stroke-width="2"><title>{escape(key)}</title></polyline>'
        )
        body.append(
            f'<rect x="{width - right + 10}" y="{top + 16 * i}" width="10" height="10" '
            f'fill="{colour}"/>'
        )
        body.append(_text(width - right + 26, top + 16 * i + 9, key))
    body.append(_text(left + plot_w / 2, height - 0, "step", "middle", 'fill="#555"'))
    return _svg(width, height, "Metric history", body)


def image_svg(pixels: Sequence[object], shape: Sequence[int], title: str, scale: int = 8) -> str:
    """A grey-scale image (values 0..1, row by row) as SVG squares; '' if it does not fit."""
    rows, cols = (int(n) for n in shape)
    if rows * cols != len(pixels) or not 0 < rows * cols <= 4096:
        return ""
    cells = []
    for i, value in enumerate(pixels):
        level = min(max(float(value), 0.0), 1.0) if isinstance(value, int | float) else 0.0
        grey = round(255 * (1 - level))  # ink is dark, as digits are drawn
        y, x = divmod(i, cols)
        cells.append(
            f'<rect x="{x * scale}" y="{y * scale}" width="{scale}" height="{scale}" '
            f'fill="rgb({grey},{grey},{grey})"/>'
        )
    return _svg(cols * scale, rows * scale, title, cells)
