"""Plugin manager and the `attnkit plugins` command."""

from __future__ import annotations

import sys

import pytest
import torch

import attnkit
from attnkit.cli import main
from attnkit.plugins import PluginLoadError, describe_plugins, make_plugin_manager
from attnkit.testing.tiny_models import TINY_CALL_KWARGS, tiny_cogvideox_pipeline


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


# --- entry-point plugins from a real installed distribution -------------------------------------------

PLUGIN_MODULE = '''
import attnkit


class StepCounter:
    name = "step-counter"
    steps = []

    @attnkit.hookimpl
    def attnkit_step_end(self, step):
        StepCounter.steps.append(step)


def make_counter():
    return StepCounter()
'''


def install_distribution(site, name, entry_points, module_source=PLUGIN_MODULE, module="wordmaps_plugin"):
    """A minimal installed distribution (dist-info with METADATA and entry_points.txt) in ``site``."""
    (site / f"{module}.py").write_text(module_source)
    info = site / f"{name}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[attnkit]\n{lines}")


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("ATTNKIT_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    yield folder
    for module in [name for name in sys.modules if name.startswith(("wordmaps_plugin", "broken_plugin"))]:
        del sys.modules[module]


def test_an_entry_point_naming_a_class_registers_an_instance_whose_hooks_run(site):
    install_distribution(site, "wordmaps", {"step_counter": "wordmaps_plugin:StepCounter"})
    pipe = tiny_cogvideox_pipeline("t2v")
    with attnkit.attach(pipe) as session:
        pipe(prompt="a dog", generator=torch.Generator().manual_seed(0), **{**TINY_CALL_KWARGS, "num_inference_steps": 2})
        plugin = session.plugin_manager.get_plugin("step_counter")
    assert not isinstance(plugin, type) and type(plugin).__name__ == "StepCounter"
    assert type(plugin).steps == [0, 1]


def test_an_entry_point_naming_a_factory_registers_what_it_returns(site):
    install_distribution(site, "wordmaps", {"counter": "wordmaps_plugin:make_counter"})
    infos = {info.name: info for info in describe_plugins(make_plugin_manager())}
    assert infos["counter"].hooks == ["attnkit_step_end"]
    assert infos["counter"].version == "1.2.3"
    assert "wordmaps" in infos["counter"].origin and "wordmaps_plugin:make_counter" in infos["counter"].origin


def test_a_broken_entry_point_names_itself_and_its_distribution(site):
    install_distribution(site, "brokenmaps", {"broken": "broken_plugin:Nothing"}, "import no_such_module\n", "broken_plugin")
    with pytest.raises(PluginLoadError, match=r"'broken' \(broken_plugin:Nothing\) of distribution 'brokenmaps'") as error:
        make_plugin_manager()
    assert "ATTNKIT_BLOCK_PLUGINS=broken" in str(error.value) and "No module named 'no_such_module'" in str(error.value)
    assert error.value.distribution == "brokenmaps"


def test_plugins_command_lists_the_rest_beside_a_broken_entry_point(site, capsys):
    install_distribution(site, "wordmaps", {"step_counter": "wordmaps_plugin:StepCounter"})
    install_distribution(site, "brokenmaps", {"broken": "broken_plugin:Nothing"}, "raise RuntimeError('boom')\n", "broken_plugin")
    assert main(["plugins"]) == 1
    captured = capsys.readouterr()
    assert "step_counter" in captured.out and "attnkit.adapters.wan" in captured.out
    assert "broken:" in captured.err and "'brokenmaps'" in captured.err and "RuntimeError: boom" in captured.err


def test_a_blocked_broken_entry_point_is_not_loaded(site, monkeypatch):
    install_distribution(site, "brokenmaps", {"broken": "broken_plugin:Nothing"}, "raise RuntimeError('boom')\n", "broken_plugin")
    monkeypatch.setenv("ATTNKIT_BLOCK_PLUGINS", "broken")
    assert "broken" not in [info.name for info in describe_plugins(make_plugin_manager())]


@pytest.mark.parametrize("value", ["1", "on", "ON", "yes", "true"])
def test_autoload_is_disabled_by_any_affirmative_value(site, monkeypatch, value):
    install_distribution(site, "wordmaps", {"step_counter": "wordmaps_plugin:StepCounter"})
    monkeypatch.setenv("ATTNKIT_DISABLE_PLUGIN_AUTOLOAD", value)
    assert "step_counter" not in [info.name for info in describe_plugins(make_plugin_manager())]


@pytest.mark.parametrize("value", ["", "0", "off", "false", "no"])
def test_autoload_stays_on_for_negative_values(site, monkeypatch, value):
    install_distribution(site, "wordmaps", {"step_counter": "wordmaps_plugin:StepCounter"})
    monkeypatch.setenv("ATTNKIT_DISABLE_PLUGIN_AUTOLOAD", value)
    assert "step_counter" in [info.name for info in describe_plugins(make_plugin_manager())]


def test_plugins_command_lists_the_shipped_plugin_classes_with_hooks_and_origin(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    for name, hook in [
        ("attnkit.record", "attnkit_attention_output"),
        ("lmp.fbdm", "attnkit_attention_output"),
        ("lmp.rmtm", "attnkit_extra_kv"),
        ("lmp.asm", "attnkit_before_attention"),
        ("lmp.reference", "attnkit_model_inputs"),
        ("lmp.progress", "attnkit_step_end"),
    ]:
        line = next(line for line in out.splitlines() if line.startswith(name + " "))
        assert hook in line
    assert "from: attnkit_lmp.rmtm.RMTM" in out and "from: built-in (attnkit)" in out


def test_help_has_no_rst_markup(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "``" not in capsys.readouterr().out
