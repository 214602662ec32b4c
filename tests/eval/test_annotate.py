"""`attnkit-lmp annotate`: answers parsed leniently and validated, files written whole, reruns resume.

The success path injects the text generation (random weights write garbage); a tiny random-weight
LLaVA saved to disk proves the real path loads by folder and generates from the frames.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from attnkit_lmp.cli import main, registered_commands
from attnkit_lmp.eval import annotate as annotate_module
from attnkit_lmp.eval.annotate import AnnotationError, annotate, evenly_spaced, plan_annotation
from attnkit_lmp.eval.annotation_answers import AnswerParseError, parse_answer
from attnkit_lmp.eval.vision_language_model import AnnotationModelError, VisionLanguageModel
from attnkit_lmp.eval.datasets import DavisDataset, load_prompts
from attnkit_lmp.toy.export import write_davis_layout
from attnkit_lmp.toy.world import ClipSpec, render_clip

DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"
CLIPS = (("red", "square"), ("blue", "circle"), ("green", "triangle"))


def answer_for(colour: str, shape: str) -> str:
    """A well-formed model answer for the toy clip of a ``colour`` ``shape``."""
    return json.dumps(
        {
            "subject": shape,
            "prompt": f"A {colour} {shape} slides across a black background.",
            "sub_subject": "ball",
            "sub_prompt": f"A {colour} ball slides across a black background.",
            "back_prompt": f"A {colour} {shape} slides across a sandy beach.",
        }
    )


class ScriptedModel:
    """Stands in for `VisionLanguageModel.answer`: returns its answers in order, records what it was shown."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[list, str]] = []

    def answer(self, images, instruction):
        self.calls.append((images, instruction))
        return self.answers[len(self.calls) - 1]


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory):
    """Three toy clips in the DAVIS layout; names sort as blue circle, green triangle, red square."""
    root = tmp_path_factory.mktemp("toy-davis")
    write_davis_layout(
        [render_clip(ClipSpec(colour, shape, "straight", seed=seed)) for seed, (colour, shape) in enumerate(CLIPS)],
        root,
    )
    names = DavisDataset(root).names
    assert [name.split("-")[2] for name in names] == ["blue", "green", "red"]
    return root, names


@pytest.fixture(scope="module")
def answers_in_order():
    """Good answers in the dataset's video order."""
    return [answer_for("blue", "circle"), answer_for("green", "triangle"), answer_for("red", "square")]


def build_tiny_llava(folder: Path) -> Path:
    """Save a random-weight LLaVA (CLIP vision tower, Llama text model) with a code-built tokenizer to ``folder``."""
    import transformers
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast

    words = "a the red blue green square circle triangle ball slides across on black background subject prompt"
    vocab = {token: index for index, token in enumerate(["<pad>", "</s>", "<unk>", "<image>"])}
    for word in words.split() + ["user", "assistant", ":"]:  # no JSON punctuation: the garbage stays unparseable
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )
    chat_template = (
        "{% for message in messages %}{{ message['role'] }}:{% for item in message['content'] %}"
        "{% if item['type'] == 'image' %} <image>{% elif item['type'] == 'text' %} {{ item['text'] }}{% endif %}"
        "{% endfor %}{{ '\\n' }}{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    )
    image_processor_class = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)
    image_processor = image_processor_class(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    # 16 px images in 8 px patches: 4 patch features per image, and 4 <image> tokens (CLS counted, then dropped).
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template,
    )
    layer = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", image_size=16, patch_size=8, **layer),
        text_config=dict(
            model_type="llama",
            vocab_size=len(vocab),
            num_key_value_heads=2,
            max_position_embeddings=256,
            pad_token_id=0,
            eos_token_id=1,
            **layer,
        ),
        image_token_index=vocab["<image>"],
        image_seq_length=4,
        vision_feature_layer=-1,
    )
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture
def scripted_loading(monkeypatch):
    """Make the command load a ScriptedModel instead of the model folder's weights; returns a setter."""

    def use(model: ScriptedModel) -> ScriptedModel:
        monkeypatch.setattr(VisionLanguageModel, "from_path", classmethod(lambda cls, *args, **kwargs: model))
        return model

    return use


def run_command(dataset, model, out, *extra):
    return main(
        ["annotate", "--dataset", str(dataset), "--model", str(model), "--out", str(out), "--no-progress", *extra]
    )


# The parser, on answers written by hand.


def test_a_clean_json_answer_becomes_the_prompts_entry():
    prompts = parse_answer(answer_for("red", "square"), "clip")
    assert prompts.to_dict() == {
        "subject": "square",
        "prompt": "A red square slides across a black background.",
        "sub": {"subject": "ball", "prompt": "A red ball slides across a black background."},
        "back": {"prompt": "A red square slides across a sandy beach."},
    }


