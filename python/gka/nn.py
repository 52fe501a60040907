"""The GatedKalmaNet layer (spec §E) on top of the gka ops, with a prefill -> decode cache and varlen input.

    layer = gka.nn.GatedKalmaNet(gka.nn.GatedKalmaNetConfig(hidden_size=256, num_heads=4, head_dim=64))
    y, _ = layer(x)                                   # x [B, T, hidden_size]
    y, cache = layer(prompt, use_cache=True)          # prefill
    y, cache = layer(next_token, cache=cache)         # decode, T >= 1 new tokens
    y, _ = layer(packed, cu_seqlens=offsets)          # packed sequences, B == 1
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .ops import chunk_gka, fused_recurrent_gka


@dataclass
class GatedKalmaNetConfig:
    """Layer configuration; knob names and defaults follow the authors' config (spec §A.5)."""

    hidden_size: int = 2048
    num_heads: int = 16                  # query heads Hq
    num_kv_heads: Optional[int] = None   # key/value heads Hk = Hv (GQA); None = num_heads
    head_dim: int = 128
    num_iter: int = 30
    ridge_strength: float = 0.02
    chunk_size: int = 64
    conv_size: int = 4
    norm_eps: float = 1e-6
    use_alpha_connection: bool = True
    use_v_conv: bool = True
    use_forgetting_gate: bool = True
    use_forgetting_gate_kk: bool = True
    use_beta_gate: bool = True
    use_gate: bool = True
    gla_rescale: bool = True
    bp_lambda: bool = True
    solver_type: str = "chebyshev"
    precision: str = "fp32"  # "mixed": faster CUDA solve (see gka.chunk_gka)


@dataclass
class GatedKalmaNetCache:
    """Decode cache of one layer for N sequences: the last ``conv_size - 1`` pre-activation inputs of each
    short convolution (``[N, conv_size - 1, channels]``, None where there is no conv) and the two GKA states
    (``h_kk [N, H, D, D]``, ``h_kv [N, H, D, D]``, fp32)."""

    conv_q: torch.Tensor
    conv_k: torch.Tensor
    conv_v: Optional[torch.Tensor]
    h_kk: torch.Tensor
    h_kv: torch.Tensor


def _positions(cu_seqlens: torch.Tensor, T: int) -> torch.Tensor:
    """Position of every packed token inside its own sequence."""
    t = torch.arange(T, device=cu_seqlens.device)
    seq = torch.searchsorted(cu_seqlens[1:].contiguous(), t, right=True)
    return (t - cu_seqlens[seq]).to(torch.long)


def _causal_conv(x: torch.Tensor, weight: torch.Tensor, prefix: Optional[torch.Tensor],
                 pos: Optional[torch.Tensor]) -> torch.Tensor:
    """Depthwise causal conv: y_t = sum_s weight[:, W-1-s] * x_{t-s}, with ``prefix`` [B, W-1, C] as the inputs
    before t = 0 (zeros if None) and, for packed sequences, no reach across a sequence start (``pos``)."""
    W = weight.shape[-1]
    B, T, C = x.shape
    if prefix is None:
        prefix = x.new_zeros(B, W - 1, C)
    xe = torch.cat([prefix.to(x.dtype), x], 1)
    w = weight.reshape(C, W).to(x.dtype)
    y = x * w[:, W - 1]
    for s in range(1, W):
        xs = xe[:, W - 1 - s: W - 1 - s + T]
        if pos is not None:
            xs = xs * (pos >= s).to(x.dtype)[None, :, None]
        y = y + xs * w[:, W - 1 - s]
    return y


def _conv_tail(x: torch.Tensor, prefix: Optional[torch.Tensor], W: int,
               cu_seqlens: Optional[torch.Tensor]) -> torch.Tensor:
    """The last W-1 inputs of every sequence (zeros before its start): the conv window for the next token."""
    B, T, C = x.shape
    if cu_seqlens is None:
        if prefix is None:
            prefix = x.new_zeros(B, W - 1, C)
        return torch.cat([prefix.to(x.dtype), x], 1)[:, -(W - 1):]
    ends = cu_seqlens[1:].to(torch.long)
    starts = cu_seqlens[:-1].to(torch.long)
    idx = ends[:, None] - (W - 1) + torch.arange(W - 1, device=x.device)[None, :]  # [N, W-1]
    valid = (idx >= starts[:, None]).to(x.dtype)
    return x[0][idx.clamp(min=0)] * valid[..., None]


