"""Batch tasks: one run + one segment (+ the reader's points), from a points file or ``--auto``."""
from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..enums import Segment
from ..errors import InputError, StenosisError
from ..reader import frames_mode
from ..io import RunSource, find_runs, read_run
from ..io.header import NO_DICM_MARKER
from ..io.series import DICOM_SUFFIXES, named_dicom_not_runs

__all__ = [
    "POINT_COLUMNS",
    "require_some_run",
    "SEGMENT_COLUMNS",
    "DICOM_SUFFIXES",
    "PointsFileError",
    "Task",
    "read_points",
    "read_segments",
    "auto_tasks",
    "lesion_problems",
]

#: Required columns of a points file; ``frame`` is optional.
POINT_COLUMNS: tuple[str, ...] = (
    "path",
    "segment",
    "proximal_row",
    "proximal_col",
    "distal_row",
    "distal_col",
)

#: Required columns of an ``--auto`` segments file (the artery of each run); ``frame`` is optional.
SEGMENT_COLUMNS: tuple[str, ...] = ("path", "segment")

#: File name endings taken for runs even without the DICOM preamble, so that a
#: broken ``.dcm`` in an --auto folder is an error row rather than silently ignored.


class PointsFileError(InputError):
    """The points CSV is malformed: unreadable, empty, missing columns (the whole file), or -- with
    ``strict=True`` only -- one bad row (bad values, unknown segment, duplicate row)."""


@dataclass(frozen=True)
class Task:
    """One unit of batch work: one run, one segment.

    Attributes
    ----------
    path : str
        Run path relative to the batch folder (POSIX separators); what outputs show.
    source : str
        Absolute path the worker reads (a file, or a folder of single-frame files).
    segment : str
        ``"ICA"``, ``"M1"``, ``"V4"`` or ``"BA"``.
    proximal, distal : tuple of float or None
        Reader's points (row, col) in pixels; None in auto mode.
    frame : int or None
        0-based frame index; None lets the measurement choose.
    mode : str
        ``"points"`` or ``"auto"``.
    key : str
        Unique id of the task within the batch (the path, plus segment/frame when a
        path occurs more than once); used by ``--resume`` and to name outputs.
    files : tuple of str
        When set, the exact files of the run (a single-frame series found by
        :func:`stenosis.io.find_runs`); `source` is then their common folder.
    reference_choice : str or None
        Reader-forced WASID site (``proximal`` or ``distal``); optional column.
    mld : tuple of float or None
        Reader-placed MLD (row, col); optional columns ``mld_row``, ``mld_col``.
    waypoints : tuple of (row, col)
        Inner centerline points; optional column ``waypoints`` as ``row col;row col``.
    frames : "all", "single" or int
        Frames measured (:func:`stenosis.measure`'s ``frames``); optional column ``frames``.
    lesion : str or None
        Name of the lesion this run is one view of (optional column ``lesion``): rows with the
        same name are views of one lesion, graded together (:mod:`stenosis.batch.lesions`).
    problem : str or None
        Why this row of the points/segments file cannot be measured (unknown segment, a value that
        is not a number, a duplicate of an earlier row, ...), one line; :func:`run_batch` records
        such a task as an error row without reading the run. None for a good row.
    """

    path: str
    source: str
    segment: str
    proximal: tuple[float, float] | None = None
    distal: tuple[float, float] | None = None
    frame: int | None = None
    mode: str = "points"
    key: str = ""
    files: tuple[str, ...] = ()
    reference_choice: str | None = None
    mld: tuple[float, float] | None = None
    waypoints: tuple[tuple[float, float], ...] = ()
    frames: str | int = "all"
    lesion: str | None = None
    problem: str | None = None

    def sort_key(self) -> tuple:
        return (self.path, self.segment, -1 if self.frame is None else self.frame, self.key)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["proximal"] = list(self.proximal) if self.proximal is not None else None
        d["distal"] = list(self.distal) if self.distal is not None else None
        d["files"] = list(self.files)
        d["mld"] = list(self.mld) if self.mld is not None else None
        d["waypoints"] = [list(w) for w in self.waypoints]
        return d

    def inputs(self, model: str) -> dict[str, Any]:
        """What this task measures with (JSON types): recorded in its row as ``inputs``, so that
        ``--resume`` skips a run only when it was measured with the same inputs (a points file
        edited since, another mode or artery, another model: measured again)."""
        pair = lambda p: None if p is None else [float(p[0]), float(p[1])]  # noqa: E731
        return {"segment": self.segment, "mode": self.mode, "proximal": pair(self.proximal), "distal": pair(self.distal),
                "frame": self.frame, "reference_choice": self.reference_choice, "mld": pair(self.mld),
                "waypoints": [pair(w) for w in self.waypoints], "frames": self.frames, "lesion": self.lesion,
                "model": str(model)}

    def read(self):
        """Read this task's run (:func:`stenosis.io.read_run`)."""
        return read_run(RunSource(tuple(self.files)) if self.files else self.source)


