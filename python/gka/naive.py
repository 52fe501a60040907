"""Pure-PyTorch per-token GKA reference (spec §A.4, Chebyshev exactly as §A.3), differentiable by autograd.

Slow (a Python loop over tokens and Chebyshev steps); for tests, gradient checks and reading. Computes in
fp32, or fp64 for fp64 inputs; ``o`` is returned in v's dtype, the states in the compute dtype.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

State = Tuple[torch.Tensor, torch.Tensor]


def _chebyshev(Hm: torch.Tensor, lam: torch.Tensor, f: torch.Tensor, q: torch.Tensor, num_iter: int) -> torch.Tensor:
    """N Chebyshev steps for (Hm + lam I) x = q; Hm [..., K, K], lam and f [...], q [..., K]."""
    eta = (2.0 / (2.0 * lam + f)).unsqueeze(-1)
    c = (f / (2.0 * (2.0 * lam + f))) ** 2
    x_prev = torch.zeros_like(q)
    x = eta * q
    omega = torch.full_like(c, 2.0)
    for _ in range(num_iter):
        omega = 1.0 / (1.0 - c * omega)
        res = torch.einsum("...ij,...j->...i", Hm, x) + lam.unsqueeze(-1) * x - q
        w = omega.unsqueeze(-1)
        x, x_prev = w * (x - eta * res) + (1.0 - w) * x_prev, x
    return x


def _exact(Hm: torch.Tensor, lam: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(Hm.shape[-1], dtype=Hm.dtype, device=Hm.device)
    return torch.linalg.solve(Hm + lam[..., None, None] * eye, q.unsqueeze(-1)).squeeze(-1)


def _one_sequence(q, k, v, g, gk, alpha, scale, ridge_ratio, num_iter, h_kk, h_kv, solver, lambda_grad):
    """q, k [T, H, K]; v [T, H, V]; gates [T, H] or None; states [H, K, K], [H, K, V]."""
    outs = []
    for t in range(q.shape[0]):
        kt, vt, qt = k[t], v[t], q[t]
        if gk is not None:
            h_kk = torch.exp(gk[t])[:, None, None] * h_kk
        h_kk = h_kk + kt.unsqueeze(-1) * kt.unsqueeze(-2)
        if g is not None:
            h_kv = torch.exp(g[t])[:, None, None] * h_kv
        h_kv = h_kv + kt.unsqueeze(-1) * vt.unsqueeze(-2)
        if num_iter > 0:
            f = torch.linalg.matrix_norm(h_kk)
            if not lambda_grad:
                f = f.detach()
            lam = ridge_ratio * f
            if solver == "chebyshev":
                x = _chebyshev(h_kk, lam, f, qt, num_iter)
            elif solver == "exact":
                x = _exact(h_kk, lam, qt)
            else:
                raise ValueError(f"naive_recurrent_gka: solver must be 'chebyshev' or 'exact', got {solver!r}")
            qm = qt + (x - qt) if alpha is None else qt + alpha[t].unsqueeze(-1) * (x - qt)
        else:
            qm = qt
        outs.append(scale * torch.einsum("hkv,hk->hv", h_kv, qm))
    return torch.stack(outs), h_kk, h_kv


def naive_recurrent_gka(
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
) -> Tuple[torch.Tensor, Optional[State]]:
    """Same arguments and results as :func:`gka.chunk_gka`. ``lambda_grad=False`` detaches ``||H_t||_F``.
    With ``lambda_grad=False`` the ridge still follows ``||H_t||_F`` in the forward, only its gradient is cut."""
    B, T, H, K = q.shape
    V = v.shape[-1]
    cdt = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = K ** -0.5 if scale is None else scale

    def c(t):
        return None if t is None else t.to(cdt)

    qc, kc, vc, gc, gkc, ac = c(q), c(k), c(v), c(g), c(gk), c(alpha)
    if cu_seqlens is not None:
        if B != 1:
            raise ValueError(f"naive_recurrent_gka: cu_seqlens requires B == 1, got B = {B}")
        bounds = [int(x) for x in cu_seqlens.tolist()]
        spans = [(0, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    else:
        spans = [(b, 0, T) for b in range(B)]
    N = len(spans)
    if initial_state is not None:
        h0_kk, h0_kv = initial_state[0].to(cdt), initial_state[1].to(cdt)
    else:
        h0_kk = q.new_zeros(N, H, K, K, dtype=cdt)
        h0_kv = q.new_zeros(N, H, K, V, dtype=cdt)
    o = q.new_zeros(B, T, H, V, dtype=cdt)
    finals_kk, finals_kv, pieces = [], [], []
    for n, (b, s, e) in enumerate(spans):
        if e == s:
            finals_kk.append(h0_kk[n])
            finals_kv.append(h0_kv[n])
            continue

        def sl(t):
            return None if t is None else t[b, s:e]

        on, hk, hv = _one_sequence(sl(qc), sl(kc), sl(vc), sl(gc), sl(gkc), sl(ac), scale, ridge_ratio, num_iter,
                                   h0_kk[n], h0_kv[n], solver, lambda_grad)
        pieces.append((b, s, e, on))
        finals_kk.append(hk)
        finals_kv.append(hv)
    # Assemble o without in-place writes into a tensor autograd tracks.
    rows = []
    for b in range(B):
        parts = [on for (bb, s, e, on) in sorted(pieces, key=lambda p: p[1]) if bb == b]
        rows.append(torch.cat(parts, 0) if parts else o[b])
    o = torch.stack(rows).to(v.dtype)
    final = (torch.stack(finals_kk), torch.stack(finals_kv)) if output_final_state else None
    return o, final
