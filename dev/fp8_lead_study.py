#!/usr/bin/env python3
# fp8 lead iterations for the mixed Chebyshev solve: a CPU emulation study (numpy, fp64 reference).
#
# What it does: builds layer-like inputs for single heads (D = 128, T = 1024 by default, chunks of C = 64; bf16-rounded
# q, k, v, strong layer-init gates as harness/layer_problem.cpp), and runs the chunked forward solve of spec §B.3
# (H_i x_i = e^{G_i} H̄ x_i + Σ_j M_ij (k_j·x_i) k_j) with N = 30 Chebyshev iterations of spec §A.3, emulating the
# precision of every product: the current Hopper `Precision::mixed` schedule (scaled f16 one-term products, f16 iterate
# and f16x2 update, one accurate iteration at m = 2N/5 = 12, then the offset form on z = x − x_m; fwd_wg.cuh) and
# variants whose one-term products take e4m3 or e5m2 operands (all of X, H̄, K, P = S ⊙ M in fp8, or only some
# products; power-of-two scales per tile / per row, fp64 accumulation, the iterate kept in f16 as now). It reports the
# relative L2 error of x and of the readout o = s S_tᵀ q̃_t (q̃ = q + α (x − q), computed in fp64 from each variant's
# x) against the exact ridge solution and against the fp64 Chebyshev iteration, per seed and pooled.
#
# Run: python3 dev/fp8_lead_study.py            (~1.5 min on one core, T = 1024; --help for options)
#      python3 dev/fp8_lead_study.py --quick    (fewer variants; --T 256, --seeds, --heads, --only NAME, --xmode dyn)
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # modest CPU use
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

R = 0.02
N_ITER = 30
C = 64

# (stored mantissa bits, minimum normal exponent, largest finite value); subnormals kept, saturating (satfinite).
FMT = {
    "f16": (10, -14, 65504.0),
    "bf16": (7, -126, 3.3895313892515355e38),
    "e4m3": (3, -6, 448.0),
    "e5m2": (2, -14, 57344.0),
}


def rnd(x, fmt):
    """Round to nearest even in `fmt` (gradual underflow, saturation at the largest finite value)."""
    mb, emin, mx = FMT[fmt]
    x = np.asarray(x, dtype=np.float64)
    _, e = np.frexp(x)  # |x| = m 2^e, m in [0.5, 1)
    quantum = np.ldexp(1.0, np.maximum(e - 1, emin) - mb)
    return np.clip(np.round(x / quantum) * quantum, -mx, mx)  # np.round: half to even


def p2scale(amax, target):
    """Power of two s with amax * s <= target (1 where amax is 0)."""
    amax = np.asarray(amax, dtype=np.float64)
    safe = np.where(amax > 0, amax, 1.0)
    s = np.exp2(np.floor(np.log2(target / safe)))
    return np.where(amax > 0, s, 1.0)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def omegas(n, r=R):
    c = 1.0 / (4.0 * (1.0 + 2.0 * r) ** 2)
    om, out = 2.0, []
    for _ in range(n):
        om = 1.0 / (1.0 - c * om)
        out.append(om)
    return np.array(out)


OMEGA = omegas(N_ITER)


# ---------------------------------------------------------------------------------------------------------------
# Inputs and fp64 references (token by token)
# ---------------------------------------------------------------------------------------------------------------
def make_head(rng, T, D):
    def unit(a):
        return a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-6)

    q = unit(rng.standard_normal((T, D)))
    k = unit(rng.standard_normal((T, D))) * (sigmoid(rng.standard_normal(T)) + 1e-6)[:, None]
    v = rng.standard_normal((T, D)) * (sigmoid(rng.standard_normal(T)) + 1e-6)[:, None]
    q, k, v = rnd(q, "bf16"), rnd(k, "bf16"), rnd(v, "bf16")  # the layer feeds bf16 tensors
    alpha = sigmoid(rng.standard_normal(T))
    A = rng.uniform(0.0, 16.0)
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1)))
    dt_bias = dt + np.log(-np.expm1(-dt))  # softplus^{-1}(dt)
    g = -A * softplus(rng.standard_normal(T) + dt_bias)  # gk = g (tied)
    return dict(q=q, k=k, v=v, alpha=alpha, g=g, A=A, dt=dt)


