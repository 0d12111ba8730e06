"""`stenosis` command line: a thin face over the library.

Each subcommand lives in its own module (``stenosis/cli/<name>.py``) exposing a
click command called ``command``; modules are imported only when their
subcommand runs, so ``stenosis info`` never pays for torch.
"""
from __future__ import annotations

import importlib
import sys

import click

from .._version import __version__
from ._common import StdoutClosed, closed_stdout_boundary

# subcommand -> (module, one-line help shown in `stenosis --help`)
SUBCOMMANDS = {
    "info": ("stenosis.cli.info", "Describe DICOM runs: frames, size, encoding, calibration."),
    "measure": ("stenosis.cli.measure", "Measure WASID percent stenosis of one segment of one run (or of one lesion in several views)."),
    "batch": ("stenosis.cli.batch", "Measure every run of a folder (points file or --auto)."),
    "demo": ("stenosis.cli.demo", "Measure a bundled sample run and write its report."),
}


class LazyGroup(click.Group):
    """Subcommands imported when they run. A closed stdout while parsing (``--help | head -1``) or
    running a command becomes :class:`~stenosis.cli._common.StdoutClosed`: click itself turns a
    BrokenPipeError into ``sys.exit(1)``, which would make ``| head`` look like a failure."""

    def make_context(self, *args, **kwargs) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError as exc:
            closed_stdout_boundary(exc)
            raise  # not reached

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            closed_stdout_boundary(exc)
            raise  # not reached

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """As click's, with the nearest subcommand suggested for a mistyped one."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in SUBCOMMANDS:
            import difflib

            near = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1)
            if near:
                ctx.fail(f"no such command {name!r}. Did you mean {near[0]!r}?")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return None
        module = importlib.import_module(SUBCOMMANDS[name][0])
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="stenosis")
def cli() -> None:
    """Residual intracranial stenosis (WASID) on X-ray angiography."""


def main() -> None:
    """Entry point: like click's standalone mode, but every usage error is one line (SPEC)."""
    try:
        rv = cli.main(prog_name="stenosis", standalone_mode=False)
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `stenosis`: the help, as usual
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        where = exc.ctx.command_path if exc.ctx is not None else "stenosis"
        message = " ".join(exc.format_message().split()).rstrip(".")
        click.echo(f"stenosis: error: {message}; see '{where} --help'", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"stenosis: error: {' '.join(exc.format_message().split())}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("stenosis: aborted", err=True)
        sys.exit(130)
    except (StdoutClosed, BrokenPipeError):
        _closed_stdout()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _closed_stdout()
    sys.exit(rv if isinstance(rv, int) else 0)


def _closed_stdout() -> None:
    """The reader of our output went away (``stenosis info DIR | head``): what was asked for is
    on its way, so exit 0 quietly (no traceback, no "Exception ignored" at shutdown)."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
