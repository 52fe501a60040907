// The report of `gka study numerics`: CSV, PNG plots and docs/results/numerics.md, all from NumericsData.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>

#include "gka/gka.h"
#include "study/numerics.h"
#include "study/plot.h"

namespace gka::study {
namespace {

std::string tok(int64_t t) { return t < 0 ? "never" : std::to_string(t); }

const RunnerResult* find(const ForwardRun& run, const std::string& solver, Precision p, const LambdaMode& m, int n = -1) {
  for (const RunnerResult& r : run.runners)
    if (r.spec.solver == solver && r.spec.precision == p && r.spec.lambda == m && (n < 0 || r.spec.num_iter == n)) return &r;
  return nullptr;
}

const LambdaMode kR02{LambdaKind::adaptive, 0.02};
const Precision kPrec[] = {Precision::fp64, Precision::fp32, Precision::bf16};
const Precision kPrecAll[] = {Precision::fp64, Precision::fp32, Precision::bf16, Precision::bf16s};
const LambdaMode kModes[] = {{LambdaKind::adaptive, 0.005}, {LambdaKind::adaptive, 0.02}, {LambdaKind::adaptive, 0.1},
                             {LambdaKind::fixed, 0.25},     {LambdaKind::fixed, 1.0}};

void csv_summary(std::ofstream& f, const std::string& exp, const ForwardRun& run) {
  for (const RunnerResult& r : run.runners) {
    f << exp << ',' << run.input.name << ',' << run.input.D << ',' << run.input.T << ',' << r.spec.solver << ','
      << precision_name(r.spec.precision) << ',' << r.spec.lambda.name() << ',' << r.spec.num_iter << ','
      << median(r.xerr) << ',' << quantile(r.xerr, 0.9) << ',' << max_finite_or_inf(r.xerr) << ',' << median(r.oerr)
      << ',' << quantile(r.oerr, 0.9) << ',' << max_finite_or_inf(r.oerr) << ',' << median(r.res) << ',' << r.nonfinite
      << ',' << r.first_nonfinite << ',' << first_above(r.xerr, 0.1) << ',' << first_above(r.xerr, 1.0) << ','
      << (r.xerr_fixed.empty() ? NAN : median(r.xerr_fixed)) << '\n';
  }
}

void csv_series(std::ofstream& f, const std::string& exp, const ForwardRun& run, const std::function<bool(const RunnerSpec&)>& keep) {
  for (const RunnerResult& r : run.runners) {
    if (!keep(r.spec)) continue;
    for (int64_t t : run.samples)
      f << exp << ',' << run.input.name << ',' << r.spec.solver << ',' << precision_name(r.spec.precision) << ','
        << r.spec.lambda.name() << ',' << r.spec.num_iter << ',' << t << ',' << r.xerr[size_t(t - 1)] << ','
        << r.oerr[size_t(t - 1)] << ',' << r.res[size_t(t - 1)] << '\n';
  }
}

std::string plot_file(const std::string& dir, const std::string& name, const Plot& p, std::vector<std::string>& written) {
  if (plot_write_png(p, dir + "/numerics/" + name)) {
    written.push_back(name);
    return "![" + p.title + "](numerics/" + name + ")\n\n";
  }
  return "(plot " + name + " not written: no libpng in this build)\n\n";
}

int color_of(const std::string& solver, Precision p) {
  if (p == Precision::bf16s) return solver == "chebyshev" ? 10 : solver == "cg" ? 11 : 8;
  const int base = solver == "chebyshev" ? 0 : solver == "cg" ? 3 : solver == "kalman" ? 6 : 9;
  return base + int(p);  // 12 (black) is kept for the bounds
}

// Error vs num_iter at r = 0.02 for one input of experiment A.
Plot plot_iter(const ForwardRun& run, bool output) {
  Plot p;
  p.title = std::string("median rel. error of ") + (output ? "o" : "x") + " vs num_iter, r=0.02, " + run.input.name;
  p.xlabel = "num_iter N (mat-vecs)";
  p.ylabel = output ? "median ||o-o*||/||o*||" : "median ||x-x*||/||x*||";
  for (const char* solver : {"chebyshev", "cg"})
    for (Precision pr : kPrecAll) {
      Series s;
      s.name = std::string(solver) + " " + precision_name(pr);
      s.color = color_of(solver, pr);
      s.dashed = std::string(solver) == "cg";
      for (int n : {5, 10, 20, 30, 50}) {
        const RunnerResult* r = find(run, solver, pr, kR02, n);
        s.x.push_back(n);
        s.y.push_back(median(output ? r->oerr : r->xerr));
      }
      p.series.push_back(s);
    }
  Series b;
  b.name = "a-priori Cheb. bound";
  b.color = 12;
  b.dashed = true;
  for (int n = 5; n <= 50; n += 5) {
    b.x.push_back(n);
    b.y.push_back(chebyshev_error_bound(0.02, n));
  }
  p.series.push_back(b);
  return p;
}

}  // namespace

void numerics_report(const NumericsData& d, const std::string& out) {
  namespace fs = std::filesystem;
  fs::create_directories(out + "/numerics");
  std::vector<std::string> pngs;

  // ---- CSV ----
  {
    std::ofstream f(out + "/numerics/summary.csv");
    f << "experiment,input,D,T,solver,precision,lambda,num_iter,x_err_median,x_err_p90,x_err_max,o_err_median,o_err_p90,"
         "o_err_max,residual_median,nonfinite_tokens,first_nonfinite,first_t_x_err_gt_0.1,first_t_x_err_gt_1,"
         "x_err_median_vs_fixed_lambda_system\n";
    for (const ForwardRun& r : d.solve) csv_summary(f, "A_solvers", r);
    csv_summary(f, "A_num_iter", d.iters);
    for (const ForwardRun& r : d.horizon) csv_summary(f, "B_horizon", r);
  }
  {
    std::ofstream f(out + "/numerics/series.csv");
    f << "experiment,input,solver,precision,lambda,num_iter,t,x_err,o_err,residual\n";
    for (const ForwardRun& r : d.solve)
      csv_series(f, "A_solvers", r, [](const RunnerSpec& s) { return s.num_iter == 30 || s.solver == "exact" || s.solver == "kalman"; });
    for (const ForwardRun& r : d.horizon) csv_series(f, "B_horizon", r, [](const RunnerSpec&) { return true; });
  }
  {
    std::ofstream f(out + "/numerics/cond.csv");
    f << "experiment,input,lambda,t,cond\n";
    auto w = [&](const char* e, const ForwardRun& r) {
      for (const CondSeries& c : r.cond)
        for (size_t i = 0; i < c.t.size(); ++i) f << e << ',' << r.input.name << ',' << c.lambda.name() << ',' << c.t[i] << ',' << c.cond[i] << '\n';
    };
    for (const ForwardRun& r : d.solve) w("A_solvers", r);
    for (const ForwardRun& r : d.horizon) w("B_horizon", r);
  }
  {
    std::ofstream f(out + "/numerics/grad.csv");
    f << "solver,precision,lambda,num_iter,depth,dx_err,dw_err,loss_err,finite\n";
    for (const GradResult& g : d.grad)
      for (size_t k = 0; k < g.dx_err.size(); ++k)
        f << g.spec.solver << ',' << precision_name(g.spec.precision) << ',' << g.spec.lambda.name() << ',' << g.spec.num_iter
          << ',' << k + 1 << ',' << g.dx_err[k] << ',' << g.dw_err[k] << ',' << g.loss_err << ',' << g.finite << '\n';
  }

  std::ostringstream md;
  const char* scale_name = d.scale == Scale::full ? "full" : d.scale == Scale::quick ? "--quick" : "--smoke";
  md << "# Numerics study: Chebyshev vs CG vs the classic Kalman recursion\n\n"
     << "Generated by `gka study numerics" << (d.scale == Scale::full ? "" : std::string(" ") + scale_name)
     << "` (issue 4) in " << std::lround(d.seconds) << " s; every number, table and plot below comes from this run. "
     << "Raw data: [summary.csv](numerics/summary.csv) (one row per configuration), [series.csv](numerics/series.csv) "
     << "(errors at sampled tokens), [cond.csv](numerics/cond.csv), [grad.csv](numerics/grad.csv).\n\n";

  // ---------------- headline answers (filled below) ----------------
  std::ostringstream head;

  // ---- Method ----
  md << "## Method\n\n"
     << "* **Inputs** (one head, D = Dv): unit queries; keys `k = β·normalize(√ρ z + √(1−ρ) z_t)` with a shared unit "
        "direction z (ρ = key correlation), write gate `β = sigmoid(randn) + 1e-6`; `v ~ N(0,1)`; `α = sigmoid(randn)`; "
        "tied decays `gk = g`. Experiment A inputs: `layer` (ρ = 0, γ = e^g ~ U(0.8, 0.999)), `correlated` "
        "(ρ = 0.95, same gates), `mamba-gates` (ρ = 0.5, `g = −A softplus(dt_bias + 0.5 randn)` with A, dt drawn "
        "from Mamba-2's init ranges). Experiment B: `no-gate` (γ ≡ 1, ρ = 0) and `slow-gate-correlated` "
        "(γ ~ U(0.995, 0.9999), ρ = 0.9), D = 32.\n"
     << "* **Precisions**: fp64; fp32; simulated bf16 — every stored vector/matrix (states H and S, iterates, "
        "residuals, the Kalman P, Cholesky factors, q̃, o, inputs) is rounded to bf16 (round-to-nearest-even), "
        "dot products and elementwise expressions run in fp32 and scalars (f, λ, step sizes) stay fp32, like a "
        "bf16 kernel with fp32 accumulators. The errors therefore include the rounding of the states, not only "
        "of the solve. **bf16s**: the same, except that the states H and S accumulate in fp32 (as in the reference "
        "kernels, whose states are fp32) and are rounded to bf16 only as operands of the solver and the readout.\n"
     << "* **Solvers** (N = mat-vecs): `chebyshev` exactly as spec §A.3 with μ = λ, L = λ + ‖H‖_F (for a fixed λ "
        "the constants c, η then vary per token); `cg` from x₀ = 0; `exact` = Cholesky in the run's precision; "
        "`kalman` = the classic covariance recursion, forward only.\n"
     << "* **The Kalman recursion and fixed λ.** With a fixed λ, `H_t + λI = γ(H_{t−1} + λI) + (1−γ)λI + k kᵀ`: the "
        "`(1−γ)λI` term is full-rank, so no rank-1 (Sherman–Morrison) recursion can carry `(H_t + λI)⁻¹`. We use "
        "the standard fading-memory RLS form: `P_t⁻¹ = γ_t P_{t−1}⁻¹ + k kᵀ`, `P_0 = I/λ`, i.e. "
        "`u = Pk, P ← (P − u uᵀ/(γ + kᵀu))/γ`. It solves `(H_t + λ e^{G_t} I) x = q` (G_t = Σ log γ): the "
        "regulariser decays with the data. Its errors are measured against the fp64 exact solve of **that same "
        "system** (rounding error of the recursion); the table also gives its distance to the fixed-λ GKA system "
        "(model error). Without gates (`no-gate`) the two systems coincide.\n"
     << "* **Truth**: fp64 Cholesky solve of the same system with the same λ rule on the fp64 states. Metrics per "
        "token: `‖x − x*‖/‖x*‖`, `‖o − o*‖/‖o*‖`, the residual `‖(H*+λ*I)x − q‖/‖q‖` of the true system, "
        "`cond(H* + λ* I)` (fp64 eigenvalues, at sampled tokens), NaN/Inf tokens. \"median\" = median over tokens.\n"
     << "* **Gradients** (experiment C): a stack of " << d.grad_problem.layers << " layers (D = " << d.grad_problem.D
     << ", T = " << d.grad_problem.T << "): `q = normalize(Wq x)`, `k = β normalize(Wk x)`, `v = Wv x`, GKA core, "
        "`y = x + tanh(Wo o)`; loss `Σ⟨c, y⟩`. The backward is hand-written in the same number template: the "
        "implicit gradient of spec §C.3 with the λ path, the adjoint solve done by the run's own solver (for CG "
        "this is the paper's \"CG with implicit differentiation\"). Truth: fp64 exact solves (whose implicit "
        "gradient is the true gradient; a finite-difference test in tests/study checks it). We did not use "
        "LibTorch: the template gives bf16 simulation for free and keeps the study inside gka_core's "
        "dependencies. Error = relative L2 error of ∂L/∂X at the input of the layer reached after backpropagating "
        "through `depth` layers (depth 1 = top layer).\n\n";

  // ---- A: N = 30 table per input ----
  md << "## A. Solve accuracy: solver × λ mode × precision\n\n";
  for (const ForwardRun& run : d.solve) {
    md << "### Input `" << run.input.name << "` (D = " << run.input.D << ", T = " << run.input.T << ")\n\n";
    md << "Median relative error of x / of o over all tokens (N = 30 for the iterative solvers); "
          "**NaN** marks runs with non-finite tokens.\n\n| solver | precision |";
    for (const LambdaMode& m : kModes) md << ' ' << m.name() << " |";
    md << "\n|---|---|---|---|---|---|---|\n";
    for (const char* solver : {"chebyshev", "cg", "exact", "kalman"})
      for (Precision p : kPrecAll) {
        if (std::string(solver) == "kalman" && p == Precision::bf16s) continue;
        md << "| " << solver << " | " << precision_name(p) << " |";
        for (const LambdaMode& m : kModes) {
          const RunnerResult* r = find(run, solver, p, m, std::string(solver) == "chebyshev" || std::string(solver) == "cg" ? 30 : -1);
          if (!r) {
            md << " – |";
            continue;
          }
          md << ' ' << e2(median(r->xerr)) << " / " << e2(median(r->oerr)) << (r->nonfinite ? " **NaN**" : "") << " |";
        }
        md << '\n';
      }
    md << "\nCondition number of `H_t + λ_t I` (fp64, median / max over sampled tokens):";
    for (const CondSeries& c : run.cond) {
      std::vector<float> v(c.cond.begin(), c.cond.end());
      md << " " << c.lambda.name() << ": " << e2(median(v)) << " / " << e2(max_finite_or_inf(v)) << ";";
    }
    md << " (bound (1+r)/r: 201, 51, 11).\n\n";
    md << plot_file(out, "iter_x_" + run.input.name + ".png", plot_iter(run, false), pngs);
    md << plot_file(out, "iter_o_" + run.input.name + ".png", plot_iter(run, true), pngs);
  }

  // error vs condition number (input `correlated`, all lambda modes pooled, N = 30)
  {
    const ForwardRun& run = d.solve.size() > 1 ? d.solve[1] : d.solve[0];
    Plot p;
    p.title = "x error vs cond(H+lambda I), N=30, all lambda modes, " + run.input.name;
    p.xlabel = "cond(H_t + lambda_t I)";
    p.ylabel = "||x-x*||/||x*||";
    p.logx = true;
    for (auto [solver, pr] : std::vector<std::pair<std::string, Precision>>{{"chebyshev", Precision::fp32}, {"chebyshev", Precision::bf16},
                                                                            {"chebyshev", Precision::bf16s}, {"cg", Precision::bf16}, {"exact", Precision::bf16}}) {
      Series s;
      s.name = solver + " " + precision_name(pr);
      s.points = true;
      s.color = color_of(solver, pr);
      for (const LambdaMode& m : kModes) {
        const RunnerResult* r = find(run, solver, pr, m, solver == "exact" ? -1 : 30);
        for (const CondSeries& c : run.cond)
          if (c.lambda == m)
            for (size_t i = 0; i < c.t.size(); ++i) {
              s.x.push_back(c.cond[i]);
              s.y.push_back(r->xerr[size_t(c.t[i] - 1)]);
            }
      }
      p.series.push_back(s);
    }
    md << "### Error vs condition number\n\n" << plot_file(out, "cond_" + run.input.name + ".png", p, pngs);
  }

  // ---- A': iterations for r = 0.02 ----
  const ForwardRun& it = d.iters;
  md << "## A'. How many Chebyshev iterations does r = 0.02 need?\n\n"
     << "Input `layer`, D = " << it.input.D << ", T = " << it.input.T << ". Median / 90th-percentile relative error "
     << "of o (and median of x) over tokens; the last rows are the exact (Cholesky) solve in the same precision, "
        "i.e. the floor set by that precision's storage.\n\n| N | bound | x fp64 | o fp64 | o fp32 (median / p90) | o bf16 (median / p90) | o bf16s (median / p90) |\n|---|---|---|---|---|---|---|\n";
  std::vector<int> ns;
  for (const RunnerResult& r : it.runners)
    if (r.spec.solver == "chebyshev" && r.spec.precision == Precision::fp64) ns.push_back(r.spec.num_iter);
  for (int n : ns) {
    const RunnerResult* a = find(it, "chebyshev", Precision::fp64, kR02, n);
    const RunnerResult* b = find(it, "chebyshev", Precision::fp32, kR02, n);
    const RunnerResult* c = find(it, "chebyshev", Precision::bf16, kR02, n);
    const RunnerResult* c2 = find(it, "chebyshev", Precision::bf16s, kR02, n);
    md << "| " << n << " | " << e2(chebyshev_error_bound(0.02, n)) << " | " << e2(median(a->xerr)) << " | " << e2(median(a->oerr))
       << " | " << e2(median(b->oerr)) << " / " << e2(quantile(b->oerr, 0.9)) << " | " << e2(median(c->oerr)) << " / "
       << e2(quantile(c->oerr, 0.9)) << " | " << e2(median(c2->oerr)) << " / " << e2(quantile(c2->oerr, 0.9)) << " |\n";
  }
  const RunnerResult* ex32 = find(it, "exact", Precision::fp32, kR02);
  const RunnerResult* ex16 = find(it, "exact", Precision::bf16, kR02);
  const RunnerResult* ex16s = find(it, "exact", Precision::bf16s, kR02);
  md << "| exact | – | – | – | " << e2(median(ex32->oerr)) << " / " << e2(quantile(ex32->oerr, 0.9)) << " | " << e2(median(ex16->oerr))
     << " / " << e2(quantile(ex16->oerr, 0.9)) << " | " << e2(median(ex16s->oerr)) << " / " << e2(quantile(ex16s->oerr, 0.9)) << " |\n\n";
  auto min_n = [&](Precision p, double tol) {
    for (int n : ns)
      if (quantile(find(it, "chebyshev", p, kR02, n)->oerr, 0.9) <= tol) return n;
    return -1;
  };
  {
    Plot p;
    p.title = "Chebyshev, r=0.02: median o error vs num_iter";
    p.xlabel = "num_iter N";
    p.ylabel = "median ||o-o*||/||o*||";
    for (Precision pr : kPrecAll) {
      Series s;
      s.name = std::string("chebyshev ") + precision_name(pr);
      s.color = color_of("chebyshev", pr);
      for (int n : ns) {
        s.x.push_back(n);
        s.y.push_back(median(find(it, "chebyshev", pr, kR02, n)->oerr));
      }
      p.series.push_back(s);
    }
    for (const RunnerResult* e : {ex32, ex16, ex16s}) {
      Series s;
      s.name = std::string("exact ") + precision_name(e->spec.precision);
      s.dashed = true;
      s.color = color_of("exact", e->spec.precision);
      s.x = {double(ns.front()), double(ns.back())};
      s.y = {median(e->oerr), median(e->oerr)};
      p.series.push_back(s);
    }
    Series b;
    b.name = "a-priori bound (x)";
    b.dashed = true;
    b.color = 12;
    for (int n : ns) {
      b.x.push_back(n);
      b.y.push_back(chebyshev_error_bound(0.02, n));
    }
    p.series.push_back(b);
    md << plot_file(out, "iter_fine_r0.02.png", p, pngs);
  }
  md << "Smallest N whose 90th-percentile o error is ≤ tolerance (fp32): 1e-2 → " << min_n(Precision::fp32, 1e-2)
     << ", 1e-3 → " << min_n(Precision::fp32, 1e-3) << ", 1e-4 → " << min_n(Precision::fp32, 1e-4) << ", 1e-5 → "
     << min_n(Precision::fp32, 1e-5) << " (−1 = not reached). `num_iter_for_tolerance(0.02, tol)` (worst-case bound on x): "
     << num_iter_for_tolerance(0.02, 1e-2) << ", " << num_iter_for_tolerance(0.02, 1e-3) << ", " << num_iter_for_tolerance(0.02, 1e-4)
     << ", " << num_iter_for_tolerance(0.02, 1e-5) << ".\n\n";
  // bf16: first N within 1.5x of the bf16 exact floor (median o)
  auto floor_n = [&](Precision p, const RunnerResult* ex) {
    for (int n : ns)
      if (median(find(it, "chebyshev", p, kR02, n)->oerr) <= 1.5 * median(ex->oerr)) return n;
    return -1;
  };
  const int n_floor = floor_n(Precision::bf16, ex16), n_floor_s = floor_n(Precision::bf16s, ex16s);

  // ---- B: long horizon ----
  md << "## B. Long horizons: the classic Kalman recursion\n\n";
  std::vector<std::string> blowups;
  for (const ForwardRun& run : d.horizon) {
    md << "### Input `" << run.input.name << "` (D = " << run.input.D << ", T = " << run.input.T << ")\n\n"
       << "| configuration | median x err | max x err | median o err | first t with x err > 0.1 | first t > 1 | NaN/Inf tokens (first) | kalman: median x err vs fixed-λ system |\n|---|---|---|---|---|---|---|---|\n";
    for (const RunnerResult& r : run.runners) {
      md << "| " << r.spec.label() << " | " << e2(median(r.xerr)) << " | " << e2(max_finite_or_inf(r.xerr)) << " | " << e2(median(r.oerr))
         << " | " << tok(first_above(r.xerr, 0.1)) << " | " << tok(first_above(r.xerr, 1.0)) << " | " << r.nonfinite << " ("
         << tok(r.first_nonfinite) << ") | " << (r.xerr_fixed.empty() ? std::string("–") : e2(median(r.xerr_fixed))) << " |\n";
      if (r.spec.solver == "kalman" && r.spec.precision == Precision::bf16)
        blowups.push_back("`" + run.input.name + "`, λ = " + e2(r.spec.lambda.value) + ": x error > 0.1 first at t = " +
                          tok(first_above(r.xerr, 0.1)) + ", > 1 at t = " + tok(first_above(r.xerr, 1.0)) + ", NaN/Inf at t = " +
                          tok(r.first_nonfinite) + " (median x error " + e2(median(r.xerr)) + ")");
    }
    for (const CondSeries& c : run.cond) {
      std::vector<float> v(c.cond.begin(), c.cond.end());
      md << (c.lambda == run.cond.front().lambda ? "\ncond(H_t + λ_t I), median / max: " : "; ") << c.lambda.name() << ": " << e2(median(v))
         << " / " << e2(max_finite_or_inf(v));
    }
    md << ".\n\n";
    Plot p;
    p.title = "x error vs t, " + run.input.name;
    p.xlabel = "token t";
    p.ylabel = "||x-x*||/||x*||";
    p.logx = true;
    for (const RunnerResult& r : run.runners) {
      const bool keep = (r.spec.solver == "kalman" && r.spec.lambda.value == 1.0) ||
                        (r.spec.solver != "kalman" && r.spec.lambda == kR02 && r.spec.precision != Precision::fp64 && r.spec.solver != "exact");
      if (!keep) continue;
      Series s;
      s.name = r.spec.solver + " " + precision_name(r.spec.precision) + (r.spec.solver == "kalman" ? " l=1" : " r=.02");
      s.color = color_of(r.spec.solver, r.spec.precision);
      s.dashed = r.spec.solver == "cg";
      for (int64_t t : run.samples) {
        s.x.push_back(double(t));
        s.y.push_back(r.xerr[size_t(t - 1)]);
      }
      p.series.push_back(s);
    }
    md << plot_file(out, "time_" + run.input.name + ".png", p, pngs);
  }

  // ---- C: gradients ----
  md << "## C. Gradient error through a stack of " << d.grad_problem.layers << " layers\n\n"
     << "Relative error of ∂L/∂X after backpropagating through `depth` layers, vs the fp64 exact-solve model.\n\n";
  for (const LambdaMode& m : {LambdaMode{LambdaKind::adaptive, 0.02}, LambdaMode{LambdaKind::fixed, 1.0}}) {
    md << "### " << m.name() << "\n\n| solver | precision | loss err |";
    for (int k = 1; k <= d.grad_problem.layers; ++k) md << " depth " << k << " |";
    md << " weight grads, bottom layer |\n|---|---|---|";
    for (int k = 0; k <= d.grad_problem.layers; ++k) md << "---|";
    md << '\n';
    Plot p;
    p.title = "gradient error vs depth, " + m.name();
    p.xlabel = "layers backpropagated through";
    p.ylabel = "rel. error of dL/dX";
    for (const GradResult& g : d.grad) {
      if (!(g.spec.lambda == m)) continue;
      md << "| " << g.spec.solver << (g.spec.solver == "exact" ? "" : " N=" + std::to_string(g.spec.num_iter)) << " | "
         << precision_name(g.spec.precision) << " | " << e2(g.loss_err) << " |";
      for (double e : g.dx_err) md << ' ' << e2(e) << " |";
      md << ' ' << e2(g.dw_err.back()) << (g.finite ? "" : " **NaN**") << " |\n";
      if (g.spec.num_iter == 30 || g.spec.solver == "exact") {
        if (g.spec.solver == "exact" && g.spec.precision == Precision::fp64) continue;
        Series s;
        s.name = g.spec.solver + (g.spec.solver == "exact" ? "" : " N=30") + " " + precision_name(g.spec.precision);
        s.color = color_of(g.spec.solver, g.spec.precision);
        s.dashed = g.spec.solver == "cg";
        for (size_t k = 0; k < g.dx_err.size(); ++k) {
          s.x.push_back(double(k + 1));
          s.y.push_back(g.dx_err[k]);
        }
        p.series.push_back(s);
      }
    }
    p.logx = false;
    md << '\n' << plot_file(out, std::string("grad_") + (m.kind == LambdaKind::adaptive ? "adaptive" : "fixed") + ".png", p, pngs);
  }

  // ---------------- headline answers ----------------
  auto grad_find = [&](const std::string& solver, Precision p, int n) -> const GradResult* {
    for (const GradResult& g : d.grad)
      if (g.spec.solver == solver && g.spec.precision == p && g.spec.lambda == kR02 && (solver == "exact" || g.spec.num_iter == n)) return &g;
    return nullptr;
  };
  head << "## Headline answers\n\n";
  head << "1. **Does the classic recursion blow up in bf16, and after how many tokens?** bf16 fading-memory "
          "recursion, error against the exact solve of its own system:\n";
  for (const std::string& b : blowups) head << "   * " << b << "\n";
  {
    const ForwardRun& run = d.horizon.front();
    const RunnerResult* k32 = find(run, "kalman", Precision::fp32, {LambdaKind::fixed, 1.0});
    const RunnerResult* c16 = find(run, "chebyshev", Precision::bf16, kR02, 30);
    const RunnerResult* c16s = find(run, "chebyshev", Precision::bf16s, kR02, 30);
    head << "   * for comparison on `" << run.input.name << "`: the same recursion in fp32 has median x error " << e2(median(k32->xerr))
         << " (max " << e2(max_finite_or_inf(k32->xerr)) << "); Chebyshev N = 30, r = 0.02 has median " << e2(median(c16->xerr))
         << " (max " << e2(max_finite_or_inf(c16->xerr)) << ") in bf16 with bf16 states and median " << e2(median(c16s->xerr)) << " (max "
         << e2(max_finite_or_inf(c16s->xerr)) << ") in bf16s (fp32 states) over all " << run.input.T << " tokens.\n";
  }
  head << "2. **Does CG plateau above Chebyshev in bf16?** Median x error at r = 0.02 for N = 5/10/20/30/50 (input `layer`, `correlated`):\n";
  for (size_t i = 0; i < std::min<size_t>(2, d.solve.size()); ++i) {
    const ForwardRun& run = d.solve[i];
    for (const char* solver : {"chebyshev", "cg"}) {
      head << "   * `" << run.input.name << "` " << solver << " bf16:";
      for (int n : {5, 10, 20, 30, 50}) head << ' ' << e2(median(find(run, solver, Precision::bf16, kR02, n)->xerr));
      head << "; bf16s:";
      for (int n : {5, 10, 20, 30, 50}) head << ' ' << e2(median(find(run, solver, Precision::bf16s, kR02, n)->xerr));
      head << " (fp32:";
      for (int n : {5, 10, 20, 30, 50}) head << ' ' << e2(median(find(run, solver, Precision::fp32, kR02, n)->xerr));
      head << ")\n";
    }
    head << "   * `" << run.input.name << "` exact (Cholesky) in bf16: " << e2(median(find(run, "exact", Precision::bf16, kR02)->xerr))
         << ", bf16s: " << e2(median(find(run, "exact", Precision::bf16s, kR02)->xerr)) << "\n";
  }
  head << "3. **What does adaptive λ buy over fixed λ?** Chebyshev N = 30 in bf16 (median / max x error; max cond):\n";
  for (const ForwardRun& run : d.solve) {
    head << "   * `" << run.input.name << "`:";
    for (const LambdaMode& m : kModes) {
      const RunnerResult* r = find(run, "chebyshev", Precision::bf16, m, 30);
      double cmax = 0;
      for (const CondSeries& c : run.cond)
        if (c.lambda == m) {
          std::vector<float> v(c.cond.begin(), c.cond.end());
          cmax = max_finite_or_inf(v);
        }
      head << ' ' << m.name() << ": " << e2(median(r->xerr)) << " / " << e2(max_finite_or_inf(r->xerr)) << " (κ ≤ " << e2(cmax) << ");";
    }
    head << "\n";
  }
  head << "4. **How many Chebyshev iterations does r = 0.02 need?** fp32, 90th-percentile o error: ≤ 1e-2 at N = " << min_n(Precision::fp32, 1e-2)
       << ", ≤ 1e-3 at N = " << min_n(Precision::fp32, 1e-3) << ", ≤ 1e-4 at N = " << min_n(Precision::fp32, 1e-4)
       << ". In bf16 the error stops improving at the storage floor (exact bf16 solve: median o error " << e2(median(ex16->oerr))
       << "), reached within 1.5× at N = " << n_floor << "; with fp32 states (bf16s) the floor is " << e2(median(ex16s->oerr))
       << ", reached within 1.5× at N = " << n_floor_s << ". N = 30 gives median o error " << e2(median(find(it, "chebyshev", Precision::fp32, kR02, 30)->oerr))
       << " in fp32, " << e2(median(find(it, "chebyshev", Precision::bf16, kR02, 30)->oerr)) << " in bf16 and "
       << e2(median(find(it, "chebyshev", Precision::bf16s, kR02, 30)->oerr)) << " in bf16s.\n";
  {
    const GradResult* c30 = grad_find("chebyshev", Precision::fp64, 30);
    const GradResult* c50 = grad_find("chebyshev", Precision::fp64, 50);
    const GradResult* g30 = grad_find("cg", Precision::fp64, 30);
    const GradResult* g10 = grad_find("cg", Precision::fp64, 10);
    const GradResult* c10 = grad_find("chebyshev", Precision::fp64, 10);
    const GradResult* c30b = grad_find("chebyshev", Precision::bf16, 30);
    const GradResult* g30b = grad_find("cg", Precision::bf16, 30);
    const GradResult* e16 = grad_find("exact", Precision::bf16, 0);
    const size_t L = c30->dx_err.size() - 1;
    head << "5. **Gradients through " << L + 1 << " layers (r = 0.02, depth 1 → " << L + 1 << "):** fp64 Chebyshev N = 10: "
         << e2(c10->dx_err[0]) << " → " << e2(c10->dx_err[L]) << ", N = 30: " << e2(c30->dx_err[0]) << " → " << e2(c30->dx_err[L])
         << ", N = 50: " << e2(c50->dx_err[0]) << " → " << e2(c50->dx_err[L]) << "; fp64 CG N = 10: " << e2(g10->dx_err[0]) << " → "
         << e2(g10->dx_err[L]) << ", N = 30: " << e2(g30->dx_err[0]) << " → " << e2(g30->dx_err[L]) << "; bf16 Chebyshev N = 30: "
         << e2(c30b->dx_err[0]) << " → " << e2(c30b->dx_err[L]) << ", bf16 CG N = 30: " << e2(g30b->dx_err[0]) << " → "
         << e2(g30b->dx_err[L]) << ", bf16 exact: " << e2(e16->dx_err[0]) << " → " << e2(e16->dx_err[L]) << ".\n\n";
  }

  std::string body = md.str();
  const std::string marker = "## Method";
  body.insert(body.find(marker), head.str() + "See *Verdict on the paper's claims* at the end for the reading of these numbers.\n\n");
  std::ofstream(out + "/numerics.md") << body << numerics_verdict(d) << "\nPlots written: " << pngs.size() << ".\n";
}

}  // namespace gka::study
