"""The batch summary figure: percent stenosis of every measured run against the 50% line."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..result import two_sd_interval
from ..wasid import borderline_warning
from .outputs import atomic_save, row_sort_key

__all__ = ["write_summary_figure", "summary_lines", "needs_confirmation", "LABEL_ALL_MAX"]

#: Up to this many measured runs every dot is labelled; above it only the runs >= 50%.
LABEL_ALL_MAX = 30


def percent_sd(row: Mapping[str, Any]) -> float:
    sd = (row.get("uncertainty") or {}).get("percent_stenosis_sd")
    return float(sd) if sd is not None else float("nan")


def needs_confirmation(row: Mapping[str, Any]) -> bool:
    """Whether an ok row's >= 50% call needs a reader's confirmation: the result's own
    ``needs_confirmation`` (:attr:`stenosis.result.StenosisResult.needs_confirmation`, decided
    once, with the parameters it was measured with); rows journaled before that key was written
    fall back to the borderline rule with the default parameters."""
    if row.get("needs_confirmation") is not None:
        return bool(row["needs_confirmation"])
    pct = row.get("percent_stenosis")
    return pct is not None and borderline_warning(float(pct), percent_sd(row)) is not None


def _label(row: Mapping[str, Any], width: int = 28) -> str:
    """Short run label of a dot: the end of its key (the path, qualified where a path repeats)."""
    key = str(row.get("key") or row.get("path"))
    return key if len(key) <= width else "..." + key[-(width - 3):]


def _error_lines(err: Sequence[Mapping[str, Any]], width: int = 70, n_max: int = 8) -> list[str]:
    lines = []
    for r in err[:n_max]:
        text = f"{r.get('path')}: {r.get('error') or 'error'}"
        lines += textwrap.wrap(text, width, initial_indent="  ", subsequent_indent="    ", max_lines=2,
                               placeholder=" ...")
    if len(err) > n_max:
        lines.append(f"  ... and {len(err) - n_max} more (see results.csv)")
    return lines


def summary_lines(rows: Sequence[Mapping[str, Any]], n_max: int = 10) -> list[str]:
    """The summary figure's text: the runs >= 50%, the runs whose >= 50% call a reader must
    confirm (each with its percent and SD) and the error rows with their reason."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("percent_stenosis") is not None]
    err = sorted((r for r in rows if r.get("status") != "ok"), key=row_sort_key)

    def listed(title: str, runs: list[Mapping[str, Any]]) -> list[str]:
        runs = sorted(runs, key=row_sort_key)
        out = [f"{title}: {len(runs)}"]
        out += [f"  {_label(r, 40)} [{r.get('segment')}] {float(r['percent_stenosis']):.0f}%"
                + (f" +- {percent_sd(r):.0f}" if np.isfinite(percent_sd(r)) else "") for r in runs[:n_max]]
        if len(runs) > n_max:
            out.append(f"  ... and {len(runs) - n_max} more (see results.csv)")
        return out

    lines = listed("flagged (>= 50%)", [r for r in ok if float(r["percent_stenosis"]) >= 50.0])
    lines += listed("a reader must confirm the >= 50% call", [r for r in ok if needs_confirmation(r)])
    return [*lines, f"errors: {len(err)}", *_error_lines(err)]


def write_summary_figure(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Batch summary figure: percent stenosis of every measured run against the 50% line.

    Left: one labelled dot per ok run (jittered strip, per segment) with the 50% threshold;
    middle: a histogram; right: the flagged runs (>= 50%) and the error rows with their reason.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # after the backend is chosen

    ok = [r for r in rows if r.get("status") == "ok" and r.get("percent_stenosis") is not None]
    flagged = sorted((r for r in ok if float(r["percent_stenosis"]) >= 50.0), key=row_sort_key)
    fig, (ax_strip, ax_hist, ax_txt) = plt.subplots(
        1, 3, figsize=(15, 5.4), gridspec_kw={"width_ratios": [2.4, 1.6, 2.6]}
    )
    label_all = len(ok) <= LABEL_ALL_MAX
    segs = sorted({str(r.get("segment")) for r in ok}) or ["-"]
    rng = np.random.default_rng(0)  # fixed jitter: the figure is reproducible
    for i, seg in enumerate(segs):
        runs = sorted((r for r in ok if str(r.get("segment")) == seg), key=row_sort_key)
        vals = np.array([float(r["percent_stenosis"]) for r in runs])
        if vals.size:
            x = i + rng.uniform(-0.18, 0.18, vals.size)
            colors = np.where(vals >= 50.0, "tab:red", "tab:blue")
            sds = np.array([percent_sd(r) for r in runs])
            has = np.isfinite(sds)
            if has.any():  # +-2 SD of each measurement
                lo, hi = np.array([two_sd_interval(v, sd) for v, sd in zip(vals[has], sds[has])]).T
                # (a percent read below 0 or above 100 keeps its own point: no bar on that side)
                ax_strip.errorbar(x[has], vals[has], yerr=[np.maximum(vals[has] - lo, 0), np.maximum(hi - vals[has], 0)],
                                  fmt="none", ecolor="0.6", elinewidth=0.7, zorder=1)
            ax_strip.scatter(x, vals, c=colors, s=18, alpha=0.8, edgecolors="none", zorder=2)
            for k, (xi, v, r) in enumerate(zip(x, vals, runs)):
                if label_all or v >= 50.0:  # alternate sides so that neighbours stay readable
                    ax_strip.annotate(_label(r), (xi, v), xytext=(5 if k % 2 == 0 else -5, 0), textcoords="offset points",
                                      fontsize=6, va="center", ha="left" if k % 2 == 0 else "right", color="0.25")
    ax_strip.axhline(50.0, color="tab:red", ls="--", lw=1)
    ax_strip.set_xticks(range(len(segs)), segs)
    ax_strip.set_xlim(-0.6, len(segs) - 0.2)
    ax_strip.set_ylim(0, 100)
    ax_strip.set_ylabel("percent stenosis (WASID)")
    n_confirm = sum(needs_confirmation(r) for r in ok)
    ax_strip.set_title(f"{len(ok)} measured, {len(flagged)} >= 50%, {n_confirm} to confirm (bars: +-2 SD)"
                       + ("" if label_all else "\nlabels: runs >= 50% only"), fontsize=10)
    vals_all = np.array([float(r["percent_stenosis"]) for r in ok])
    ax_hist.hist(vals_all, bins=np.arange(0, 105, 5), color="tab:blue", alpha=0.8)
    ax_hist.axvline(50.0, color="tab:red", ls="--", lw=1)
    ax_hist.set_xlabel("percent stenosis")
    ax_hist.set_ylabel("runs")
    ax_hist.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_hist.set_title("distribution")
    ax_txt.axis("off")
    lines = summary_lines(rows)
    ax_txt.text(0, 1, "\n".join(lines), va="top", ha="left", family="monospace", fontsize=8.5 if len(lines) <= 30 else 7)
    fig.tight_layout()
    try:
        atomic_save(Path(path), lambda tmp: fig.savefig(tmp, dpi=100, format="png"), ".png")
    finally:
        plt.close(fig)
