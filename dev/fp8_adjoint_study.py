#!/usr/bin/env python3
# fp8 lead iterations for the backward's adjoint solve and under mild gates: a CPU emulation study (numpy, fp64
# reference), the follow-up of dev/fp8_lead_study.py (whose rounding model, rnd(), p2scale(), Chunks and
# cheb_chunked_emul() it imports unchanged).
#
# What it does: for single heads (D = 128, T = 1024 by default, C = 64; bf16-rounded layer-like q, k, v, alpha as
# harness/layer_problem.cpp, dO = bf16(randn)) under one or more gate regimes (layer: -A softplus(randn + dt_bias),
# A ~ U(0, 16), dt ~ logU(1e-3, 1e-1), the lead study's heads; smallA: A ~ U(0, 0.5); lowdt: dt ~ logU(1e-3, 2e-3);
# uniform: g = log U(0.8, 0.999) per token, the harness's GateStrength::mild), it runs
#   - the forward solve (spec §B.3) with each schedule, as fp8_lead_study.py does: error of x and of o = s S_tᵀ q̃_t;
#   - the adjoint solve (spec §C.3 step 1 / §C.4 step 1; adj_wg.cuh + fwd_wg.cuh with ADJ): the same chunked
#     iteration and the same mixed schedule with right-hand side dx = alpha dq̃, dq̃ = s S_t dO_t, and the forward's
#     norms f; on the GPU its products are U Kᵀ (the scores), U H̄ (H̄ read MN-major, = U H̄ᵀ since H̄ is symmetric)
#     and P K, exactly the forward's three, so the emulation is cheb_chunked_emul() with Q replaced by dx;
#   - the gradients, in fp64 from spec §C.2-C.3 (bp_lambda = True, tied gates, no final-state gradients unless
#     --final-seeds, which adds dH_T, dS_T = 0.1 randn as the GPU accuracy test's seeds do):
#     dq = (1 - alpha) dq̃ + u, dalpha, dv, dk = readout part + (Ψ̂ + Ψ̂ᵀ) k, dg = readout part + <Ψ̂, H_t - k kᵀ>,
#     Ψ = -u xᵀ - (r <u, x> / f) H, token by token (a finite-difference self-test checks them: --selftest).
# Each schedule's errors are relative L2 against the fp64 Chebyshev iteration (x_C, u_C and the gradients from them):
# "adjoint only" takes x = x_C and the schedule's u; "end to end" the schedule's forward x and its adjoint u. The row
# "fp64 Chebyshev" gives the Chebyshev truncation against the exact solve for scale. Pooled over seeds x heads, and the
# worst seed (pooled over its heads).
#
# Run: python3 dev/fp8_adjoint_study.py                      (layer gates, 3 seeds x 2 heads, T = 1024: ~1 min)
#      python3 dev/fp8_adjoint_study.py --gates layer smallA lowdt uniform     (~4 min; --diag: ~100 s a regime)
#      python3 dev/fp8_adjoint_study.py --selftest           (gradient formulas against central differences)
#      (--T 512, --seeds, --heads, --only NAME, --quick: f16, the split, X H̄ᵀ alone in e4m3; --diag: one product
#      at a time in e4m3 and other placements of the accurate iteration; --final-seeds)
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import copy  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.dont_write_bytecode = True  # no __pycache__ in dev/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fp8_lead_study as L  # noqa: E402

R, C = L.R, L.C
M_ACC = 2 * L.N_ITER // 5  # the accurate iteration: 12

REGIMES = {
    "layer": dict(A=(0.0, 16.0), dt=(1e-3, 1e-1)),  # the layer init (harness strong gates; fp8_lead_study's heads)
    "smallA": dict(A=(0.0, 0.5), dt=(1e-3, 1e-1)),  # mild: small A
    "lowdt": dict(A=(0.0, 16.0), dt=(1e-3, 2e-3)),  # mild: dt at the low end
    "uniform": dict(A=(0.0, 16.0), dt=(1e-3, 1e-1), uniform=(0.8, 0.999)),  # harness GateStrength::mild
}


