//! Guided and auxiliary particle filters against the Kalman filter: unbiased likelihoods under
//! every trigger, the variance reduction of the optimal proposal, the fully adapted filter's
//! increments, gradients against finite differences, typed errors.

use diffsmc::grad::{GradOptions, Parametric, ParticleFilterNll, gradient, value};
use diffsmc::prelude::*;
use diffsmc::rng::derive_seed;
use diffsmc_lgssm::{ExactLookAhead, Lgssm, LgssmData, OptimalProposal};

const THETA: [f64; 2] = [0.5, 1.0];

fn data(steps: usize, seed: u64) -> LgssmData<f64> {
    let m = Lgssm::paper(THETA[0], THETA[1], 1).unwrap();
    let (_, ys) = m.simulate(steps, seed);
    m.with_data(ys).unwrap()
}

type GuidedLgssm<'a> = Guided<&'a LgssmData<f64>, OptimalProposal<f64>>;

fn guided(d: &LgssmData<f64>) -> GuidedLgssm<'_> {
    Guided::new(d, d.optimal_proposal().unwrap()).unwrap()
}

fn auxiliary(d: &LgssmData<f64>) -> Auxiliary<GuidedLgssm<'_>, ExactLookAhead<f64>> {
    Auxiliary::new(guided(d), d.exact_look_ahead().unwrap()).unwrap()
}

/// `log Ẑ` over `runs` seeds.
fn log_liks<M: FeynmanKac<f64>>(
    m: &M,
    n: usize,
    trigger: Trigger,
    runs: u64,
    base: u64,
) -> Vec<f64> {
    let smc = Smc::new(SmcConfig::new(n).unwrap().with_trigger(trigger).unwrap());
    (0..runs)
        .map(|r| {
            let out: SmcOutput<f64> = smc.run(m, &Systematic, derive_seed(base, r)).unwrap();
            out.log_likelihood
        })
        .collect()
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    (m, s)
}

/// `(mean, standard error)` of `exp(log Ẑ − log Z)` over seeds.
fn ratio_stats(lls: &[f64], exact: f64) -> (f64, f64) {
    let r: Vec<f64> = lls.iter().map(|l| (l - exact).exp()).collect();
    let (m, s) = mean_sd(&r);
    (m, s / (r.len() as f64).sqrt())
}

const TRIGGERS: [Trigger; 3] = [Trigger::Always, Trigger::EssBelow(0.5), Trigger::Never];

/// `Ẑ` is unbiased for `Z` (Kalman) for the guided filter, the fully adapted auxiliary filter
/// and the classic auxiliary filter (transition proposal, exact look-ahead) under the three
/// triggers: over 800 seeds (T = 25, N = 16, systematic resampling) the mean of `Ẑ/Z` is 1
/// within 4 standard errors (the standard error measured from the same ratios; the ratios'
/// spread is modest here — their measured sd is printed — so the CLT applies).
#[test]
fn guided_and_auxiliary_likelihoods_are_unbiased() {
    let d = data(25, 3);
    let exact = d.kalman().unwrap().log_likelihood;
    let g = guided(&d);
    let a = auxiliary(&d);
    for trigger in TRIGGERS {
        for (name, lls) in [
            ("guided", log_liks(&g, 16, trigger, 800, 1)),
            ("auxiliary", log_liks(&a, 16, trigger, 800, 2)),
        ] {
            let (m, se) = ratio_stats(&lls, exact);
            eprintln!(
                "{name} {trigger:?}: mean Ẑ/Z {m:.4} ± {se:.4} (sd {:.3})",
                se * 800f64.sqrt()
            );
            assert!((m - 1.0).abs() < 4.0 * se, "{name} {trigger:?}: {m} ± {se}");
        }
    }
}

