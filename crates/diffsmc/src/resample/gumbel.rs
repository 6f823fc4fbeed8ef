//! Gumbel-softmax resampling (a relaxation of multinomial resampling by the Gumbel-max trick).

use rand::Rng;

use super::ot::check_io;
use super::{ResampleInfo, Resampler};
use crate::error::{Result, SmcError};
use crate::particles::Particles;
use crate::rng::{StreamKey, StreamRng};
use crate::scalar::Scalar;

/// Gumbel-softmax resampling with temperature `τ > 0`:
///
/// `X*_i = Σ_j softmax_j((log w_j + g_ij) / τ) X_j`, with `g_ij` i.i.d. Gumbel(0, 1),
///
/// and uniform new weights. As `τ → 0` the softmax becomes the one-hot vector of
/// `argmax_j (log w_j + g_ij)`, which by the Gumbel-max trick is a categorical draw from `w`: the
/// map tends to multinomial resampling (with i.i.d. ancestors). For `τ > 0` it is a smooth
/// function of the particles and the log-weights (derivatives flow through both), and biased
/// (every new particle is a blend of old ones).
///
/// Output particle `i` draws its `N` Gumbel variables from stream `key.rng(i)`, so the result
/// does not depend on the number of threads. Cost: `O(N² (d + 1))` per resampling, including
/// `N²` Gumbel draws (two logarithms each). Zero-weight particles never contribute.
///
/// ```
/// use diffsmc::prelude::*;
/// use diffsmc::rng::Purpose;
///
/// let r = GumbelSoftmaxResampler::new(0.1)?;
/// let x = Particles::from_vec(4, 1, vec![0.0_f64, 1.0, 2.0, 3.0])?;
/// let lw = vec![(0.25_f64).ln(); 4];
/// let (mut out, mut out_lw) = (Particles::zeros(4, 1), vec![0.0; 4]);
/// r.resample(&x, &lw, StreamKey::new(3, 1, Purpose::Resample), &mut out, &mut out_lw)?;
/// assert!(out.as_slice().iter().all(|v| (0.0..=3.0).contains(v)));
/// assert!(GumbelSoftmaxResampler::new(0.0).is_err());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GumbelSoftmaxResampler {
    tau: f64,
}

impl GumbelSoftmaxResampler {
    /// Default temperature for the spec `gumbel` without options.
    pub const DEFAULT_TAU: f64 = 0.1;

    /// Temperature `tau` (`> 0`, finite).
    pub fn new(tau: f64) -> Result<Self> {
        if !(tau > 0.0 && tau.is_finite()) {
            return Err(SmcError::invalid("tau", tau, "a finite number > 0"));
        }
        Ok(GumbelSoftmaxResampler { tau })
    }
    /// The temperature.
    pub fn tau(&self) -> f64 {
        self.tau
    }
}

/// A standard Gumbel draw, `−ln(−ln U)` with `U` uniform on the open interval `(0, 1)`.
#[inline]
pub(crate) fn gumbel(rng: &mut StreamRng) -> f64 {
    let u = ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    -(-u.ln()).ln()
}

/// Rows per rayon task and the particle count from which rows run in parallel.
#[cfg(feature = "rayon")]
const PAR_MIN_PARTICLES: usize = 128;

