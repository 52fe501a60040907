"""Shared helpers: devices, inputs in the spec's regime, and the oracle comparison rule (STYLE §3.3)."""
import functools

import pytest
import torch
import torch.nn.functional as F

import gka


@functools.lru_cache(maxsize=None)
def cuda_skip_reason():
    """None when CUDA cases can run; else why not (no GPU, or the CUDA backend is not built yet)."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    x = torch.zeros(1, 1, 1, 64, device="cuda")  # a head dim the CUDA kernels support
    try:
        gka.chunk_gka(x, x, x)
    except ValueError as e:
        if "not available in this build" in str(e):
            return "the gka CUDA backend is not built yet"
        raise
    return None


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda" and cuda_skip_reason() is not None:
        pytest.skip(cuda_skip_reason())
    return request.param


def head_dims(device, K, V):
    """The CUDA kernels exist for K = V in {64, 128} (docs/cuda_backend.md): cuda cases run at those sizes."""
    if device == "cuda":
        K = V = 64 if max(K, V) <= 64 else 128
    return K, V


def make_inputs(B, T, H, K, V, *, dtype=torch.float32, device="cpu", gates=True, state=False, N=None, seed=0):
    """q, k unit rows (k scaled by a beta in (0, 1) like the layer), v normal, log-sigmoid decays, sigmoid alpha."""
    K, V = head_dims(device, K, V)
    gen = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    q = F.normalize(r(B, T, H, K), dim=-1)
    beta = torch.sigmoid(r(B, T, H, 1))
    k = F.normalize(r(B, T, H, K), dim=-1) * beta
    v = r(B, T, H, V) * beta
    out = dict(q=q, k=k, v=v)
    if gates:
        out["g"] = F.logsigmoid(r(B, T, H) + 3.0)
        out["gk"] = F.logsigmoid(r(B, T, H) + 3.0)
        out["alpha"] = torch.sigmoid(r(B, T, H))
    if state:
        n = B if N is None else N
        a = r(n, H, K, K) * 0.3
        out["initial_state"] = (a @ a.transpose(-1, -2), r(n, H, K, V) * 0.3)
    sdt = torch.float64 if dtype == torch.float64 else torch.float32

    def cast(name, t):
        return t.to(device=device, dtype=dtype if name in ("q", "k", "v") else sdt)

    res = {}
    for name, t in out.items():
        res[name] = tuple(cast("state", s) for s in t) if name == "initial_state" else cast(name, t)
    return res


def to64(d):
    return {n: (tuple(s.double() for s in t) if isinstance(t, tuple) else t.double()) for n, t in d.items()}


def rel_rms(a, b):
    a, b = a.double(), b.double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-300)).item()


# The CUDA kernels multiply with 3xTF32: each fp32 operand is split into a tf32 high part and a tf32
# remainder and the remainder x remainder term is dropped, so a product carries up to ~2^-21 relative
# rounding instead of fp32's 2^-24: an 8x larger unit roundoff than the naive fp32 floor is computed with.
UNIT_ROUNDOFF_RATIO = {"cpu": 1.0, "cuda": 8.0}


def assert_close_to_oracle(out, oracle, floor_out, name="", factor=3.0, atol_rel=1e-6):
    """FA's rule: the error of `out` vs the fp64 oracle is at most `factor` times the error of the naive
    PyTorch reference run in the same precision (`floor_out`), plus a tiny slack for the oracle's own rounding;
    on cuda the factor is scaled by the kernels' larger unit roundoff (UNIT_ROUNDOFF_RATIO)."""
    factor *= UNIT_ROUNDOFF_RATIO[out.device.type]
    assert torch.isfinite(out).all(), f"{name}: non-finite values"
    err, floor = rel_rms(out, oracle), rel_rms(floor_out, oracle)
    assert err <= factor * floor + atol_rel, f"{name}: rel. RMS error {err:.3e} > {factor} x floor {floor:.3e}"
    scale = oracle.double().abs().max().item()
    merr = (out.double() - oracle.double()).abs().max().item()
    mfloor = (floor_out.double() - oracle.double()).abs().max().item()
    # The max-abs error is one element's: its rounding depends on the summation order (the CUDA kernels reduce
    # in trees, the naive reference sequentially), so it gets twice the RMS factor (measured: 4.3x on an H100).
    mfactor = 2 * factor
    assert merr <= mfactor * mfloor + atol_rel * scale, f"{name}: max abs error {merr:.3e} > {mfactor} x {mfloor:.3e}"
