"""The ``attnkit`` command: ``attnkit plugins`` lists loaded plugins; other subcommands register here."""

from __future__ import annotations

import argparse
import sys

from .plugins import autoload_disabled, blocked_plugin_names, list_plugins

DESCRIPTION = (
    "Read and rewrite the attention of diffusers video transformers through pluggy plugins. "
    "'attnkit plugins' lists every plugin you can use; 'attnkit viz' draws a saved attention record."
)


def _plugins_command(args: argparse.Namespace) -> int:
    listing = list_plugins()
    rows = listing.loaded + listing.shipped
    name_width = max([len("plugin")] + [len(info.name) for info in rows])
    version_width = max([len("version")] + [len(info.version or "-") for info in rows])
    print(f"{'plugin':<{name_width}}  {'version':<{version_width}}  hooks")
    for heading, infos in (
        ("loaded in every session:", listing.loaded),
        ("plugin classes to pass to attnkit.attach(pipe, plugins=[...]):", listing.shipped),
    ):
        if not infos:
            continue
        print(heading)
        for info in infos:
            hooks = ", ".join(info.hooks) or "-"
            print(f"{info.name:<{name_width}}  {info.version or '-':<{version_width}}  {hooks}")
            print(f"{'':<{name_width}}  {'':<{version_width}}  from: {info.origin or '-'}")
            if info.problem:
                print(f"{'':<{name_width}}  {'':<{version_width}}  unavailable: {info.problem}")
    notes = []
    if autoload_disabled():
        notes.append("entry-point autoloading disabled (ATTNKIT_DISABLE_PLUGIN_AUTOLOAD)")
    if blocked_plugin_names():
        notes.append(f"blocked: {', '.join(sorted(blocked_plugin_names()))} (ATTNKIT_BLOCK_PLUGINS)")
    for note in notes:
        print(note)
    for error in listing.errors:
        print(f"broken: {error}", file=sys.stderr)
    # A broken entry point makes every attach() fail, so the listing must not look like success.
    return 1 if listing.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnkit", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True)
    plugins = subparsers.add_parser(
        "plugins",
        help="list every plugin you can use: its version, hooks and where it comes from",
        description="List the plugins every session loads (built-in adapters, entry points of installed "
        "packages) and the plugin classes shipped with attnkit, with their hooks and origin. A broken "
        "entry point is reported on stderr and the exit status is 1.",
    )
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
