"""HunyuanVideo and Wan adapters beyond the conformance suite: refused variants and processors, added rows
and their per-row inputs, per-token timesteps, Wan 2.2's two experts, and the roles plugins see."""

from __future__ import annotations

import pytest
import torch

import attnkit
from attnkit.adapters.wan import WanAdapter
from conformance.plugins import ReadOnlyProbe  # tests/ has no __init__.py, so pytest puts it on sys.path
from attnkit.testing.tiny_hunyuan import HUNYUAN_CALL_KWARGS, tiny_hunyuan_pipeline, tiny_hunyuan_transformer
from attnkit.testing.tiny_wan import WAN22_BOUNDARY_RATIO, WAN_CALL_KWARGS, tiny_wan_pipeline, tiny_wan_transformer


@pytest.fixture(scope="module")
def wan_pipe():
    return tiny_wan_pipeline("t2v")


@pytest.fixture(scope="module")
def hunyuan_pipe():
    return tiny_hunyuan_pipeline()


@pytest.fixture(scope="module")
def wan22_pipe():
    return tiny_wan_pipeline("t2v", boundary_ratio=WAN22_BOUNDARY_RATIO)


def run(pipe, kwargs, **overrides):
    return pipe(prompt="a red dog runs", generator=torch.Generator().manual_seed(0), **dict(kwargs, **overrides)).frames


def processors(model):
    return {name: id(processor) for name, processor in model.attn_processors.items()}


def test_wan_vace_is_refused_by_name():
    from diffusers import WanVACETransformer3DModel

    vace = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2, vace_layers=[0], vace_in_channels=16,
    )
    before = processors(vace)
    with pytest.raises(attnkit.UnsupportedModelError) as raised:
        with attnkit.attach(vace):
            pass
    message = str(raised.value)
    assert "WanVACETransformer3DModel is Wan VACE" in message and "WanTransformer3DModel" in message
    assert processors(vace) == before


def test_hunyuan_framepack_is_refused_by_name():
    framepack_class = type("HunyuanVideoFramepackTransformer3DModel", (torch.nn.Module,), {})
    with pytest.raises(attnkit.UnsupportedModelError, match="HunyuanVideo FramePack"):
        with attnkit.attach(framepack_class()):
            pass


@pytest.mark.parametrize("build", [tiny_wan_transformer, tiny_hunyuan_transformer], ids=["wan", "hunyuan"])
def test_an_unexpected_processor_class_is_refused_and_nothing_stays_swapped(build):
    model = build()
    attentions = [module for module in model.modules() if hasattr(module, "processor")]
    last = attentions[-1]
    original_class = type(last.processor)
    last.processor = type("CustomProcessor", (original_class,), {})()
    before = processors(model)
    with pytest.raises(attnkit.UnsupportedModelError, match="uses CustomProcessor"):
        with attnkit.attach(model):
            pass
    assert processors(model) == before


def test_a_non_native_attention_backend_is_refused(wan_pipe):
    processor = wan_pipe.transformer.blocks[1].attn2.processor
    processor._attention_backend = "flash"
    try:
        with pytest.raises(attnkit.UnsupportedModelError, match="blocks.1.attn2 dispatches attention to the 'flash'"):
            with attnkit.attach(wan_pipe):
                pass
    finally:
        processor._attention_backend = None


def test_wan_per_token_timesteps_count_as_the_largest():
    # Wan 2.2 image-to-video: the clean first frame's tokens have timestep 0, the rest the step's.
    inputs = {"timestep": torch.tensor([[0.0, 0.0, 875.0, 875.0]])}
    assert WanAdapter.timestep(inputs) == 875.0


def test_joint_only_plugin_is_refused_on_wan_but_accepted_on_hunyuan(wan_pipe, hunyuan_pipe):
    class JointOnly:
        name = "joint-only"
        attnkit_roles = {"joint"}

        @attnkit.hookimpl
        def attnkit_qkv(self, call):
            pass

    with pytest.raises(attnkit.UnsupportedRoleError, match="WanTransformer3DModel .*has only \\['cross', 'self'\\]"):
        with attnkit.attach(wan_pipe, plugins=[JointOnly()]):
            pass
    with attnkit.attach(hunyuan_pipe, plugins=[JointOnly()]):
        pass


