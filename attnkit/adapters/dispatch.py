"""Checks that diffusers' attention dispatcher would run the same kernel attnkit runs.

Newer diffusers models (HunyuanVideo, Wan) call ``dispatch_attention_fn``, which picks a backend
(native SDPA, flash-attn, sage, ...) per processor or globally. attnkit's kernel is native SDPA, so an
instrumented model is bit-identical to the original only when the original would also use it.
"""

from __future__ import annotations


def require_native_attention(processor, where: str) -> None:
    """Raise if ``processor`` (or the global default) routes attention to a backend other than native SDPA."""
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    backend = getattr(processor, "_attention_backend", None)
    if backend is None:
        backend = _AttentionBackendRegistry.get_active_backend()[0]
    name = backend.value if isinstance(backend, AttentionBackendName) else str(backend)
    if name != AttentionBackendName.NATIVE.value:
        raise TypeError(
            f"{where} dispatches attention to the {name!r} backend; attnkit's kernel is native SDPA and "
            "would change the model's numerics. Use the native backend while attached "
            "(model.reset_attention_backend() / unset DIFFUSERS_ATTN_BACKEND)"
        )
    if getattr(processor, "_parallel_config", None) is not None:
        raise TypeError(
            f"{where} runs context-parallel attention; attnkit supports single-device attention only "
            "(disable context parallelism while attached)"
        )
