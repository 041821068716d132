"""Pieces shared by the commands: config files, user errors, JSON output."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from shark.data.errors import DataError
from shark.report.writer import jsonable


def load_config_defaults(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--config FILE.toml: the table named after the command ([train], [data.synth], [bench.train]) becomes the
    command's defaults; a file with no such table is read as top-level keys.

    Options given on the command line still win. Keys use the option names with '_' or '-'."""
    if not value:
        return value
    path = Path(value)
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}") from None
    parts = ctx.command_path.split()[1:]  # "shark bench train" -> ["bench", "train"]
    name = ".".join(parts)
    section = doc
    for part in parts:
        section = section.get(part) if isinstance(section, dict) else None
    if section is None:
        section = doc
    if not isinstance(section, dict):
        raise click.BadParameter(f"{path}: [{name}] must be a table")
    # Keys are the long option names ("batch_size" or "batch-size" for --batch-size), mapped to parameter names.
    known = {opt[2:].replace("-", "_"): p.name for p in ctx.command.params for opt in p.opts if opt[:2] == "--"}
    settings = {k.replace("-", "_"): v for k, v in section.items() if not isinstance(v, dict)}
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise click.BadParameter(f"{path}: unknown setting(s) for '{name}': {', '.join(unknown)}")
    ctx.default_map = {**(ctx.default_map or {}), **{known[k]: v for k, v in settings.items()}}
    return value


config_option = click.option(
    "--config", type=click.Path(dir_okay=False), callback=load_config_defaults, is_eager=True, expose_value=False,
    help="TOML file of defaults for this command: a table named by the command path ([train], [evaluate], "
         "[data.synth], [bench.train], [bench.ps]) or top-level keys, named like the long options. Command-line "
         "options override it.")


def json_options(fn: Any) -> Any:
    """--json-out FILE and --json (JSON alone on stdout, the human table on stderr), as every report command has."""
    fn = click.option("--json", "json_stdout", is_flag=True,
                      help="Print the JSON result to stdout (the table then goes to stderr).")(fn)
    return click.option("--json-out", type=click.Path(dir_okay=False), default=None,
                        help="Write the JSON result to this file.")(fn)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in str(text).replace(" ", "").split(",") if x)
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated integers, got {text!r}") from None
    return values


def fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def run_user_errors(fn, *args: Any, settings: bool = False, **kwargs: Any) -> Any:
    """Call fn; a user's mistake becomes one clear line and exit code 2.

    DataError (bad or unreadable input) always; ValueError too when `settings` is set, i.e. when fn only
    builds validated config objects, so a ValueError can only mean a bad option value."""
    try:
        return fn(*args, **kwargs)
    except DataError as exc:
        fail(str(exc))
    except ValueError as exc:
        if not settings:
            raise
        fail(f"invalid setting: {exc}")


def emit_json(summary: dict[str, Any], json_out: str | None, to_stdout: bool) -> None:
    text = json.dumps(summary, indent=2, default=jsonable)
    if json_out:
        out = Path(json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        click.echo(f"summary written to {out}", err=True)
    if to_stdout:
        click.echo(text)
