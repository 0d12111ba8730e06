"""PNG report (issue 17): labels off the edge lines, warnings wrapped inside the figure, the MLD
joined to its curve, flagged samples shown, max-gradient edges only where they disagree, the
auto-points notice, and one profile plot shared with napari."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from stenosis.report import (AUTO_POINTS_TEXT, edge_disagreement, flagged_samples, plot_diameter_profile,
                             report_figure, save_report)
from stenosis.result import QualityFlag


@pytest.fixture(scope="module")
def result(sample_dicom_dir):
    import stenosis

    truth = json.loads((sample_dicom_dir / "m1_native_uncalibrated.truth.json").read_text())
    return stenosis.measure(sample_dicom_dir / "m1_native_uncalibrated.dcm", segment="M1",
                            proximal=tuple(truth["proximal_rc"]), distal=tuple(truth["distal_rc"]), frames="single")


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def test_ref_and_mld_labels_are_boxed_and_off_the_vessel(result):
    fig = report_figure(result)
    ax_im = fig.axes[0]
    labels = {t.get_text(): t for t in ax_im.texts if t.get_text() in ("REF", "MLD")}
    assert set(labels) == {"REF", "MLD"}
    for name, t in labels.items():
        assert t.get_bbox_patch() is not None  # white box
        x, y = t.get_position()  # data coordinates (col, row)
        point = result.mld_rc if name == "MLD" else result.reference_rc
        half = 0.5 * (result.mld_px if name == "MLD" else result.reference_diameter_px)
        assert np.hypot(y - point[0], x - point[1]) > half + 5  # beyond the lumen edge


def test_warnings_footer_wraps_inside_the_figure(result):
    long = tuple("a very long warning that goes on and on about the profile and the model " * 4 + str(i) for i in range(3))
    fig = report_figure(replace(result, warnings=long))
    r = _drawn(fig)
    fw = fig.bbox.width
    foot = [t for t in fig.texts if t.get_text().startswith("warnings:")]
    assert foot and foot[0].get_text().count("\n") >= 3
    ext = foot[0].get_window_extent(r)
    assert ext.x1 <= fw and ext.y0 >= 0
    # and it does not run into the plots
    assert ext.y1 <= min(ax.get_window_extent(r).y0 for ax in fig.axes)


def test_mld_sits_on_or_is_joined_to_its_curve_and_flagged_samples_are_shown(result):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    flags = np.asarray(result.profile.flags).copy()
    k = int(np.argmin(np.abs(result.profile.arc_px - result.mld_arc_px)))
    flags[k - 3 : k + 4] |= int(QualityFlag.OVERLAP)
    res = replace(result, profile=replace(result.profile, flags=flags))
    ax = Figure().subplots()
    plot_diameter_profile(ax, res)
    labels = [l.get_label() for l in ax.lines]
    flagged = [l for l in ax.lines if l.get_label().startswith("flagged")]
    assert flagged and "overlap" in flagged[0].get_label()
    assert len(flagged[0].get_xdata()) == int(flagged_samples(res.profile).sum())
    # the MLD marker, and a connector from the curve down to it when it is below the curve
    mld_line = [l for l in ax.lines if l.get_label().startswith("MLD")][0]
    y_mld = float(mld_line.get_ydata()[0])
    curve_y = float(res.profile.diameter_px[k])
    if abs(curve_y - y_mld) > 1e-6:
        assert any(len(l.get_ydata()) == 2 and np.allclose(sorted(l.get_ydata()), sorted([curve_y, y_mld])) for l in ax.lines), labels
    assert "measurement" in labels[0]  # the legend says which line is the measurement


def test_edges_are_shown_only_where_they_disagree_beyond_noise(result):
    prof = result.profile
    dis = edge_disagreement(prof)
    assert dis.mean() < 0.2  # a consistent offset is not a disagreement
    edge = np.asarray(prof.edge_diameter_px, float).copy()
    edge[40:45] *= 0.5
    dis2 = edge_disagreement(replace(prof, edge_diameter_px=edge))
    assert dis2[40:45].all()


def test_flagged_is_the_complement_of_valid(result):
    np.testing.assert_array_equal(flagged_samples(result.profile), ~result.profile.valid)


def test_auto_points_notice(result, tmp_path):
    texts = [t.get_text() for t in report_figure(result, auto_points=True).texts]
    assert any(AUTO_POINTS_TEXT in t for t in texts)
    conf = [t.get_text() for t in report_figure(result, auto_confidence=0.42).texts]
    assert any("placed automatically (confidence 0.42)" in t and "a reader must confirm" in t for t in conf)
    assert "a reader must confirm" in AUTO_POINTS_TEXT
    assert not any(AUTO_POINTS_TEXT in t for t in (x.get_text() for x in report_figure(result).texts))
    assert save_report(result, None, tmp_path / "r.png", auto_points=True).stat().st_size > 10_000


def _frames_panels(fig):
    return [ax for ax in fig.axes if ax.get_title().startswith("frame-to-frame SD")]


def test_a_multi_frame_report_plots_each_frame(low_dose_run, tmp_path):
    from _phantoms import measure_truth

    run, truth = low_dose_run
    res = measure_truth(run, truth)
    used = res.frames["used"]
    assert len(used) >= 3
    fig = report_figure(res, run)
    panels = _frames_panels(fig)
    assert len(panels) == 1
    ax = panels[0]
    sd = res.frames["frame_to_frame_sd"]
    assert ax.get_title() == f"frame-to-frame SD {sd:.1f} points"
    # the points: each frame's own percent stenosis, at its frame
    per = {p["frame"]: p["percent_stenosis"] for p in res.frames["per_frame"]}
    points = [l for l in ax.lines if len(l.get_xdata()) == len(used) and l.get_marker() == "o"]
    assert len(points) == 1
    got = dict(zip(np.asarray(points[0].get_xdata(), int).tolist(), np.asarray(points[0].get_ydata(), float)))
    assert sorted(got) == sorted(used) == sorted(per)
    for t in used:
        assert got[t] == pytest.approx(per[t], abs=1e-9)
    # the combined value as a line, the analysed frame red
    assert any(np.allclose(l.get_ydata(), res.percent_stenosis) and len(l.get_ydata()) == 2 for l in ax.lines)
    red = [l for l in ax.lines if l.get_color() == "#d62728"]
    assert [float(l.get_xdata()[0]) for l in red] == [res.frame_index]
    # under the diameter plot, inside the figure, nothing overlapping
    r = _drawn(fig)
    ax_pl = fig.axes[1]
    box, pl = ax.get_tightbbox(r), ax_pl.get_window_extent(r)
    assert box.y1 < ax_pl.get_tightbbox(r).y0 + 1 and abs(box.x0 - pl.x0) < 0.1 * pl.width
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width and box.y0 >= 0
    # the image and diameter panels keep their single-frame size
    single = report_figure(replace(res, frames={**res.frames, "used": used[:1]}), run)
    _drawn(single)
    for a, b in zip(fig.axes[:2], single.axes[:2]):
        assert a.get_window_extent(r).height >= 0.95 * b.get_window_extent(single.canvas.get_renderer()).height
    assert save_report(res, run, tmp_path / "r.png").stat().st_size > 10_000


def test_a_single_frame_report_has_no_per_frame_panel(result):
    assert result.frames["used"] == [result.frame_index]
    fig = report_figure(result)
    assert len(fig.axes) == 2 and not _frames_panels(fig)
    assert tuple(report_figure(replace(result, warnings=())).get_size_inches()) == (12.5, 5.6)

