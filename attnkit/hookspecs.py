"""The pluggy hook specifications of attnkit: every point where a plugin can read or change attention.

Implement any of these in a plugin (a module, class or object) with ``@attnkit.hookimpl``; an
implementation takes only the arguments it needs. pluggy calls them: in its order (``tryfirst`` /
``trylast``), with ``wrapper=True`` implementations around the others. Per-attention hooks
(``attnkit_before_attention``, ``attnkit_qkv``, ``attnkit_extra_kv``, ``attnkit_attention_output``) are
called for every attention module of every forward, so the session asks once which of them have
implementations and skips the rest.

A plugin may declare where its per-attention hooks fire, as data: ``attnkit_where =
attnkit.Where(roles=..., layers=..., steps=..., branches=...)`` (see :mod:`attnkit.where`). They are then
called only for the attention calls inside it. ``attnkit_roles = {"joint", "cross"}`` declares the roles
alone (roles are ``"joint"``, ``"self"``, ``"cross"``, see :class:`attnkit.layout.TokenLayout`); attaching
a plugin to a model none of whose calls has one of its roles raises :class:`attnkit.UnsupportedRoleError`.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("attnkit")


# --- discovery -----------------------------------------------------------------------------------------


@hookspec
def attnkit_register_adapters(register):
    """Register model adapters: call ``register(AdapterClass)`` for each.

    Fires when a session looks for the adapter of a model. Adapters are asked in registration order
    (built-ins last, so a third-party adapter can take over a model) and the first whose
    ``supports(model)`` is true handles it.
    """


# --- session and denoising steps -----------------------------------------------------------------------


@hookspec
def attnkit_session_start(session):
    """The session has installed its instrumentation; ``session.model`` and ``session.adapter`` are set.

    With two transformers (Wan 2.2's experts) ``session.models`` and ``session.adapters`` list both;
    ``session.adapter`` is then the one of the transformer whose forward runs.

    Plugins reset their per-run state here.
    """


@hookspec
def attnkit_session_end(session, error):
    """The session is about to restore the model. ``error`` is the exception that ended it, or None."""


@hookspec
def attnkit_step_start(session, step, timestep):
    """A denoising step begins: the transformer received a timestep it had not seen last call.

    ``step`` counts from 0 in this session; ``timestep`` is the scheduler's value (a float).
    """


@hookspec
def attnkit_step_end(session, step, timestep):
    """A denoising step ended: the next step started or the session closed. Aggregate per-step maps here."""


# --- whole-model forward -------------------------------------------------------------------------------


@hookspec
def attnkit_model_inputs(session, inputs):
    """Before each transformer forward: add batch rows of your own with ``inputs.add_rows(...)``.

    ``inputs`` is a :class:`attnkit.session.ModelInputs`. Added rows form a new branch (e.g. a
    ``"reference"`` video denoised beside the target); the session strips them from the model output
    and hands them to ``attnkit_model_output``, so the pipeline never sees them. Other per-row inputs of
    the model (``inputs.per_row_inputs``: a pooled text embedding, a text mask, image tokens) can be given
    for the added rows by name, ``inputs.add_rows("reference", latents, text, pooled_projections=...)``;
    those not given repeat the last row's.
    """


@hookspec
def attnkit_model_output(session, outputs):
    """After each transformer forward: ``outputs`` maps every branch name to its rows of the model output."""


# --- each attention call ------------------------------------------------------------------------------


@hookspec
def attnkit_before_attention(call):
    """Before the Q/K/V projections. May replace ``call.hidden_states`` (``(B, N, C)``).

    This is where a gradient step on hidden states lives: ``call.project(h)`` recomputes q/k/v from
    ``h`` with autograd enabled, through the layer's own projections, norms and RoPE.
    """


@hookspec
def attnkit_qkv(call):
    """After norm and RoPE. Read ``call.q``, ``call.k``, ``call.v`` or assign new tensors of the same shape."""


@hookspec
def attnkit_extra_kv(call):
    """Return extra key/value blocks (an :class:`attnkit.ExtraKV`, a list of them, or None).

    Each block names the batch rows and query tokens that may see it, and a key scale / value scale /
    additive score bias; the kernel computes the exact softmax over the union of own and extra keys.
    """


@hookspec
def attnkit_attention_output(call, output):
    """After the kernel, before the output projection. ``output`` is ``(B, heads, N, head_dim)``.

    Read attention maps here: ``call.attention_probs(...)`` uses the kernel's own log-sum-exp.
    Return a tensor of the same shape to replace the output (at most one plugin may do so per call).
    """