# ---------------------------------------------------------------------------------------------------------------
# Inputs, fp64 forward states, gradients
# ---------------------------------------------------------------------------------------------------------------
def make_head(rng, T, D, regime):
    """fp8_lead_study.make_head with the regime's A / dt ranges (same draws in the same order: 'layer' gives its
    heads); 'uniform' replaces g by log U(lo, 0.999) per token after the same draws."""
    rg = REGIMES[regime]

    def unit(a):
        return a / (np.linalg.norm(a, axis=1, keepdims=True) + 1e-6)

    q = unit(rng.standard_normal((T, D)))
    k = unit(rng.standard_normal((T, D))) * (L.sigmoid(rng.standard_normal(T)) + 1e-6)[:, None]
    v = rng.standard_normal((T, D)) * (L.sigmoid(rng.standard_normal(T)) + 1e-6)[:, None]
    q, k, v = L.rnd(q, "bf16"), L.rnd(k, "bf16"), L.rnd(v, "bf16")
    alpha = L.sigmoid(rng.standard_normal(T))
    A = rng.uniform(*rg["A"])
    dt = np.exp(rng.uniform(np.log(rg["dt"][0]), np.log(rg["dt"][1])))
    dt_bias = dt + np.log(-np.expm1(-dt))
    g = -A * L.softplus(rng.standard_normal(T) + dt_bias)
    if "uniform" in rg:
        g = np.log(rng.uniform(*rg["uniform"], size=T))
    return dict(q=q, k=k, v=v, alpha=alpha, g=g, A=A, dt=dt)


def forward64(hd):
    """Per-token H_t, S_t (after token t), f_t and the chunk-start states H̄_c, fp64."""
    q, k, v, g = hd["q"], hd["k"], hd["v"], hd["g"]
    T, D = q.shape
    Hs, Ss, f = np.empty((T, D, D)), np.empty((T, D, v.shape[1])), np.empty(T)
    H, S, Hbar = np.zeros((D, D)), np.zeros((D, v.shape[1])), []
    for t in range(T):
        if t % C == 0:
            Hbar.append(H.copy())
        e = np.exp(g[t])
        H = e * H + np.outer(k[t], k[t])
        S = e * S + np.outer(k[t], v[t])
        Hs[t], Ss[t], f[t] = H, S, np.linalg.norm(H)
    return Hs, Ss, f, np.array(Hbar)


def solve_exact(Hs, f, rhs):
    D = Hs.shape[1]
    return np.linalg.solve(Hs + (R * f)[:, None, None] * np.eye(D), rhs[:, :, None])[:, :, 0]


def cheb_tokens(Hs, f, rhs):
    """Spec §A.3 for every token at once (fp64): the per-token check of the chunked iteration."""
    lam, eta = (R * f)[:, None], (2.0 / (2.0 * R * f + f))[:, None]
    xp, x = np.zeros_like(rhs), eta * rhs
    for om in L.OMEGA:
        res = np.einsum("tij,tj->ti", Hs, x) + lam * x - rhs
        x, xp = om * (x - eta * res) + (1.0 - om) * xp, x
    return x


def readout_grad(Ss, do):
    """dq̃_t = s S_t dO_t."""
    return np.einsum("tde,te->td", Ss, do) / np.sqrt(Ss.shape[1])


def outputs(Ss, hd, xs):
    q, alpha = hd["q"], hd["alpha"]
    qt = q + alpha[:, None] * (np.stack(xs) - q)
    return np.einsum("vtd,tde->vte", qt, Ss) / np.sqrt(q.shape[1])


