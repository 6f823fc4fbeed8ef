//! The measurements behind docs/sde-bridges.md: convergence on the OU process, degradation
//! with the interval length and with the strength of the nonlinearity, parameter estimates,
//! and timings. Every number is seeded; rerun with
//!
//! ```text
//! cargo run --release -p diffsmc-sde --example bridge_study            # all sections
//! cargo run --release -p diffsmc-sde --example bridge_study -- length  # one section
//! ```
//!
//! Sections: `convergence`, `length`, `nonlinear`, `euler-mle`, `fit-ou`, `fit-dw`, `timing`.

use std::time::Instant;

use diffsmc::grad::{ChunkSize, Differentiable, GradMode, GradOptions, gradient};
use diffsmc::prelude::*;
use diffsmc::rng::Purpose;
use diffsmc_optim::{Lbfgs, Minimizer};
use diffsmc_sde::*;

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt();
    (m, s)
}

/// One interval's estimate and final ESS fraction.
fn estimate<D: Sde<f64>>(
    sde: &D,
    a: f64,
    b: f64,
    dt: f64,
    n: usize,
    m: usize,
    p: BridgeProposal,
    trigger: Trigger,
    seed: u64,
) -> (f64, f64) {
    let r = estimate_with(sde, a, b, dt, n, m, p, trigger, Lookahead::default(), seed);
    (r.0, r.1)
}

/// One interval's estimate, final ESS fraction and number of resampling steps.
fn estimate_with<D: Sde<f64>>(
    sde: &D,
    a: f64,
    b: f64,
    dt: f64,
    n: usize,
    m: usize,
    p: BridgeProposal,
    trigger: Trigger,
    look: Lookahead,
    seed: u64,
) -> (f64, f64, usize) {
    let br = Bridge::new(sde, &[a], &[b], dt, m, p)
        .unwrap()
        .with_lookahead(look);
    let c = SmcConfig::new(n).unwrap().with_trigger(trigger).unwrap();
    let out: SmcOutput<f64> = Smc::new(c).run(&br, &Systematic, seed).unwrap();
    (
        out.log_likelihood,
        *out.ess.last().unwrap() / n as f64,
        out.n_resampled(),
    )
}

fn convergence() {
    println!("## OU single transition: κ = 1, μ = 0, σ = 0.5, Δ = 1, 0.5 → −0.4");
    let ou = Ou::new(1.0, 0.0, 0.5, 1).unwrap();
    let exact = ou.exact_log_transition(&[0.5], &[-0.4], 1.0);
    println!("exact log p = {exact:.5}\n");
    println!(
        "| M | Euler bias log p^(M) − log p | N | mean(ℓ̂ − log p^(M)) | sd(ℓ̂) | mean |ℓ̂ − log p| | IS ESS/N |"
    );
    println!("|---|---|---|---|---|---|---|");
    for m in [4, 8, 16, 32, 64, 128] {
        let euler = ou.euler_log_transition(&[0.5], &[-0.4], 1.0, m);
        for n in [16, 256, 4096] {
            let reps = 50;
            let (mut e, mut ess) = (Vec::new(), Vec::new());
            for s in 0..reps {
                let (l, f) = estimate(
                    &ou,
                    0.5,
                    -0.4,
                    1.0,
                    n,
                    m,
                    BridgeProposal::ModifiedDiffusionBridge,
                    Trigger::Never,
                    s,
                );
                e.push(l);
                ess.push(f);
            }
            let (mean, sd) = mean_sd(&e);
            let mae = e.iter().map(|l| (l - exact).abs()).sum::<f64>() / reps as f64;
            println!(
                "| {m} | {:+.4} | {n} | {:+.5} | {sd:.5} | {mae:.4} | {:.3} |",
                euler - exact,
                mean - euler,
                mean_sd(&ess).0
            );
        }
    }
    println!();
}

/// Draws (x0, x1) pairs: x0 from the stationary law, x1 from the exact transition.
fn ou_pairs(ou: &Ou<f64>, dt: f64, reps: usize) -> Vec<(f64, f64)> {
    (0..reps)
        .map(|r| {
            let mut rng = StreamKey::new(99, r, Purpose::Other(7)).rng(0);
            let sd0 = ou.sigma / (2.0 * ou.kappa).sqrt();
            let x0 = ou.mu + sd0 * standard_normal(&mut rng);
            let obs = ou.simulate_exact(&[x0], &[0.0, dt], r as u64).unwrap();
            (x0, obs.value(1)[0])
        })
        .collect()
}

