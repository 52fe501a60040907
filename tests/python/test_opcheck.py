"""torch.library.opcheck on every op: schema (incl. mutation annotations), autograd registration, fake/Meta
kernels and AOT dispatch (static and dynamic shapes)."""
import pytest
import torch

from conftest import head_dims, make_inputs


def fwd_args(inp, cu=None, state=None, backend="auto", solver="chebyshev"):
    kk, kv = state if state is not None else (None, None)
    return (inp["q"], inp["k"], inp["v"], inp.get("alpha"), inp.get("g"), inp.get("gk"), kk, kv, cu, None, 0.02,
            30, 16, solver, True, backend)


@pytest.mark.parametrize("op", ["chunk_fwd", "recurrent_fwd"])
@pytest.mark.parametrize("variant", ["plain", "gates_h0", "varlen"])
def test_opcheck_forward(device, op, variant):
    gates = variant != "plain"
    B, N = (1, 3) if variant == "varlen" else (2, None)
    inp = make_inputs(B, 21, 2, 8, 4, device=device, gates=gates, state=variant != "plain", N=N)
    for n in ("q", "k", "v", "g", "alpha"):
        if n in inp:
            inp[n].requires_grad_(True)
    cu = torch.tensor([0, 5, 5, 21], device=device) if variant == "varlen" else None
    state = inp.get("initial_state")
    if state is not None:
        state = tuple(s.requires_grad_(True) for s in state)
    torch.library.opcheck(getattr(torch.ops.gka, op).default, fwd_args(inp, cu, state))


def test_opcheck_backward(device):
    inp = make_inputs(2, 19, 2, 8, 4, device=device, state=True)
    args = fwd_args(inp, state=inp["initial_state"])
    o, kk, kv, x, fro = torch.ops.gka.chunk_fwd(*args)
    d_o = torch.randn_like(o)
    torch.library.opcheck(torch.ops.gka.chunk_bwd.default, (d_o, torch.randn_like(kk), None, x, fro, *args))


def test_opcheck_pool_step(device):
    K, V = head_dims(device, 8, 4)
    inp = make_inputs(3, 2, 2, K, V, device=device)
    pool_kk = torch.zeros(4, 2, K, K, device=device)
    pool_kv = torch.zeros(4, 2, K, V, device=device)
    slots = torch.tensor([2, 0, -1], device=device)
    torch.library.opcheck(torch.ops.gka.decode_pool_step_.default,
                          (inp["q"], inp["k"], inp["v"], inp["alpha"], inp["g"], inp["gk"], pool_kk, pool_kv, slots,
                           None, 0.02, 30, "chebyshev", "auto"))
