//! The checkpointed reverse pass against forward-mode duals: both differentiate the same
//! seeded estimator, so they must agree up to rounding (1e-9 relative), for every resampler
//! and trigger, and the reverse gradient must not depend on the number of threads.

use diffsmc::grad::{GradMode, GradOptions, ParticleFilterNll, gradient, value};
use diffsmc::{ResamplerSpec, SmcConfig, Trigger};
use diffsmc_lgssm::{Lgssm, PaperParams};

const THETA: [f64; 2] = [0.5, 1.0];

fn data(dim: usize, steps: usize, seed: u64) -> PaperParams {
    let (_, ys) = Lgssm::paper(THETA[0], THETA[1], dim)
        .unwrap()
        .simulate(steps, seed);
    PaperParams::new(dim, ys).unwrap()
}

fn both(
    p: &PaperParams,
    smc: &SmcConfig,
    spec: &ResamplerSpec,
    seed: u64,
) -> ((f64, Vec<f64>), (f64, Vec<f64>)) {
    let fwd = GradOptions::default().with_mode(GradMode::Forward);
    let rev = GradOptions::default().with_mode(GradMode::Reverse);
    (
        gradient(&ParticleFilterNll::new(p, smc, spec, seed), &THETA, &fwd).unwrap(),
        gradient(&ParticleFilterNll::new(p, smc, spec, seed), &THETA, &rev).unwrap(),
    )
}

/// Relative agreement of two gradients, each component against `max(|a|, 1)`.
fn rel_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
        .fold(0.0, f64::max)
}

const SPECS: [&str; 8] = [
    "systematic",
    "multinomial",
    "stop-gradient",
    "diffusion:T=1,K=4",
    "diffusion:T=2,K=8,integrator=jentzen-kloeden,sde",
    "ot:eps=0.4,scale=mean",
    "gumbel:tau=0.1",
    "soft:alpha=0.9",
];

/// Every resampler (differentiable or not: both modes hold the same decisions fixed) on the
/// LGSSM in one and two dimensions, resampling at every step and on an ESS trigger. The two
/// modes compute the same numbers in a different order (and the f64 run's value uses the
/// vectorised diffusion kernel), so they agree to rounding: observed ≤ 1e-13, tolerance 1e-9.
#[test]
fn reverse_matches_forward_on_the_lgssm_for_every_resampler() {
    for (dim, n) in [(1, 32), (2, 24)] {
        let p = data(dim, 30, 3);
        for trigger in [Trigger::Always, Trigger::EssBelow(0.5)] {
            let smc = SmcConfig::new(n).unwrap().with_trigger(trigger).unwrap();
            for s in SPECS {
                let spec: ResamplerSpec = s.parse().unwrap();
                let ((vf, gf), (vr, gr)) = both(&p, &smc, &spec, 7);
                let v64 = value(&ParticleFilterNll::new(&p, &smc, &spec, 7), &THETA).unwrap();
                assert_eq!(vr, v64, "{s}: the reverse value is the f64 run's");
                assert!(
                    (vf - vr).abs() < 1e-9 * vr.abs(),
                    "{s}: values {vf} vs {vr}"
                );
                let r = rel_diff(&gf, &gr);
                eprintln!("d={dim} {trigger:?} {s}: forward {gf:?} reverse {gr:?} rel {r:e}");
                assert!(gr.iter().all(|g| g.is_finite()), "{s}: {gr:?}");
                assert!(r < 1e-9, "{s} d={dim} {trigger:?}: {gf:?} vs {gr:?}");
            }
        }
    }
}

/// A seed fixes the reverse gradient bit for bit whatever the thread count (the
/// move-and-weighting stage runs in fixed 256-particle chunks on rayon threads and sums them
/// in order; N = 600 gives three chunks).
#[test]
fn reverse_gradient_does_not_depend_on_the_thread_count() {
    let p = data(2, 12, 5);
    let smc = SmcConfig::new(600).unwrap();
    let spec: ResamplerSpec = "diffusion:T=1,K=4,sde".parse().unwrap();
    let rev = GradOptions::default().with_mode(GradMode::Reverse);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                gradient(&ParticleFilterNll::new(&p, &smc, &spec, 9), &THETA, &rev).unwrap()
            })
    };
    let (v1, g1) = run(1);
    let (v3, g3) = run(3);
    assert_eq!(v1.to_bits(), v3.to_bits());
    for (a, b) in g1.iter().zip(&g3) {
        assert_eq!(a.to_bits(), b.to_bits(), "{g1:?} vs {g3:?}");
    }
}

/// `GradMode::Auto` picks forward mode for the LGSSM's two parameters (bit-identical to
/// explicit forward mode).
#[test]
fn auto_mode_uses_forward_mode_for_few_parameters() {
    let p = data(1, 10, 1);
    let smc = SmcConfig::new(16).unwrap();
    let spec = ResamplerSpec::Systematic;
    let auto = gradient(
        &ParticleFilterNll::new(&p, &smc, &spec, 2),
        &THETA,
        &GradOptions::default(),
    );
    let fwd = GradOptions::default().with_mode(GradMode::Forward);
    let fwd = gradient(&ParticleFilterNll::new(&p, &smc, &spec, 2), &THETA, &fwd);
    assert_eq!(auto.unwrap(), fwd.unwrap());
}

/// Bad input gives the same typed errors in reverse mode as in forward mode.
#[test]
fn reverse_mode_rejects_bad_theta() {
    let p = data(1, 10, 1);
    let smc = SmcConfig::new(16).unwrap();
    let rev = GradOptions::default().with_mode(GradMode::Reverse);
    let spec = ResamplerSpec::Systematic;
    let e = gradient(&ParticleFilterNll::new(&p, &smc, &spec, 1), &[0.5], &rev).unwrap_err();
    assert!(e.to_string().contains("parameter"), "{e}");
    let e = gradient(
        &ParticleFilterNll::new(&p, &smc, &spec, 1),
        &[0.5, f64::NAN],
        &rev,
    )
    .unwrap_err();
    assert!(e.to_string().contains("parameter"), "{e}");
}
