"""The call a reader must confirm is said where the call is said (session 12): the report's
title, the CLI summary, napari's table and status, not only in the warnings (the report's
footer is cut after 8 lines, and the confirm warning came 9th on the real XA1 parietal branch)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

import stenosis
from stenosis.cli.measure import summary_lines
from stenosis.report import report_figure
from stenosis.result import CONFIRM_CALL, CONFIRM_MARK, call_text
from stenosis.wasid import borderline_warning


@pytest.fixture(scope="module")
def result(sample_dicom_dir):
    truth = json.loads((sample_dicom_dir / "m1_native_uncalibrated.truth.json").read_text())
    return stenosis.measure(sample_dicom_dir / "m1_native_uncalibrated.dcm", segment="M1",
                            proximal=tuple(truth["proximal_rc"]), distal=tuple(truth["distal_rc"]), frames="single")


def test_the_borderline_warning_carries_the_marker_the_result_looks_for():
    assert CONFIRM_CALL in borderline_warning(47.0, 2.0)      # within 5 points
    assert CONFIRM_CALL in borderline_warning(37.4, 32.8)     # +-2 SD reaches 50
    assert borderline_warning(30.0, 4.0) is None
    assert call_text(True, False) == "YES" and call_text(False, True) == f"no ({CONFIRM_MARK})"


def test_a_clear_call_is_plain(result):
    assert not result.needs_confirmation, result.warnings   # 60% phantom, +- about 1
    assert result.call_text == ("YES" if result.meets_50 else "no")
    assert "reader must confirm" not in report_figure(result)._suptitle.get_text()


def test_a_borderline_call_is_in_the_title_and_its_warning_first_in_the_footer(result):
    others = tuple(f"unrelated warning {i}" for i in range(9))
    border = borderline_warning(37.4, 32.8)
    res = replace(result, percent_stenosis=37.4, percent_stenosis_sd=32.8, warnings=others + (border,))
    assert res.needs_confirmation and res.call_text == "no (reader must confirm)"
    fig = report_figure(res)
    assert "[>= 50%: no (reader must confirm)]" in fig._suptitle.get_text()
    footer = [t.get_text() for t in fig.texts if t.get_text().startswith("warnings:")]
    assert len(footer) == 1
    first = footer[0].split("\n")[0]
    assert "have a reader" in first or "percent stenosis 37.4%" in first, first   # listed first, not cut
    assert "... (10 warnings in all" in footer[0]
    assert any("reader must confirm" in line for line in summary_lines(res))
    assert fig._suptitle.get_color() == "#c05600"                       # orange, as napari's table
    assert report_figure(result)._suptitle.get_color() == ("#b00020" if result.meets_50 else "#14532d")


def test_the_json_the_csv_row_and_the_batch_count_carry_it(result):
    """Decided once, by the result: a batch counted it again with the default parameters."""
    from stenosis.batch.summary import needs_confirmation

    border = borderline_warning(48.0, 1.0)
    res = replace(result, percent_stenosis=48.0, percent_stenosis_sd=1.0, warnings=(border,))
    assert res.to_dict()["needs_confirmation"] is True and result.to_dict()["needs_confirmation"] is False
    assert res.to_row()["needs_confirmation"] is True and result.to_row()["needs_confirmation"] is False
    # a warning asking for it (the sd alone would not) decides, as the result does
    asked = replace(result, percent_stenosis=30.0, percent_stenosis_sd=1.0, warnings=(f"x; {CONFIRM_CALL}",))
    assert needs_confirmation(asked.to_dict()) and not needs_confirmation(result.to_dict())


def test_napari_table_says_it(result):
    from napari_stenosis._model import result_table

    border = borderline_warning(48.0, 1.0)
    res = replace(result, percent_stenosis=48.0, percent_stenosis_sd=1.0, warnings=(border,))
    assert dict(result_table(res))[">= 50%"] == "no (reader must confirm)"
    assert dict(result_table(result))[">= 50%"] == ("YES" if result.meets_50 else "no")


@pytest.mark.slow
def test_the_real_parietal_branch_says_it_in_the_report(wg04_dir):
    """The XA1 lateral cerebral frame's parietal branch (benchmarks/real.py): an interval that
    reaches 50% is called 'reader must confirm' in the title."""
    res = stenosis.measure(wg04_dir / "XA1_UNC", segment="M1", proximal=(250, 330), distal=(420, 322))
    lo, hi = res.percent_stenosis_interval
    assert lo <= 50.0 <= hi, (res.percent_stenosis, res.percent_stenosis_sd)
    assert res.needs_confirmation
    assert f"({CONFIRM_MARK})]" in report_figure(res)._suptitle.get_text()