class AddsReferenceRow:
    """Adds a "reference" row that copies the cond row's inputs; records the branches of each output."""

    name = "adds-reference-row"

    def __init__(self):
        self.outputs = []

    @attnkit.hookimpl
    def attnkit_model_inputs(self, inputs):
        if "cond" in inputs.session.branches:
            rows = inputs.session.branches["cond"]
            inputs.add_rows("reference", inputs.latents[rows], inputs.encoder_hidden_states[rows])

    @attnkit.hookimpl
    def attnkit_model_output(self, outputs):
        self.outputs.append({branch: sample.clone() for branch, sample in outputs.items()})


@pytest.mark.parametrize("which", ["wan", "hunyuan"])
def test_added_rows_are_denoised_beside_the_pipeline_and_stripped(which, wan_pipe, hunyuan_pipe):
    pipe, kwargs = (wan_pipe, WAN_CALL_KWARGS) if which == "wan" else (hunyuan_pipe, HUNYUAN_CALL_KWARGS)
    expected = run(pipe, kwargs)
    plugin = AddsReferenceRow()
    with attnkit.attach(pipe, plugins=[plugin]):
        attached = run(pipe, kwargs)
    torch.testing.assert_close(attached, expected, atol=1e-5, rtol=0)
    with_reference = [output for output in plugin.outputs if "reference" in output]
    assert len(with_reference) == 2  # the cond forward of each of the two steps
    for output in with_reference:
        # The reference row has the cond row's inputs (Hunyuan: text unmasked, so only close in shape).
        assert output["reference"].shape == output["cond"].shape
        if which == "wan":
            torch.testing.assert_close(output["reference"], output["cond"], atol=1e-5, rtol=0)


# --- variants checked at the transformer level (their pipelines need encoders too large to fake cheaply) ---


def forward_twice(model, inputs, plugins):
    """The model's output without and with an attnkit session, and the probe's record."""
    expected = model(**inputs, return_dict=False)[0]
    probe = ReadOnlyProbe()
    with attnkit.attach(model, plugins=[probe, *plugins]) as session:
        attached = model(**inputs, return_dict=False)[0]
    return expected, attached, probe, session


@pytest.mark.parametrize("image_condition_type", ["latent_concat", "token_replace"])
def test_hunyuan_image_to_video_transformers_are_bit_identical_under_a_probe(image_condition_type):
    # HunyuanVideo-I2V: latent_concat doubles the input channels (+1 mask); token_replace swaps first-frame
    # tokens' modulation in its own block classes. The attention processor is the same in both.
    model = tiny_hunyuan_transformer()
    in_channels = 2 * 4 + 1 if image_condition_type == "latent_concat" else 4
    torch.manual_seed(0)
    from diffusers import HunyuanVideoTransformer3DModel

    model = HunyuanVideoTransformer3DModel.from_config(
        dict(model.config, in_channels=in_channels, image_condition_type=image_condition_type)
    ).eval()
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(2, 16)
    mask[:, 6:] = 0
    inputs = {
        "hidden_states": torch.randn(2, in_channels, 3, 8, 8, generator=generator),
        "timestep": torch.tensor([700.0, 700.0]),
        "encoder_hidden_states": torch.randn(2, 16, 16, generator=generator),
        "encoder_attention_mask": mask,
        "pooled_projections": torch.randn(2, 8, generator=generator),
        "guidance": torch.tensor([6000.0, 6000.0]),
    }
    expected, attached, probe, session = forward_twice(model, inputs, [])
    assert torch.equal(attached, expected)
    assert probe.calls == session.num_attention_modules and probe.masked_calls == probe.calls
    assert probe.masked_key_mass == 0.0
    for probed, naive in probe.slices:
        torch.testing.assert_close(probed, naive, atol=1e-5, rtol=0)


