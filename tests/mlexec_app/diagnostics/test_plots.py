"""SVG plots drawn from a report's JSON: well-formed, escaped, showing what the verdict says."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from mlexec_app.diagnostics.plots import label_issue_images_svg, learning_curve_svg

pytestmark = pytest.mark.engine_independent

NS = "{http://www.w3.org/2000/svg}"
CURVE = {
    "sizes": [100, 200, 400, 800],
    "train_error": [0.0, 0.01, 0.01, 0.02],
    "dev_error": [0.3, 0.2, 0.14, 0.1],
    "fit": {"a": 3.0, "exponent": 0.5, "asymptote": 0.0},
    "target_error": 0.05,
    "needed_size": 3600,
    "verdict": "more data will help",
    "reason": "<b>needs</b> 3,600",
}


def test_learning_curve_shows_points_target_and_extrapolation():
    svg = learning_curve_svg(CURVE)
    root = ET.fromstring(svg)
    assert len(root.findall(f"{NS}circle")) == 8  # train and dev at four sizes
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "target 0.050" in texts and "needs ~3,600" in texts
    dashed = [p for p in root.findall(f"{NS}path") if p.get("stroke-dasharray")]
    assert len(dashed) == 1  # the fitted law, drawn past the data
    assert "<b>" not in svg and "&lt;b&gt;" in svg  # text from the report is escaped


def test_the_interval_band_is_drawn_around_the_extrapolation():
    band = [
        {"size": 800, "value": 0.1, "low": 0.09, "high": 0.11},
        {"size": 2000, "value": 0.07, "low": 0.04, "high": 0.1},
        {"size": 8000, "value": 0.05, "low": 0.01, "high": 0.09},
    ]
    root = ET.fromstring(learning_curve_svg({**CURVE, "band": band, "level": 0.8}))
    (shape,) = [p for p in root.findall(f"{NS}path") if p.get("class") == "mlexec-band"]
    corners = shape.get("d").rstrip(" Z").split(" ")
    assert len(corners) == 6  # out along the highs, back along the lows
    ys = [float(c.split(",")[1]) for c in corners]
    assert ys[2] < ys[3]  # at 10x the high edge is above (smaller y than) the low edge
    assert "80% interval" in [t.text for t in root.iter(f"{NS}text")]
    assert shape.find(f"{NS}title").text == "80% interval of the extrapolated dev error"


def test_a_flat_curve_has_no_needed_size_marker():
    flat = {**CURVE, "needed_size": None, "fit": {"a": 0.0, "exponent": 0.0, "asymptote": 0.3}}
    texts = [t.text for t in ET.fromstring(learning_curve_svg(flat)).iter(f"{NS}text")]
    assert not any(t and t.startswith("needs") for t in texts)


def test_label_issue_images_draw_each_pixel_in_grey_and_caption_the_labels():
    issues = [
        {"index": 7, "given": "3", "suggested": "8", "image": [0.0, 1.0, 0.5, 0.25]},
        {"index": 9, "given": "<1>", "suggested": "7", "image": [1.0, 0.0, 0.0, 1.0]},
        {"index": 11, "given": "2", "suggested": "2"},  # no image: listed elsewhere, not drawn
    ]
    svg = label_issue_images_svg(issues, [1, 2, 2])
    root = ET.fromstring(svg)
    fills = [r.get("fill") for r in root.findall(f"{NS}rect")]
    assert len(fills) == 8
    assert fills[:2] == ["rgb(255,255,255)", "rgb(0,0,0)"]  # blank paper, full ink
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert "3 → 8" in texts and "<1> → 7" in texts and "#7" in texts
