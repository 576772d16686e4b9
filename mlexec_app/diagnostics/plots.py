"""Server-rendered SVG plots of a diagnostics report: no JavaScript, no CDN.

They read the JSON report stored on a job (plain lists and dicts), so drawing never imports
numpy or torch. Every text that reaches the SVG is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

TRAIN, DEV, TARGET, FIT = "#1f77b4", "#d62728", "#2ca02c", "#d62728"


def _svg(width: int, height: int, title: str, body: Iterable[str]) -> SafeString:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="mlexec-chart" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="sans-serif" font-size="12"><title>{escape(title)}</title>'
    )
    return mark_safe(head + "".join(body) + "</svg>")  # noqa: S308  (all text escaped)


def _text(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {extra}>{escape(text)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, colour: str, dash: str) -> str:
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
        f'stroke-dasharray="{dash}"/>'
    )


def _path(points: Sequence[tuple[float, float]], colour: str, extra: str = "") -> str:
    d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(points))
    return f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2" {extra}/>'


def learning_curve_svg(curve: dict[str, Any], width: int = 600, height: int = 320) -> SafeString:
    """Train and dev error against training size (log scale), the target line, and the
    extrapolated dev error with its interval band up to ten times today's data (reports
    without a band: the fitted power law, extended to the size the target needs)."""
    sizes, train, dev = curve["sizes"], curve["train_error"], curve["dev_error"]
    target, fit, needed = curve.get("target_error"), curve.get("fit"), curve.get("needed_size")
    x_max = max(sizes[-1] * 10, needed or 0) if fit else sizes[-1]
    x_max = min(x_max, sizes[-1] * 1000)
    highs = [p["high"] for p in curve.get("band") or []]
    y_max = min(max([*train, *dev, target or 0.0, *highs]) * 1.15, 1.0) or 1.0
    left, right, top, bottom = 56, 20, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = math.log10(sizes[0]), math.log10(x_max)

    def xy(n: float, err: float) -> tuple[float, float]:
        x = left + (math.log10(n) - lo) / ((hi - lo) or 1.0) * plot_w
        return x, top + plot_h - min(err, y_max) / y_max * plot_h

    body = [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#ccc"/>',
        _text(width / 2, 18, f"Learning curve: {curve['verdict']}", "middle", 'font-weight="bold"'),
        _text(width / 2, height - 8, "training examples (log scale)", "middle"),
        _text(
            14,
            top + plot_h / 2,
            "error",
            "middle",
            f'transform="rotate(-90 14 {top + plot_h / 2})"',
        ),
    ]
    body += _axes(xy, sizes[0], x_max, y_max, top + plot_h, left)
    band = [p for p in curve.get("band") or [] if p["size"] <= x_max]
    if len(band) >= 2:
        # The averaged extrapolation and its interval (what the same procedure would measure).
        edge = [xy(p["size"], p["high"]) for p in band] + [
            xy(p["size"], p["low"]) for p in reversed(band)
        ]
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(edge))
        level = f"{curve.get('level', 0.8):.0%}"
        body.append(
            f'<path class="mlexec-band" d="{d} Z" fill="{FIT}" fill-opacity="0.15" stroke="none">'
            f"<title>{level} interval of the extrapolated dev error</title></path>"
        )
        line = [xy(p["size"], p["value"]) for p in band]
        body.append(_path(line, FIT, 'stroke-dasharray="6 4" opacity="0.7"'))
        x, y = xy(band[-1]["size"], band[-1]["high"])
        body.append(_text(x - 4, y - 4, f"{level} interval", "end", f'fill="{FIT}"'))
    elif fit:
        law = [
            (n, fit["a"] * n ** -fit["exponent"] + fit["asymptote"]) for n in _geom(sizes[0], x_max)
        ]
        body.append(_path([xy(n, e) for n, e in law], FIT, 'stroke-dasharray="6 4" opacity="0.7"'))
    if target is not None:
        (x0, y), (x1, _) = xy(sizes[0], target), xy(x_max, target)
        body.append(_line(x0, y, x1, y, TARGET, "3 3"))
        body.append(_text(x1 - 4, y - 4, f"target {target:.3f}", "end", f'fill="{TARGET}"'))
    if needed and needed <= x_max:
        x, _ = xy(needed, 0)
        body.append(_line(x, top, x, top + plot_h, "#999", "2 3"))
        body.append(_text(x + 4, top + 14, f"needs ~{needed:,}", "start", 'fill="#555"'))
    for values, colour, name in ((train, TRAIN, "train"), (dev, DEV, "dev")):
        points = [xy(n, e) for n, e in zip(sizes, values, strict=True)]
        body.append(_path(points, colour))
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points]
        body.append(_text(points[-1][0] + 6, points[-1][1] + 4, name, "start", f'fill="{colour}"'))
    return _svg(
        width, height, f"Learning curve: {curve['verdict']}. {curve.get('reason', '')}", body
    )


def _axes(xy: Any, x_min: float, x_max: float, y_max: float, base: float, left: float) -> list[str]:
    out = []
    for power in range(math.floor(math.log10(x_min)), math.ceil(math.log10(x_max)) + 1):
        n = 10**power
        if x_min <= n <= x_max:
            x, _ = xy(n, 0)
            out.append(_text(x, base + 16, f"{n:,}", "middle"))
    for i in range(5):
        value = y_max * i / 4
        _, y = xy(x_min, value)
        out.append(_text(left - 6, y + 4, f"{value:.2f}", "end"))
    return out


def _geom(start: float, stop: float, count: int = 60) -> list[float]:
    ratio = (stop / start) ** (1 / (count - 1))
    return [start * ratio**i for i in range(count)]


def label_issue_images_svg(
    issues: list[dict[str, Any]], image_shape: Sequence[int], columns: int = 8, scale: int = 6
) -> SafeString:
    """Suspected label errors drawn as images, each captioned "given → suggested"."""
    shown = [issue for issue in issues if issue.get("image")]
    channels, height, width = (
        (list(image_shape) + [1, 1])[:3] if len(image_shape) == 3 else (1, *image_shape)
    )
    cell_w, cell_h = max(width * scale, 64) + 12, height * scale + 34
    rows = max(1, math.ceil(len(shown) / columns))
    body = []
    for k, issue in enumerate(shown):
        ox, oy = (k % columns) * cell_w + 6, (k // columns) * cell_h + 6
        body += _pixels(issue["image"], channels, height, width, ox, oy, scale)
        caption = f"{issue['given']} → {issue['suggested']}"
        body.append(_text(ox, oy + height * scale + 14, caption, "start"))
        body.append(
            _text(
                ox,
                oy + height * scale + 27,
                f"#{issue['index']}",
                "start",
                'fill="#777" font-size="10"',
            )
        )
    title = f"{len(shown)} suspected label errors, given label → likely label"
    return _svg(columns * cell_w + 6, rows * cell_h + 6, title, body)


def _pixels(
    values: list[float], channels: int, height: int, width: int, ox: int, oy: int, scale: int
) -> list[str]:
    plane = height * width
    out = []
    for r in range(height):
        for c in range(width):
            i = r * width + c
            if channels >= 3:
                rgb = [int(255 * values[ch * plane + i]) for ch in range(3)]
            else:
                grey = 255 - int(255 * values[i])  # ink is dark, as on paper
                rgb = [grey, grey, grey]
            out.append(
                f'<rect x="{ox + c * scale}" y="{oy + r * scale}" width="{scale}" height="{scale}" '
                f'fill="rgb({rgb[0]},{rgb[1]},{rgb[2]})"/>'
            )
    return out
