"""Every README example that uses stenosis runs as written (issue 17), and docs/contracts.md
lists every CLI flag, JSON key and CSV column the code has.

The ```bash``` and ```python``` blocks of README.md are extracted; ``pip install`` steps, the
test command itself (pytest, the set-up script) are left out; each remaining block runs in a
temporary folder holding a link to ``sample_dicom/`` (so outputs such as ``results/`` land
there) and must succeed.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
CONTRACTS = REPO / "docs" / "contracts.md"

_SKIP_STEP = re.compile(r"^\s*(pip install|python -m pip|python -m pytest|pytest|sh scripts/setup_test_env\.sh)")


def readme_examples() -> list[tuple[str, str]]:
    """(language, code) of every README bash/python block that uses stenosis, set-up steps removed."""
    out = []
    for lang, code in re.findall(r"```(bash|python)\n(.*?)```", README.read_text(), flags=re.S):
        if lang == "bash":
            lines = []
            for line in code.splitlines():
                steps = [p for p in line.split("&&") if not _SKIP_STEP.match(p)]
                if steps:
                    lines.append(" && ".join(p.strip() for p in steps) if "&&" in line else line)
            code = "\n".join(lines) + "\n"
        if "stenosis" in code:
            out.append((lang, code))
    return out


EXAMPLES = readme_examples()


def test_readme_has_examples_and_no_placeholder_paths():
    assert len(EXAMPLES) >= 4
    text = README.read_text()
    assert "run.dcm" not in text and "120,200" not in text and "(120, 200)" not in text
    assert "SPEC.md" not in text and "docs/contracts.md" in text


def _slow(code: str) -> bool:
    return "batch" in code or "demo" in code


@pytest.mark.parametrize(
    "lang, code",
    [pytest.param(lang, code, marks=[pytest.mark.slow] if _slow(code) else [], id=f"{lang}-{i}")
     for i, (lang, code) in enumerate(EXAMPLES)],
)
def test_readme_example_runs(lang, code, tmp_path):
    (tmp_path / "sample_dicom").symlink_to(REPO / "sample_dicom")
    env = dict(os.environ, MPLBACKEND="Agg")
    if lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    else:
        cmd = [sys.executable, "-c", code]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, f"README example failed ({p.returncode}):\n{code}\n--- stderr:\n{p.stderr[-3000:]}"
    if "--out result/" in code:
        assert (tmp_path / "result" / "report.png").is_file()
    if "--points points.csv" in code:
        rows = (tmp_path / "results" / "results.csv").read_text().splitlines()
        assert len(rows) == 3 and all(",ok," in r for r in rows[1:]), rows
    if "--json" in code:
        first_json = next(line for line in p.stdout.splitlines() if line.startswith("{"))
        assert json.loads(first_json)["segment"] == "M1"


# ---- docs/contracts.md is complete ----------------------------------------------------------
def _options(name: str) -> set[str]:
    from stenosis.cli.main import cli

    ctx = cli.make_context("stenosis", [name, "--help"], resilient_parsing=True)
    cmd = cli.get_command(ctx, name)
    return {o for p in cmd.params for o in p.opts if o.startswith("--")} - {"--help"}


@pytest.mark.parametrize("sub", ["measure", "batch", "info", "demo"])
def test_contracts_list_every_cli_flag(sub):
    text = CONTRACTS.read_text()
    missing = sorted(o for o in _options(sub) if f"`{o}`" not in text and f"{o} " not in text and f"{o}]" not in text)
    assert not missing, f"docs/contracts.md does not list stenosis {sub} {missing}"


def test_contracts_list_every_csv_column_and_json_key(sample_dicom_dir):
    import stenosis
    from stenosis.result import ROW_COLUMNS

    text = CONTRACTS.read_text()
    assert not [c for c in ROW_COLUMNS if c not in text]
    truth = json.loads((sample_dicom_dir / "m1_subtracted_pixelspacing.truth.json").read_text())
    res = stenosis.measure(sample_dicom_dir / "m1_subtracted_pixelspacing.dcm", segment="M1",
                           proximal=tuple(truth["proximal_rc"]), distal=tuple(truth["distal_rc"]), frames="single")
    d = res.to_dict()
    keys = set(d) | {k for v in d.values() if isinstance(v, dict) for k in v}
    keys -= {"pixel_mm"}  # inside parameters.reader only when given
    assert not sorted(k for k in keys if f"`{k}" not in text and f" {k}" not in text and f"{{{k}" not in text)


def test_every_top_level_name_in_the_contracts_is_importable():
    """Each name the API table of docs/contracts.md gives without a module (`name(...)` or
    `Name`) is an attribute of ``stenosis`` (a new user found DEFAULT_PARAMS and ViewsResult
    named there but importable only from their modules)."""
    import re

    import stenosis

    text = (Path(__file__).resolve().parents[1] / "docs" / "contracts.md").read_text()
    api = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in api.splitlines():
        if line.startswith("| `") and not line.startswith("| `stenosis."):  # a module's row names its own functions
            first = line.split(" | ")[0]
            while re.search(r"\([^()]*\)", first):  # arguments and asides: not names of the API
                first = re.sub(r"\([^()]*\)", "", first)
            names |= set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", first))
            names |= set(re.findall(r"\b(DEFAULT_PARAMS|ViewsResult)\b", line))
    assert {"measure", "measure_views", "read_run", "StenosisResult", "DEFAULT_PARAMS", "ViewsResult"} <= names
    missing = sorted(n for n in names if not hasattr(stenosis, n))
    assert not missing, f"named in docs/contracts.md but not importable from stenosis: {missing}"