fn length() {
    println!("## Degradation with the interval length: OU κ = 1, μ = 0, σ = 0.5, N = 256, M = 16");
    println!(
        "(200 end-point pairs from the stationary law and the exact transition; one seed each;"
    );
    println!("error = ℓ̂ − log p^(M), the Monte Carlo part only)\n");
    println!(
        "| κΔ | proposal | trigger | look-ahead | sd(error) | mean(error) | mean final ESS/N | min final ESS/N | resamplings per interval |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let ou = Ou::new(1.0, 0.0, 0.5, 1).unwrap();
    for dt in [0.1, 0.5, 1.0, 2.0, 4.0, 8.0] {
        let pairs = ou_pairs(&ou, dt, 200);
        let mdb = BridgeProposal::ModifiedDiffusionBridge;
        let dh = BridgeProposal::DelyonHu;
        let ess = Trigger::EssBelow(0.5);
        for (p, trig, look) in [
            (mdb, Trigger::Never, Lookahead::Brownian),
            (mdb, ess, Lookahead::Brownian),
            (mdb, ess, Lookahead::Euler),
            (mdb, ess, Lookahead::Off),
            (dh, Trigger::Never, Lookahead::Brownian),
            (dh, ess, Lookahead::Brownian),
        ] {
            let (mut err, mut ess, mut res) = (Vec::new(), Vec::new(), 0);
            for (r, &(a, b)) in pairs.iter().enumerate() {
                let (l, f, k) = estimate_with(&ou, a, b, dt, 256, 16, p, trig, look, r as u64);
                err.push(l - ou.euler_log_transition(&[a], &[b], dt, 16));
                ess.push(f);
                res += k;
            }
            let (m, s) = mean_sd(&err);
            let trig_s = match trig {
                Trigger::Never => "never".to_string(),
                Trigger::EssBelow(f) => format!("ess:{f}"),
                Trigger::Always => "always".to_string(),
            };
            println!(
                "| {dt} | {p} | {trig_s} | {} | {s:.4} | {m:+.4} | {:.3} | {:.3} | {:.1} |",
                if trig == Trigger::Never {
                    "—".to_string()
                } else {
                    look.to_string()
                },
                mean_sd(&ess).0,
                ess.iter().copied().fold(f64::INFINITY, f64::min),
                res as f64 / pairs.len() as f64
            );
        }
    }
    println!();
}

fn nonlinear() {
    println!(
        "## Degradation with the nonlinearity: double well dX = θ1 X(1 − X²)dt + 0.5 dW, Δ = 1"
    );
    println!(
        "(N = 256, M = 32; 100 seeds per row; `within` = 1 → 0.9, `across` = −1 → 1 (over the"
    );
    println!(
        "barrier); ℓ̂, sd and ESS for MDB without resampling; sd for MDB with ess:0.5 resampling"
    );
    println!(
        "(Brownian look-ahead) and for Delyon–Hu without; Δℓ_M = mean ℓ̂(M = 32) − mean ℓ̂(M = 128)"
    );
    println!("at N = 1024, 10 seeds)\n");
    println!(
        "| θ1 | transition | mean ℓ̂ | sd(ℓ̂) MDB | mean IS ESS/N | min IS ESS/N | sd MDB + resampling | sd Delyon–Hu | Δℓ_M |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for th1 in [0.25, 0.5, 1.0, 2.0, 4.0] {
        let dw = DoubleWell::new(th1, 1.0, 0.5).unwrap();
        for (name, a, b) in [("within", 1.0, 0.9), ("across", -1.0, 1.0)] {
            let (mut l, mut ess) = (Vec::new(), Vec::new());
            for s in 0..100 {
                let (x, f) = estimate(
                    &dw,
                    a,
                    b,
                    1.0,
                    256,
                    32,
                    BridgeProposal::ModifiedDiffusionBridge,
                    Trigger::Never,
                    s,
                );
                l.push(x);
                ess.push(f);
            }
            let sd_of = |p: BridgeProposal, trig: Trigger| {
                let v: Vec<f64> = (0..100)
                    .map(|s| estimate(&dw, a, b, 1.0, 256, 32, p, trig, s).0)
                    .collect();
                mean_sd(&v).1
            };
            let sd_res = sd_of(
                BridgeProposal::ModifiedDiffusionBridge,
                Trigger::EssBelow(0.5),
            );
            let sd_dh = sd_of(BridgeProposal::DelyonHu, Trigger::Never);
            let big = |m: usize| {
                let v: Vec<f64> = (0..10)
                    .map(|s| {
                        estimate(
                            &dw,
                            a,
                            b,
                            1.0,
                            1024,
                            m,
                            BridgeProposal::ModifiedDiffusionBridge,
                            Trigger::Never,
                            1000 + s,
                        )
                        .0
                    })
                    .collect();
                mean_sd(&v).0
            };
            let (m, s) = mean_sd(&l);
            println!(
                "| {th1} | {name} | {m:.4} | {s:.4} | {:.3} | {:.3} | {sd_res:.4} | {sd_dh:.4} | {:+.4} |",
                mean_sd(&ess).0,
                ess.iter().copied().fold(f64::INFINITY, f64::min),
                big(32) - big(128)
            );
        }
    }
    println!();
}

struct EulerOu<'a> {
    obs: &'a Observations,
    m: usize,
}

