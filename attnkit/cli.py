"""The ``attnkit`` command: ``attnkit plugins`` lists loaded plugins; other subcommands register here."""

from __future__ import annotations

import argparse
import sys

from .plugins import autoload_disabled, blocked_plugin_names, describe_plugins, make_plugin_manager


def _plugins_command(args: argparse.Namespace) -> int:
    infos = describe_plugins(make_plugin_manager())
    name_width = max([len("plugin")] + [len(info.name) for info in infos])
    print(f"{'plugin':<{name_width}}  {'version':<8}  hooks")
    for info in infos:
        print(f"{info.name:<{name_width}}  {info.version or '-':<8}  {', '.join(info.hooks) or '-'}")
    notes = []
    if autoload_disabled():
        notes.append("entry-point autoloading disabled (ATTNKIT_DISABLE_PLUGIN_AUTOLOAD)")
    if blocked_plugin_names():
        notes.append(f"blocked: {', '.join(sorted(blocked_plugin_names()))} (ATTNKIT_BLOCK_PLUGINS)")
    for note in notes:
        print(note)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnkit", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    plugins = subparsers.add_parser("plugins", help="list loaded plugins, their versions and hooks")
    plugins.set_defaults(handler=_plugins_command)
    for add_parser in _extra_subcommands():
        add_parser(subparsers)
    return parser


def _extra_subcommands():
    """Subcommands that live in their own modules (imported lazily so `attnkit plugins` stays fast)."""
    adders = []
    try:
        from .viz_cli import add_viz_parser
    except ImportError:
        pass
    else:
        adders.append(add_viz_parser)
    return adders


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
