"""The `ragtrain` command line: parse flags, build a config, call one function. No logic here.

Each command's flags are built from its config dataclass (config.py, through options.flags_of): the help and
default of every flag are those of its field, written once.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from dataclasses import MISSING
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ragtrain.clihelp import PanelledHelpCommand
from ragtrain.config.evaluate import EvaluateConfig
from ragtrain.config.file import read_config_file
from ragtrain.config.merge import MergeConfig
from ragtrain.config.options import Flag, build, flags_of
from ragtrain.config.prepare import PrepareConfig
from ragtrain.config.report import ReportConfig
from ragtrain.config.train import RUN_RECORD_KEYS, TrainConfig, upgrade_old_options
from ragtrain.config.tune import TuneConfig
from ragtrain.errors import UserError
from ragtrain.files.diskerrors import os_error_line
from ragtrain.messages import library_noise
from ragtrain.version import VERSION


class OneLineUsageErrors(TyperGroup):
    """A usage error (an unknown option, a value of the wrong type, a missing command) is one red line with exit code
    2, as every other mistake is, instead of click's box of usage, hint and message."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            err.print("Aborted!")
            sys.exit(1)
        except typer.TyperException as exc:  # click's ClickException (typer ships its own copy of click)
            if type(exc).__name__ == "NoArgsIsHelpError":  # `ragtrain` alone: its help, as before
                exc.show()
            else:
                where = getattr(getattr(exc, "ctx", None), "command_path", None)
                hint = f"; see '{where} --help'" if where else ""
                message = " ".join(exc.format_message().split()).rstrip(".")
                err.print(f"[red]error:[/red] {escape(message)}{escape(hint)}", highlight=False, soft_wrap=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    help="Fine-tune text embedding models for retrieval: prepare data, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineUsageErrors,
)
err = Console(stderr=True)
CONFIG_FILE = "config_file"  # the parameter --config sets; no config has a flag of that name
VERBOSE = "verbose"  # the parameter --verbose sets


def _print_version(asked: bool) -> None:
    if asked:
        Console().print(f"ragtrain {VERSION}", highlight=False)
        raise typer.Exit()


@app.callback()
def main_options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                       help="Print ragtrain's version and exit.")] = False) -> None:
    # the app's own options (before the command); its help is the app's
    pass