def cheb_token(H, lam, f, q, n=N_ITER):
    """Spec §A.3 verbatim (fp64)."""
    eta = 2.0 / (2.0 * lam + f)
    c = (f / (2.0 * (2.0 * lam + f))) ** 2
    xp, x, om = np.zeros_like(q), eta * q, 2.0
    for _ in range(n):
        om = 1.0 / (1.0 - c * om)
        res = H @ x + lam * x - q
        x, xp = om * (x - eta * res) + (1.0 - om) * xp, x
    return x


def references(hd, check_cheb=False):
    q, k, g = hd["q"], hd["k"], hd["g"]
    T, D = q.shape
    H = np.zeros((D, D))
    f = np.empty(T)
    xstar = np.empty((T, D))
    xcheb_tok = np.empty((T, D)) if check_cheb else None
    Hbar = []
    for t in range(T):
        if t % C == 0:
            Hbar.append(H.copy())
        H = np.exp(g[t]) * H + np.outer(k[t], k[t])
        f[t] = np.linalg.norm(H)
        lam = R * f[t]
        xstar[t] = np.linalg.solve(H + lam * np.eye(D), q[t])
        if check_cheb:
            xcheb_tok[t] = cheb_token(H, lam, f[t], q[t])
    return f, np.array(Hbar), xstar, xcheb_tok


def readout(hd, xs):
    """o_t = D^{-1/2} S_tᵀ q̃_t for every x in xs (list of [T, D]); fp64."""
    q, k, v, alpha, g = hd["q"], hd["k"], hd["v"], hd["alpha"], hd["g"]
    T, D = q.shape
    qt = np.stack([q + alpha[:, None] * (x - q) for x in xs])  # [V, T, D]
    S = np.zeros((D, v.shape[1]))
    o = np.empty((len(xs), T, v.shape[1]))
    for t in range(T):
        S = np.exp(g[t]) * S + np.outer(k[t], v[t])
        o[:, t] = qt[:, t] @ S
    return o / np.sqrt(D)