@pytest.mark.parametrize(
    "wrapping",
    [
        "Sure! Here are the prompts:\n{answer}\nLet me know if you need more.",
        "```json\n{answer}\n```",
        "Shown as {{like this}} first; the answer is {answer}",
    ],
    ids=["prose", "json-fence", "after-braces-in-prose"],
)
def test_the_object_is_found_inside_prose_and_code_fences(wrapping):
    answer = wrapping.format(answer=json.dumps(json.loads(answer_for("red", "square")), indent=2))
    assert parse_answer(answer, "clip").subject == "square"


def test_trailing_commas_and_typographic_quotes_are_repaired():
    answer = answer_for("red", "square").replace('"', "\u201c", 1).replace('"', "\u201d", 1)[:-1] + ",}"
    assert parse_answer(answer, "clip").back_prompt == "A red square slides across a sandy beach."


def test_the_prompts_file_nested_form_and_leading_articles_are_accepted():
    answer = """{"Subject": "the swan", "prompt": "A black swan glides on a pond.",
                 "sub": {"subject": "a duck", "prompt": "A black duck glides on a pond."},
                 "back": {"prompt": "A black swan glides on a neon-lit canal."}}"""
    prompts = parse_answer(answer, "blackswan")
    assert (prompts.subject, prompts.sub_subject) == ("swan", "duck")


def test_a_missing_field_is_an_error_naming_it_and_quoting_the_answer():
    answer = json.loads(answer_for("red", "square"))
    del answer["sub_prompt"]
    with pytest.raises(AnswerParseError, match="video 'clip'.*no 'sub_prompt'") as error:
        parse_answer(json.dumps(answer), "clip")
    assert "answer: '{\"subject\": \"square\"" in str(error.value)


def test_a_subject_missing_from_its_prompt_fails_the_files_validator():
    answer = answer_for("red", "square").replace('"sub_subject": "ball"', '"sub_subject": "kite"')
    with pytest.raises(AnswerParseError, match="subject 'kite' does not occur"):
        parse_answer(answer, "clip")


def test_an_answer_without_json_is_an_error_quoting_its_start():
    with pytest.raises(AnswerParseError, match=r"no JSON object found\n  answer: 'A red square moves\.'"):
        parse_answer("A red square\n moves.", "clip")


def test_a_cut_off_answer_asks_for_more_tokens():
    with pytest.raises(AnswerParseError, match="cut off: raise --max-new-tokens"):
        parse_answer(answer_for("red", "square")[:60], "clip")


@pytest.mark.parametrize(
    ("total", "count", "expected"),
    [(8, 3, [0, 4, 7]), (80, 4, [0, 26, 53, 79]), (3, 5, [0, 1, 2]), (9, 1, [4])],
)
def test_frames_are_evenly_spaced_from_first_to_last(total, count, expected):
    assert evenly_spaced(total, count) == expected


# Annotating a dataset, with the generation injected.


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_annotate_writes_a_prompts_file_the_loader_reads(tmp_path, toy_dataset, answers_in_order, suffix):
    root, names = toy_dataset
    out = tmp_path / f"prompts{suffix}"
    result = annotate(plan_annotation(root, out), ScriptedModel(*answers_in_order).answer, progress=False)
    assert result.written == names and not result.failed and not result.skipped
    prompts = load_prompts(out, known_videos=names)
    assert list(prompts.videos) == names
    assert prompts.videos[names[2]].prompt == "A red square slides across a black background."
    text = out.read_text()
    assert (json.loads(text) if suffix == ".json" else yaml.safe_load(text)) == prompts.to_dict()


def test_the_model_sees_evenly_spaced_frames_and_the_instruction(tmp_path, toy_dataset, answers_in_order):
    root, names = toy_dataset
    model = ScriptedModel(*answers_in_order)
    plan = plan_annotation(root, tmp_path / "p.yaml", videos=[names[0]])
    annotate(plan, model.answer, num_frames=3, progress=False)
    ((images, instruction),) = model.calls
    expected = DavisDataset(root).load(names[0]).frames[[0, 4, 7]]
    assert [image.mode for image in images] == ["RGB"] * 3
    np.testing.assert_array_equal(np.stack([np.asarray(image) for image in images]), expected)
    assert instruction.startswith("The 3 images are frames of one video") and '"back_prompt"' in instruction


