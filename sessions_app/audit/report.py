"""The audit report as terminal text, stable JSON, and one self-contained HTML page.

The JSON format (``"format": "sessions-audit/1"``) is documented in docs/sessions/audit.md and
only ever grows. The HTML page loads nothing from anywhere (inline CSS, no script) and escapes
every value: most of them came from the endpoint under audit.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from sessions_app.domain.audit import Report, Verdict

FORMAT = "sessions-audit/1"
MARKS = {"green": "OK ", "amber": "~~ ", "red": "XX ", "unknown": "?? ", "n/a": "-- "}


def to_dict(report: Report, created: datetime | None = None) -> dict[str, Any]:
    """The report as JSON-ready data (the documented, stable shape)."""
    created = created or datetime.now(UTC)
    return {
        "format": FORMAT,
        "created": created.isoformat(timespec="seconds"),
        "url": report.url,
        "protocol": report.protocol,
        "problem": report.problem,
        "green": report.green,
        "gap_map": report.gap_map(),
        "capabilities": [
            {
                "name": c.name,
                "title": c.title,
                "verdict": c.verdict.value,
                "findings": [
                    {"verdict": f.verdict.value, "summary": f.summary, "details": list(f.details)}
                    for f in c.findings
                ],
                "evidence": [dataclasses.asdict(e) for e in c.evidence],
            }
            for c in report.capabilities
        ],
        "figures": dataclasses.asdict(report.figures) if report.figures else None,
        "design": [dataclasses.asdict(s) for s in report.design],
        "plan": [dataclasses.asdict(s) for s in report.plan],
        "evidence": [dataclasses.asdict(e) for e in report.exchanges],
        "notes": list(report.notes),
    }


def to_json(report: Report, created: datetime | None = None) -> str:
    return json.dumps(to_dict(report, created), indent=2, ensure_ascii=False) + "\n"


# --- terminal -------------------------------------------------------------------------------


def _safe(text: str) -> str:
    """Printable text: control characters from the endpoint shown, not obeyed."""
    return "".join(c if c.isprintable() or c in "\n" else repr(c)[1:-1] for c in text)


def _short(request: str, limit: int = 110) -> str:
    return request if len(request) <= limit else request[: limit - 1] + "…"


def to_text(report: Report, *, evidence: bool = False) -> str:
    """The terminal report: each capability's findings with its own requests under them
    (``evidence=True`` adds every request in full at the end)."""
    lines = [f"Delivery audit of {_safe(report.url)} ({report.protocol})", ""]
    if report.problem:
        lines += [f"No answer to probe: {_safe(report.problem)}", ""]
    lines.append("Gap map")
    for c in report.capabilities:
        lines.append(f"  {MARKS[c.verdict.value]}{c.title}: {c.verdict.value}")
        for f in c.findings:
            lines.append(f"      [{f.verdict.value}] {_safe(f.summary)}")
            lines += [f"          {_safe(d)}" for d in f.details]
        for e in c.evidence:
            lines += [f"        > {_safe(_short(e.request))}", f"        < {_safe(e.answer)}"]
    if report.figures:
        lines += ["", "Stream character"]
        for key, value in dataclasses.asdict(report.figures).items():
            if value is not None:
                lines.append(f"  {key.replace('_', ' ')}: {value}")
    if report.design:
        lines += ["", "Session-layer design"]
        lines += [f"  - {s.topic} ({s.setting}): {_safe(s.text)}" for s in report.design]
    if report.plan:
        lines += ["", "Migration plan"]
        for i, step in enumerate(report.plan, 1):
            lines.append(f"  {i}. {step.title}: {_safe(step.text)}")
            lines += [f"       {line}" for line in _safe(step.snippet).splitlines()]
    if report.notes:
        lines += ["", "Notes"] + [f"  - {_safe(n)}" for n in report.notes]
    if evidence and report.exchanges:
        lines += ["", "Evidence (requests sent, what came back)"]
        for e in report.exchanges:
            lines += [f"  [{e.probe}] > {_safe(e.request)}", f"    < {_safe(e.answer)}"]
    return "\n".join(lines) + "\n"


# --- HTML -----------------------------------------------------------------------------------

COLOURS = {
    Verdict.GREEN: "#1a7f37",
    Verdict.AMBER: "#9a6700",
    Verdict.RED: "#cf222e",
    Verdict.UNKNOWN: "#57606a",
    Verdict.NA: "#8c959f",
}
STYLE = " ".join(
    [
        "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;",
        "padding:0 1rem;color:#1f2328}",
        "h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}",
        "table{border-collapse:collapse;width:100%}",
        "td,th{border:1px solid #d0d7de;padding:.4rem;text-align:left;vertical-align:top}",
        ".v{color:#fff;border-radius:4px;padding:.1rem .5rem;font-weight:600;white-space:nowrap}",
        "pre{background:#f6f8fa;padding:.6rem;overflow:auto;white-space:pre-wrap;",
        "word-break:break-all}",
        ".problem{border:2px solid #cf222e;padding:.6rem}small{color:#57606a}",
    ]
)


def _badge(verdict: Verdict) -> str:
    return f'<span class="v" style="background:{COLOURS[verdict]}">{escape(verdict.value)}</span>'


def to_html(report: Report, created: datetime | None = None) -> str:
    """One page, nothing external, every value escaped."""
    e = escape
    when = (created or datetime.now(UTC)).isoformat(timespec="seconds")
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
        " style-src 'unsafe-inline'\">",
        f"<title>Delivery audit: {e(report.url)}</title><style>{STYLE}</style></head><body>",
        f"<h1>Delivery audit of <code>{e(report.url)}</code></h1>",
        f"<p><small>protocol {e(report.protocol)} · {e(when)}</small></p>",
    ]
    if report.problem:
        out.append(f'<p class="problem">No answer to probe: {e(report.problem)}</p>')
    out += [
        "<h2>Gap map</h2>",
        "<table><tr><th>capability</th><th>verdict</th><th>findings</th></tr>",
    ]
    for c in report.capabilities:
        items = "".join(
            f"<li>{_badge(f.verdict)} {e(f.summary)}"
            + "".join(f"<br><small>{e(d)}</small>" for d in f.details)
            + "</li>"
            for f in c.findings
        ) + "".join(
            f"<li><small><code>{e(_short(x.request))}</code> → {e(x.answer)}</small></li>"
            for x in c.evidence
        )
        out.append(
            f"<tr><td>{e(c.title)}</td><td>{_badge(c.verdict)}</td><td><ul>{items}</ul></td></tr>"
        )
    out.append("</table>")
    if report.figures:
        out += ["<h2>Stream character</h2>", "<table>"]
        for key, value in dataclasses.asdict(report.figures).items():
            shown = "—" if value is None else str(value)
            out.append(f"<tr><th>{e(key.replace('_', ' '))}</th><td>{e(shown)}</td></tr>")
        out.append("</table>")
    if report.design:
        out += ["<h2>Session-layer design</h2>", "<ul>"]
        out += [
            f"<li><b>{e(s.topic)}</b> (<code>{e(s.setting)}</code>): {e(s.text)}</li>"
            for s in report.design
        ]
        out.append("</ul>")
    if report.plan:
        out += ["<h2>Migration plan</h2>", "<ol>"]
        for step in report.plan:
            snippet = f"<pre>{e(step.snippet)}</pre>" if step.snippet else ""
            out.append(f"<li><b>{e(step.title)}</b>: {e(step.text)}{snippet}</li>")
        out.append("</ol>")
    if report.notes:
        out += ["<h2>Notes</h2>", "<ul>"] + [f"<li>{e(n)}</li>" for n in report.notes] + ["</ul>"]
    if report.exchanges:
        out += [
            "<h2>Evidence</h2>",
            "<table><tr><th>probe</th><th>request</th><th>answer</th></tr>",
        ]
        for x in report.exchanges:
            excerpt = f"<pre>{e(x.excerpt)}</pre>" if x.excerpt else ""
            out.append(
                f"<tr><td>{e(x.probe)}</td><td><code>{e(x.request)}</code></td>"
                f"<td>{e(x.answer)}{excerpt}</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