/// A twisted model that keeps the look-ahead after its last step (the bug class of particles
/// #4 / LowLevelParticleFilters.jl #186): running the auxiliary model of 26 observations for
/// 25 steps estimates `p(y_{0:25})`, not `p(y_{0:24})`. The unbiasedness check above rejects
/// it decisively — the test has the power to see the bug it guards against.
#[test]
fn keeping_the_last_look_ahead_is_detected() {
    struct Truncated<'a, M>(&'a M, usize);
    impl<M: FeynmanKac<f64>> FeynmanKac<f64> for Truncated<'_, M> {
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn n_steps(&self) -> usize {
            self.1
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [f64]) {
            self.0.sample_initial(rng, x)
        }
        fn log_potential_initial(&self, x: &[f64]) -> f64 {
            self.0.log_potential_initial(x)
        }
        fn sample_transition(&self, t: usize, xp: &[f64], rng: &mut StreamRng, x: &mut [f64]) {
            self.0.sample_transition(t, xp, rng, x)
        }
        fn log_potential(&self, t: usize, xp: &[f64], x: &[f64]) -> f64 {
            self.0.log_potential(t, xp, x)
        }
    }
    let d = data(26, 3);
    let ys25 = d.ys()[..25].to_vec();
    let exact25 = d
        .model()
        .clone()
        .with_data(ys25)
        .unwrap()
        .kalman()
        .unwrap()
        .log_likelihood;
    let a = auxiliary(&d);
    let buggy = log_liks(&Truncated(&a, 25), 16, Trigger::Always, 800, 2);
    let (m, se) = ratio_stats(&buggy, exact25);
    eprintln!("kept last look-ahead: mean Ẑ/Z {m:.4} ± {se:.4}");
    assert!((m - 1.0).abs() > 8.0 * se, "{m} ± {se}");
    // The correct truncation passes.
    let right = log_liks(
        &a.clone().with_steps(25).unwrap(),
        16,
        Trigger::Always,
        800,
        2,
    );
    let (m, se) = ratio_stats(&right, exact25);
    assert!((m - 1.0).abs() < 4.0 * se, "{m} ± {se}");
}

/// The optimal proposal's log-likelihood estimate varies far less than the bootstrap's at the
/// same N (paper LGSSM, T = 100, N = 32, resampling every step, 200 seeds). Measured variance
/// ratio ≈ 0.05 (printed); the assertion asks for < 0.25. With 200 seeds the sample variance
/// is within ±20% of the truth (2 standard errors, `sqrt(2/199)`), so the margin is decisive.
#[test]
fn optimal_proposal_reduces_the_variance() {
    let d = data(100, 8);
    let n = 32;
    let (_, sb) = mean_sd(&log_liks(&Bootstrap(&d), n, Trigger::Always, 200, 4));
    let (_, sg) = mean_sd(&log_liks(&guided(&d), n, Trigger::Always, 200, 5));
    let (_, sa) = mean_sd(&log_liks(&auxiliary(&d), n, Trigger::Always, 200, 6));
    let (rg, ra) = ((sg / sb).powi(2), (sa / sb).powi(2));
    eprintln!(
        "var(log Ẑ): bootstrap {:.4}, guided {:.4} (ratio {rg:.4}), auxiliary {:.4} (ratio {ra:.4})",
        sb * sb,
        sg * sg,
        sa * sa
    );
    assert!(rg < 0.25, "guided/bootstrap variance ratio {rg}");
    assert!(ra < 0.25, "auxiliary/bootstrap variance ratio {ra}");
}

