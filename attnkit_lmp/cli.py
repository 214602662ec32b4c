"""The ``attnkit-lmp`` command: a registry of subcommands that modules of attnkit_lmp extend.

A module adds a subcommand by calling ``register_command`` at import time and by being listed in
``COMMAND_MODULES``, which ``main`` imports before it parses the command line::

    register_command("demo", "run the demo", add_arguments=add_arguments, run=run)

``add_arguments(parser)`` declares the subcommand's options; ``run(args)`` does the work and
returns an exit code (``None`` counts as 0).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Modules whose import registers subcommands.
COMMAND_MODULES: tuple[str, ...] = (
    "attnkit_lmp.demo",
    "attnkit_lmp.transfer_command",
    "attnkit_lmp.eval_command",
    "attnkit_lmp.annotate_command",
    "attnkit_lmp.toy.cli",
)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]


_COMMANDS: dict[str, Command] = {}


def register_command(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int | None],
) -> Command:
    """Register subcommand ``name``; registering the same name twice is an error."""
    if name in _COMMANDS:
        raise ValueError(f"attnkit-lmp subcommand {name!r} is already registered by {_COMMANDS[name].run.__module__}")
    command = Command(name=name, help=help, add_arguments=add_arguments, run=run)
    _COMMANDS[name] = command
    return command


def registered_commands() -> dict[str, Command]:
    """The registered subcommands by name, after importing every module in ``COMMAND_MODULES``."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    return dict(_COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnkit-lmp", description="LMP zero-shot motion transfer on diffusers video DiTs."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in sorted(registered_commands().values(), key=lambda c: c.name):
        subparser = subparsers.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(subparser)
        subparser.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    # Run as `python -m attnkit_lmp.cli` (e.g. under `accelerate launch -m`), this file is `__main__`, while
    # subcommand modules register into the imported `attnkit_lmp.cli`: use that module's registry.
    from attnkit_lmp.cli import main as registry_main

    raise SystemExit(registry_main())
