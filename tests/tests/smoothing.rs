//! Particle smoothers against the exact RTS smoother and the exact Kalman score on the paper's
//! linear Gaussian model, the rejection backward sampler against the exact one, the run
//! history, determinism across thread counts, and typed errors.

use diffsmc::grad::kalman_value_and_gradient;
use diffsmc::prelude::*;
use diffsmc::smc::Ancestry;
use diffsmc::smooth::{
    BackwardConfig, BackwardMethod, ParisConfig, backward_simulation, ffbs, fisher_score, fixed_lag,
};
use diffsmc_lgssm::{Lgssm, LgssmData, PaperParams};
use num_dual::Dual64;

/// The paper's model at θ = (0.5, 1.0), `steps` observations simulated with seed 11.
fn data(steps: usize) -> LgssmData<f64> {
    let m = Lgssm::paper(0.5, 1.0, 1).unwrap();
    let (_, ys) = m.simulate(steps, 11);
    m.with_data(ys).unwrap()
}

fn run<R: Resampler<f64> + ?Sized>(
    d: &LgssmData<f64>,
    n: usize,
    r: &R,
    seed: u64,
) -> SmcOutput<f64> {
    let c = SmcConfig::new(n).unwrap().with_history(true);
    Smc::new(c).run(&Bootstrap(d), r, seed).unwrap()
}

/// RMS over steps of `(est_t − exact_t) / sqrt(scale_t / n)`: the error in units of the
/// Monte Carlo standard error `sqrt(Var/N)` of an ideal i.i.d. sample.
fn z_rms(est: &[Vec<f64>], exact: &[Vec<f64>], scale: &[Vec<f64>], n: usize) -> f64 {
    let s: f64 = est
        .iter()
        .zip(exact)
        .zip(scale)
        .map(|((e, x), v)| {
            let z = (e[0] - x[0]) / (v[0] / n as f64).sqrt();
            z * z
        })
        .sum();
    (s / est.len() as f64).sqrt()
}

/// Exact smoothing variances of the 1-d model (RTS), per step.
fn rts(d: &LgssmData<f64>) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (_, s) = d.smooth().unwrap();
    (s.means, s.covs)
}

#[test]
fn measure() {
    let d = data(40);
    let (m, v) = rts(&d);
    let n = 300;
    for seed in 0..4 {
        let r = run(&d, n, &Systematic, seed);
        let f = ffbs(&d, &r).unwrap();
        let vv: Vec<Vec<f64>> = v.iter().map(|c| vec![2.0 * c[0] * c[0]]).collect();
        println!(
            "ffbs seed {seed}: mean z {:.3} var z {:.3}",
            z_rms(&f.moments.means, &m, &v, n),
            z_rms(&f.moments.variances, &v, &vv, n)
        );
        let b =
            backward_simulation(&d, &r, &BackwardConfig::new(n).unwrap().with_seed(seed)).unwrap();
        println!("bs exact: mean z {:.3}", z_rms(&b.moments.means, &m, &v, n));
        let b = backward_simulation(
            &d,
            &r,
            &BackwardConfig::new(n)
                .unwrap()
                .with_seed(seed)
                .with_method(BackwardMethod::rejection(32).unwrap())
                .unwrap(),
        )
        .unwrap();
        println!(
            "bs rej: mean z {:.3} fallbacks {} proposals {} draws {}",
            z_rms(&b.moments.means, &m, &v, n),
            b.fallbacks,
            b.proposals,
            b.draws
        );
        for lag in [0, 2, 5, 10] {
            let fl = fixed_lag(&r, lag).unwrap();
            println!("fixed lag {lag}: mean z {:.3}", z_rms(&fl.means, &m, &v, n));
        }
    }
    let p = PaperParams::new(1, d.ys().to_vec()).unwrap();
    let (_, g) = kalman_value_and_gradient(&p, &[0.5, 1.0]).unwrap();
    println!(
        "kalman score {:?}",
        g.iter().map(|x| -x).collect::<Vec<_>>()
    );
    let mut s = vec![];
    for seed in 0..10 {
        let e = fisher_score(
            &p,
            &[0.5, 1.0],
            &SmcConfig::new(n).unwrap(),
            &Systematic,
            seed,
            &ParisConfig::new().with_seed(seed),
        )
        .unwrap();
        println!("paris score {:?} fallbacks {}", e.score, e.paris.fallbacks);
        s.push(e.score);
    }
    let _ = (s, Dual64::from(0.0), Ancestry::Initial);
}
