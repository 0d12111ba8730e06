"""docs/tuning.md carries the MeasureParams table exactly as docs/make_params_table.py prints it."""
from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
START, END = "<!-- params-table:start -->", "<!-- params-table:end -->"


def _script():
    spec = importlib.util.spec_from_file_location("make_params_table", DOCS / "make_params_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tuning_doc_params_table_is_current():
    text = (DOCS / "tuning.md").read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "docs/tuning.md needs one params-table block"
    pasted = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert pasted == _script().params_table(), (
        "docs/tuning.md's parameter table is stale: paste the output of python docs/make_params_table.py")


def test_every_param_has_a_section():
    """Each MeasureParams field is named (as `name`) somewhere in the history below the table."""
    from stenosis.params import MeasureParams

    text = (DOCS / "tuning.md").read_text(encoding="utf-8")
    history = text.split(END, 1)[1]
    missing = [name for name, *_ in MeasureParams.describe() if f"`{name}`" not in history]
    assert not missing, f"no section of docs/tuning.md names {missing}"