def reports_user_errors(command: Callable) -> Callable:
    """A UserError becomes one red line on stderr and exit code 2, never a traceback; so does a file operation
    that failed on a full, read-only or forbidden disk where no writer turned it into a UserError already."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UserError as exc:
            # one line even when the message quotes user text holding a line break (a file name, a JSON key)
            message = " ".join(str(exc).splitlines())
        except OSError as exc:
            if (message := os_error_line(exc)) is None:
                raise
        err.print(f"[red]error:[/red] {escape(message)}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(code=2)

    return wrapper


def command(name: str, config_class: type, ignored: tuple[str, ...] = (),
            upgrade: Callable[[dict], dict] | None = None) -> Callable[[Callable], Callable]:
    """Register `run(config)` as the command `name`, with one parameter per flag of `config_class` and --config.

    Typer reads a command's parameters from its signature, so the command is a function whose signature is
    built from the config's fields; it builds the config from what was passed, and from the --config file for
    what was not typed, and hands it to `run`. `ignored`: keys a --config file may hold beside the options;
    `upgrade`: turns options an older ragtrain wrote (a run's old config.json) into today's.
    """

    def register(run: Callable) -> Callable:
        def from_flags(context: typer.Context, **values):
            config_file, verbose = values.pop(CONFIG_FILE), values.pop(VERBOSE)
            from_file = read_config_file(config_file, config_class, ignored, upgrade) if config_file else {}
            # typer ships its own copy of click: its ParameterSource is compared by name
            given = frozenset(name for name in values
                              if getattr(context.get_parameter_source(name), "name", None) == "COMMANDLINE")
            with library_noise(shown=verbose):  # process-wide, decided once: here, as the command starts
                return run(build(config_class, values, from_file, given, config_file))

        context = inspect.Parameter("context", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        from_flags.__signature__ = inspect.Signature([context] + [_parameter(flag) for field in flags_of(config_class)
                                                                  for flag in field.flags]
                                                     + [_config_parameter(), _verbose_parameter()])
        from_flags.__name__, from_flags.__doc__ = run.__name__, run.__doc__
        app.command(name, cls=PanelledHelpCommand)(reports_user_errors(from_flags))
        return run

    return register


def _parameter(flag: Flag) -> inspect.Parameter:
    """A keyword parameter typed `Annotated[type, typer.Option(...)]` (or Argument), with the flag's default.
    A required one may come from --config instead, so the command line does not require it; `build` does."""
    required = flag.default is MISSING
    help = flag.help + (" [required: here or in --config]" if required else "")
    panel = flag.panel or None
    if flag.argument:
        info = typer.Argument(help=help, show_default=flag.show_default, rich_help_panel=panel,
                              metavar=flag.name.upper())
    else:
        info = typer.Option(*flag.decls, help=help, show_default=flag.show_default, rich_help_panel=panel)
    kind = Optional[flag.type] if required else flag.type
    return inspect.Parameter(flag.name, inspect.Parameter.KEYWORD_ONLY, default=None if required else flag.default,
                             annotation=Annotated[kind, info])


def _verbose_parameter() -> inspect.Parameter:
    info = typer.Option("--verbose", help="Also show what the libraries print: their warnings and log lines (e.g. "
                        "transformers' report of weights a model lacks, Optuna's traceback of a failed trial).")
    return inspect.Parameter(VERBOSE, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[bool, info])


def _config_parameter() -> inspect.Parameter:
    info = typer.Option("--config", help="A TOML, YAML or JSON file of this command's options by name (a run's "
                        "config.json too); options typed on the command line win over it.", show_default=False)
    return inspect.Parameter(CONFIG_FILE, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[Optional[Path], info])


@command("prepare-data", PrepareConfig)
def prepare_data(config: PrepareConfig) -> None:
    """Turn raw documents (or labelled pairs, or a BEIR set) into training triples and a held-out BEIR evaluation set."""
    from ragtrain.commands.prepare import prepare, print_summary

    print_summary(prepare(config))


@command("train", TrainConfig, ignored=RUN_RECORD_KEYS, upgrade=upgrade_old_options)
def train(config: TrainConfig) -> None:
    """Fine-tune an encoder on triples with a contrastive (InfoNCE) loss."""
    from ragtrain.commands.train import train as run_training

    Console().print(f"trained model saved to {run_training(config)}")


@command("evaluate", EvaluateConfig)
def evaluate(config: EvaluateConfig) -> None:
    """Measure retrieval (Recall, Precision, nDCG, MRR, MAP, hit rate @k) of models side by side."""
    from ragtrain.commands.evaluate import evaluate as run_evaluation

    run_evaluation(config)


@command("report", ReportConfig)
def report(config: ReportConfig) -> None:
    """Draw training runs and evaluation results as one self-contained HTML page, with its plots as PNGs beside it."""
    from ragtrain.commands.report import report as write_report

    Console().print(f"report written to {write_report(config)} (its plots also in {config.plots_dir})")


@command("tune", TuneConfig, upgrade=upgrade_old_options)
def tune(config) -> None:
    """Search train's options with Optuna (TPE, median pruning) on the validation metric of --eval-data."""
    from ragtrain.commands.tune import tune as run_study

    Console().print(f"study results in {run_study(config)}")


@command("merge", MergeConfig)
def merge(config: MergeConfig) -> None:
    """Average the weights of models of one architecture (a soup), or interpolate a fine-tune with its base."""
    from ragtrain.commands.merge import merge as run_merge

    Console().print(f"merged model saved to {run_merge(config)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