class GatedKalmaNet(nn.Module):
    """Gated KalmaNet sequence mixer (spec §E.1): projections, causal depthwise conv + SiLU, GQA expansion,
    L2-normalised q/k, beta write gate, alpha connection, log-decay g = -exp(A_log) softplus(a(x) + dt_bias)
    with gk = g, the GKA op, gated RMSNorm and the output projection."""

    def __init__(self, config: GatedKalmaNetConfig, layer_idx: Optional[int] = None):
        super().__init__()
        c = config
        if c.solver_type not in ("chebyshev", "exact"):
            raise ValueError(f"GatedKalmaNet: solver_type must be 'chebyshev' or 'exact', got {c.solver_type!r}")
        if c.precision not in ("fp32", "mixed"):
            raise ValueError(f"GatedKalmaNet: precision must be 'fp32' or 'mixed', got {c.precision!r}")
        self.config = c
        self.layer_idx = layer_idx
        hq, hk = c.num_heads, c.num_kv_heads or c.num_heads
        self.num_heads = max(hq, hk)
        if self.num_heads % hq or self.num_heads % hk:
            raise ValueError(f"GatedKalmaNet: head counts {hq} (q) and {hk} (k/v) must divide {self.num_heads}")
        self.num_q_heads, self.num_kv_heads = hq, hk
        d, D, H = c.hidden_size, c.head_dim, self.num_heads
        self.q_proj = nn.Linear(d, hq * D, bias=False)
        self.k_proj = nn.Linear(d, hk * D, bias=False)
        self.v_proj = nn.Linear(d, hk * D, bias=False)
        self.conv_q = nn.Conv1d(hq * D, hq * D, c.conv_size, groups=hq * D, bias=False)
        self.conv_k = nn.Conv1d(hk * D, hk * D, c.conv_size, groups=hk * D, bias=False)
        self.conv_v = nn.Conv1d(hk * D, hk * D, c.conv_size, groups=hk * D, bias=False) if c.use_v_conv else None
        self.a_proj = nn.Linear(d, H, bias=False)
        self.b_proj = nn.Linear(d, H, bias=True) if c.use_beta_gate else None
        self.alpha_proj = nn.Linear(d, H, bias=True) if c.use_alpha_connection else None
        self.g_proj = nn.Linear(d, H * D, bias=False) if c.use_gate else None
        self.o_norm_weight = nn.Parameter(torch.ones(D))
        self.o_proj = nn.Linear(H * D, d, bias=False)
        # Spec §E.2: A ~ U(0, 16), dt = exp(U(ln 1e-3, ln 1e-1)) clamped >= 1e-4, dt_bias = softplus^-1(dt).
        self.A_log = nn.Parameter(torch.empty(H).uniform_(0, 16).log())
        dt = torch.exp(torch.rand(H) * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log._no_weight_decay = True
        self.dt_bias._no_weight_decay = True

    def forward(
        self,
        x: torch.Tensor,
        cache: Optional[GatedKalmaNetCache] = None,
        use_cache: bool = False,
        cu_seqlens: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[GatedKalmaNetCache]]:
        """x [B, T, hidden_size] -> (y [B, T, hidden_size], the updated cache if ``use_cache`` or a cache was
        given, else None). ``cu_seqlens`` packs sequences into B == 1 (one cache entry per sequence)."""
        c = self.config
        B, T, _ = x.shape
        D, H, W = c.head_dim, self.num_heads, c.conv_size
        if cu_seqlens is not None and (B != 1 or cache is not None):
            raise ValueError("GatedKalmaNet: cu_seqlens needs B == 1 and no incoming cache (prefill of packed "
                             "sequences); decode them afterwards with one row per sequence")
        pos = _positions(cu_seqlens, T) if cu_seqlens is not None else None

        def conv(proj, layer, prefix):
            u = proj(x)
            if layer is None:
                return u, u
            return u, F.silu(_causal_conv(u, layer.weight, prefix, pos))

        uq, q = conv(self.q_proj, self.conv_q, cache.conv_q if cache is not None else None)
        uk, k = conv(self.k_proj, self.conv_k, cache.conv_k if cache is not None else None)
        uv, v = conv(self.v_proj, self.conv_v, cache.conv_v if cache is not None else None)
        q = q.reshape(B, T, self.num_q_heads, D).repeat_interleave(H // self.num_q_heads, dim=2)
        k = k.reshape(B, T, self.num_kv_heads, D).repeat_interleave(H // self.num_kv_heads, dim=2)
        v = v.reshape(B, T, self.num_kv_heads, D).repeat_interleave(H // self.num_kv_heads, dim=2)
        q = q / (q.norm(dim=-1, keepdim=True) + 1e-6)
        k = k / (k.norm(dim=-1, keepdim=True) + 1e-6)
        if self.b_proj is not None:
            beta = torch.sigmoid(self.b_proj(x)).unsqueeze(-1) + 1e-6
            k, v = k * beta, v * beta
        alpha = torch.sigmoid(self.alpha_proj(x)) if self.alpha_proj is not None else None
        g = gk = None
        if c.use_forgetting_gate:
            g = -torch.exp(self.A_log.float()) * F.softplus(self.a_proj(x).float() + self.dt_bias.float())
            gk = g if c.use_forgetting_gate_kk else None
        v = v.to(q.dtype)
        k = k.to(q.dtype)
        state = (cache.h_kk, cache.h_kv) if cache is not None else None
        want_state = use_cache or cache is not None
        op = fused_recurrent_gka if T == 1 else chunk_gka
        o, final = op(q.contiguous(), k.contiguous(), v.contiguous(), g, gk, alpha,
                      scale=None if c.gla_rescale else 1.0, ridge_ratio=c.ridge_strength, num_iter=c.num_iter,
                      initial_state=state, output_final_state=want_state, cu_seqlens=cu_seqlens,
                      solver=c.solver_type, lambda_grad=c.bp_lambda, chunk_size=c.chunk_size,
                      precision=c.precision)
        # Gated RMSNorm per head (fp32 inside), weight shared by all heads.
        of = o.float()
        of = of * torch.rsqrt(of.pow(2).mean(-1, keepdim=True) + c.norm_eps) * self.o_norm_weight.float()
        if self.g_proj is not None:
            of = of * F.silu(self.g_proj(x).float().reshape(B, T, H, D))
        y = self.o_proj(of.to(x.dtype).reshape(B, T, H * D))
        new_cache = None
        if want_state:
            def tail(u, layer, prefix):
                return None if layer is None else _conv_tail(u, prefix, W, cu_seqlens)

            new_cache = GatedKalmaNetCache(
                conv_q=tail(uq, self.conv_q, cache.conv_q if cache is not None else None),
                conv_k=tail(uk, self.conv_k, cache.conv_k if cache is not None else None),
                conv_v=tail(uv, self.conv_v, cache.conv_v if cache is not None else None),
                h_kk=final[0], h_kv=final[1])
        return y, new_cache
