//! Soft resampling (Karkus, Hsu & Lee 2018): multinomial ancestors from a mixture of the
//! weights with the uniform distribution, importance-corrected weights.

use super::ot::check_io;
use super::{IndexResampler, Multinomial, ResampleInfo, Resampler};
use crate::error::{Result, SmcError};
use crate::particles::{Particles, weights_f64};
use crate::rng::StreamKey;
use crate::scalar::{Scalar, log_sum_exp};

/// Soft resampling with mixing parameter `α ∈ (0, 1]`.
///
/// Ancestors `I_1..I_M` are drawn i.i.d. (multinomial, O(N) via sorted uniforms, exactly as
/// [`Multinomial`] does with the same key) from `q_j = α w_j + (1 − α)/N`, and the new particle
/// `i` is `X_{I_i}` with the importance weight `w_{I_i} / q_{I_i}`, normalised:
///
/// `log w'_i = log w_{I_i} − log q_{I_i} − logsumexp_k(log w_{I_k} − log q_{I_k})`.
///
/// **The output weights are not uniform** (unless `α = 1`); the driver uses them as they are,
/// and its log-likelihood increment `logsumexp(log w' + log G)` stays unbiased because
/// `E[Σ_i w_{I_i}/q_{I_i} φ(X_{I_i})] / M = Σ_j w_j φ(X_j)`.
///
/// Differentiability: the indices are discrete (chosen on the value part), so no derivative
/// flows through the choice of ancestors or into the copied particles beyond the copy itself.
/// The new weights are computed in the scalar `S` from `log w` (both through `w_I` and through
/// `q_I`), so derivatives of the log-weights do flow into them, as with stop-gradient
/// resampling. [`ResamplerSpec::is_differentiable`](super::ResamplerSpec::is_differentiable) is
/// `false` for soft resampling: for a fixed seed the log-likelihood is piecewise smooth, with
/// jumps where an ancestor changes.
///
/// With `α = 1`, `q = w` and the output is exactly multinomial resampling: the same ancestors
/// as [`Multinomial`] for the same key, and the weights are set to exactly `−log M` (their
/// derivative is zero, as that of `log w_I − log w_I` is).
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::rng::Purpose;
///
/// let r = SoftResampler::new(0.5)?;
/// let x = Particles::from_vec(3, 1, vec![0.0_f64, 1.0, 2.0])?;
/// let lw: Vec<f64> = [0.7_f64, 0.2, 0.1].iter().map(|w| w.ln()).collect();
/// let (mut out, mut out_lw) = (Particles::zeros(3, 1), vec![0.0; 3]);
/// r.resample(&x, &lw, StreamKey::new(1, 1, Purpose::Resample), &mut out, &mut out_lw)?;
/// assert!(diffsmc::log_sum_exp(&out_lw).abs() < 1e-12); // normalised, not uniform
/// assert!(SoftResampler::new(1.5).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftResampler {
    alpha: f64,
}

impl SoftResampler {
    /// Default mixing parameter for the spec `soft` without options.
    pub const DEFAULT_ALPHA: f64 = 0.5;

    /// Mixing parameter `alpha ∈ (0, 1]`.
    pub fn new(alpha: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(SmcError::invalid("alpha", alpha, "a number in (0, 1]"));
        }
        Ok(SoftResampler { alpha })
    }
    /// The mixing parameter.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Draws the ancestors for normalised weights `w` (value part) into `ancestors`.
    pub fn ancestors(&self, w: &[f64], key: StreamKey, ancestors: &mut [usize]) {
        let n = w.len() as f64;
        if self.alpha == 1.0 {
            Multinomial.ancestors(w, key, ancestors);
        } else {
            let q: Vec<f64> = w
                .iter()
                .map(|&wj| self.alpha * wj + (1.0 - self.alpha) / n)
                .collect();
            Multinomial.ancestors(&q, key, ancestors);
        }
    }
}

impl<S: Scalar> Resampler<S> for SoftResampler {
    fn name(&self) -> String {
        format!("soft:alpha={}", self.alpha)
    }

    fn copies_by_index(&self) -> bool {
        true
    }