def test_a_rerun_skips_the_videos_already_in_the_file(tmp_path, toy_dataset, answers_in_order):
    root, names = toy_dataset
    out = tmp_path / "prompts.yaml"
    first = plan_annotation(root, out, videos=[names[1]])
    annotate(first, ScriptedModel(answers_in_order[1]).answer, progress=False)
    model = ScriptedModel(answers_in_order[0], answers_in_order[2])
    plan = plan_annotation(root, out)
    assert (plan.pending, plan.skipped) == ([names[0], names[2]], [names[1]])
    result = annotate(plan, model.answer, progress=False)
    assert (result.written, result.skipped, len(model.calls)) == ([names[0], names[2]], [names[1]], 2)
    assert list(load_prompts(out, known_videos=names).videos) == names  # dataset order, not answer order


def test_overwrite_redoes_a_video_and_a_failed_redo_keeps_the_old_entry(tmp_path, toy_dataset, answers_in_order):
    root, names = toy_dataset
    out = tmp_path / "prompts.yaml"
    first = ScriptedModel(*answers_in_order[:2])
    annotate(plan_annotation(root, out, videos=names[:2]), first.answer, progress=False)
    redo = ScriptedModel(answers_in_order[0].replace("sandy beach", "snowy field"), "no idea")
    result = annotate(plan_annotation(root, out, videos=names[:2], overwrite=True), redo.answer, progress=False)
    assert result.written == [names[0]] and list(result.failed) == [names[1]]
    prompts = load_prompts(out).videos
    assert prompts[names[0]].back_prompt.endswith("snowy field.")
    assert prompts[names[1]].subject == "triangle"


def test_an_unusable_answer_is_reported_by_name_and_left_out(
    tmp_path, toy_dataset, answers_in_order, tiny_vlm_dir, scripted_loading, capsys
):
    root, names = toy_dataset
    broken = answers_in_order[1].replace('"subject": "triangle", ', "")
    scripted_loading(ScriptedModel(answers_in_order[0], broken, answers_in_order[2]))
    out = tmp_path / "prompts.yaml"
    assert run_command(root, tiny_vlm_dir, out) == 1
    stderr = capsys.readouterr().err
    assert f"video '{names[1]}'" in stderr and "no 'subject'" in stderr and '"prompt": "A green triangle' in stderr
    assert list(load_prompts(out, known_videos=names).videos) == [names[0], names[2]]


def test_an_interrupted_run_keeps_the_finished_videos_and_writes_nothing_partial(
    tmp_path, toy_dataset, answers_in_order
):
    root, names = toy_dataset
    out = tmp_path / "prompts.yaml"
    calls = []

    def fails_on_second_video(images, instruction):
        calls.append(instruction)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return answers_in_order[0]

    with pytest.raises(KeyboardInterrupt):
        annotate(plan_annotation(root, out), fails_on_second_video, progress=False)
    assert list(load_prompts(out, known_videos=names).videos) == [names[0]]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["prompts.yaml"]


def test_a_failed_write_leaves_the_previous_file_untouched(tmp_path, toy_dataset, answers_in_order, monkeypatch):
    root, names = toy_dataset
    out = tmp_path / "prompts.yaml"
    annotate(plan_annotation(root, out, videos=[names[0]]), ScriptedModel(answers_in_order[0]).answer, progress=False)
    before = out.read_bytes()

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        annotate(plan_annotation(root, out), ScriptedModel(*answers_in_order[1:]).answer, progress=False)
    assert out.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["prompts.yaml"]


def test_a_rerun_with_everything_done_does_not_load_the_model(
    tmp_path, toy_dataset, answers_in_order, tiny_vlm_dir, monkeypatch, capsys
):
    root, names = toy_dataset
    out = tmp_path / "prompts.json"
    annotate(plan_annotation(root, out), ScriptedModel(*answers_in_order).answer, progress=False)
    monkeypatch.setattr(VisionLanguageModel, "from_path", None)  # calling it would fail
    assert run_command(root, tiny_vlm_dir, out) == 0
    assert "annotated 0 video(s); skipped 3 already in the file" in capsys.readouterr().out


def test_unknown_videos_and_a_broken_output_file_are_errors_before_any_model_loads(tmp_path, toy_dataset):
    root, _ = toy_dataset
    with pytest.raises(AnnotationError, match="video\\(s\\) blackswan are not in the dataset"):
        plan_annotation(root, tmp_path / "p.yaml", videos=["blackswan"])
    broken = tmp_path / "broken.yaml"
    broken.write_text("videos:\n  blackswan: {subject: swan}\n")
    with pytest.raises(AnnotationError, match="cannot be resumed from; fix it, or move it away") as error:
        plan_annotation(root, broken)
    assert "videos.blackswan: unknown video" in str(error.value)
    with pytest.raises(AnnotationError, match="suffix '.txt'"):
        plan_annotation(root, tmp_path / "prompts.txt")


# The model folder: errors, and the real generation path.


