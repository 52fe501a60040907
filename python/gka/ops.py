"""Python front ends of the gka ops (torch.ops.gka.*): argument plumbing only, the math lives in the C++ core.

Shapes (fla layout, time before heads):
    q, k   [B, T, H, K]      v [B, T, H, V]
    g, gk  [B, T, H]         natural-log decays (<= 0) of the value state S and of the Gram state H;
                             note: ``gk`` is the *scalar* gate of the key covariance, not fla's per-channel gate
    alpha  [B, T, H]         mixing gate in (0, 1) (None = 1)
    states (h_kk [N, H, K, K], h_kv [N, H, K, V]) fp32 (fp64 when q is fp64); N = B, or the number of
    sequences of cu_seqlens (then B == 1). h_kk is a Gram matrix, symmetric like every state the ops return:
    the CUDA decode may read only its upper triangle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

State = Tuple[torch.Tensor, torch.Tensor]

_BACKENDS = ("auto", "reference", "cpu", "cuda")


def _split_state(initial_state: Optional[State]):
    if initial_state is None:
        return None, None
    if not (isinstance(initial_state, (tuple, list)) and len(initial_state) == 2):
        raise ValueError("gka: initial_state must be a tuple (h_kk [N, H, K, K], h_kv [N, H, K, V]) or None")
    return initial_state[0], initial_state[1]


def _host_index(index: Optional[torch.Tensor], host_copy: Optional[torch.Tensor] = None):
    """The core reads sequence offsets and pool slots on the host (it plans the launch there): a device tensor
    is replaced by its host copy if the caller gave one (fla's ``cu_seqlens_cpu``); else the op copies it."""
    if index is None or index.device.type == "cpu" or host_copy is None:
        return index  # the op copies a device index to the host itself
    return host_copy


def _forward(op, q, k, v, g, gk, alpha, scale, ridge_ratio, num_iter, initial_state, output_final_state,
             cu_seqlens, solver, lambda_grad, chunk_size, backend, precision, cu_seqlens_cpu=None):
    h_kk, h_kv = _split_state(initial_state)
    cu_seqlens = _host_index(cu_seqlens, cu_seqlens_cpu)
    o, final_kk, final_kv, _x, _fro = op(
        q, k, v, alpha, g, gk, h_kk, h_kv, cu_seqlens, None if scale is None else float(scale),
        float(ridge_ratio), int(num_iter), int(chunk_size), solver, bool(lambda_grad), backend, precision)
    return o, ((final_kk, final_kv) if output_final_state else None)


def chunk_gka(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: Optional[torch.Tensor] = None,
    gk: Optional[torch.Tensor] = None,
    alpha: Optional[torch.Tensor] = None,
    scale: Optional[float] = None,
    ridge_ratio: float = 0.02,
    num_iter: int = 30,
    initial_state: Optional[State] = None,
    output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None,
    cu_seqlens_cpu: Optional[torch.Tensor] = None,
    *,
    solver: str = "chebyshev",
    lambda_grad: bool = True,
    chunk_size: int = 64,
    backend: str = "auto",
    precision: str = "fp32",
) -> Tuple[torch.Tensor, Optional[State]]:
    """Chunked GKA forward (training and prefill), differentiable in every tensor input and the initial state.

    Per sequence and head: ``H_t = e^{gk_t} H_{t-1} + k_t k_t^T``, ``S_t = e^{g_t} S_{t-1} + k_t v_t^T``,
    ``x_t ~ (H_t + r ||H_t||_F I)^{-1} q_t`` (``num_iter`` Chebyshev steps), ``q~_t = q_t + alpha_t (x_t - q_t)``,
    ``o_t = scale * S_t^T q~_t``.

    Args:
        q, k, v: ``[B, T, H, K]``, ``[B, T, H, K]``, ``[B, T, H, V]``, one floating dtype, unit last stride.
        g, gk, alpha: ``[B, T, H]`` or None (see the module docstring).
        scale: readout scale, default ``K ** -0.5``.
        ridge_ratio: ``r`` of the adaptive ridge ``lambda_t = r ||H_t||_F`` (the authors' ``ridge_strength``).
        num_iter: Chebyshev mat-vecs (0 = no solve, plain gated linear attention).
        initial_state: ``(h_kk [N, H, K, K], h_kv [N, H, K, V])`` or None (zero).
        output_final_state: return ``(h_kk, h_kv)`` after the last token of every sequence.
        cu_seqlens: ``[N + 1]`` int32/int64 offsets of packed sequences (``B == 1``), on any device (the
            offsets are read on the host: a device tensor costs one copy unless ``cu_seqlens_cpu`` is given).
        cu_seqlens_cpu: a host copy of ``cu_seqlens`` (as in fla), used instead of copying it.
        solver: "chebyshev" (the paper's), "exact" (Cholesky) or "cg" (forward only).
        lambda_grad: differentiate ``lambda_t`` through ``||H_t||_F`` (the authors' ``bp_lambda``).
        chunk_size: chunk length of the chunked forward and backward.
        backend: "auto" (cuda for device tensors, the fast CPU backend otherwise), "cpu", "cuda", or
            "reference" (the fp64 token-by-token oracle of the C++ core, for testing).
        precision: "fp32" (every product at fp32 accuracy) or "mixed" (cuda only: one-pass products on most
            solver iterations, forward and backward — scaled f16 on Hopper, tf32 elsewhere — and accurate ones where
            they damp the others' rounding; faster, o within ~2e-3 and x within ~3e-4 of fp64 on layer-like bf16
            inputs; the other backends compute as with "fp32").

    Returns:
        ``(o [B, T, H, V] in v's dtype, final_state or None)``.

    Example (two packed sequences of lengths 3 and 5)::

        q = torch.nn.functional.normalize(torch.randn(1, 8, 2, 16), dim=-1)
        k = torch.nn.functional.normalize(torch.randn(1, 8, 2, 16), dim=-1)
        v = torch.randn(1, 8, 2, 16)
        g = torch.nn.functional.logsigmoid(torch.randn(1, 8, 2))
        o, (h_kk, h_kv) = gka.chunk_gka(q, k, v, g, g, output_final_state=True,
                                        cu_seqlens=torch.tensor([0, 3, 8]))
    """
    return _forward(torch.ops.gka.chunk_fwd, q, k, v, g, gk, alpha, scale, ridge_ratio, num_iter, initial_state,
                    output_final_state, cu_seqlens, solver, lambda_grad, chunk_size, backend, precision,
                    cu_seqlens_cpu)


def fused_recurrent_gka(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: Optional[torch.Tensor] = None,
    gk: Optional[torch.Tensor] = None,
    alpha: Optional[torch.Tensor] = None,
    scale: Optional[float] = None,
    ridge_ratio: float = 0.02,
    num_iter: int = 30,
    initial_state: Optional[State] = None,
    output_final_state: bool = False,
    cu_seqlens: Optional[torch.Tensor] = None,
    *,
    solver: str = "chebyshev",
    lambda_grad: bool = True,
    chunk_size: int = 64,
    backend: str = "auto",
    precision: str = "fp32",
) -> Tuple[torch.Tensor, Optional[State]]:
    """Token-by-token GKA forward, for decoding ``T >= 1`` tokens with states. Same arguments and results as
    :func:`chunk_gka`; differentiable through the same backward (``chunk_size`` is the backward's chunk)."""
    return _forward(torch.ops.gka.recurrent_fwd, q, k, v, g, gk, alpha, scale, ridge_ratio, num_iter,
                    initial_state, output_final_state, cu_seqlens, solver, lambda_grad, chunk_size, backend,
                    precision)


@dataclass
class StatePool:
    """Per-request GKA states for serving: ``kk [P, H, K, K]``, ``kv [P, H, K, V]`` (fp32), updated in place."""

    kk: torch.Tensor
    kv: torch.Tensor

    @classmethod
    def empty(cls, num_slots: int, num_heads: int, head_k_dim: int, head_v_dim: int, *,
              device=None, dtype=torch.float32) -> "StatePool":
        kk = torch.zeros(num_slots, num_heads, head_k_dim, head_k_dim, device=device, dtype=dtype)
        kv = torch.zeros(num_slots, num_heads, head_k_dim, head_v_dim, device=device, dtype=dtype)
        return cls(kk, kv)

    def reset_(self, slots: torch.Tensor) -> None:
        """Zero the states of the given slots (a new request starts there)."""
        self.kk[slots] = 0
        self.kv[slots] = 0


def decode_pool_step_(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    pool: StatePool,
    slots: torch.Tensor,
    g: Optional[torch.Tensor] = None,
    gk: Optional[torch.Tensor] = None,
    alpha: Optional[torch.Tensor] = None,
    scale: Optional[float] = None,
    ridge_ratio: float = 0.02,
    num_iter: int = 30,
    *,
    solver: str = "chebyshev",
    backend: str = "auto",
) -> torch.Tensor:
    """Serving step: row ``b`` of ``q, k, v [B, T, H, *]`` (``T >= 1`` new tokens) continues the sequence whose
    states live in ``pool`` slot ``slots[b]`` (int32/int64, ``[B]``; a negative slot skips the row). The pool is
    updated in place; returns ``o [B, T, H, V]``. Not differentiable."""
    return torch.ops.gka.decode_pool_step_(
        q, k, v, alpha, g, gk, pool.kk, pool.kv, slots, None if scale is None else float(scale),
        float(ridge_ratio), int(num_iter), solver, backend)