def _norm_rel(path: str, root: str | os.PathLike) -> str:
    """The run's recorded path: relative to the batch folder ``root`` (``docs/privacy.md``: never
    an absolute path). A path outside the folder (absolute, or climbing out with ``..``) is
    recorded by its file name alone, not by folders that may name a patient; a path is never
    rewritten into a different one (``../bad/x.dcm`` is not ``bad/x.dcm``)."""
    base = Path(os.path.normpath(Path(root).absolute()))
    full = Path(os.path.normpath(base / path))  # an absolute path stays itself
    try:
        return full.relative_to(base).as_posix() or "."
    except ValueError:
        return full.name


def _assign_keys(tasks: list[Task]) -> list[Task]:
    """Give each task a unique key: the path, qualified only where a path repeats."""
    count: dict[str, int] = {}
    for t in tasks:
        count[t.path] = count.get(t.path, 0) + 1
    out = []
    for t in tasks:
        if t.key:  # set by the reader (a row without a path): keep it
            out.append(t)
            continue
        key = t.path
        if count[t.path] > 1:
            key = f"{t.path}#{t.segment}" + ("" if t.frame is None else f"#f{t.frame}")
        out.append(replace(t, key=key))
    # two series in one folder share a path: number them in (sorted) order
    seen: dict[str, int] = {}
    for i, t in enumerate(out):
        n = seen[t.key] = seen.get(t.key, 0) + 1
        if n > 1:
            out[i] = replace(t, key=f"{t.key}#{n}")
    return sorted(out, key=Task.sort_key)


Cell = Callable[[str], str]


def _table_rows(csv_path: str | os.PathLike, required: tuple[str, ...], what: str) -> Iterator[tuple[int, str, Cell, dict]]:
    """``(lineno, where, cell, idx)`` per non-empty row of a points-like CSV (header checked)."""
    csv_path = Path(csv_path)
    name = csv_path.name
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise PointsFileError(f"{what} {name} is not UTF-8 text; save it as a UTF-8 CSV") from None
    except OSError as exc:
        raise PointsFileError(f"cannot read {what} {name} ({exc.strerror}); check the path") from None
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0] if text.strip() else ",", delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise PointsFileError(f"{what} {name} is empty; it needs a header row: {','.join(required)}[,frame]") from None
    cols = [c.strip().lower() for c in header]
    missing = [c for c in required if c not in cols]
    if missing:
        raise PointsFileError(
            f"{what} {name} lacks column(s) {','.join(missing)}; expected header: {','.join(required)}[,frame]"
        )
    dup_cols = sorted({c for c in cols if c and cols.count(c) > 1})
    if dup_cols:
        raise PointsFileError(f"{what} {name} has duplicate column(s) {','.join(dup_cols)}; keep one of each")
    idx = {c: cols.index(c) for c in cols if c}
    n = 0
    for lineno, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue

        def cell(col: str, row: list[str] = row) -> str:
            i = idx[col]
            return row[i].strip() if i < len(row) else ""

        n += 1
        yield lineno, f"{what} {name} line {lineno}", cell, idx
    if not n:
        raise PointsFileError(f"{what} {name} has a header but no rows; add one row per run")