def test_a_missing_model_path_names_it_and_what_to_download(tmp_path, toy_dataset, capsys):
    root, _ = toy_dataset
    missing = tmp_path / "models" / "Qwen2.5-VL"
    assert run_command(root, missing, tmp_path / "p.yaml") == 2
    stderr = capsys.readouterr().err
    assert f"no vision-language model folder at '{missing}'" in stderr
    assert "huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct" in stderr
    assert "attnkit-lmp annotate --dataset DIR --model /models/Qwen2.5-VL-7B-Instruct" in stderr
    assert not (tmp_path / "p.yaml").exists()


def test_a_folder_without_config_is_not_a_model(tmp_path, toy_dataset, capsys):
    root, _ = toy_dataset
    (tmp_path / "weights").mkdir()
    assert run_command(root, tmp_path / "weights", tmp_path / "p.yaml") == 2
    assert "is not a transformers model folder (it has no config.json)" in capsys.readouterr().err


def test_a_model_that_is_not_image_text_to_text_is_refused(tmp_path, toy_dataset, tiny_clip_dir, capsys):
    root, _ = toy_dataset
    assert run_command(root, tiny_clip_dir, tmp_path / "p.yaml") == 2
    assert "holds a 'clip' model, not an image-text-to-text" in capsys.readouterr().err


def test_a_processor_that_needs_a_missing_library_says_what_to_install(tiny_vlm_dir, monkeypatch):
    from transformers import AutoProcessor

    def needs_torchvision(*args, **kwargs):
        raise ImportError("\nQwen2VLVideoProcessor requires the Torchvision library but it was not found")

    monkeypatch.setattr(AutoProcessor, "from_pretrained", needs_torchvision)
    with pytest.raises(AnnotationModelError, match="Qwen2VLVideoProcessor requires the Torchvision library") as error:
        VisionLanguageModel.from_path(tiny_vlm_dir, device="cpu")
    assert f"'{tiny_vlm_dir}'" in str(error.value) and "pip install torchvision" in str(error.value)


def test_the_real_model_loads_by_path_and_generates_from_the_frames(tiny_vlm_dir, toy_dataset, monkeypatch):
    root, names = toy_dataset
    model = VisionLanguageModel.from_path(tiny_vlm_dir, device="cpu", max_new_tokens=5)
    seen = {}
    generate = model.model.generate

    def spy(**inputs):
        seen.update(inputs)
        seen["output"] = generate(**inputs)
        return seen["output"]

    monkeypatch.setattr(model.model, "generate", spy)
    images = annotate_module._sample_frames(DavisDataset(root), names[0], 3)
    answer = model.answer(images, annotate_module.instruction_for(3))
    image_token = model.model.config.image_token_index
    assert seen["pixel_values"].shape == (3, 3, 16, 16)
    assert int((seen["input_ids"] == image_token).sum()) == 3 * 4
    assert seen["input_ids"].shape[1] < seen["output"].shape[1] <= seen["input_ids"].shape[1] + 5
    assert isinstance(answer, str) and answer  # the new tokens decoded, the prompt left out


def test_the_command_runs_the_real_model_and_reports_its_garbage(tmp_path, toy_dataset, tiny_vlm_dir, capsys):
    root, names = toy_dataset
    out = tmp_path / "prompts.yaml"
    options = ("--videos", names[0], "--frames", "2", "--max-new-tokens", "4")
    assert run_command(root, tiny_vlm_dir, out, *options) == 1
    stderr = capsys.readouterr().err
    assert f"video '{names[0]}': the model's answer is not usable: no JSON object found" in stderr
    assert not out.exists()


def test_annotate_is_a_registered_subcommand():
    assert {"annotate", "eval", "transfer"} <= set(registered_commands())


def test_the_documented_command_runs(tmp_path, toy_dataset, answers_in_order, tiny_vlm_dir, scripted_loading):
    root, names = toy_dataset
    (block,) = [
        block
        for block in re.findall(r"^```sh\n(.*?)^```", DOCS_PAGE.read_text(), flags=re.S | re.M)
        if "attnkit-lmp annotate" in block
    ]
    words = shlex.split(block.replace("\\\n", " "), comments=True)
    replacements = {
        "/data/DAVIS": str(root),
        "/models/Qwen2.5-VL-7B-Instruct": str(tiny_vlm_dir),
        "/data/DAVIS/prompts.yaml": str(tmp_path / "prompts.yaml"),
    }
    assert set(replacements) <= set(words) and words[:2] == ["attnkit-lmp", "annotate"]
    scripted_loading(ScriptedModel(*answers_in_order))
    assert main([replacements.get(word, word) for word in words[1:]] + ["--no-progress"]) == 0
    assert list(load_prompts(tmp_path / "prompts.yaml", known_videos=names).videos) == names