# ---------------------------------------------------------------------------------------------------------------
# Chunked solve with emulated product precision
# ---------------------------------------------------------------------------------------------------------------
class Chunks:
    """Per-chunk tiles of one head (T a multiple of C): K, Q [nc, C, D], H̄ [nc, D, D], mask M, e^G, eta, el."""

    def __init__(self, hd, f, Hbar):
        q, k, g = hd["q"], hd["k"], hd["g"]
        T, D = q.shape
        nc = T // C
        self.K = k.reshape(nc, C, D)
        self.Q = q.reshape(nc, C, D)
        G = np.cumsum(g.reshape(nc, C), axis=1)
        self.eG = np.exp(G)
        diff = G[:, :, None] - G[:, None, :]
        tril = np.tril(np.ones((C, C), dtype=bool))
        self.M = np.where(tril, np.exp(np.where(tril, diff, 0.0)), 0.0)
        self.Hb = Hbar
        fc = f.reshape(nc, C)
        self.eta = 2.0 / ((1.0 + 2.0 * R) * fc)
        self.lam = R * fc
        self.el = self.eta * self.lam
        self._tiles = {}

    def hx_exact(self, X):
        Y = np.matmul(X, np.swapaxes(self.Hb, 1, 2))
        P = np.matmul(X, np.swapaxes(self.K, 1, 2)) * self.M
        return self.eG[:, :, None] * Y + np.matmul(P, self.K)

    def tiles(self, fmt):
        """K and H̄ rounded under their per-chunk power-of-two scales (f16: as fwd_wg.cuh; fp8: max -> <= max finite)."""
        if fmt not in self._tiles:
            kmax_norm = np.linalg.norm(self.K, axis=2).max(axis=1)
            hmax = np.abs(self.Hb).max(axis=(1, 2))
            if fmt == "f16":
                ck = p2scale(kmax_norm, 1.0)  # rows' norms under 1
                ch = p2scale(hmax, 2.0**14)  # largest element under 2^14
            else:
                mx = FMT[fmt][2]
                ck = p2scale(np.abs(self.K).max(axis=(1, 2)), mx)
                ch = p2scale(hmax, mx)
            K = rnd(self.K * ck[:, None, None], fmt)
            H = rnd(self.Hb * ch[:, None, None], fmt)
            self._tiles[fmt] = (K, H, ck, ch)
        return self._tiles[fmt]

    def xop(self, X, fmt, xmode):
        """The iterate as a product operand in `fmt` and its per-row scale cx (X ≈ Xq / cx)."""
        if fmt == "f16":  # the iterate already is f16 words under sx
            return X, np.ones(X.shape[:2])
        mx = FMT[fmt][2]
        if xmode == "dyn":  # per-row scale from the row's current max (a row max per iteration)
            cx = p2scale(np.abs(X).max(axis=2), mx)
        else:  # static: from x_0's bound (row max < 2^-7 in sx units) and the growth bound ~2 / (eta lambda)
            cx = np.full(X.shape[:2], p2scale(2.0**-7 * 2.0 / (2 * R / (1 + 2 * R)), mx))
        return rnd(X * cx[:, :, None], fmt), cx

    def hx_lowp(self, X, mode, xmode, M16):
        """H X with one-term products; X is the f16 iterate (sx-scaled units). mode f16 / e4m3 / e5m2: every product
        in that format; e4m3y: only X H̄ᵀ in e4m3 (scores and P K in f16); e4m3s: only X Kᵀ and P K in e4m3."""
        fy, fs = {"e4m3y": ("e4m3", "f16"), "e4m3s": ("f16", "e4m3"), "e4m3s1": ("f16", "e4m3s1"),
                  "e4m3s2": ("f16", "e4m3s2"),
                  "e5m2y": ("e5m2", "f16"), "e4m3ys2": ("e4m3", "e4m3s2")}.get(mode, (mode, mode))
        fsk = fp = fs  # e4m3s1: only X Kᵀ in e4m3 (P K in f16); e4m3s2: only P K in e4m3 (X Kᵀ in f16)
        if fs == "e4m3s1":
            fsk, fp = "e4m3", "f16"
        elif fs == "e4m3s2":
            fsk, fp = "f16", "e4m3"
        # Y = X H̄ᵀ
        _, H, _, ch = self.tiles(fy)
        Xq, cx = self.xop(X, fy, xmode)
        Y = np.matmul(Xq, np.swapaxes(H, 1, 2)) / (ch[:, None, None] * cx[:, :, None])
        # S = X Kᵀ, P = S ⊙ M, P K
        K, _, ck, _ = self.tiles(fsk)
        Xq, cx = self.xop(X, fsk, xmode)
        S = np.matmul(Xq, np.swapaxes(K, 1, 2)) / (ck[:, None, None] * cx[:, :, None])  # sx units
        K, _, ck, _ = self.tiles(fp)
        if fp == "f16":  # fwd_wg.cuh: S in fp32 -> f16, P = S ⊙ M in f16 (hmul2), in units sx ck
            P = rnd(rnd(S * ck[:, None, None], "f16") * M16, "f16")
            cp = ck[:, None, None] * np.ones(X.shape[:2])[:, :, None]
        else:
            P = S * self.M
            cp = p2scale(np.abs(P).max(axis=2), FMT[fp][2])[:, :, None]  # per-row scale (a row max of the accumulator)
            P = rnd(P * cp, fp)
        PK = np.matmul(P, K) / (cp * ck[:, None, None])
        return self.eG[:, :, None] * Y + PK


def cheb_chunked_exact(ch):
    """Spec recurrence in fp64 on the chunked products."""
    eta, lam = ch.eta[:, :, None], ch.lam[:, :, None]
    xp, x = np.zeros_like(ch.Q), eta * ch.Q
    for om in OMEGA:
        res = ch.hx_exact(x) + lam * x - ch.Q
        x, xp = om * (x - eta * res) + (1.0 - om) * xp, x
    return x