    fn resample(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        key: StreamKey,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
    ) -> Result<ResampleInfo> {
        check_io(particles, log_weights, out, out_log_weights)?;
        let n = particles.len();
        let m = out.len();
        let w = weights_f64(log_weights);
        let mut anc = vec![0; m];
        self.ancestors(&w, key, &mut anc);
        for (i, &a) in anc.iter().enumerate() {
            out.particle_mut(i).copy_from_slice(particles.particle(a));
        }
        if self.alpha == 1.0 {
            out_log_weights.fill(S::cst(-(m as f64).ln()));
            return Ok(ResampleInfo::RESAMPLED);
        }
        // log q_j = log(α w_j + (1 − α)/N) in S, from the normalised log-weights.
        let lse = log_sum_exp(log_weights);
        let mix = (1.0 - self.alpha) / n as f64;
        for (o, &a) in out_log_weights.iter_mut().zip(&anc) {
            let lw = log_weights[a] - lse;
            *o = if lw.re() == f64::NEG_INFINITY {
                S::cst(f64::NEG_INFINITY)
            } else {
                lw - (lw.exp() * self.alpha + mix).ln()
            };
        }
        let total = log_sum_exp(out_log_weights);
        if !total.re().is_finite() {
            // Only possible when every ancestor has weight zero (probability ≤ (1 − α)^M).
            return Err(SmcError::invalid(
                "soft resampling",
                "all ancestors have zero weight",
                "at least one ancestor with positive weight; raise alpha",
            ));
        }
        for o in out_log_weights.iter_mut() {
            *o -= total;
        }
        Ok(ResampleInfo::RESAMPLED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Bootstrap;
    use crate::rng::{Purpose, standard_normal};
    use crate::smc::{Smc, SmcConfig};
    use crate::testing::models::Ar1Model;
    use num_dual::Dual64;

    fn run<S: Scalar, R: Resampler<S>>(
        r: &R,
        x: &Particles<S>,
        lw: &[S],
        seed: u64,
    ) -> (Particles<S>, Vec<S>) {
        let mut out = Particles::zeros(x.len(), x.dim());
        let mut olw = vec![S::zero(); x.len()];
        r.resample(
            x,
            lw,
            StreamKey::new(seed, 3, Purpose::Resample),
            &mut out,
            &mut olw,
        )
        .unwrap();
        (out, olw)
    }

    fn cloud(n: usize) -> (Particles<f64>, Vec<f64>) {
        let mut rng = StreamKey::new(2, 0, Purpose::Other(3)).rng(0);
        let x: Vec<f64> = (0..n).map(|_| standard_normal(&mut rng)).collect();
        let mut lw: Vec<f64> = x.iter().map(|v| -2.0 * (v - 0.7) * (v - 0.7)).collect();
        crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
        (Particles::from_vec(n, 1, x).unwrap(), lw)
    }

    #[test]
    fn soft_alpha_one_is_multinomial() {
        let (x, lw) = cloud(50);
        for seed in 0..20 {
            let (a, alw) = run(&SoftResampler::new(1.0).unwrap(), &x, &lw, seed);
            let (b, blw) = run(&Multinomial, &x, &lw, seed);
            assert_eq!(a, b);
            assert_eq!(alw, blw);
        }
    }

    #[test]
    fn soft_weights_are_normalised_importance_weights() {
        let (x, lw) = cloud(40);
        let alpha = 0.3;
        let r = SoftResampler::new(alpha).unwrap();
        let (out, olw) = run(&r, &x, &lw, 5);
        assert!(log_sum_exp(&olw).abs() < 1e-12);
        // Recompute: each output comes from an ancestor with weight ratio w/q.
        let w = weights_f64(&lw);
        let mut anc = vec![0; 40];
        r.ancestors(&w, StreamKey::new(5, 3, Purpose::Resample), &mut anc);
        let raw: Vec<f64> = anc
            .iter()
            .map(|&a| w[a] / (alpha * w[a] + (1.0 - alpha) / 40.0))
            .collect();
        let s: f64 = raw.iter().sum();
        for (i, &a) in anc.iter().enumerate() {
            assert_eq!(out.particle(i), x.particle(a));
            assert!((olw[i].exp() - raw[i] / s).abs() < 1e-14);
        }
    }

    #[test]
    fn soft_weight_derivatives_flow_from_log_weights() {
        // d/dθ of the output log-weights for log w_j(θ) = θ x_j − logsumexp: compare with
        // central differences of the same seeded map (the indices do not change for small h).
        let (x, _) = cloud(30);
        let lw_of = |t: f64| {
            let mut lw: Vec<f64> = x.as_slice().iter().map(|v| t * v).collect();
            crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
            lw
        };
        let theta = 0.8;
        let xd = Particles::from_vec(
            30,
            1,
            x.as_slice().iter().map(|&v| Dual64::from(v)).collect(),
        )
        .unwrap();
        let mut lwd: Vec<Dual64> = x
            .as_slice()
            .iter()
            .map(|&v| Dual64::new(theta, 1.0) * v)
            .collect();
        crate::particles::normalise_log_weights(&mut lwd, 0).unwrap();
        let r = SoftResampler::new(0.6).unwrap();
        let (_, od) = run(&r, &xd, &lwd, 7);
        let h = 1e-6;
        let (_, op) = run(&r, &x, &lw_of(theta + h), 7);
        let (_, om) = run(&r, &x, &lw_of(theta - h), 7);
        for i in 0..30 {
            let fd = (op[i] - om[i]) / (2.0 * h);
            assert!((od[i].eps - fd).abs() < 1e-6, "{} vs {fd}", od[i].eps);
        }
        assert!(od.iter().any(|v| v.eps.abs() > 1e-3));
    }

    #[test]
    fn soft_degenerate_cases_and_errors() {
        // One weight 1: ancestors may have zero weight, but the output is normalised and finite
        // where positive.
        let x = Particles::from_vec(4, 1, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let lw = vec![f64::NEG_INFINITY, f64::NEG_INFINITY, 0.0, f64::NEG_INFINITY];
        let (out, olw) = run(&SoftResampler::new(0.9).unwrap(), &x, &lw, 1);
        assert!(log_sum_exp(&olw).abs() < 1e-12);
        for (i, w) in olw.iter().enumerate() {
            assert!(!w.is_nan());
            if w.is_finite() {
                assert_eq!(out.particle(i), &[3.0]);
            }
        }
        // N = 1, d = 1.
        let x1 = Particles::from_vec(1, 1, vec![0.5]).unwrap();
        let (out, olw) = run(&SoftResampler::new(0.5).unwrap(), &x1, &[0.0], 1);
        assert_eq!((out.as_slice(), olw[0]), (&[0.5][..], 0.0));
        for bad in [0.0, -0.1, 1.0001, f64::NAN] {
            assert!(matches!(
                SoftResampler::new(bad),
                Err(SmcError::InvalidParameter { name: "alpha", .. })
            ));
        }
    }

    #[test]
    fn soft_smc_log_likelihood_is_unbiased() {
        // Simulate data, then average the likelihood estimate exp(ll̂ − ll) over seeds: its
        // expectation is exactly 1. Tolerance: 4 standard errors of the mean (CLT; the
        // standard error is estimated from the same runs).
        let mut rng = StreamKey::new(99, 0, Purpose::Simulate).rng(0);
        let (phi, q, r): (f64, f64, f64) = (0.8, 0.5, 0.4);
        let mut x = standard_normal(&mut rng);
        let mut ys = Vec::new();
        for t in 0..10 {
            if t > 0 {
                x = phi * x + q.sqrt() * standard_normal(&mut rng);
            }
            ys.push(x + r.sqrt() * standard_normal(&mut rng));
        }
        let model = Bootstrap(Ar1Model::new(phi, 1.0, q, r, ys).unwrap());
        let exact = model.0.kalman_log_likelihood();
        let smc = Smc::new(SmcConfig::new(16).unwrap());
        let soft = SoftResampler::new(0.5).unwrap();
        let reps = 10_000;
        let ratios: Vec<f64> = (0..reps)
            .map(|seed| {
                let out = smc.run::<f64, _, _>(&model, &soft, seed).unwrap();
                assert_eq!(out.n_resampled(), 9);
                (out.log_likelihood - exact).exp()
            })
            .collect();
        let mean = ratios.iter().sum::<f64>() / reps as f64;
        let var = ratios.iter().map(|z| (z - mean).powi(2)).sum::<f64>() / (reps - 1) as f64;
        let se = (var / reps as f64).sqrt();
        assert!(se < 0.02, "standard error {se} too large for a useful test");
        assert!((mean - 1.0).abs() < 4.0 * se, "mean {mean}, se {se}");
    }

    #[test]
    fn soft_accepts_fewer_outputs() {
        let (x, lw) = cloud(10);
        let mut out = Particles::zeros(4, 1);
        let mut olw = vec![0.0; 4];
        SoftResampler::new(0.5)
            .unwrap()
            .resample(
                &x,
                &lw,
                StreamKey::new(0, 0, Purpose::Resample),
                &mut out,
                &mut olw,
            )
            .unwrap();
        assert!(log_sum_exp(&olw).abs() < 1e-12);
    }
}
