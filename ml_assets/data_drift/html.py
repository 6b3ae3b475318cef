"""A self-contained HTML drift report: a verdict table and, per column, reference vs current distributions as
inline SVG (no JavaScript, no CDN, so it opens from S3 or disk on a machine without internet)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import numpy as np

from ml_assets.data_drift.engine import ColumnDrift, ColumnProfile, DriftReport, ReferenceProfile

if TYPE_CHECKING:  # pandas loads where a frame is made or read, not with the code location's definitions
    import pandas as pd

WIDTH, HEIGHT, PAD = 520, 180, 28
BINS = 20
TOP_CATEGORIES = 12
REF_COLOR, CUR_COLOR = "#4c78a8", "#f58518"
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
.drift{color:#b00020;font-weight:600}.ok{color:#1b5e20}section{margin:1.5rem 0}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}
"""


def _shares_numeric(profile: ColumnProfile, current: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    import pandas as pd

    ref = profile.sorted_values if profile.sorted_values is not None else np.array([])
    cur = pd.to_numeric(current, errors="coerce").to_numpy(dtype=float)
    cur = cur[np.isfinite(cur)]
    both = np.concatenate([ref, cur])
    if both.size == 0:
        return [], np.array([]), np.array([])
    # Quantile-trimmed range, so one outlier does not squeeze every other bar into one bin.
    low, high = np.quantile(both, [0.01, 0.99])
    edges = np.linspace(low, high if high > low else low + 1, BINS + 1)
    ref_counts = np.histogram(np.clip(ref, low, high), edges)[0]
    cur_counts = np.histogram(np.clip(cur, low, high), edges)[0]
    labels = [f"{edges[i]:.4g} to {edges[i + 1]:.4g}" for i in range(BINS)]
    return labels, _norm(ref_counts), _norm(cur_counts)


def _shares_categorical(profile: ColumnProfile, current: pd.Series) -> tuple[list[str], np.ndarray, np.ndarray]:
    ref = profile.value_counts()
    cur = current.dropna().astype(ref.index.dtype if len(ref) else object).value_counts()
    keys = ref.add(cur, fill_value=0).sort_values(ascending=False).index[:TOP_CATEGORIES]
    return (
        [str(k) for k in keys],
        _norm(ref.reindex(keys, fill_value=0).to_numpy(dtype=float)),
        _norm(cur.reindex(keys, fill_value=0).to_numpy(dtype=float)),
    )


def _norm(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def _bars(labels: list[str], ref: np.ndarray, cur: np.ndarray) -> str:
    if not labels:
        return "<p>no values in either window</p>"
    top = max(float(ref.max()), float(cur.max()), 1e-9)
    slot = (WIDTH - 2 * PAD) / len(labels)
    bars = []
    for i, label in enumerate(labels):
        for j, (share, color) in enumerate(((ref[i], REF_COLOR), (cur[i], CUR_COLOR))):
            h = (HEIGHT - 2 * PAD) * share / top
            x = PAD + i * slot + j * slot / 2
            bars.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - PAD - h:.1f}" width="{max(slot / 2 - 1, 1):.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{html.escape(label)}: {share:.1%}</title></rect>'
            )
    axis = f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
    ends = (
        f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="10">{html.escape(labels[0])}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="10" text-anchor="end">{html.escape(labels[-1])}</text>'
    )
    return f'<svg width="{WIDTH}" height="{HEIGHT}" role="img">{"".join(bars)}{axis}{ends}</svg>'


def _row(c: ColumnDrift) -> str:
    stat = "-" if c.statistic is None else f"{c.statistic:.4g}"
    pv = "-" if c.p_value is None else f"{c.p_value:.4g}"
    css = "drift" if c.drifted else "ok"
    cells = [c.column, c.kind, c.test, stat, pv, f"{c.threshold:g}", f"{c.null_share_cur:.1%}"]
    tds = "".join(f"<td>{html.escape(str(v))}</td>" for v in cells)
    return f'<tr>{tds}<td class="{css}">{html.escape(c.verdict)}</td></tr>'


def render_report(title: str, report: DriftReport, profile: ReferenceProfile, current: pd.DataFrame) -> str:
    import pandas as pd

    verdict_css = "drift" if report.drifted else "ok"
    head = (
        "<tr><th>column</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th><th>threshold</th>"
        "<th>nulls (current)</th><th>verdict</th></tr>"
    )
    sections = []
    for c in report.columns:
        col_profile = profile.columns[c.column]
        series = current[c.column] if c.column in current.columns else pd.Series(dtype=object)
        shares = _shares_numeric if c.kind == "numeric" else _shares_categorical
        plot = _bars(*shares(col_profile, series))
        new = f"<p>new categories: {html.escape(', '.join(map(str, c.new_categories)))}</p>" if c.new_categories else ""
        sections.append(f"<section><h3>{html.escape(c.column)} — {html.escape(c.verdict)}</h3>{plot}{new}</section>")
    legend = (
        f'<p class="legend"><span style="background:{REF_COLOR}"></span>reference (champion training data)'
        f'<span style="background:{CUR_COLOR}"></span>current</p>'
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p>Dataset: <span class="{verdict_css}">{html.escape(report.verdict)}</span> — '
        f"{report.n_drifted}/{len(report.columns)} columns drifted (share {report.share_drifted:.2f}, threshold "
        f"{report.drift_share:g}); reference {report.ref_rows} rows, current {report.cur_rows} rows.</p>"
        f"<table>{head}{''.join(_row(c) for c in report.columns)}</table>{legend}{''.join(sections)}</body></html>"
    )