impl Differentiable for EulerOu<'_> {
    fn n_params(&self) -> usize {
        3
    }
    fn eval<S: Scalar>(&self, phi: &[S]) -> diffsmc::Result<S> {
        let ou = Ou::new(phi[0], phi[1], phi[2].exp(), self.obs.dim())?;
        Ok(-ou.euler_log_likelihood(self.obs, self.m)?)
    }
}

fn lbfgs<O: Differentiable>(o: &O, phi0: &[f64]) -> (Vec<f64>, bool, usize) {
    let f = |phi: &[f64]| {
        gradient(
            o,
            phi,
            &GradOptions::default()
                .with_mode(GradMode::Forward)
                .with_chunk(ChunkSize::Auto),
        )
        .unwrap_or((f64::NAN, vec![f64::NAN; phi.len()]))
    };
    let r = Lbfgs::new()
        .with_max_iterations(200)
        .unwrap()
        .minimize(f, phi0)
        .unwrap();
    (r.theta, r.converged, r.iterations)
}

fn ou_data(seed: u64) -> Observations {
    Ou::new(2.0, 0.5, 0.5, 1)
        .unwrap()
        .simulate_exact(&[0.5], &regular_times(201, 0.1), seed)
        .unwrap()
}

fn exact_mle(obs: &Observations) -> (Vec<f64>, Vec<f64>) {
    let o = ExactOuObjective {
        obs,
        parametrisation: Parametrisation::LogPositive,
    };
    let (mle, conv, _) = lbfgs(&o, &[1.0, 0.0, 0.3f64.ln()]);
    assert!(conv);
    let se = standard_errors(&o, &mle, 1e-4).unwrap();
    (mle, se)
}

fn euler_mle() {
    println!("## Discretisation bias of the MLE: the Euler-scheme MLE (N → ∞) vs the exact MLE");
    println!("(OU κ = 2, μ = 0.5, σ = 0.5; 200 observations at Δ = 0.1, data seed 11; in exact");
    println!("standard errors of (κ, μ, log σ))\n");
    println!("| M | κδ | z(κ) | z(μ) | z(log σ) |");
    println!("|---|---|---|---|---|");
    let obs = ou_data(11);
    let (mle, se) = exact_mle(&obs);
    for m in [1, 2, 4, 8, 16, 32, 64] {
        let (e, conv, _) = lbfgs(&EulerOu { obs: &obs, m }, &mle);
        assert!(conv);
        println!(
            "| {m} | {:.4} | {:+.3} | {:+.3} | {:+.3} |",
            2.0 * 0.1 / m as f64,
            (e[0] - mle[0]) / se[0],
            (e[1] - mle[1]) / se[1],
            (e[2] - mle[2]) / se[2]
        );
    }
    println!();
}

