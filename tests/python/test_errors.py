"""Bad inputs raise ValueError naming the argument (binding checks and the core's validation)."""
import pytest
import torch

import gka
from conftest import make_inputs


@pytest.fixture
def inp():
    return make_inputs(2, 8, 2, 8, 4)


def test_wrong_rank(inp):
    with pytest.raises(ValueError, match=r"q must have shape \[B, T, H, D\]"):
        gka.chunk_gka(inp["q"][0], inp["k"], inp["v"])


def test_mismatched_shape(inp):
    with pytest.raises(ValueError, match="k must have shape"):
        gka.chunk_gka(inp["q"], inp["k"][:, :5], inp["v"])
    with pytest.raises(ValueError, match="g must have shape"):
        gka.chunk_gka(inp["q"], inp["k"], inp["v"], inp["g"][:, :3])


def test_wrong_dtype(inp):
    with pytest.raises(ValueError, match="k .*dtype"):
        gka.chunk_gka(inp["q"], inp["k"].double(), inp["v"])
    with pytest.raises(ValueError, match="q .*floating dtype"):
        gka.chunk_gka(inp["q"].int(), inp["k"].int(), inp["v"].int())


def test_non_unit_last_stride(inp):
    q = inp["q"].transpose(-1, -2).contiguous().transpose(-1, -2)
    with pytest.raises(ValueError, match="q must have stride 1 in its last dimension"):
        gka.chunk_gka(q, inp["k"], inp["v"])


def test_device_mismatch(inp):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    with pytest.raises(ValueError, match="same device"):
        gka.chunk_gka(inp["q"].cuda(), inp["k"], inp["v"])


def test_wrong_state_shapes(inp):
    kk = torch.zeros(2, 2, 8, 8)
    kv = torch.zeros(2, 2, 8, 4)
    with pytest.raises(ValueError, match="initial_kk must have shape"):
        gka.chunk_gka(inp["q"], inp["k"], inp["v"], initial_state=(kk[:1], kv))
    with pytest.raises(ValueError, match="initial_kv must have shape"):
        gka.chunk_gka(inp["q"], inp["k"], inp["v"], initial_state=(kk, kv[..., :3]))
    with pytest.raises(ValueError, match="initial_kk must have dtype"):
        gka.chunk_gka(inp["q"], inp["k"], inp["v"], initial_state=(kk.double(), kv))
    with pytest.raises(ValueError, match="initial_state must be a tuple"):
        gka.chunk_gka(inp["q"], inp["k"], inp["v"], initial_state=kk)


def test_bad_cu_seqlens():
    d = make_inputs(1, 10, 2, 8, 4)
    args = (d["q"], d["k"], d["v"])
    with pytest.raises(ValueError, match=r"cu_seqlens\[-1\] must equal T"):
        gka.chunk_gka(*args, cu_seqlens=torch.tensor([0, 4, 9]))
    with pytest.raises(ValueError, match="non-decreasing"):
        gka.chunk_gka(*args, cu_seqlens=torch.tensor([0, 6, 4, 10]))
    with pytest.raises(ValueError, match="int32 or int64"):
        gka.chunk_gka(*args, cu_seqlens=torch.tensor([0.0, 10.0]))
    with pytest.raises(ValueError, match="requires B == 1"):
        e = make_inputs(2, 10, 2, 8, 4)
        gka.chunk_gka(e["q"], e["k"], e["v"], cu_seqlens=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="initial_kk must have shape"):
        gka.chunk_gka(*args, cu_seqlens=torch.tensor([0, 4, 10]),
                      initial_state=(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 4)))


def test_bad_options(inp):
    args = (inp["q"], inp["k"], inp["v"])
    with pytest.raises(ValueError, match="solver must be"):
        gka.chunk_gka(*args, solver="newton")
    with pytest.raises(ValueError, match="backend must be"):
        gka.chunk_gka(*args, backend="tpu")
    with pytest.raises(ValueError, match="precision must be"):
        gka.chunk_gka(*args, precision="bf16")
    with pytest.raises(ValueError, match="ridge_ratio must be"):
        gka.chunk_gka(*args, ridge_ratio=0.0)
    with pytest.raises(ValueError, match="chunk_size must"):
        gka.chunk_gka(*args, chunk_size=4)


def test_pool_errors():
    d = make_inputs(2, 1, 2, 8, 4)
    pool = gka.StatePool.empty(3, 2, 8, 4)
    with pytest.raises(ValueError, match="must not repeat a slot"):
        gka.decode_pool_step_(d["q"], d["k"], d["v"], pool, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="out of range"):
        gka.decode_pool_step_(d["q"], d["k"], d["v"], pool, torch.tensor([0, 3]))


def test_cuda_unsupported_head_dim_or_no_cuda_backend():
    """D = 4 on cuda: refused by the CUDA kernels (D in {64, 128}), or by a build without the CUDA backend."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = torch.zeros(1, 2, 1, 4, device="cuda")
    with pytest.raises(ValueError, match="the cuda backend"):
        gka.chunk_gka(x, x, x)


def test_no_double_backward(inp):
    q = inp["q"].clone().requires_grad_(True)
    o, _ = gka.chunk_gka(q, inp["k"], inp["v"])
    (gq,) = torch.autograd.grad(o.sum(), q, create_graph=True)
    with pytest.raises(RuntimeError):
        gq.sum().backward()


def test_layer_errors():
    m = gka.nn.GatedKalmaNet(gka.nn.GatedKalmaNetConfig(hidden_size=16, num_heads=2, head_dim=8))
    with pytest.raises(ValueError, match="cu_seqlens needs B == 1"):
        m(torch.randn(2, 4, 16), cu_seqlens=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="solver_type"):
        gka.nn.GatedKalmaNet(gka.nn.GatedKalmaNetConfig(hidden_size=16, num_heads=2, head_dim=8, solver_type="x"))