def grads(hd, Hs, Ss, f, do, pairs, dHT=None, dST=None):
    """Gradients of sum(dO . o) + <dH_T, H_T> + <dS_T, S_T> for each (x, u) pair (spec §C.2-C.3, bp_lambda = True,
    gk = g tied; dH_T, dS_T zero unless given), token by token in reverse, all pairs at once. Returns dict name ->
    [V, T, ...]."""
    q, k, v, alpha, g = hd["q"], hd["k"], hd["v"], hd["alpha"], hd["g"]
    T, D = q.shape
    s = 1.0 / np.sqrt(D)
    X = np.stack([p[0] for p in pairs])
    U = np.stack([p[1] for p in pairs])
    V = len(pairs)
    dqt = readout_grad(Ss, do)
    dq = (1.0 - alpha)[None, :, None] * dqt[None] + U
    dalpha = np.einsum("td,vtd->vt", dqt, X - q[None])
    qt = q[None] + alpha[None, :, None] * (X - q[None])
    w = R * np.einsum("vtd,vtd->vt", U, X) / f[None]
    Psi, dS = np.zeros((V, D, D)), np.zeros((V, D, v.shape[1]))
    if dHT is not None:
        Psi += dHT
        dS += dST
    dk, dv, dg = np.empty((V, T, D)), np.empty((V, T, v.shape[1])), np.empty((V, T))
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            e = np.exp(g[t + 1])
            Psi *= e
            dS *= e
        Psi -= U[:, t, :, None] * X[:, t, None, :] + w[:, t, None, None] * Hs[t][None]
        dS += s * qt[:, t, :, None] * do[t][None, None, :]
        kt = k[t]
        dk[:, t] = Psi @ kt + kt @ Psi + dS @ v[t]
        dv[:, t] = kt @ dS
        dg[:, t] = np.einsum("vij,ij->v", Psi, Hs[t] - np.outer(kt, kt)) + \
            np.einsum("vij,ij->v", dS, Ss[t] - np.outer(kt, v[t]))
    return dict(dq=dq, dk=dk, dv=dv, dg=dg, dalpha=dalpha)


def selftest():
    """The gradient formulas (exact solves) against central differences of sum(dO . o) + <dH_T, H_T> + <dS_T, S_T>
    on a small problem."""
    rng = np.random.default_rng(0)
    T, D = 12, 8
    hd = make_head(rng, T, D, "layer")
    hd["g"] = -rng.uniform(0.05, 0.5, T)
    do = rng.standard_normal((T, D))
    dHT, dST = rng.standard_normal((D, D)), rng.standard_normal((D, D))

    def loss(hd2):
        Hs, Ss, f, _ = forward64(hd2)
        x = solve_exact(Hs, f, hd2["q"])
        return float(np.sum(outputs(Ss, hd2, [x])[0] * do) + np.sum(dHT * Hs[-1]) + np.sum(dST * Ss[-1]))

    Hs, Ss, f, _ = forward64(hd)
    x = solve_exact(Hs, f, hd["q"])
    u = solve_exact(Hs, f, hd["alpha"][:, None] * readout_grad(Ss, do))
    gr = grads(hd, Hs, Ss, f, do, [(x, u)], dHT, dST)
    worst = 0.0
    for name, key in [("q", "dq"), ("k", "dk"), ("v", "dv"), ("alpha", "dalpha"), ("g", "dg")]:
        d = rng.standard_normal(hd[name].shape)
        h = 1e-6
        hp, hm = dict(hd), dict(hd)
        hp[name], hm[name] = hd[name] + h * d, hd[name] - h * d
        fd = (loss(hp) - loss(hm)) / (2 * h)
        an = float(np.sum(gr[key][0] * d))
        err = abs(fd - an) / max(abs(fd), 1e-30)
        worst = max(worst, err)
        print(f"  d/d{name:5s}: analytic {an:+.10e}  central difference {fd:+.10e}  rel {err:.1e}")
    assert worst < 1e-6, worst
    print("selftest passed")


# ---------------------------------------------------------------------------------------------------------------
# Schedules and the study
# ---------------------------------------------------------------------------------------------------------------
def variants(quick, diag=False):
    s = L.schedule
    if diag:  # where the adjoint's damage comes from, and what placement of accurate iterations buys
        return [
            ("f16 (GPU now)", s("f16", M_ACC, "f16"), "static"),
            ("split: XKᵀ f16, XH̄ᵀ+PK e4m3", s("e4m3ys2", M_ACC, "f16"), "static"),
            ("only PK e4m3", s("e4m3s2", M_ACC, "f16"), "static"),
            ("only XKᵀ e4m3", s("e4m3s1", M_ACC, "f16"), "static"),
            ("only XH̄ᵀ e4m3", s("e4m3y", M_ACC, "f16"), "static"),
            ("split, acc@6", s("e4m3ys2", 6, "f16"), "static"),
            ("split, acc@9", s("e4m3ys2", 9, "f16"), "static"),
            ("split, acc@15", s("e4m3ys2", 15, "f16"), "static"),
            # the second lead works on z = x - x_6, far below x_0's bound: the iterate's fp8 scale per row (dyn)
            ("split x6|acc|split x6|acc@13|f16, dyn",
             ["e4m3ys2"] * 6 + ["acc"] + ["e4m3ys2"] * 6 + ["acc"] + ["f16"] * 16, "dyn"),
            ("only XH̄ᵀ e4m3, acc@6", s("e4m3y", 6, "f16"), "static"),
        ]
    v = [
        ("f16 (GPU now)", s("f16", M_ACC, "f16"), "static"),
        ("split: XKᵀ f16, XH̄ᵀ+PK e4m3", s("e4m3ys2", M_ACC, "f16"), "static"),
        ("only XH̄ᵀ e4m3", s("e4m3y", M_ACC, "f16"), "static"),
        ("only XH̄ᵀ e4m3, acc@6", s("e4m3y", 6, "f16"), "static"),
    ]
    if quick:
        return v
    v += [
        ("split, iterate fp8 scale per row (dyn)", s("e4m3ys2", M_ACC, "f16"), "dyn"),
        ("all three e4m3 (lead)", s("e4m3", M_ACC, "f16"), "static"),
    ]
    return v