/// The fully adapted auxiliary filter (optimal proposal, exact look-ahead): its potentials
/// are `η_{t+1}(x_t)` exactly, so its step-`t` increment estimates `log p(y_{t+1} | y_{0:t})`
/// (the Kalman increment of the next step; at `t = 0`, `log p(y_0) + log p(y_1 | y_0)`) and its
/// last increment is exactly 0 (asserted to 1e-12). With N = 2000 the per-step errors are
/// Monte Carlo errors of a mean of N draws, `sd(η/π(η))/√N`; with a relative sd of η up to
/// about 1 that is ≤ 0.022, so each step's RMS error over 20 seeds must be below 0.05
/// (measured 1e-3 to 1.6e-2, printed). Summed over the steps, the squared errors are well
/// below the bootstrap filter's for its own increments at the same N (measured ratio ≈ 0.015;
/// asserted < 0.2).
#[test]
fn fully_adapted_increments_are_exact_for_large_n() {
    let steps = 10;
    let d = data(steps, 12);
    let k = d.kalman().unwrap().log_likelihood_increments;
    let a = auxiliary(&d);
    let smc = Smc::new(SmcConfig::new(2000).unwrap());
    let (mut err_a, mut err_b) = (vec![0.0; steps], vec![0.0; steps]);
    let seeds = 20;
    for s in 0..seeds {
        let oa: SmcOutput<f64> = smc.run(&a, &Systematic, s).unwrap();
        let ob: SmcOutput<f64> = smc.run(&Bootstrap(&d), &Systematic, s).unwrap();
        assert!(oa.log_likelihood_increments[steps - 1].abs() < 1e-12);
        for t in 0..steps {
            let target = match t {
                0 => k[0] + k[1],
                t if t + 1 < steps => k[t + 1],
                _ => 0.0,
            };
            err_a[t] += (oa.log_likelihood_increments[t] - target).powi(2) / seeds as f64;
            err_b[t] += (ob.log_likelihood_increments[t] - k[t]).powi(2) / seeds as f64;
        }
    }
    for t in 0..steps - 1 {
        let (ea, eb) = (err_a[t].sqrt(), err_b[t].sqrt());
        eprintln!("step {t}: RMS error fully adapted {ea:.2e}, bootstrap {eb:.2e}");
        assert!(ea < 0.05, "step {t}: RMS error {ea}");
    }
    let (ta, tb) = (err_a.iter().sum::<f64>(), err_b.iter().sum::<f64>());
    eprintln!("summed squared errors: fully adapted {ta:.2e}, bootstrap {tb:.2e}");
    assert!(ta < 0.2 * tb, "fully adapted {ta} vs bootstrap {tb}");
}

/// The paper LGSSM's guided filter (optimal proposal) as a [`Parametric`] family.
struct GuidedPaper {
    ys: Vec<Vec<f64>>,
}
impl Parametric for GuidedPaper {
    type Model<S: Scalar> = Guided<LgssmData<S>, OptimalProposal<S>>;
    fn n_params(&self) -> usize {
        2
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        let d = Lgssm::paper(theta[0], theta[1], 1)?.with_data(self.ys.clone())?;
        let q = d.optimal_proposal()?;
        Guided::new(d, q)
    }
}

/// The fully adapted auxiliary filter as a [`Parametric`] family.
struct AuxiliaryPaper {
    ys: Vec<Vec<f64>>,
}
impl Parametric for AuxiliaryPaper {
    type Model<S: Scalar> = Auxiliary<Guided<LgssmData<S>, OptimalProposal<S>>, ExactLookAhead<S>>;
    fn n_params(&self) -> usize {
        2
    }
    fn model<S: Scalar>(&self, theta: &[S]) -> Result<Self::Model<S>> {
        let d = Lgssm::paper(theta[0], theta[1], 1)?.with_data(self.ys.clone())?;
        let (q, l) = (d.optimal_proposal()?, d.exact_look_ahead()?);
        Auxiliary::new(Guided::new(d, q)?, l)
    }
}

/// The one gradient entry point of this file (value and gradient of the seeded NLL).
fn nll_gradient<P: Parametric>(
    p: &P,
    smc: &SmcConfig,
    spec: &ResamplerSpec,
    seed: u64,
) -> (f64, Vec<f64>) {
    gradient(
        &ParticleFilterNll::new(p, smc, spec, seed),
        &THETA,
        &GradOptions::default(),
    )
    .unwrap()
}

