"""Shared CLI plumbing: option parsers and the error boundary.

The error boundary turns :class:`stenosis.errors.StenosisError` into one line on
stderr and exit status 3; any other exception is reported as an internal error
(exit 1) in one line, with the traceback only under ``--debug``. Option values
the parsers here refuse (a point that is not two finite numbers, a pixel size
outside the plausible range) are usage errors: exit 2.
"""
from __future__ import annotations

import functools
import math
import sys
import traceback
from typing import Any, Callable

import click

from ..errors import StenosisError

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3


class StdoutClosed(Exception):
    """The reader of our stdout went away (``stenosis info DIR | head -1``). Not an OSError, so that
    click's own handler (``sys.exit(1)`` on EPIPE) lets it through to :func:`stenosis.cli.main.main`,
    which exits 0 quietly (docs/contracts.md, exit status)."""


def stdout_closed() -> bool:
    """Whether stdout is a pipe nobody reads any more (a BrokenPipeError elsewhere, e.g. a worker's
    pipe, is a failure to report, not the end of the reader's interest). True when it cannot tell."""
    try:
        import select

        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except Exception:  # no fileno (a test runner's buffer), no poll (Windows): assume stdout
        return True


def closed_stdout_boundary(exc: BrokenPipeError) -> None:
    """Raise :class:`StdoutClosed` for a BrokenPipeError of stdout; re-raise any other."""
    if stdout_closed():
        raise StdoutClosed() from exc
    raise exc


def replaced_note(out_dir, names: list[str]) -> str:
    """What a "wrote" line adds when files of an earlier result in ``out_dir`` are replaced. The
    earlier result's reports that the new one does not write (``report.png``,
    ``report-view<k>.png``: one view after several, or fewer views) are removed, so the folder
    holds one result: the note names them."""
    from pathlib import Path

    out = Path(out_dir)
    old = [n for n in names if (out / n).exists()]
    if not (out / "result.json").exists():  # not a result folder of ours: nothing else is touched
        return f" (replacing the earlier {', '.join(old)})" if old else ""
    stale = sorted(p.name for p in [*out.glob("report.png"), *out.glob("report-view*.png")] if p.name not in names)
    for name in stale:
        (out / name).unlink(missing_ok=True)
    parts = ([f"replacing the earlier {', '.join(old)}"] if old else []) + \
        ([f"removing the earlier result's {', '.join(stale)}"] if stale else [])
    return f" ({'; '.join(parts)})" if parts else ""


def parse_rc(value: str | None, *, name: str = "point") -> tuple[float, float] | None:
    """Parse ``"ROW,COL"`` (two finite numbers, comma-separated) into a (row, col) tuple of floats."""
    if value is None:
        return None
    parts = [p.strip() for p in str(value).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        row, col = float(parts[0]), float(parts[1])
        if not (math.isfinite(row) and math.isfinite(col)):
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"expected ROW,COL as two finite numbers in pixels (e.g. 120,245), got {value!r}",
                                 param_hint=name) from None
    return row, col


class RCParam(click.ParamType):
    """A point ``ROW,COL`` in pixels; anything else is a usage error (exit 2)."""

    name = "ROW,COL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, tuple):
            return value
        try:
            return parse_rc(value, name=param.name if param else "point")
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


class PixelMMParam(click.ParamType):
    """A pixel size in mm at the isocentre inside :data:`stenosis.calibration.PLAUSIBLE_MM_PER_PX`;
    outside it, a usage error (exit 2) like any other bad option value."""

    name = "MM"

    @property
    def range_text(self) -> str:
        from ..calibration import PLAUSIBLE_MM_PER_PX

        return f"{PLAUSIBLE_MM_PER_PX[0]:g}-{PLAUSIBLE_MM_PER_PX[1]:g}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        from ..calibration import check_pixel_mm
        from ..errors import CalibrationError

        try:
            return check_pixel_mm(value)
        except CalibrationError as exc:
            self.fail(str(exc), param, ctx)


class FiniteFloatRange(click.FloatRange):
    """click's FloatRange that also refuses nan and inf (its bounds compare False with nan, so
    ``--catheter-french nan`` got past it to a later error, exit 3, where 0 was a usage error)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        import math

        out = super().convert(value, param, ctx)
        if not math.isfinite(out):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return out


class SegmentParam(click.ParamType):
    """The graded artery, any case in, its upper-case name out (``ICA``, ``M1``, ``V4``, ``BA``), named
    in upper case in ``--help`` and errors as everywhere else (click's case-insensitive Choice shows
    lower case)."""

    name = "segment"

    @property
    def choices(self) -> tuple[str, ...]:
        from ..enums import Segment

        return tuple(s.value for s in Segment)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(self.choices) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        name = str(value).strip().upper()
        if name not in self.choices:
            self.fail(f"{value!r} is not one of {', '.join(self.choices)}", param, ctx)
        return name


RC = RCParam()
PIXEL_MM = PixelMMParam()
SEGMENT = SegmentParam()

debug_option = click.option("--debug", is_flag=True, hidden=False, help="Show tracebacks on errors.")


def fail(message: str, code: int = EXIT_INPUT) -> None:
    """Print one line on stderr and exit."""
    line = " ".join(str(message).split())
    click.echo(f"stenosis: error: {line}", err=True)
    sys.exit(code)


def error_boundary(func: Callable) -> Callable:
    """Decorate a click callback: declared errors -> exit 3, others -> exit 1, one line each."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any):
        debug = bool(kwargs.get("debug", False))
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort, SystemExit, StdoutClosed):
            raise
        except BrokenPipeError as exc:
            if stdout_closed():  # a closed stdout (``| head``): stenosis.cli.main exits 0 quietly
                raise StdoutClosed() from exc
            if debug:
                traceback.print_exc()
            fail(f"internal error (BrokenPipeError: {exc}); rerun with --debug and report it", EXIT_INTERNAL)
        except StenosisError as exc:
            if debug:
                traceback.print_exc()
            fail(str(exc), EXIT_INPUT)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except MemoryError:
            if debug:
                traceback.print_exc()
            fail("out of memory while processing this input; it is larger than this machine can hold", EXIT_INPUT)
        except Exception as exc:  # a bug: still one line, never a traceback unless asked
            if debug:
                traceback.print_exc()
            fail(
                f"internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it",
                EXIT_INTERNAL,
            )

    return wrapper
