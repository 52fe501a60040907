"""torch.autograd.gradcheck in fp64 on the op (C++ autograd kernel -> gka::chunk_bwd), including the initial
state, gradients arriving at the final states, varlen, and the fused_recurrent entry point.

The op's backward is the implicit-function gradient of the ridge solve (spec §C.3); it equals the
finite-difference gradient of the forward when the solve is exact, so these checks use solver="exact" or a
Chebyshev run converged to machine precision (ridge_ratio 0.1: kappa = 11, 80 steps)."""
import pytest
import torch

import gka
from conftest import make_inputs, to64

SOLVES = [dict(solver="exact"), dict(solver="chebyshev", ridge_ratio=0.1, num_iter=80)]


def run(fn, inp, names, cu=None, **kw):
    def f(*tensors):
        d = dict(zip(names, tensors))
        state = None
        if "h0_kk" in d:
            a = d.pop("h0_kk")
            # H_0 is symmetric; the backends may read one triangle, so differentiate a symmetric parametrisation.
            state = (0.5 * (a + a.transpose(-1, -2)), d.pop("h0_kv"))
        o, (kk, kv) = fn(**d, initial_state=state, output_final_state=True, cu_seqlens=cu, **kw)
        return o, kk, kv

    tensors = [inp[n] for n in names]
    return f, tensors


def prepared(device, B=1, T=6, H=1, K=4, V=3, N=None, gates=True):
    if device == "cuda":
        pytest.skip("fp64 gradcheck needs fp64 compute: the CUDA kernels compute in fp32 (C++ test_cuda compares "
                    "their gradients with the fp64 oracle)")
    inp = to64(make_inputs(B, T, H, K, V, device=device, gates=gates, state=True, N=N))
    h0_kk, h0_kv = inp.pop("initial_state")
    inp["h0_kk"], inp["h0_kv"] = h0_kk, h0_kv
    for t in inp.values():
        t.requires_grad_(True)
    return inp


@pytest.mark.parametrize("solve", SOLVES, ids=["exact", "chebyshev"])
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_gradcheck_chunk(device, solve, backend):
    if device == "cuda" and backend == "reference":
        pytest.skip("the reference backend runs on the cpu")
    inp = prepared(device, B=2, T=7)
    names = ["q", "k", "v", "g", "gk", "alpha", "h0_kk", "h0_kv"]
    f, tensors = run(gka.chunk_gka, inp, names, backend=backend, chunk_size=8, **solve)
    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_varlen(device):
    inp = prepared(device, B=1, T=9, N=3)
    cu = torch.tensor([0, 2, 2, 9], device=device)
    names = ["q", "k", "v", "g", "gk", "alpha", "h0_kk", "h0_kv"]
    f, tensors = run(gka.chunk_gka, inp, names, cu=cu, chunk_size=8, solver="exact")
    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradcheck_recurrent_no_gates(device):
    inp = prepared(device, B=2, T=3, gates=False)
    f, tensors = run(gka.fused_recurrent_gka, inp, ["q", "k", "v", "h0_kk", "h0_kv"], solver="exact")
    assert torch.autograd.gradcheck(f, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_grad_only_through_final_state(device):
    """o unused: the op gets a zero d_o and the final-state gradients alone."""
    inp = prepared(device, B=1, T=5)
    names = ["q", "k", "v", "g", "gk", "alpha", "h0_kk", "h0_kv"]
    f, tensors = run(gka.chunk_gka, inp, names, solver="exact")
    g = lambda *t: f(*t)[1:]  # noqa: E731
    assert torch.autograd.gradcheck(g, tensors, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_op_grads_match_naive_exact():
    """fp32 op gradients vs autograd through the fp64 naive reference with the exact solve (spec §C.3)."""
    inp = make_inputs(2, 30, 2, 16, 8, state=True)
    names = ["q", "k", "v", "g", "gk", "alpha"]
    w = torch.randn(2, 30, 2, 8, dtype=torch.float64)
    grads = []
    for fn, d in ((gka.chunk_gka, inp), (gka.naive_recurrent_gka, to64(inp))):
        leaves = {n: d[n].detach().clone().requires_grad_(True) for n in names}
        o, _ = fn(**leaves, initial_state=d["initial_state"], solver="exact")
        (o.double() * w).sum().backward()
        grads.append([leaves[n].grad.double() for n in names])
    for n, a, b in zip(names, *grads):
        err = ((a - b).norm() / b.norm()).item()
        assert err < 2e-3, f"d{n}: rel. error {err:.2e}"
