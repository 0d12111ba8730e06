"""Batch outputs: the output folder, file names, atomic writes, the journal and ``results.csv``.

``results.jsonl`` is the journal: the parent (the only writer) appends each finished
row as one complete, fsynced line, so a kill loses nothing already written and leaves
at most a partial *last* line, which readers ignore and the next ``--resume``
truncates. ``results.csv`` and ``summary.png`` are rewritten from the journal via a
temporary file and :func:`os.replace`; workers write reports and SRs the same way.
Every file gets the mode the umask gives (``0o666 & ~umask``).
"""
from __future__ import annotations

import csv
import enum
import hashlib
import io
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import InputError, StenosisError
from ..result import ROW_COLUMNS, row_from_dict
from .tasks import DICOM_SUFFIXES, POINT_COLUMNS

__all__ = [
    "CSV_COLUMNS",
    "JSONL_NAME",
    "CSV_NAME",
    "SUMMARY_NAME",
    "REPORTS_DIR",
    "SR_DIR",
    "PREVIOUS_PREFIX",
    "OutputFolderError",
    "prepare_out_dir",
    "output_stem",
    "read_jsonl",
    "csv_record",
    "write_results_csv",
    "write_sorted_jsonl",
    "AUTO_POINTS_NAME",
    "write_auto_points",
]

#: Columns of ``results.csv`` (one row per task), in order: the one result-row schema.
CSV_COLUMNS: tuple[str, ...] = ROW_COLUMNS

JSONL_NAME = "results.jsonl"
CSV_NAME = "results.csv"
SUMMARY_NAME = "summary.png"
#: ``--auto``: the points it placed, as a points file (``--points``) for a reader to confirm
AUTO_POINTS_NAME = "points-auto.csv"
REPORTS_DIR = "reports"
SR_DIR = "sr"
#: ``--overwrite`` moves earlier outputs into ``OUT/previous-<timestamp>/``.
PREVIOUS_PREFIX = "previous-"


class OutputFolderError(StenosisError):
    """The output folder already holds results and neither resume nor overwrite was asked (a usage error)."""


def create_out_dir(out: Path) -> None:
    """Create the output folder `out` (and its parents), or say in one line why it cannot be."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out} ({exc.strerror}); choose a writable folder") from None


def prepare_out_dir(out: Path, *, resume: bool = False, overwrite: bool = False) -> None:
    """Create `out`; refuse one holding earlier outputs unless `resume`, or move them aside with `overwrite`."""
    create_out_dir(out)
    if resume:
        return
    entries = sorted(p for p in out.iterdir() if not p.name.startswith(PREVIOUS_PREFIX))
    if not entries:
        return
    if not overwrite:
        raise OutputFolderError(
            f"output folder {out} is not empty; use --resume to continue it, --overwrite to move its "
            "contents aside, or another --out"
        )
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside, n = out / f"{PREVIOUS_PREFIX}{stamp}", 1
    while aside.exists():
        n += 1
        aside = out / f"{PREVIOUS_PREFIX}{stamp}-{n}"
    aside.mkdir()
    for p in entries:
        os.replace(p, aside / p.name)


def output_stem(key: str) -> str:
    """File stem of a task's report and SR, unique per task key.

    The key made safe for any filesystem, then a hash of the exact key, so keys that
    read alike once made safe (``a b.dcm``, ``a_b.dcm``, ``a ü b.dcm``, ``sub/x.dcm``,
    ``sub__x.dcm``, or differing only in case) never share a file.
    """
    name, low = key, key.lower()
    for suffix in DICOM_SUFFIXES:  # the path's suffix, also before a repeated path's #segment[#fN][#n]
        at = len(low) - len(suffix) if low.endswith(suffix) else low.rfind(suffix + "#")
        if at >= 0:
            name = name[:at] + name[at + len(suffix):]
            break
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__").replace("#", "--")).strip("._-")[:80]
    return f"{safe or 'run'}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:10]}"


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def atomic_save(path: Path, writer: Callable[[str], None], suffix: str) -> None:
    """Call ``writer(tmp_path)``, give the file the umask's mode, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` durably (fsync) and move it into place in one step."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    atomic_save(path, write, ".tmp")


def jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars/arrays, enums, tuples, paths)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (str, bool)) or obj is None:
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):
        return jsonable(obj.tolist())
    if hasattr(obj, "item"):
        return jsonable(obj.item())
    return str(obj)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a results journal; a trailing partial line (a kill mid-write) is ignored.

    Later rows for the same key replace earlier ones.
    """
    p = Path(path)
    if not p.exists():
        return []
    data = p.read_bytes()
    end = data.rfind(b"\n")
    rows: dict[str, dict[str, Any]] = {}
    for raw in data[: end + 1].splitlines():
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            continue  # only a torn line can fail; complete lines are written whole
        rows[row.get("key") or row.get("path")] = row
    return list(rows.values())


class Journal:
    """Append-only JSON-lines file: one complete, fsynced line per finished row."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # drop a torn trailing line left by a kill, so appends start on a line boundary
        if path.exists():
            with open(path, "rb+") as f:
                data = f.read()
                end = data.rfind(b"\n") + 1
                if end != len(data):
                    f.truncate(end)
                    f.flush()
                    os.fsync(f.fileno())
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def append(self, row: Mapping[str, Any]) -> None:
        line = (json.dumps(jsonable(row), sort_keys=True, allow_nan=False) + "\n").encode()
        view = memoryview(line)
        while view:  # one write() in practice; loop only for a short write
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


def row_sort_key(row: Mapping[str, Any]) -> tuple:
    frame = row.get("frame_index")
    return (str(row.get("path")), str(row.get("segment")), -1 if frame is None else frame, str(row.get("key")))


def csv_record(row: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten one journal row into the ``results.csv`` columns (:func:`stenosis.result.row_from_dict`)."""
    return row_from_dict(row)


def write_results_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Write ``results.csv`` atomically, rows sorted by path."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    w.writeheader()
    for row in sorted(rows, key=row_sort_key):
        w.writerow(csv_record(row))
    _atomic_write_bytes(Path(path), buf.getvalue().encode())


def write_sorted_jsonl(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Rewrite the journal sorted by path (atomic), so finished batches compare equal."""
    data = "".join(
        json.dumps(jsonable(r), sort_keys=True, allow_nan=False) + "\n" for r in sorted(rows, key=row_sort_key)
    )
    _atomic_write_bytes(Path(path), data.encode())


def write_auto_points(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike, *, keep_existing: bool = False) -> int:
    """Write the points ``--auto`` placed (its measured rows) as a points file: ``path, segment,
    frame, proximal_row, proximal_col, distal_row, distal_col`` -- the columns ``--points`` reads,
    and only those (results.csv's measured ``mld_row``/``reference_choice`` would read back as a
    reader's overrides). ``keep_existing`` (a resumed batch): the rows already in the file (a
    reader may have moved them) are kept as they are, and only runs new to it are added. Returns
    the rows written; nothing is written when there are none."""
    cols = ("path", "segment", "frame", *POINT_COLUMNS[2:])

    def coords(r: Mapping[str, Any]) -> list[float] | None:
        try:
            v = [float(x) for x in (*r["proximal_rc"], *r["distal_rc"])]
        except (KeyError, TypeError, ValueError):
            return None
        return v if len(v) == 4 and all(map(math.isfinite, v)) else None

    kept: list[list[str]] = []
    p = Path(path)
    if keep_existing and p.is_file():
        with open(p, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        if table and tuple(table[0]) == cols:
            kept = [row for row in table[1:] if len(row) == len(cols)]
    have = {(row[0], row[1].upper()) for row in kept}
    new = []
    for r in sorted((r for r in rows if r.get("mode") == "auto" and r.get("status") == "ok"), key=row_sort_key):
        v = coords(r)
        if v is None or (str(r["path"]), str(r["segment"]).upper()) in have:
            continue
        frame = r.get("frame_index")
        new.append([str(r["path"]), str(r["segment"]), "" if frame is None else str(frame), *(f"{x:.2f}" for x in v)])
    if not kept and not new:
        return 0
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    w.writerows(kept + new)
    _atomic_write_bytes(p, buf.getvalue().encode())
    return len(kept) + len(new)