def _path_segment_frame(where: str, cell: Cell, idx: dict) -> tuple[str, str, int | None]:
    """The ``path``, ``segment`` and optional ``frame`` cells of one row, checked."""
    path = cell("path")
    if not path:
        raise PointsFileError(f"{where}: empty path; give the run path relative to the batch folder")
    seg = cell("segment").upper()
    segments = [s.value for s in Segment]
    if seg not in segments:
        raise PointsFileError(f"{where}: segment {cell('segment')!r} is not one of {', '.join(segments)}; "
                              "give the artery graded as one of these")
    frame: int | None = None
    if "frame" in idx and cell("frame") != "":
        raw = cell("frame")
        try:
            fv = float(raw)
            if not fv.is_integer() or fv < 0:
                raise ValueError
            frame = int(fv)
        except ValueError:
            raise PointsFileError(
                f"{where}: frame {raw!r} is not a frame number (0-based integer, or leave it empty)"
            ) from None
    return path, seg, frame


def _read_tasks(csv_path, root, required: tuple[str, ...], what: str, make: Callable[..., dict], *,
                mode: str, strict: bool) -> list[Task]:
    """Tasks of a points-like CSV; ``make(where, cell, idx)`` gives each row's extra Task fields.

    A bad row (``make`` or the path/segment/frame checks raise :class:`PointsFileError`, or it
    repeats an earlier row's run, segment and frame) is a task with ``problem`` set -- an error
    row of the batch -- or, with `strict`, raises. Problems of the whole file always raise."""
    root = Path(root)
    tasks: list[Task] = []
    seen: dict[tuple, int] = {}
    for lineno, where, cell, idx in _table_rows(csv_path, required, what):
        problem: str | None = None
        try:
            path, seg, frame = _path_segment_frame(where, cell, idx)
            fields = make(where, cell, idx)
        except PointsFileError as exc:
            if strict:
                raise
            problem = str(exc)
            path, seg, frame = cell("path"), cell("segment").upper(), None
            lesion = cell("lesion") if "lesion" in idx and mode == "points" else ""
            fields = {"mode": mode, **({"lesion": lesion} if lesion else {})}
        if not path:  # nothing to name the row by: its line
            tasks.append(Task(path="", source="", segment=seg, frame=frame, key=f"({what} line {lineno})",
                              problem=problem, **fields))
            continue
        rel = _norm_rel(path, root)
        src = root / path if not os.path.isabs(path) else Path(path)
        if problem is None:
            ident = (os.path.normpath(src.absolute()), seg, frame)
            if ident in seen:
                problem = (f"{where}: duplicate of line {seen[ident]} (same run, segment and frame), not measured "
                           "twice; remove one of the two rows")
                if strict:
                    raise PointsFileError(problem)
            else:
                seen[ident] = lineno
        tasks.append(Task(path=rel, source=str(src.absolute()), segment=seg, frame=frame, problem=problem, **fields))
    return _assign_keys(tasks)


def require_some_run(tasks: Sequence[Task], root: str | os.PathLike, what: str = "points file") -> None:
    """:class:`PointsFileError` when not one of the runs `tasks` name exists (rows with a problem
    count too: a row naming an existing run shows DIR is right): the folder given, or every
    path, is wrong, not each row (which would otherwise be an error row each, and a batch that
    "succeeds")."""
    named = [t for t in tasks if t.source]
    if named and not any(os.path.exists(t.source) for t in named):
        n = len({t.source for t in named})
        raise PointsFileError(f"none of the {n} run{'s' if n > 1 else ''} the {what} names is under {root} (e.g. "
                              f"{named[0].path}); check DIR (the folder its paths are relative to) or the paths")


