"""Print the Markdown table of every MeasureParams field (name, default, unit, meaning).

    python docs/make_params_table.py

Its output is pasted into ``docs/tuning.md`` between the ``params-table`` markers;
``tests/test_docs_params.py`` checks that the two agree.
"""
from __future__ import annotations

from stenosis.params import MeasureParams


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def params_table() -> str:
    """The table, one row per field in declaration order (no trailing newline)."""
    rows = ["| name | default | unit | meaning |", "| --- | --- | --- | --- |"]
    for name, default, unit, doc in MeasureParams.describe():
        rows.append(f"| `{name}` | `{_cell(default)}` | {_cell(unit) or '-'} | {_cell(doc)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(params_table())
