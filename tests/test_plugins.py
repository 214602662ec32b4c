"""Plugin manager and the `attnkit plugins` command."""

from __future__ import annotations

import attnkit
from attnkit.cli import main
from attnkit.plugins import describe_plugins, make_plugin_manager


class Recorder:
    name = "my-recorder"

    @attnkit.hookimpl
    def attnkit_attention_output(self, call, output):
        pass

    @attnkit.hookimpl
    def attnkit_step_end(self, step):
        pass


def test_builtins_are_registered_through_the_manager():
    names = [info.name for info in describe_plugins(make_plugin_manager())]
    assert "attnkit.adapters.cogvideox" in names


def test_describe_lists_a_plugins_hooks():
    infos = {info.name: info for info in describe_plugins(make_plugin_manager([Recorder()]))}
    assert infos["my-recorder"].hooks == ["attnkit_attention_output", "attnkit_step_end"]
    assert infos["attnkit.adapters.cogvideox"].version == attnkit.__version__


def test_plugins_command_prints_loaded_plugins(capsys, monkeypatch):
    monkeypatch.setenv("ATTNKIT_BLOCK_PLUGINS", "someone-else")
    assert main(["plugins"]) == 0
    printed = capsys.readouterr().out
    assert "attnkit.adapters.cogvideox" in printed and "attnkit_register_adapters" in printed
    assert "blocked: someone-else" in printed


def test_blocking_a_builtin_removes_it(monkeypatch):
    monkeypatch.setenv("ATTNKIT_BLOCK_PLUGINS", "attnkit.adapters.cogvideox")
    names = [info.name for info in describe_plugins(make_plugin_manager())]
    assert "attnkit.adapters.cogvideox" not in names