def read_points(csv_path: str | os.PathLike, root: str | os.PathLike, *, strict: bool = False) -> list[Task]:
    """Read a points file into tasks.

    Parameters
    ----------
    csv_path : path
        CSV with columns ``path,segment,proximal_row,proximal_col,distal_row,distal_col``
        and optional ``frame`` (0-based), ``reference_choice``, ``mld_row``, ``mld_col``,
        ``waypoints``, ``frames`` (all, single or a number) and ``lesion`` (rows with the same name
        are views of one lesion: :func:`lesion_problems`, :mod:`stenosis.batch.lesions`); extra
        columns are ignored. ``path`` is relative to `root`.
        Points are pixel (row, col), fractional allowed.
    root : path
        The batch folder.
    strict : bool
        Raise on the first bad row instead of returning it as a task with ``problem`` set
        (which :func:`run_batch` records as an error row while the other rows are measured).

    Returns
    -------
    list of Task
        Sorted by path.

    Raises
    ------
    PointsFileError
        The file cannot be read, is empty or lacks a column (with `strict`, also a bad row);
        one line naming the file, the line number and what to fix.
    """

    def points(where: str, cell: Cell, idx: dict) -> dict[str, Any]:
        coords = []
        for col in POINT_COLUMNS[2:]:
            raw = cell(col)
            try:
                v = float(raw)
            except ValueError:
                raise PointsFileError(f"{where}: {col} {raw!r} is not a number (pixels, e.g. 120.5)") from None
            if not math.isfinite(v):
                raise PointsFileError(f"{where}: {col} {raw!r} is not a finite number")
            coords.append(v)
        lesion = {"lesion": cell("lesion")} if "lesion" in idx and cell("lesion") else {}
        return {"proximal": (coords[0], coords[1]), "distal": (coords[2], coords[3]), "mode": "points",
                **_override_cells(cell, idx, where), **lesion}

    return _read_tasks(csv_path, root, POINT_COLUMNS, "points file", points, mode="points", strict=strict)


def read_segments(csv_path: str | os.PathLike, root: str | os.PathLike, *, strict: bool = False) -> list[Task]:
    """``--auto`` tasks from a CSV naming each run's artery: columns ``path,segment`` and
    optional ``frame``; ``path`` relative to `root`. A bad row is a task with ``problem`` set (an
    error row), or with `strict` raises :class:`PointsFileError`, as for :func:`read_points`."""
    return _read_tasks(csv_path, root, SEGMENT_COLUMNS, "segments file", lambda *_: {"mode": "auto"},
                       mode="auto", strict=strict)


def _override_cells(cell: Cell, idx: dict, where: str) -> dict[str, Any]:
    """Reader overrides of one points-file row (empty cells: the tool chooses)."""
    out: dict[str, Any] = {}
    if "reference_choice" in idx and cell("reference_choice"):
        rc = cell("reference_choice").lower()
        if rc not in ("proximal", "distal"):
            raise PointsFileError(
                f"{where}: reference_choice {rc!r} is not proximal or distal (or leave it empty; the feeding "
                "artery needs its own points: measure that run with stenosis measure --feeding-proximal/--feeding-distal)"
            )
        out["reference_choice"] = rc
    have = [c for c in ("mld_row", "mld_col") if c in idx and cell(c)]
    if len(have) == 1:
        raise PointsFileError(f"{where}: give both mld_row and mld_col, or neither")
    if have:
        try:
            v = (float(cell("mld_row")), float(cell("mld_col")))
        except ValueError:
            raise PointsFileError(f"{where}: mld_row/mld_col must be numbers (pixels)") from None
        if not all(math.isfinite(x) for x in v):
            raise PointsFileError(f"{where}: mld_row/mld_col must be finite numbers")
        out["mld"] = v
    if "waypoints" in idx and cell("waypoints"):
        pts = []
        for part in cell("waypoints").split(";"):
            if not part.strip():
                continue
            try:
                r, c = (float(t) for t in part.replace(",", " ").split())
            except ValueError:
                raise PointsFileError(
                    f"{where}: waypoints {cell('waypoints')!r} must be 'row col;row col' (pixels, proximal to distal)"
                ) from None
            if not (math.isfinite(r) and math.isfinite(c)):
                raise PointsFileError(f"{where}: waypoints must be finite numbers")
            pts.append((r, c))
        out["waypoints"] = tuple(pts)
    if "frames" in idx and cell("frames"):
        try:
            out["frames"] = frames_mode(cell("frames"))
        except StenosisError as exc:
            raise PointsFileError(f"{where}: {exc}") from None
    return out