fn fit_ou() {
    println!("## Bridge MLE vs exact MLE on OU data (κ = 2, μ = 0.5, σ = 0.5; 200 obs at Δ = 0.1)");
    println!("(L-BFGS in (κ, μ, log σ) from (1, 0, log 0.3), common random numbers, MDB, no");
    println!(
        "resampling; z = (bridge − exact)/SE_exact; 20 data sets (seeds 0..19), filter seed 4)\n"
    );
    println!(
        "| N | M | mean z(κ) | mean z(μ) | mean z(log σ) | max |z| | all converged | mean s per fit |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let data: Vec<(Observations, Vec<f64>, Vec<f64>)> = (0..20)
        .map(|s| {
            let o = ou_data(s);
            let (m, se) = exact_mle(&o);
            (o, m, se)
        })
        .collect();
    for (n, m) in [(16, 4), (64, 8), (64, 16), (256, 16)] {
        let settings = BridgeSettings::new(n, m).unwrap();
        let mut z = vec![Vec::new(); 3];
        let mut all_conv = true;
        let t0 = Instant::now();
        for (obs, mle, se) in &data {
            let o = PathObjective {
                family: &OuFamily { dim: 1 },
                obs,
                settings: &settings,
                resampler: &ResamplerSpec::Systematic,
                seed: 4,
                parametrisation: Parametrisation::LogPositive,
            };
            let (hat, conv, _) = lbfgs(&o, &[1.0, 0.0, 0.3f64.ln()]);
            all_conv &= conv;
            for i in 0..3 {
                z[i].push((hat[i] - mle[i]) / se[i]);
            }
        }
        let secs = t0.elapsed().as_secs_f64() / data.len() as f64;
        let maxz = z.iter().flatten().fold(0.0_f64, |a, b| a.max(b.abs()));
        println!(
            "| {n} | {m} | {:+.3} | {:+.3} | {:+.3} | {maxz:.3} | {all_conv} | {secs:.2} |",
            mean_sd(&z[0]).0,
            mean_sd(&z[1]).0,
            mean_sd(&z[2]).0
        );
    }
    println!();
}

fn fit_dw() {
    println!("## Double-well fit (truth θ1 = 1, θ2 = 1, σ = 0.7; 200 obs at Δ = 0.25, Euler");
    println!("simulation with step 1e-4 from −1, data seed 3; N = 128, MDB, no resampling;");
    println!("SE from the curvature of the seeded estimate)\n");
    println!("| M | θ1 ± SE | θ2 ± SE | σ ± SE | NLL | iterations | s |");
    println!("|---|---|---|---|---|---|---|");
    let dw = DoubleWell::new(1.0, 1.0, 0.7).unwrap();
    let obs = simulate_euler(&dw, &[-1.0], &regular_times(201, 0.25), 1e-4, 3).unwrap();
    let crossings = (1..obs.len())
        .filter(|&k| obs.value(k)[0].signum() != obs.value(k - 1)[0].signum())
        .count();
    for m in [2, 4, 8, 16, 32, 64] {
        let settings = BridgeSettings::new(128, m).unwrap();
        let o = PathObjective {
            family: &DoubleWellFamily,
            obs: &obs,
            settings: &settings,
            resampler: &ResamplerSpec::Systematic,
            seed: 4,
            parametrisation: Parametrisation::LogPositive,
        };
        let t0 = Instant::now();
        let (hat, conv, it) = lbfgs(&o, &[0.5, 0.5, 0.5f64.ln()]);
        let secs = t0.elapsed().as_secs_f64();
        let se = standard_errors(&o, &hat, 1e-4).unwrap();
        let nll = diffsmc::grad::value(&o, &hat).unwrap();
        let s = hat[2].exp();
        println!(
            "| {m} | {:.3} ± {:.3} | {:.3} ± {:.3} | {:.3} ± {:.3} | {nll:.3} | {it}{} | {secs:.2} |",
            hat[0],
            se[0],
            hat[1],
            se[1],
            s,
            s * se[2],
            if conv { "" } else { " (not converged)" }
        );
    }
    println!("\n({crossings} of 200 intervals cross zero)\n");
}

fn timing() {
    println!("## Cost: 200 intervals of the OU data above");
    println!("(wall-clock median of 5 with the threads rayon is given — run with");
    println!(
        "RAYON_NUM_THREADS=1 for one core; value on f64, value + gradient on DualSVec64<4>)\n"
    );
    println!("| N | M | value (s) | value + gradient (s) | ratio |");
    println!("|---|---|---|---|---|");
    let obs = ou_data(11);
    let phi = [2.0, 0.5, 0.5f64.ln()];
    for (n, m) in [(64, 8), (64, 16), (256, 16), (1024, 32)] {
        let settings = BridgeSettings::new(n, m).unwrap();
        let o = PathObjective {
            family: &OuFamily { dim: 1 },
            obs: &obs,
            settings: &settings,
            resampler: &ResamplerSpec::Systematic,
            seed: 1,
            parametrisation: Parametrisation::LogPositive,
        };
        let median = |f: &dyn Fn()| {
            let mut t: Vec<f64> = (0..5)
                .map(|_| {
                    let t0 = Instant::now();
                    f();
                    t0.elapsed().as_secs_f64()
                })
                .collect();
            t.sort_by(f64::total_cmp);
            t[2]
        };
        let v = median(&|| {
            diffsmc::grad::value(&o, &phi).unwrap();
        });
        let g = median(&|| {
            diffsmc::grad::gradient(&o, &phi, &diffsmc::grad::GradOptions::default()).unwrap();
        });
        println!("| {n} | {m} | {v:.4} | {g:.4} | {:.1} |", g / v);
    }
    println!();
}

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let run = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if run("convergence") {
        convergence();
    }
    if run("length") {
        length();
    }
    if run("nonlinear") {
        nonlinear();
    }
    if run("euler-mle") {
        euler_mle();
    }
    if run("fit-ou") {
        fit_ou();
    }
    if run("fit-dw") {
        fit_dw();
    }
    if run("timing") {
        timing();
    }
}
