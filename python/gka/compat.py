"""Drop-in names of the authors' training op (hybrid-model-factory ``gka_chebyshev_gla``), on top of the gka ops."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .ops import chunk_gka


def gka_chebyshev_gla(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    alpha: Optional[torch.Tensor],
    g: Optional[torch.Tensor],
    gk: Optional[torch.Tensor],
    gla_scale: float,
    ridge_strength: float = 0.02,
    solver_type: str = "chebyshev",
    num_iter: int = 30,
    bp_lambda: bool = True,
    chunk_size: int = 64,
) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
    """``(o, kk_final, kv_final)`` with the authors' argument names; ``kk_final`` is None when ``num_iter == 0``
    (the authors' op does not form the Gram state then; spec §A.2)."""
    o, (kk, kv) = chunk_gka(q, k, v, g, gk, alpha, scale=gla_scale, ridge_ratio=ridge_strength, num_iter=num_iter,
                            output_final_state=True, solver=solver_type, lambda_grad=bp_lambda,
                            chunk_size=chunk_size)
    return o, (None if num_iter == 0 else kk), kv