def lesion_problems(tasks: Iterable[Task]) -> dict[str, str]:
    """Tasks that cannot be measured as views of their lesion, by key, with the one-line reason:
    the views of one lesion (the same ``lesion`` name) must grade the same artery. Such a task is
    an error row, not a measurement (:func:`stenosis.batch.run_batch`)."""
    groups: dict[str, list[Task]] = {}
    for t in tasks:
        if t.lesion and not t.problem:  # a bad row is an error row already (its lesion is not graded)
            groups.setdefault(t.lesion, []).append(t)
    out: dict[str, str] = {}
    for name, group in groups.items():
        segments = sorted({t.segment for t in group})
        if len(segments) > 1:
            seen = "; ".join(f"{seg}: {', '.join(sorted(t.path for t in group if t.segment == seg))}" for seg in segments)
            msg = (f"lesion {name!r} has views of different arteries ({seen}); one lesion is one artery: give its "
                   "rows the same segment, or different lesion names")
            out.update({t.key or t.path: msg for t in group})
    return out


def auto_tasks(root: str | os.PathLike, *, segment: str) -> list[Task]:
    """One ``mode="auto"`` task per run found (recursively) under `root`, all graded as `segment`.

    Runs are those of :func:`stenosis.io.find_runs` (DICOM by preamble, single-frame
    series grouped); files named ``*.dcm``/``*.dicom`` that are not DICOM are added
    too, so that they come out as error rows. For runs of different arteries use
    :func:`read_segments`.

    Raises
    ------
    InputError
        `root` is not a readable folder or holds no DICOM runs.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a readable folder; give the folder that holds the runs")
    seg = str(Segment(str(segment).upper()))
    base = root.absolute()

    def rel(p: Path) -> str:
        try:
            return p.relative_to(base).as_posix() or "."
        except ValueError:
            return p.as_posix()

    tasks = []
    sources = find_runs(root)
    for src in sources:
        files = tuple(str(Path(f).absolute()) for f in src.paths)
        path = Path(src.path).absolute()
        tasks.append(
            Task(path=rel(path), source=str(path), segment=seg, mode="auto", files=files if len(files) > 1 else ())
        )
    named = named_dicom_not_runs(base, sources)
    if not tasks:
        # a run is a file with the DICOM preamble, whatever its name; say what the *.dcm files here are
        if named:
            shown = ", ".join(rel(p) for p in named[:3]) + (f" and {len(named) - 3} more" if len(named) > 3 else "")
            raise InputError(
                f"no DICOM runs found under {root}: its {len(named)} file(s) named like DICOM ({shown}) are empty or "
                f"not DICOM ({NO_DICM_MARKER}); replace them with the DICOM export of the runs"
            )
        from ..io.header import folder_image_hint

        raise InputError(
            f"no DICOM runs found under {root}; check the folder (a run is a DICOM file, recognised by its "
            "content, not its name)" + folder_image_hint(root)
        )
    for p in named:
        tasks.append(Task(path=rel(p), source=str(p), segment=seg, mode="auto"))
    return _assign_keys(tasks)
