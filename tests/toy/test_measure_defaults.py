"""A search on validation clips writes the model folder's lmp_defaults.json; measuring that folder, the demo
and ``attnkit-lmp transfer`` then use it, and new weights written over the folder drop it."""

import functools
import json

import pytest
import torch

from attnkit_lmp.model_defaults import DEFAULTS_FILE, ModelDefaults
from attnkit_lmp.toy.cli import main as toy_main
from attnkit_lmp.toy.measure import command as measure_command
from attnkit_lmp.toy.measure import TOY_LMP_SETTINGS, model_defaults_of, search, toy_lmp_config
from attnkit_lmp.toy.measure.search import SEARCHED_FIELDS
from attnkit_lmp.toy.model import build_toy_pipeline
from attnkit_lmp.toy.pretrained import load_toy_pipeline
from attnkit_lmp.toy.train import export_pipeline
from tiny_toys import TINY_MODEL


def _export(pipe, folder):
    trainable = torch.nn.ModuleDict({"transformer": pipe.transformer, "text_encoder": pipe.text_encoder})
    export_pipeline(pipe, trainable, folder, TINY_MODEL)


@pytest.fixture
def toy_folder(tmp_path):
    folder = tmp_path / "toy"
    _export(build_toy_pipeline(TINY_MODEL, seed=0), folder)
    return folder


def _search(folder, out, *extra):
    return toy_main(
        ["measure", "--model", str(folder), "--out", str(out), "--split", "validation", "--clips", "1",
         "--steps", "2", "--no-progress", "--search", *extra]
    )  # fmt: skip


def test_a_search_writes_the_folders_defaults_and_measuring_the_folder_uses_them(toy_folder, tmp_path, monkeypatch):
    # One parameter whose best value is not the toy setting (0.4) whatever the objective says: 0.2 and
    # 0.6 are the only options, so the written file must hold the search's choice.
    monkeypatch.setattr(measure_command, "search", functools.partial(search, space=(("fg_threshold", (0.2, 0.6)),)))
    assert _search(toy_folder, tmp_path / "search", "--write-defaults") == 0
    best = json.loads((tmp_path / "search" / "search.json").read_text())["best_overrides"]
    defaults = ModelDefaults.of_folder(toy_folder)
    assert defaults is not None and set(SEARCHED_FIELDS) <= set(defaults.values)
    assert defaults.values["fg_threshold"] == best["fg_threshold"] in (0.2, 0.6)
    assert defaults.values["num_inference_steps"] == 50 and defaults.values["num_frames"] == TINY_MODEL.num_frames
    pipe = load_toy_pipeline(toy_folder)
    assert model_defaults_of(pipe).path == toy_folder / DEFAULTS_FILE
    measured = toy_lmp_config(2, model=TINY_MODEL, defaults=model_defaults_of(pipe))
    assert measured.fg_threshold == best["fg_threshold"]

    assert toy_main(
        ["measure", "--model", str(toy_folder), "--out", str(tmp_path / "m"), "--clips", "1", "--steps", "2",
         "--variants", "lmp", "--no-progress"]
    ) == 0  # fmt: skip
    settings = json.loads((tmp_path / "m" / "report.json").read_text())["settings"]
    assert settings["lmp_defaults"] == str(toy_folder / DEFAULTS_FILE)
    assert settings["config"]["fg_threshold"] == best["fg_threshold"]


def test_writing_defaults_needs_a_search(toy_folder, tmp_path, capsys):
    rc = toy_main(["measure", "--model", str(toy_folder), "--out", str(tmp_path / "m"), "--write-defaults"])
    assert rc == 2 and "--write-defaults writes what --search found" in capsys.readouterr().err
    assert not (toy_folder / DEFAULTS_FILE).exists()


def test_new_weights_drop_the_settings_searched_on_the_old_ones(toy_folder, capsys):
    (toy_folder / DEFAULTS_FILE).write_text(json.dumps({"config": {"fg_threshold": 0.6}}))
    assert model_defaults_of(load_toy_pipeline(toy_folder)) is not None
    _export(build_toy_pipeline(TINY_MODEL, seed=1), toy_folder)
    assert not (toy_folder / DEFAULTS_FILE).exists()
    assert "searched on earlier weights" in capsys.readouterr().err
    assert model_defaults_of(load_toy_pipeline(toy_folder)) is None


def test_the_search_takes_clear_gains_and_leaves_ties_alone(tmp_path, monkeypatch):
    import importlib
    from types import SimpleNamespace

    from attnkit_lmp.toy.model import TOY_CONFIG_FILE

    # The module, not the function of the same name that the package re-exports.
    search_module = importlib.import_module("attnkit_lmp.toy.measure.search")

    (tmp_path / TOY_CONFIG_FILE).write_text(json.dumps({"model": TINY_MODEL.to_dict()}))
    pipe = SimpleNamespace(name_or_path=str(tmp_path))  # all the search reads of a pipeline, besides measure
    gain = search_module.SEARCH_TIE_TOLERANCE
    toy_lambda = TOY_LMP_SETTINGS["rmtm_lambda"]  # the option that changes nothing
    assert toy_lambda != 2.0

    def fake_measure(pipe, cases, config, variants, progress):
        mf = {0.2: 0.5, 0.4: 0.7, 0.6: 0.7 + gain / 10}[config.fg_threshold] + (0.1 if config.rmtm_lambda == 2.0 else 0)
        return {"summary": {"lmp": {"motion_fidelity_centroid": mf, "appearance_kept": 1.0}}}

    monkeypatch.setattr(search_module, "measure", fake_measure)
    space = (("fg_threshold", (0.2, 0.4, 0.6)), ("rmtm_lambda", (toy_lambda, 2.0)))
    best, trials = search_module.search(pipe, [], 4, space=space, progress=False)
    assert best == {"fg_threshold": 0.4, "rmtm_lambda": 2.0}  # 0.6 only ties 0.4
    assert len(trials) == 4  # fg 0.4 with the toy lambda is the same config as the fg trial: run once