def cheb_chunked_emul(ch, sched, xmode="static"):
    """The wgmma mixed solve of fwd_wg.cuh with the products of each iteration in sched[it] ∈ {f16, e4m3, e5m2, acc}.

    The iterate z and the last step d are f16 words in sx-scaled units (sx per row: x_0's max under 2^-7), the
    right-hand side rv = eta sx rhs in fp32 (fp64 here). One-term iteration: s = f16(rv − eta H z),
    e = f16(s − el z), u = f16((ω−1) d + f16(ω e)), d = u, z = f16(z + u) (the f16x2 update of v23). An 'acc'
    iteration takes fp64 products (the GPU's f16 hi + lo pairs, ~2^-22), keeps rv ← eta sx (rhs − (H + λ) x_lead)
    and restarts z = x − x_lead (the offset form); x = Σ x_lead + z at the end.
    """
    eta, el = ch.eta[:, :, None], ch.el[:, :, None]
    qm = np.abs(ch.Q).max(axis=2)
    _, e = np.frexp(ch.eta * qm)  # |x_0| < 2^e in this row
    sx = np.ldexp(1.0, -7 - e)[:, :, None]
    rv = eta * sx * ch.Q
    z = rnd(rv, "f16")
    d = z.copy()
    base = np.zeros_like(z)
    M16 = rnd(ch.M, "f16")
    el16 = rnd(el, "f16")
    for it, om in enumerate(OMEGA):
        mode = sched[it]
        if mode == "acc":
            hz = ch.hx_exact(z)
            s = rv - eta * hz
            n = om * (1.0 - el) * z + om * s + (1.0 - om) * (z - d)
            rv = s - el * z
            base = base + z
            z = rnd(n - z, "f16")
            d = z.copy()
        else:
            hz = ch.hx_lowp(z, mode, xmode, M16)
            s2 = rnd(rv - eta * hz, "f16")
            e2 = rnd(s2 - el16 * z, "f16")
            u2 = rnd(rnd(om - 1.0, "f16") * d + rnd(rnd(om, "f16") * e2, "f16"), "f16")
            d = u2
            z = rnd(z + u2, "f16")
    return (base + z) / sx


def schedule(lead_fmt, m, offs_fmt, n=N_ITER, extra_acc=()):
    """lead_fmt on iterations 0..m-1, acc at m, offs_fmt after (m >= n: no accurate iteration); extra acc steps."""
    s = [lead_fmt] * min(m, n) + (["acc"] if m < n else []) + [offs_fmt] * max(0, n - m - 1)
    for a in extra_acc:
        s[a] = "acc"
    return s


