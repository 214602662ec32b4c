"""LMPConfig: every hyper-parameter and [choice] of LMP motion transfer, in one serialisable dataclass.

The defaults are the paper's (50 steps, lambda 0.98, eta 100, thresholds 40/45/35 of 50, top 1/5) and
our documented choices for what the paper leaves open (see ``docs/lmp.md`` and METHOD.md). A config
round-trips through JSON and YAML and is stored beside every output, so a run can be repeated::

    config = LMPConfig.for_steps(4)          # thresholds scaled to a 4-step run
    config.save("run/config.json")
    assert LMPConfig.load("run/config.json") == config
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAPER_NUM_STEPS = 50
PAPER_STEP_THRESHOLDS = {"fbdm_steps": 40, "rmtm_steps": 45, "asm_steps": 35}

CFG_ROW_CHOICES = ("both", "cond")
REFERENCE_NOISING_CHOICES = ("renoise", "noise_once")
FRAME_SAMPLING_CHOICES = ("uniform", "first")


class LMPConfigError(ValueError):
    """A field of :class:`LMPConfig` has a value LMP cannot run with; the message names it and the fix."""


@dataclass
class LMPConfig:
    """Hyper-parameters of one LMP motion transfer; ``validate()`` checks them all.

    Geometry fields left ``None`` take the model's own defaults (its sample size, frame count and text
    length), so one config serves the tiny test models and CogVideoX-5B alike.
    """

    # --- sampling (passed to the unmodified diffusers pipeline) ---
    num_inference_steps: int = PAPER_NUM_STEPS
    guidance_scale: float = 6.0
    use_dynamic_cfg: bool = False
    height: int | None = None
    width: int | None = None
    num_frames: int | None = None
    max_sequence_length: int | None = None
    negative_prompt: str = ""
    # HunyuanVideo only (an error on other models): guidance_scale is its embedded guidance; true CFG with
    # the negative prompt runs when true_cfg_scale > 1; prompt_template wraps prompts for its Llama encoder
    # (None: the pipeline's, {"template": "... {} ...", "crop_start": tokens before the prompt}).
    true_cfg_scale: float = 1.0
    prompt_template: dict | None = None

    # --- modules on/off (the paper's ablations); ASM also needs the subjects to differ ---
    enable_fbdm: bool = True
    enable_rmtm: bool = True
    enable_asm: bool = True

    # --- FBDM: foreground mask of the reference from its subject-word attention ---
    fbdm_steps: int = PAPER_STEP_THRESHOLDS["fbdm_steps"]
    fg_threshold: float = 0.4
    fbdm_layers: list[int] | None = None

    # --- RMTM: target video queries also attend to lambda-scaled reference foreground keys ---
    rmtm_steps: int = PAPER_STEP_THRESHOLDS["rmtm_steps"]
    rmtm_lambda: float = 0.98
    rmtm_scale_values: bool = False
    # The reference keys take attention only from the target's video keys, so the prompt keeps its share
    # (joint attention; self-attention has no prompt keys). False: one softmax over all keys.
    rmtm_keep_prompt_share: bool = True
    rmtm_layers: list[int] | None = None
    rmtm_cfg_rows: str = "both"

    # --- ASM: one gradient step on the target video hidden states per layer ---
    asm_steps: int = PAPER_STEP_THRESHOLDS["asm_steps"]
    asm_eta: float = 100.0
    asm_top_fraction: float = 0.2
    asm_layers: list[int] | None = None
    asm_cfg_rows: str = "cond"
    asm_chunk_size: int = 128

    # --- the reference branch (eq. 10) and how a reference video is read ---
    reference_noising: str = "renoise"
    reference_noise_step: int = 0
    frame_sampling: str = "uniform"

    # --- outputs ---
    fps: int = 8

    def __post_init__(self) -> None:
        # Checked here too, not only in validate(): a config that cannot run must not exist long enough to
        # be saved beside a run or handed to a sweep.
        self.validate()

    @classmethod
    def for_steps(cls, num_inference_steps: int, **overrides) -> LMPConfig:
        """The paper's config for a run of ``num_inference_steps``: the 40/45/35-of-50 thresholds scaled.

        E.g. 4 steps give fbdm_steps 3, rmtm_steps 4, asm_steps 3 (rounded, at least 1).
        """
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise LMPConfigError(
                f"num_inference_steps={num_inference_steps!r} must be a positive integer (e.g. 50)"
            )
        scaled = {
            name: max(1, min(num_inference_steps, round(value * num_inference_steps / PAPER_NUM_STEPS)))
            for name, value in PAPER_STEP_THRESHOLDS.items()
        }
        return cls(num_inference_steps=num_inference_steps, **{**scaled, **overrides})

    # --- validation ---------------------------------------------------------------------------------

    def validate(self) -> LMPConfig:
        """Raise :class:`LMPConfigError` naming the first bad field; return ``self`` when all is well."""
        steps = self.num_inference_steps
        for name in FLOAT_FIELDS:
            value = getattr(self, name)
            # inf and NaN pass the range checks below (inf > 0) and make NaN latents, i.e. a black video.
            _require(
                _is_finite_number(value),
                name,
                value,
                "a finite number (inf and NaN make the latents NaN, i.e. a black video)",
            )
        _require(
            isinstance(steps, int) and steps >= 1, "num_inference_steps", steps, "a positive integer, e.g. 50"
        )
        for name in ("fbdm_steps", "rmtm_steps", "asm_steps"):
            value = getattr(self, name)
            _require(
                isinstance(value, int) and 0 <= value <= steps,
                name,
                value,
                f"an integer in 0..num_inference_steps={steps} (a module is active while step < {name}); "
                f"scale it to the run, e.g. LMPConfig.for_steps({steps})",
            )
        _require(
            self.rmtm_lambda > 0,
            "rmtm_lambda",
            self.rmtm_lambda,
            "a positive key scale (the paper uses 0.98)",
        )
        _require(self.asm_eta >= 0, "asm_eta", self.asm_eta, "a non-negative step size (the paper uses 100)")
        _require(
            0 < self.asm_top_fraction <= 1,
            "asm_top_fraction",
            self.asm_top_fraction,
            "a fraction in (0, 1] of the selected attention values to average (the paper uses 0.2)",
        )
        _require(
            0 <= self.fg_threshold <= 1,
            "fg_threshold",
            self.fg_threshold,
            "a value in [0, 1] (min-max scale)",
        )
        _require(
            self.guidance_scale >= 0, "guidance_scale", self.guidance_scale, "a non-negative number, e.g. 6"
        )
        _require(
            self.true_cfg_scale >= 0,
            "true_cfg_scale",
            self.true_cfg_scale,
            "a non-negative number (HunyuanVideo runs true CFG when it is above 1)",
        )
        template = self.prompt_template
        _require(
            template is None
            or (
                isinstance(template, dict)
                and isinstance(template.get("template"), str)
                and "{}" in template["template"]
                and isinstance(template.get("crop_start", 0), (int, type(None)))
            ),
            "prompt_template",
            template,
            'null (the pipeline\'s) or {"template": "...{}...", "crop_start": <tokens before the prompt>}',
        )
        _require(
            isinstance(self.asm_chunk_size, int) and self.asm_chunk_size >= 1,
            "asm_chunk_size",
            self.asm_chunk_size,
            "a positive integer number of query rows per chunk",
        )
        for name, choices in (
            ("rmtm_cfg_rows", CFG_ROW_CHOICES),
            ("asm_cfg_rows", CFG_ROW_CHOICES),
            ("reference_noising", REFERENCE_NOISING_CHOICES),
            ("frame_sampling", FRAME_SAMPLING_CHOICES),
        ):
            value = getattr(self, name)
            _require(value in choices, name, value, f"one of {list(choices)}")
        _require(
            isinstance(self.reference_noise_step, int) and 0 <= self.reference_noise_step < steps,
            "reference_noise_step",
            self.reference_noise_step,
            f"a step index in 0..{steps - 1} (the step whose noise level the reference is noised to once)",
        )
        for name in ("fbdm_layers", "rmtm_layers", "asm_layers"):
            layers = getattr(self, name)
            _require(
                layers is None
                or (isinstance(layers, (list, tuple)) and all(isinstance(i, int) and i >= 0 for i in layers)),
                name,
                layers,
                "null (all layers) or a list of non-negative layer indices",
            )
        for name in ("height", "width", "num_frames", "max_sequence_length"):
            value = getattr(self, name)
            _require(
                value is None or (isinstance(value, int) and value > 0),
                name,
                value,
                "null or a positive integer",
            )
        _require(isinstance(self.fps, int) and self.fps > 0, "fps", self.fps, "a positive integer")
        return self

    def check_layers(self, num_layers: int) -> None:
        """Every layer index of an enabled module exists in a model of ``num_layers`` attention layers.

        An index past the end would not fail anywhere else: the module would just never meet it and
        silently do nothing, while the run record says it ran.
        """
        for module, name in (("fbdm", "fbdm_layers"), ("rmtm", "rmtm_layers"), ("asm", "asm_layers")):
            layers = getattr(self, name)
            if not getattr(self, f"enable_{module}") or layers is None:
                continue
            missing = sorted(index for index in layers if index >= num_layers)
            _require(
                not missing,
                name,
                layers,
                f"layer indices in 0..{num_layers - 1}: this model has {num_layers} attention layers, so "
                f"{missing} would never run",
            )

    # --- serialisation ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LMPConfig:
        """Build from a dict; unknown keys are an error that names them (a typo must not pass silently)."""
        if not isinstance(values, dict):
            raise LMPConfigError(
                f"an LMP config must be a mapping of field names to values, got {type(values).__name__}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LMPConfigError(f"unknown LMP config fields {unknown}; known fields are {sorted(known)}")
        return cls(**values)

    def to_json(self) -> str:
        # allow_nan=False: JSON has no Infinity or NaN, and other readers reject them.
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        """Write as JSON (``.json``) or YAML (``.yaml``/``.yml``), atomically (temp file, then rename)."""
        from attnkit.record.atomic import atomic_write_bytes

        path = Path(path)
        text = self.to_yaml() if _is_yaml(path) else self.to_json()
        return atomic_write_bytes(path, text.encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> LMPConfig:
        """Read a config written by :meth:`save` or by hand, or a CLI run's ``config.json``; validated."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise LMPConfigError(f"cannot read LMP config {str(path)!r}: {error}") from error
        try:
            if _is_yaml(path):
                import yaml

                values = yaml.safe_load(text)
            else:
                values = json.loads(text)
        except Exception as error:
            raise LMPConfigError(
                f"LMP config {str(path)!r} is not valid {'YAML' if _is_yaml(path) else 'JSON'}: {error}"
            ) from error
        if isinstance(values, dict) and isinstance(values.get("config"), dict) and "run" in values:
            values = values["config"]  # a run record written by `attnkit-lmp transfer`
        return cls.from_dict(values or {}).validate()


FLOAT_FIELDS = ("guidance_scale", "true_cfg_scale", "fg_threshold", "rmtm_lambda", "asm_eta", "asm_top_fraction")


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_yaml(path: Path) -> bool:
    return path.suffix.lower() in (".yaml", ".yml")


def _require(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise LMPConfigError(f"LMPConfig.{name}={value!r} is invalid: expected {expected}")
