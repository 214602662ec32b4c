"""Benchmark: the attention call itself, with the probe, LMP's extra K/V and ASM's loss, against plain SDPA.

At the real token count (CogVideoX-5B: 226 text + 17,550 video tokens) with heads reduced (every op
here is per head, so ratios do not depend on the head count). Variants, timed side by side and
interleaved in one process, each against plain SDPA on the CFG pair (2 rows):

- ``probe``: SDPA with the kernel's log-sum-exp, then FBDM's two blocks for 2 subject tokens;
- ``probe-chunked``: SDPA, then the log-sum-exp in bounded blocks (a probe before the kernel, or a
  backend without one), then the same blocks;
- ``lmp``: the LMP call: 3 rows (CFG pair + reference), RMTM's extra K/V (30 % foreground) on the
  target rows, FBDM's blocks on the reference row;
- ``lmp+asm``: ``lmp`` plus ASM's loss and gradient for the conditional row (fused CPU kernel);
- ``asm-chunked``: ASM's loss and gradient alone, through the blocked log-sum-exp (the off-CPU path).

With ``--memory``, one untimed pass per variant under an allocator-level tracker then prints its largest
allocation and peak as a share of the CFG pair's N x N map.

    python benchmarks/bench_attention.py [--tokens 17776] [--heads 1] [--repeats 1] [--threads 1] [--memory]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from attnkit.call import AttentionCall
from attnkit.kernel import attention_with_extras, sdpa, sdpa_with_logsumexp
from attnkit.layout import TokenLayout
from attnkit.testing.allocations import track_allocations
from attnkit_lmp.asm import appearance_loss
from attnkit_lmp.fbdm import FBDM
from attnkit_lmp.rmtm import RMTM

HEAD_DIM, TEXT, SUBJECT = 64, 226, [3, 4]
VARIANTS = ("sdpa", "probe", "probe-chunked", "lmp", "lmp+asm", "asm-chunked")


class Foreground:
    def __init__(self, indices):
        self.indices = indices

    def foreground_indices(self):
        return self.indices


def make_inputs(tokens: int, heads: int):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, heads, tokens, HEAD_DIM, generator=generator) for _ in range(3))
    video = tokens - TEXT
    layout = TokenLayout(text=slice(0, TEXT), video=slice(TEXT, tokens), grid=(1, 1, video))
    return q, k, v, layout


def make_call(q, k, v, layout, branches):
    call = AttentionCall(
        layer=0, name="blocks.0.attn1", step=1, timestep=979.0, branches=branches, layout=layout,
        hidden_states=torch.empty(q.shape[0], q.shape[2], 1), project=lambda states: (q, k, v),
    )
    call.q, call.k, call.v = q, k, v
    return call


def probe(call):
    call.attention_probs(SUBJECT, "video", branch=call_branch(call))
    call.attention_probs("video", SUBJECT, branch=call_branch(call))


def call_branch(call):
    return "reference" if call.has_branch("reference") else None


def run(variant: str, q, k, v, layout):
    pair = (q[:2], k[:2], v[:2])
    if variant == "sdpa":
        sdpa(*pair)
    elif variant == "probe":
        call = make_call(*pair, layout, {"uncond": [0], "cond": [1]})
        call.output, call._logsumexp = sdpa_with_logsumexp(*pair)
        probe(call)
    elif variant == "probe-chunked":
        call = make_call(*pair, layout, {"uncond": [0], "cond": [1]})
        call.output = sdpa(*pair)
        probe(call)  # no kernel log-sum-exp on the call: the blocked path computes it
    elif variant in ("lmp", "lmp+asm"):
        call = make_call(q, k, v, layout, {"uncond": [0], "cond": [1], "reference": [2]})
        video = q.shape[2] - TEXT
        extra = RMTM(fbdm=Foreground(torch.arange(0, video, 3))).attnkit_extra_kv(call)
        call.output, call._logsumexp = attention_with_extras(q, k, v, [extra], want_logsumexp=True)[:2]
        fbdm = FBDM(SUBJECT)
        fbdm.attnkit_attention_output(call)
        if variant == "lmp+asm":
            asm_step(q, k, layout, fused=True)
    elif variant == "asm-chunked":
        asm_step(q, k, layout, fused=False)


def asm_step(q, k, layout, fused: bool):
    """ASM's loss and gradient for one target row (q/k stand in for the projections' outputs)."""
    video, text = layout.video, layout.text
    target_q = q[1:2, :, video].detach().requires_grad_(True)
    target_k = k[1:2, :, video].detach().requires_grad_(True)
    with torch.enable_grad():
        loss = appearance_loss(target_q, target_k, q[2:3, :, text], k[2:3, :, text], SUBJECT, fused=fused)
        torch.autograd.grad(loss, (target_q, target_k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=17_776, help="text + video tokens (CogVideoX-5B: 17,776)")
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="then one tracked pass per variant (slow)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: steady on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    q, k, v, layout = make_inputs(args.tokens, args.heads)
    print(
        f"attention call: {args.tokens} tokens ({TEXT} text), {args.heads} head(s) x {HEAD_DIM}, fp32 CPU, "
        f"{torch.get_num_threads()} torch thread(s); ratios to plain SDPA on the CFG pair"
    )
    wall = {variant: [] for variant in VARIANTS}
    cpu = {variant: [] for variant in VARIANTS}
    for repeat in range(args.repeats):
        order = VARIANTS[repeat % len(VARIANTS):] + VARIANTS[: repeat % len(VARIANTS)]
        for variant in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            run(variant, q, k, v, layout)
            wall[variant].append(time.perf_counter() - start)
            cpu[variant].append(time.process_time() - start_cpu)
    base_wall, base_cpu = statistics.median(wall["sdpa"]), statistics.median(cpu["sdpa"])
    for variant in VARIANTS:
        cpu_median, wall_median = statistics.median(cpu[variant]), statistics.median(wall[variant])
        print(
            f"{variant:>13}: CPU {cpu_median:6.2f} s = {cpu_median / base_cpu:.2f}x, "
            f"wall {wall_median / base_wall:.2f}x",
            flush=True,
        )
    if not args.memory:
        return
    map_bytes = 2 * args.heads * args.tokens**2 * 4
    for variant in VARIANTS:
        with track_allocations() as allocations:
            run(variant, q, k, v, layout)
        print(
            f"{variant:>13}: largest allocation {100 * allocations.largest / map_bytes:.2f} %, peak "
            f"{100 * allocations.peak / map_bytes:.2f} % of the CFG pair's N x N map ({map_bytes / 2**20:.0f} MiB)",
            flush=True,
        )

if __name__ == "__main__":
    main()