def test_wan_22_per_token_timesteps_keep_identity_and_count_steps():
    # Wan 2.2 TI2V passes (batch, video tokens) timesteps; the first frame's tokens are at 0 in image-to-video.
    model = tiny_wan_transformer()
    generator = torch.Generator().manual_seed(1)
    tokens_per_frame = 16
    inputs = {
        "hidden_states": torch.randn(1, 16, 3, 8, 8, generator=generator),
        "encoder_hidden_states": torch.randn(1, 16, 32, generator=generator),
    }
    steps = []

    class Steps:
        @attnkit.hookimpl
        def attnkit_step_start(self, step, timestep):
            steps.append((step, timestep))

    probe_outputs = []
    for t in (900.0, 500.0):
        timestep = torch.full((1, 3 * tokens_per_frame), t)
        timestep[:, :tokens_per_frame] = 0.0
        inputs["timestep"] = timestep
        probe_outputs.append(model(**inputs, return_dict=False)[0])
    probe = ReadOnlyProbe()
    with attnkit.attach(model, plugins=[Steps(), probe]) as session:
        for t, expected in zip((900.0, 500.0), probe_outputs):
            timestep = torch.full((1, 3 * tokens_per_frame), t)
            timestep[:, :tokens_per_frame] = 0.0
            inputs["timestep"] = timestep
            assert torch.equal(model(**inputs, return_dict=False)[0], expected)
    assert steps == [(0, 900.0), (1, 500.0)]
    assert probe.calls == 2 * session.num_attention_modules
    for probed, naive in probe.slices:
        torch.testing.assert_close(probed, naive, atol=1e-5, rtol=0)


# --- added rows with their own per-row inputs -----------------------------------------------------------


def hunyuan_inputs(generator, rows: int, text_length: int) -> dict:
    """Transformer inputs of the tiny HunyuanVideo geometry; every row's text padded after ``text_length``."""
    mask = torch.zeros(rows, 16)
    mask[:, :text_length] = 1
    return {
        "hidden_states": torch.randn(rows, 4, 3, 8, 8, generator=generator),
        "timestep": torch.full((rows,), 700.0),
        "encoder_hidden_states": torch.randn(rows, 16, 16, generator=generator),
        "encoder_attention_mask": mask,
        "pooled_projections": torch.randn(rows, 8, generator=generator),
        "guidance": torch.full((rows,), 6000.0),
    }


class AddsRow:
    """Adds the rows of ``added`` (forward inputs by name) as branch "reference"; keeps its prediction."""

    name = "adds-row"

    def __init__(self, added: dict):
        self.added = added
        self.prediction = None

    @attnkit.hookimpl
    def attnkit_model_inputs(self, inputs):
        row_inputs = {key: value for key, value in self.added.items() if key in inputs.per_row_inputs}
        inputs.add_rows("reference", self.added["hidden_states"], self.added["encoder_hidden_states"], **row_inputs)

    @attnkit.hookimpl
    def attnkit_model_output(self, outputs):
        self.prediction = outputs["reference"]


def test_a_hunyuan_row_added_with_its_own_mask_and_pooled_text_predicts_as_if_run_alone():
    model = tiny_hunyuan_transformer()
    generator = torch.Generator().manual_seed(3)
    target, reference = hunyuan_inputs(generator, 1, 4), hunyuan_inputs(generator, 1, 9)
    reference["guidance"] = target["guidance"]  # guidance is not given: the added row repeats the target's
    expected_target = model(**target, return_dict=False)[0]
    expected_reference = model(**reference, return_dict=False)[0]
    plugin = AddsRow(reference)
    with attnkit.attach(model, plugins=[plugin]):
        attached_target = model(**target, return_dict=False)[0]
    torch.testing.assert_close(attached_target, expected_target, atol=1e-5, rtol=0)
    torch.testing.assert_close(plugin.prediction, expected_reference, atol=1e-5, rtol=0)
    # Without its own mask and pooled text the row is a different input: the mechanism is what matters.
    bare = AddsRow({key: reference[key] for key in ("hidden_states", "encoder_hidden_states")})
    with attnkit.attach(model, plugins=[bare]):
        model(**target, return_dict=False)
    assert not torch.allclose(bare.prediction, expected_reference, atol=1e-3)