/// Under diffusion resampling the seeded guided (and auxiliary) estimator is one smooth
/// function of θ — derivatives flow through the optimal proposal's gain and covariance, the
/// look-ahead and the resampler — so the dual gradient equals central finite differences of
/// the same seeded estimator. As in tests/gradients.rs: h = 1e-5, truncation O(h²) and
/// round-off ≈ 1e-16·|NLL|/h ≈ 1e-9 relative; tolerance 1e-6.
#[test]
fn guided_gradient_matches_finite_differences_under_diffusion() {
    let (_, ys) = Lgssm::paper(THETA[0], THETA[1], 1)
        .unwrap()
        .simulate(30, 11);
    let smc = SmcConfig::new(32).unwrap();
    let spec: ResamplerSpec = "diffusion:T=2,K=8,integrator=jentzen-kloeden,sde"
        .parse()
        .unwrap();
    let h = 1e-5;
    let check = |name: &str, g: &[f64], f: &dyn Fn(&[f64]) -> f64| {
        for i in 0..2 {
            let (mut tp, mut tm) = (THETA, THETA);
            tp[i] += h;
            tm[i] -= h;
            let fd = (f(&tp) - f(&tm)) / (2.0 * h);
            let rel = (fd - g[i]).abs() / fd.abs().max(1.0);
            eprintln!("{name} param {i}: dual {} fd {fd} rel {rel:e}", g[i]);
            assert!(rel < 1e-6, "{name} param {i}: dual {} vs fd {fd}", g[i]);
        }
    };
    let gp = GuidedPaper { ys: ys.clone() };
    let (v, g) = nll_gradient(&gp, &smc, &spec, 1);
    assert!(
        (v - value(&ParticleFilterNll::new(&gp, &smc, &spec, 1), &THETA).unwrap()).abs() < 1e-9
    );
    check("guided", &g, &|th| {
        value(&ParticleFilterNll::new(&gp, &smc, &spec, 1), th).unwrap()
    });
    let ap = AuxiliaryPaper { ys };
    let (_, g) = nll_gradient(&ap, &smc, &spec, 2);
    check("auxiliary", &g, &|th| {
        value(&ParticleFilterNll::new(&ap, &smc, &spec, 2), th).unwrap()
    });
}

/// Typed errors: a model without a transition density cannot be guided; bad auxiliary
/// truncations; a proposal of the wrong dimension.
#[test]
fn typed_errors() {
    #[derive(Debug)]
    struct NoDensity;
    impl<S: Scalar> StateSpaceModel<S> for NoDensity {
        fn state_dim(&self) -> usize {
            1
        }
        fn n_observations(&self) -> usize {
            3
        }
        fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
            x[0] = S::cst(standard_normal(rng));
        }
        fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
            x[0] = xp[0] + standard_normal(rng);
        }
        fn observation_log_density(&self, _t: usize, _x: &[S]) -> S {
            S::zero()
        }
    }
    let d = data(3, 1);
    let err = Guided::new(NoDensity, d.optimal_proposal().unwrap()).unwrap_err();
    assert_eq!(
        err,
        SmcError::Unsupported {
            what: "transition density",
            needed_by: "guided filter"
        }
    );
    let d2 = Lgssm::paper(0.5, 1.0, 2)
        .unwrap()
        .with_data(vec![vec![0.0, 0.0]])
        .unwrap();
    assert!(matches!(
        Guided::new(&d, d2.optimal_proposal().unwrap()),
        Err(SmcError::DimensionMismatch {
            what: "proposal dimension",
            expected: 1,
            got: 2
        })
    ));
    let a = auxiliary(&d);
    for bad in [0, 4] {
        assert!(matches!(
            a.clone().with_steps(bad),
            Err(SmcError::InvalidParameter {
                name: "auxiliary steps",
                ..
            })
        ));
    }
}

/// Missing data: in two dimensions with some components and one whole observation missing
/// (NaN), the guided and the fully adapted auxiliary filters still estimate the Kalman
/// likelihood without bias (400 seeds, T = 20, N = 16, `EssBelow(0.5)`; mean of `Ẑ/Z` within 4
/// standard errors, as above). The optimal proposal conditions only on the observed
/// components, and the look-ahead is 1 where `y_t` is missing.
#[test]
fn missing_components_are_handled() {
    let m = Lgssm::paper(0.6, 0.9, 2).unwrap();
    let (_, mut ys) = m.simulate(20, 21);
    ys[2][0] = f64::NAN;
    ys[5][1] = f64::NAN;
    ys[9] = vec![f64::NAN; 2];
    ys[14][0] = f64::NAN;
    let d = m.with_data(ys).unwrap();
    let exact = d.kalman().unwrap().log_likelihood;
    let trigger = Trigger::EssBelow(0.5);
    for (name, lls) in [
        ("guided", log_liks(&guided(&d), 16, trigger, 400, 7)),
        ("auxiliary", log_liks(&auxiliary(&d), 16, trigger, 400, 8)),
    ] {
        let (mean, se) = ratio_stats(&lls, exact);
        eprintln!("{name} with missing data: mean Ẑ/Z {mean:.4} ± {se:.4}");
        assert!((mean - 1.0).abs() < 4.0 * se, "{name}: {mean} ± {se}");
    }
}
