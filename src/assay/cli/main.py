"""The ``assay`` entry point: the command group, error handling and exit codes, in one place.

Each command lives in its own module under :mod:`assay.cli` and exposes a ``click`` command (or group) named
``command``; it is registered here by name. Commands return their exit code (0 pass, 1 fail, 2 undecided).

Tests drive the CLI through :func:`main`::

    assert main(["inspect", str(model_dir), "--json"]) == 0
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Sequence

import click

from assay import __version__
from assay.cli import common
from assay.errors import AssayError, debugging, set_debug

#: Command name -> module under assay.cli that defines ``command``. Order is the order in ``--help``.
COMMANDS: dict[str, str] = {
    "inspect": "inspect",
    "scan": "scan",
    "hash": "hash",
    "keygen": "keygen",
    "sign": "sign",
    "verify": "verify",
    "lineage": "lineage",
    "eval": "eval",
    "data": "data",
    "bench": "bench",
    "cost": "cost",
    "card": "card",
    "advise": "advise",
    "vet": "vet",
    "policy": "policy",
    "report": "report",
    "schema": "schema",
    "demo": "demo",
    "hub": "hub",
    "reproduce": "reproduce",
}

class _Group(click.Group):
    """Loads command modules on demand so that ``assay scan`` never imports torch."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._module(name) is not None]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        mod = self._module(cmd_name)
        return None if mod is None else mod.command

    @staticmethod
    def _module(name: str):  # type: ignore[no-untyped-def]
        if name not in COMMANDS:
            return None
        modname = f"assay.cli.{COMMANDS[name]}"
        try:
            return importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name == modname:  # command not built in this checkout
                return None
            raise


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="assay")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """assay vets an open-weight LLM checkpoint before you deploy it.

    \b
    Is it safe to load?            assay scan MODEL
    What is it, really?            assay inspect MODEL / assay lineage MODEL --base BASE
    Is it better than its base?    assay eval MODEL --base BASE --task builtin:knowledge
    What does it cost to run?      assay bench MODEL / assay cost ...
    May we use it?                 assay card MODEL
    All of it, one verdict:        assay vet MODEL --base BASE

    Exit codes: 0 pass, 1 fail, 2 could not decide (bad input, unreadable file, usage error).
    Try `assay demo` for a tour on a real model, fully offline.
    """
    if debug:
        set_debug(True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (never raises for user errors).

    Every refusal is one line ``error: ...`` on stderr. With ``--json`` it is also one ``assay.error/1`` document
    on stdout (``error``, ``hint``, ``exit_code``), so a script reading stdout always gets a document.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    set_debug("--debug" in args)
    if "--debug" in args:  # accepted anywhere, as the error messages suggest: `assay inspect X --debug`
        args = ["--debug"] + [a for a in args if a != "--debug"]
    wants_json = "--json" in args and "--help" not in args and "-h" not in args
    common.reset_emitted()
    try:
        rv = cli.main(args=args, prog_name="assay", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort:
        return _fail("interrupted", None, 2, wants_json)
    except click.ClickException as exc:
        if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # `assay` alone: the help answers
            exc.show()
            return 2
        # One line, like every other refusal: click's own "Usage: ... Try ... Error: ..." block is three.
        message = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        hint = f"see `{ctx.command_path} --help`" if isinstance(exc, click.UsageError) and ctx else None
        return _fail(message, hint, 2, wants_json)
    except AssayError as exc:
        if debugging():
            traceback.print_exc()
        return _fail(exc.message, exc.hint, exc.exit_code, wants_json)
    except KeyboardInterrupt:
        return _fail("interrupted", None, 2, wants_json)
    except BrokenPipeError:
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug must still not spill a traceback on users
        if debugging():
            traceback.print_exc()
        msg = str(exc).splitlines()[0] if str(exc) else ""
        return _fail(f"internal error: {type(exc).__name__}: {msg}", "run with --debug for details", 2, wants_json)
    if isinstance(rv, int):
        return rv
    return 0


def _fail(message: str, hint: str | None, exit_code: int, as_json: bool) -> int:
    """Report a refusal once: ``error: message (hint)`` on stderr and, with ``--json``, an ``assay.error/1``
    document on stdout (unless the command already printed its own document there)."""
    click.echo(f"error: {message}" + (f" ({hint})" if hint else ""), err=True)
    if as_json and not common.emitted():
        common.emit_json(error_document(message, hint=hint, exit_code=exit_code))
    return exit_code


def error_document(message: str, *, hint: str | None = None, exit_code: int = 2) -> dict[str, object]:
    """The ``assay.error/1`` document printed on stdout when a ``--json`` run is refused."""
    return {"schema": "assay.error/1", "error": message, "hint": hint, "exit_code": exit_code}


def entry() -> None:
    """Console-script entry point."""
    raise SystemExit(main())