@pytest.mark.parametrize(
    "which, row_inputs, message",
    [
        ("wan", {"pooled_projections": torch.zeros(1, 8)}, r"\['pooled_projections'\] are not per-row inputs of "
         r"WanTransformer3DModel; the 'wan' adapter takes \['encoder_hidden_states_image', 'timestep'\]"),
        ("wan", {"encoder_hidden_states_image": torch.zeros(1, 17, 16)},
         r"own 'encoder_hidden_states_image', but this forward's 'encoder_hidden_states_image' is not passed"),
        ("hunyuan", {"encoder_attention_mask": torch.ones(1, 12)},
         r"added 'encoder_attention_mask' has shape \(1, 12\); the 1 added row\(s\) need \(1, 16\)"),
    ],
)
def test_per_row_inputs_the_forward_cannot_take_are_refused_by_name(which, row_inputs, message, wan_pipe, hunyuan_pipe):
    pipe, kwargs = (wan_pipe, WAN_CALL_KWARGS) if which == "wan" else (hunyuan_pipe, HUNYUAN_CALL_KWARGS)

    class AddsBadRow:
        name = "adds-bad-row"

        @attnkit.hookimpl
        def attnkit_model_inputs(self, inputs):
            inputs.add_rows("reference", inputs.latents[:1], inputs.encoder_hidden_states[:1], **row_inputs)

    before = processors(pipe.transformer)
    with pytest.raises(attnkit.PluginError, match=message):
        with attnkit.attach(pipe, plugins=[AddsBadRow()]):
            run(pipe, kwargs)
    assert processors(pipe.transformer) == before


# --- Wan 2.2: two experts -------------------------------------------------------------------------------


def test_wan_22_both_experts_are_hooked_and_each_step_runs_one(wan22_pipe):
    seen = []

    class ExpertSpy:
        @attnkit.hookimpl
        def attnkit_qkv(self, call):
            seen.append((call.step, call.layer, attnkit_session.adapter.model))

    with attnkit.attach(wan22_pipe, plugins=[ExpertSpy()]) as attnkit_session:
        assert attnkit_session.models == [wan22_pipe.transformer, wan22_pipe.transformer_2]
        run(wan22_pipe, WAN_CALL_KWARGS)
    calls_per_step = 2 * attnkit_session.num_attention_modules  # cond and uncond forwards
    assert len(seen) == 2 * calls_per_step
    assert {model for step, _, model in seen if step == 0} == {wan22_pipe.transformer}  # high noise
    assert {model for step, _, model in seen if step == 1} == {wan22_pipe.transformer_2}  # low noise


def test_wan_22_with_an_expert_attnkit_cannot_instrument_is_refused_naming_it(wan22_pipe):
    from diffusers.models.attention_processor import AttnProcessor2_0

    before = processors(wan22_pipe.transformer)
    original = wan22_pipe.transformer_2.blocks[0].attn1.processor
    wan22_pipe.transformer_2.blocks[0].attn1.processor = AttnProcessor2_0()
    try:
        with pytest.raises(attnkit.UnsupportedModelError, match=r"WanPipeline\.transformer_2: blocks\.0\.attn1 uses "
                           r"AttnProcessor2_0.*runs transformer and transformer_2 in turn"):
            with attnkit.attach(wan22_pipe, plugins=[ReadOnlyProbe()]):
                pass
    finally:
        wan22_pipe.transformer_2.blocks[0].attn1.processor = original
    assert processors(wan22_pipe.transformer) == before  # the first expert, installed already, is put back
    assert not hasattr(wan22_pipe.transformer, "_attnkit_session")