def variants(quick):
    m = 2 * N_ITER // 5  # 12
    v = [
        ("b  f16 lead|acc@12|f16 offset (GPU now)", schedule("f16", m, "f16")),
        ("b0 f16 all 30, no acc", schedule("f16", N_ITER, None)),
        ("c  e4m3 lead|acc@12|e4m3 offset", schedule("e4m3", m, "e4m3")),
        ("d  e5m2 lead|acc@12|e5m2 offset", schedule("e5m2", m, "e5m2")),
        ("e  e4m3 lead|acc@12|f16 offset", schedule("e4m3", m, "f16")),
        ("e' e5m2 lead|acc@12|f16 offset", schedule("e5m2", m, "f16")),
    ]
    if quick:
        return v
    v += [
        ("f  e4m3 lead|acc@6|f16", schedule("e4m3", 6, "f16")),
        ("f  e4m3 lead|acc@9|f16", schedule("e4m3", 9, "f16")),
        ("f  e4m3 lead|acc@15|f16", schedule("e4m3", 15, "f16")),
        ("f  e5m2 lead|acc@9|f16", schedule("e5m2", 9, "f16")),
        ("g  e4m3x6|acc|e4m3x6|acc@13|f16", ["e4m3"] * 6 + ["acc"] + ["e4m3"] * 6 + ["acc"] + ["f16"] * 16),
        ("g  e4m3x4|acc|e4m3x4|acc|e4m3x4|acc@14|f16",
         ["e4m3"] * 4 + ["acc"] + ["e4m3"] * 4 + ["acc"] + ["e4m3"] * 4 + ["acc"] + ["f16"] * 15),
        ("y  e4m3 X·H̄ᵀ only, lead|acc@12|f16", schedule("e4m3y", m, "f16")),
        ("s  e4m3 X·Kᵀ,P·K only, lead|acc@12|f16", schedule("e4m3s", m, "f16")),
        ("y  e4m3 X·H̄ᵀ only, lead|acc@9|f16", schedule("e4m3y", 9, "f16")),
        ("y  e4m3 X·H̄ᵀ only, lead|acc@15|f16", schedule("e4m3y", 15, "f16")),
        ("y  e4m3 X·H̄ᵀ only, lead|acc@18|f16", schedule("e4m3y", 18, "f16")),
        ("y' e5m2 X·H̄ᵀ only, lead|acc@12|f16", schedule("e5m2y", m, "f16")),
        ("ys e4m3 X·H̄ᵀ+P·K (X·Kᵀ f16), lead|acc@12|f16", schedule("e4m3ys2", m, "f16")),
        ("ys e4m3 X·H̄ᵀ+P·K (X·Kᵀ f16), lead|acc@9|f16", schedule("e4m3ys2", 9, "f16")),
        ("s1 e4m3 X·Kᵀ only, lead|acc@12|f16", schedule("e4m3s1", m, "f16")),
        ("s2 e4m3 P·K only, lead|acc@12|f16", schedule("e4m3s2", m, "f16")),
        ("h  f16 lead|acc@12|e4m3 offset", schedule("f16", m, "e4m3")),
        ("b  f16 lead|acc@10|f16", schedule("f16", 10, "f16")),
        ("b  f16 lead|acc@16|f16", schedule("f16", 16, "f16")),
    ]
    return v


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--heads", type=int, default=2, help="independent heads (own A, dt) per seed")
    ap.add_argument("--T", type=int, default=1024, help="tokens per head (the GPU accuracy test: 1024)")
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--xmode", choices=["static", "dyn"], default="static",
                    help="fp8 scale of the iterate operand: static (from x_0's bound) or per-row dynamic")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help="run only the variants whose name contains this string")
    args = ap.parse_args()
    assert args.T % C == 0
    t0 = time.time()
    vs = [v for v in variants(args.quick) if args.only in v[0]]
    names = ["a  fp64 Chebyshev (spec)"] + [n for n, _ in vs]
    # acc[name] -> per seed: sums of squared errors / norms for x vs exact, x vs cheb, o vs exact, o vs cheb
    per_seed = {s: {n: np.zeros(4) for n in names} for s in args.seeds}
    norms = {s: np.zeros(4) for s in args.seeds}
    check_done = False
    heads_info = []
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        for h in range(args.heads):
            hd = make_head(rng, args.T, args.D)
            f, Hbar, xstar, xtok = references(hd, check_cheb=not check_done)
            ch = Chunks(hd, f, Hbar)
            xcheb = cheb_chunked_exact(ch).reshape(args.T, args.D)
            if not check_done:
                err = rel(xcheb, xtok)
                assert err < 1e-9, f"chunked fp64 Chebyshev differs from the per-token spec iteration: {err}"
                check_done = True
            xs = [xcheb]
            for _, sched in vs:
                xs.append(cheb_chunked_emul(ch, sched, args.xmode).reshape(args.T, args.D))
            o = readout(hd, [xstar] + xs)
            ostar, ocheb = o[0], o[1]
            norms[seed] += [np.sum(xstar**2), np.sum(xcheb**2), np.sum(ostar**2), np.sum(ocheb**2)]
            for i, n in enumerate(names):
                per_seed[seed][n] += [np.sum((xs[i] - xstar) ** 2), np.sum((xs[i] - xcheb) ** 2),
                                      np.sum((o[i + 1] - ostar) ** 2), np.sum((o[i + 1] - ocheb) ** 2)]
            heads_info.append((seed, h, hd["A"], hd["dt"], float(f.min()), float(f.max())))
    print(f"GKA mixed-solve emulation: D={args.D}, T={args.T}, C={C}, N={N_ITER}, r={R}, heads/seed={args.heads}, "
          f"seeds={args.seeds}, fp8 iterate scale={args.xmode}  ({time.time() - t0:.0f} s)")
    for s, h, A, dt, fmin, fmax in heads_info:
        print(f"  seed {s} head {h}: A={A:5.2f} dt={dt:.2e}  f in [{fmin:.3g}, {fmax:.3g}]")
    print("relative L2 error over all tokens and heads; per seed 'x*|xC|o*|oC' = x vs exact, x vs fp64 Chebyshev,"
          " o vs exact, o vs fp64 Chebyshev")
    hdr = f"{'variant':42s} {'x vs x*':>9s} {'x vs xC':>9s} {'o vs o*':>9s} {'o vs oC':>9s}   per seed (o vs oC)"
    print(hdr)
    print("-" * len(hdr))
    tot_norm = sum(norms.values())
    for n in names:
        tot = sum(per_seed[s][n] for s in args.seeds)
        e = np.sqrt(tot / tot_norm)
        ps = " ".join(f"{np.sqrt(per_seed[s][n][3] / norms[s][3]):.2e}" for s in args.seeds)
        ecells = " ".join(f"{v:9.2e}" if v > 0 else f"{'0':>9s}" for v in e)
        print(f"{n:42s} {ecells}   {ps}")
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