impl<S: Scalar> Resampler<S> for GumbelSoftmaxResampler {
    fn name(&self) -> String {
        format!("gumbel:tau={}", self.tau)
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
        let d = particles.dim();
        let inv_tau = 1.0 / self.tau;
        let row = |i: usize, xi: &mut [S], logits: &mut Vec<S>| {
            let mut rng = key.rng(i);
            logits.clear();
            let mut imax = None;
            let mut max = f64::NEG_INFINITY;
            for (j, lw) in log_weights.iter().enumerate() {
                // Draw for every j so the stream does not depend on the support.
                let g = gumbel(&mut rng);
                if lw.re() == f64::NEG_INFINITY {
                    logits.push(S::cst(f64::NEG_INFINITY));
                    continue;
                }
                let l = (*lw + g) * inv_tau;
                if l.re() > max || imax.is_none() {
                    max = l.re();
                    imax = Some(j);
                }
                logits.push(l);
            }
            let m = logits[imax.expect("at least one finite weight")];
            xi.fill(S::zero());
            let mut total = S::zero();
            for (j, l) in logits.iter().enumerate() {
                if l.re() == f64::NEG_INFINITY {
                    continue;
                }
                let e = (*l - m).exp();
                total += e;
                for (o, &x) in xi.iter_mut().zip(particles.particle(j)) {
                    *o += e * x;
                }
            }
            for o in xi.iter_mut() {
                *o /= total;
            }
        };
        if d > 0 {
            let buf = out.as_mut_slice();
            if n >= PAR_MIN_PARTICLES && crate::par::may_parallelise::<S>() {
                crate::par::for_each_chunk_mut::<S, _>(buf, 16 * d, true, |c, chunk| {
                    let mut logits = Vec::with_capacity(n);
                    for (k, xi) in chunk.chunks_exact_mut(d).enumerate() {
                        row(c * 16 + k, xi, &mut logits);
                    }
                });
                out_log_weights.fill(S::cst(-(out.len() as f64).ln()));
                return Ok(ResampleInfo::RESAMPLED);
            }
            let mut logits = Vec::with_capacity(n);
            for (i, xi) in buf.chunks_exact_mut(d).enumerate() {
                row(i, xi, &mut logits);
            }
        }
        out_log_weights.fill(S::cst(-(out.len() as f64).ln()));
        Ok(ResampleInfo::RESAMPLED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, standard_normal};
    use num_dual::Dual64;

    fn run<S: Scalar>(
        r: &GumbelSoftmaxResampler,
        x: &Particles<S>,
        lw: &[S],
        seed: u64,
    ) -> Particles<S> {
        let mut out = Particles::zeros(x.len(), x.dim());
        let mut olw = vec![S::zero(); x.len()];
        let info = r
            .resample(
                x,
                lw,
                StreamKey::new(seed, 1, Purpose::Resample),
                &mut out,
                &mut olw,
            )
            .unwrap();
        assert_eq!(info, ResampleInfo::RESAMPLED);
        let ln_n = (x.len() as f64).ln();
        assert!(olw.iter().all(|w| (w.re() + ln_n).abs() < 1e-15));
        out
    }

    #[test]
    fn gumbel_draws_are_standard_gumbel() {
        // Mean of Gumbel(0, 1) is the Euler–Mascheroni constant, variance π²/6.
        let key = StreamKey::new(5, 0, Purpose::Other(1));
        let mut rng = key.rng(0);
        let m = 200_000;
        let draws: Vec<f64> = (0..m).map(|_| gumbel(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / m as f64;
        let sd = (std::f64::consts::PI.powi(2) / 6.0).sqrt();
        // 5 standard errors.
        assert!((mean - 0.577_215_664_9).abs() < 5.0 * sd / (m as f64).sqrt());
        assert!(draws.iter().all(|g| g.is_finite()));
    }

    #[test]
    fn gumbel_small_tau_is_multinomial_in_distribution() {
        // Distinct 1-d particles at 0, 10, 20, …; weights w. As τ → 0 each output sits on an
        // input particle except for near-ties of the perturbed logits (probability O(τ)), and
        // the ancestor frequencies follow w (chi-squared test on the nearest particle).
        let w = [0.05, 0.4, 0.1, 0.3, 0.15];
        let n = w.len();
        let x = Particles::from_vec(n, 1, (0..n).map(|i| i as f64 * 10.0).collect()).unwrap();
        let lw: Vec<f64> = w.iter().map(|v: &f64| v.ln()).collect();
        let reps = 4000;
        let total = (reps as usize * n) as f64;
        let mut blended = Vec::new();
        for tau in [1.0, 0.1, 1e-6] {
            let r = GumbelSoftmaxResampler::new(tau).unwrap();
            let mut counts = [0usize; 5];
            let mut off = 0usize;
            for seed in 0..reps {
                let out = run(&r, &x, &lw, seed);
                for &v in out.as_slice() {
                    let j = ((v / 10.0).round() as usize).min(n - 1);
                    if (v - 10.0 * j as f64).abs() > 1e-3 {
                        off += 1;
                    }
                    counts[j] += 1;
                }
            }
            blended.push(off as f64 / total);
            if tau == 1e-6 {
                let chi2: f64 = counts
                    .iter()
                    .zip(&w)
                    .map(|(&c, &p)| (c as f64 - total * p).powi(2) / (total * p))
                    .sum();
                // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
                assert!(chi2 < 18.47, "chi2 {chi2}, counts {counts:?}");
            }
        }
        // Fraction of outputs more than 1e-3 away from every particle.
        assert!(blended[0] > 0.5, "{blended:?}");
        assert!(blended[1] > blended[2], "{blended:?}");
        assert!(blended[2] < 1e-3, "{blended:?}");
    }

    fn family<S: Scalar>(theta: S, n: usize) -> (Particles<S>, Vec<S>) {
        let mut rng = StreamKey::new(8, 0, Purpose::Other(2)).rng(0);
        let xs: Vec<S> = (0..n * 2)
            .map(|_| theta * 0.7 + (theta + 1.0) * standard_normal(&mut rng))
            .collect();
        let p = Particles::from_vec(n, 2, xs).unwrap();
        let mut lw: Vec<S> = p
            .iter()
            .map(|x| -(x[0] - theta) * (x[0] - theta) * 0.5 - x[1] * x[1] * 0.3)
            .collect();
        crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
        (p, lw)
    }

    #[test]
    fn gumbel_derivatives_match_central_differences() {
        let r = GumbelSoftmaxResampler::new(0.5).unwrap();
        let n = 30;
        let theta = 0.4;
        let stat = |p: &Particles<f64>| p.as_slice().iter().map(|v| v * v + v).sum::<f64>();
        let (xd, lwd) = family(Dual64::new(theta, 1.0), n);
        let outd = run(&r, &xd, &lwd, 9);
        let sd: Dual64 = outd.as_slice().iter().map(|&v| v * v + v).sum();
        let f = |t: f64| {
            let (x, lw) = family(t, n);
            stat(&run(&r, &x, &lw, 9))
        };
        let h = 1e-5;
        let fd = (f(theta + h) - f(theta - h)) / (2.0 * h);
        assert!(
            (sd.eps - fd).abs() < 1e-6 * fd.abs().max(1.0),
            "{} vs {fd}",
            sd.eps
        );
        assert!((sd.re - f(theta)).abs() < 1e-12 * sd.re.abs().max(1.0));
    }

    #[test]
    fn gumbel_degenerate_cases_and_errors() {
        // One weight 1.
        let x = Particles::from_vec(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        let lw = vec![f64::NEG_INFINITY, 0.0, f64::NEG_INFINITY];
        let out = run(&GumbelSoftmaxResampler::new(0.3).unwrap(), &x, &lw, 2);
        for i in 0..3 {
            assert_eq!(out.particle(i), &[3.0, 4.0]);
        }
        // N = 1, d = 1.
        let x1 = Particles::from_vec(1, 1, vec![-2.0]).unwrap();
        let out = run(&GumbelSoftmaxResampler::new(0.3).unwrap(), &x1, &[0.0], 2);
        assert_eq!(out.as_slice(), &[-2.0]);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                GumbelSoftmaxResampler::new(bad),
                Err(SmcError::InvalidParameter { name: "tau", .. })
            ));
        }
    }

    #[test]
    fn gumbel_and_soft_dual_outputs_are_finite_with_zero_weights() {
        let (x, mut lw) = family(Dual64::new(0.3, 1.0), 20);
        lw[2] = Dual64::new(f64::NEG_INFINITY, f64::NAN);
        lw[7] = Dual64::new(f64::NEG_INFINITY, 1.0);
        crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
        let out = run(&GumbelSoftmaxResampler::new(0.2).unwrap(), &x, &lw, 3);
        assert!(
            out.as_slice()
                .iter()
                .all(|v| v.re.is_finite() && v.eps.is_finite())
        );
        let soft = super::super::SoftResampler::new(0.3).unwrap();
        for seed in 0..20 {
            let mut o = Particles::zeros(20, 2);
            let mut olw = vec![Dual64::from(0.0); 20];
            soft.resample(
                &x,
                &lw,
                StreamKey::new(seed, 1, Purpose::Resample),
                &mut o,
                &mut olw,
            )
            .unwrap();
            for w in &olw {
                assert!(!w.re.is_nan());
                if w.re.is_finite() {
                    assert!(w.eps.is_finite());
                }
            }
        }
    }

    #[cfg(feature = "rayon")]
    #[test]
    fn gumbel_is_deterministic_across_thread_counts() {
        let (x, lw) = family(0.2_f64, 300);
        let r = GumbelSoftmaxResampler::new(0.2).unwrap();
        let a = run(&r, &x, &lw, 4);
        let b = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| run(&r, &x, &lw, 4));
        assert_eq!(a, b);
    }
}