FWD_COLS = [("x", "x"), ("o", "o")]
ADJ_COLS = [("u", "u"), ("dq_a", "dq"), ("dk_a", "dk"), ("dg_a", "dg")]
E2E_COLS = [("dq_e", "dq"), ("dk_e", "dk"), ("dv_e", "dv"), ("dg_e", "dg"), ("da_e", "dα")]


def run_regime(args, regime, vs):
    t0 = time.time()
    names = ["fp64 Chebyshev vs exact solve"] + [n for n, _, _ in vs]
    keys = [c for c, _ in FWD_COLS + ADJ_COLS + E2E_COLS]
    num = {sd: {n: {c: 0.0 for c in keys} for n in names} for sd in args.seeds}
    den = {sd: {n: {c: 0.0 for c in keys} for n in names} for sd in args.seeds}
    info = []
    checked = False

    def acc(sd, n, c, a, b):
        num[sd][n][c] += float(np.sum((a - b) ** 2))
        den[sd][n][c] += float(np.sum(b**2))

    for sd in args.seeds:
        rng = np.random.default_rng(sd)
        for h in range(args.heads):
            hd = make_head(rng, args.T, args.D, regime)
            do = L.rnd(np.random.default_rng([sd, 7919, h]).standard_normal((args.T, args.D)), "bf16")
            Hs, Ss, f, Hbar = forward64(hd)
            ch = L.Chunks(hd, f, Hbar)
            dx = hd["alpha"][:, None] * readout_grad(Ss, do)
            cha = copy.copy(ch)  # the adjoint: the same tiles (H̄ symmetric), right-hand side dx
            cha.Q = dx.reshape(ch.Q.shape)
            xs_, us_ = solve_exact(Hs, f, hd["q"]), solve_exact(Hs, f, dx)
            xC = L.cheb_chunked_exact(ch).reshape(args.T, args.D)
            uC = L.cheb_chunked_exact(cha).reshape(args.T, args.D)
            if not checked:  # the chunked fp64 iteration is the per-token one, for x and for u
                for a, b in [(xC, cheb_tokens(Hs, f, hd["q"])), (uC, cheb_tokens(Hs, f, dx))]:
                    assert L.rel(a, b) < 1e-9, f"chunked fp64 Chebyshev differs from per-token: {L.rel(a, b)}"
                checked = True
            xv = [L.cheb_chunked_emul(ch, sc, xm).reshape(args.T, args.D) for _, sc, xm in vs]
            uv = [L.cheb_chunked_emul(cha, sc, xm).reshape(args.T, args.D) for _, sc, xm in vs]
            o = outputs(Ss, hd, [xs_, xC] + xv)
            pairs = [(xC, uC), (xs_, us_)] + [(xC, u) for u in uv] + list(zip(xv, uv))
            dHT = dST = None
            if args.final_seeds:  # as harness gradient_seeds_make: 0.1 randn
                frng = np.random.default_rng([sd, 104729, h])
                dHT, dST = 0.1 * frng.standard_normal((args.D, args.D)), 0.1 * frng.standard_normal((args.D, args.D))
            gr = grads(hd, Hs, Ss, f, do, pairs, dHT, dST)
            V = len(vs)
            ref = {c: gr[c][0] for c in gr}
            n0 = names[0]  # fp64 Chebyshev against the exact solve
            acc(sd, n0, "x", xC, xs_)
            acc(sd, n0, "o", o[1], o[0])
            acc(sd, n0, "u", uC, us_)
            for c, _ in ADJ_COLS[1:] + E2E_COLS:
                gk = {"dq": "dq", "dk": "dk", "dv": "dv", "dg": "dg", "da": "dalpha"}[c.split("_")[0]]
                if c.endswith("_a") or c.endswith("_e"):
                    acc(sd, n0, c, ref[gk], gr[gk][1])
            for i, (n, _, _) in enumerate(vs):
                acc(sd, n, "x", xv[i], xC)
                acc(sd, n, "o", o[2 + i], o[1])
                acc(sd, n, "u", uv[i], uC)
                for c, _ in ADJ_COLS[1:] + E2E_COLS:
                    gk = {"dq": "dq", "dk": "dk", "dv": "dv", "dg": "dg", "da": "dalpha"}[c.split("_")[0]]
                    j = 2 + i if c.endswith("_a") else 2 + V + i
                    acc(sd, n, c, gr[gk][j], ref[gk])
            # how much of H_i the chunk-start state carries: mean over chunks >= 1 and rows of e^{G_i} |H̄|_F / f_i
            hb = np.linalg.norm(Hbar, axis=(1, 2))[:, None] * ch.eG / f.reshape(ch.eG.shape)
            info.append((sd, h, hd["A"], hd["dt"], float(np.mean(hd["g"])), float(f.min()), float(f.max()),
                         float(hb[1:].mean())))
    print(f"\n=== gates: {regime} {REGIMES[regime]}  D={args.D} T={args.T} C={C} N={L.N_ITER} r={R} "
          f"heads/seed={args.heads} seeds={args.seeds} final-state seeds={args.final_seeds}  "
          f"({time.time() - t0:.0f} s)")
    for sd, h, A, dt, gm, fmin, fmax, hb in info:
        print(f"  seed {sd} head {h}: A={A:6.3f} dt={dt:.2e} mean g={gm:+.2e} f in [{fmin:.3g}, {fmax:.3g}]  "
              f"e^G|H̄|/f={hb:.2f}")
    print("relative L2 error, pooled over all heads (worst seed in parentheses); rows: schedules against the fp64"
          " Chebyshev iteration, first row: that iteration against the exact solve")

    def cell(n, c):
        tot_n = sum(num[sd][n][c] for sd in args.seeds)
        tot_d = sum(den[sd][n][c] for sd in args.seeds)
        worst = max(np.sqrt(num[sd][n][c] / den[sd][n][c]) for sd in args.seeds)
        return f"{np.sqrt(tot_n / tot_d):.2e} ({worst:.1e})"

    for title, cols in [("forward", FWD_COLS), ("adjoint only (x = x_C)", ADJ_COLS),
                        ("end to end (forward x and adjoint u of the schedule)", E2E_COLS)]:
        print(f"-- {title}")
        hdr = f"{'schedule':40s} " + " ".join(f"{lab:>18s}" for _, lab in cols)
        print(hdr)
        for n in names:
            print(f"{n:40s} " + " ".join(f"{cell(n, c):>18s}" for c, _ in cols))
    print(f"regime {regime} done in {time.time() - t0:.0f} s")


def main():
    ap = argparse.ArgumentParser(description="fp8 lead iterations: adjoint solve and mild gates (see the header)")
    ap.add_argument("--gates", nargs="+", default=["layer"], choices=list(REGIMES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--heads", type=int, default=2, help="independent heads (own A, dt) per seed")
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--D", type=int, default=128)
    ap.add_argument("--quick", action="store_true", help="f16, the candidate split and X H̄ᵀ alone in e4m3 only")
    ap.add_argument("--only", default="", help="only the schedules whose name contains this string")
    ap.add_argument("--diag", action="store_true", help="diagnostic schedules instead: one product at a time in e4m3,"
                    " other placements of the accurate iteration")
    ap.add_argument("--final-seeds", action="store_true",
                    help="add final-state gradients dH_T, dS_T = 0.1 randn as the GPU accuracy test's seeds do")
    ap.add_argument("--selftest", action="store_true")
    args = ap.parse_args()
    if args.selftest:
        selftest()
        return
    assert args.T % C == 0
    t0 = time.time()
    vs = [v for v in variants(args.quick, args.diag) if args.only in v[0]]
    for regime in args.gates:
        run_regime(args, regime, vs)
    print(f"all done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
