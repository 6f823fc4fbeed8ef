//! The exact diffusion prior of a Gaussian mixture.

use diffsmc::rng::{StreamRng, standard_normal};
use diffsmc::{Result, Scalar, SmcError, log_sum_exp};
use diffsmc_gaussian_mixture::{GaussianMixture, GmError};
use nalgebra::{DMatrix, DVector, SymmetricEigen};
use rand::RngExt;

use crate::prior::DiffusionPrior;
use crate::sde::VpSde;

const LN_2PI: f64 = 1.837_877_066_409_345_3;

/// A Gaussian-mixture prior `p = Σ_i ω_i N(m_i, v_i)` as an exact diffusion prior.
///
/// Under the VP SDE the noised prior is again a Gaussian mixture, in closed form:
/// `p_t = Σ_i ω_i N(α_t m_i, α_t² v_i + σ_t² I)`. With the eigendecomposition
/// `v_i = Q_i Λ_i Q_iᵀ` (computed once) the noised covariances are
/// `Q_i (α_t² Λ_i + σ_t² I) Q_iᵀ` at every `t`, so the score
/// `∇ log p_t(x) = Σ_i r_i(x) · (−(α_t² v_i + σ_t² I)⁻¹ (x − α_t m_i))` (responsibilities
/// `r_i ∝ ω_i N(x; α_t m_i, α_t² v_i + σ_t² I)`, normalised by log-sum-exp) and the
/// log-density cost `O(c d²)` per point without any factorisation. Both are generic over the
/// scalar (the mixture's parameters are `f64`; the point `x` may be a dual number).
///
/// ```
/// use diffsmc::rng::{Purpose, StreamKey};
/// use diffsmc_diffusion_prior::{DiffusionPrior, GaussianMixturePrior, VpSde};
/// use diffsmc_gaussian_mixture::PaperConfig;
///
/// let mixture = PaperConfig::new(3, 2)?.random_prior(1)?;
/// let prior = GaussianMixturePrior::new(&mixture, VpSde::default())?;
/// let mut x = [0.0_f64; 3];
/// prior.sample_terminal(&mut StreamKey::new(1, 0, Purpose::Move).rng(0), &mut x);
/// let mut s = [0.0; 3];
/// let lp = prior.score_and_log_density(0.5, &x, &mut s).unwrap();
/// // The same density as the noised mixture built by the Gaussian-mixture crate.
/// let noised = prior.noised(0.5)?;
/// assert!((lp - noised.log_density(&x)?).abs() < 1e-10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianMixturePrior {
    sde: VpSde,
    dim: usize,
    mixture: GaussianMixture,
    log_weights: Vec<f64>,
    /// Cumulative weights for choosing a component (`+inf` at the last positive one).
    cum_weights: Vec<f64>,
    /// `c × d` means.
    means: Vec<f64>,
    /// `c` blocks of `d × d`, row-major; column `j` of block `i` is eigenvector `j` of `v_i`.
    eigvecs: Vec<f64>,
    /// `c × d` eigenvalues.
    eigvals: Vec<f64>,
}

impl GaussianMixturePrior {
    /// The exact diffusion prior of `mixture` under `sde`.
    ///
    /// Errors: a covariance with a non-positive eigenvalue (it passed the mixture's Cholesky
    /// check but is numerically singular).
    pub fn new(mixture: &GaussianMixture, sde: VpSde) -> Result<Self> {
        let d = mixture.dim();
        let c = mixture.n_components();
        let mut means = Vec::with_capacity(c * d);
        let mut eigvecs = Vec::with_capacity(c * d * d);
        let mut eigvals = Vec::with_capacity(c * d);
        for (m, v) in mixture.means().iter().zip(mixture.covariances()) {
            means.extend(m.iter());
            let eig = SymmetricEigen::new(v.clone());
            if eig.eigenvalues.iter().any(|&l| !(l > 0.0 && l.is_finite())) {
                return Err(SmcError::NotPositiveDefinite {
                    what: "mixture covariance (eigenvalues)",
                });
            }
            for r in 0..d {
                for j in 0..d {
                    eigvecs.push(eig.eigenvectors[(r, j)]);
                }
            }
            eigvals.extend(eig.eigenvalues.iter());
        }
        let mut cum_weights = Vec::with_capacity(c);
        let mut acc = 0.0;
        for &w in mixture.weights() {
            acc += w;
            cum_weights.push(acc);
        }
        if let Some(last) = mixture.weights().iter().rposition(|&w| w > 0.0) {
            cum_weights[last] = f64::INFINITY;
        }
        Ok(GaussianMixturePrior {
            sde,
            dim: d,
            mixture: mixture.clone(),
            log_weights: mixture.log_weights().to_vec(),
            cum_weights,
            means,
            eigvecs,
            eigvals,
        })
    }

    /// The mixture `p_0`.
    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }

    /// The noised mixture `p_t = Σ_i ω_i N(α_t m_i, α_t² v_i + σ_t² I)` (an `f64` oracle).
    pub fn noised(&self, t: f64) -> std::result::Result<GaussianMixture, GmError> {
        let (a, s2) = (self.sde.alpha(t), self.sde.sigma2(t));
        let d = self.dim;
        let means: Vec<DVector<f64>> = self.mixture.means().iter().map(|m| m * a).collect();
        let covs: Vec<DMatrix<f64>> = self
            .mixture
            .covariances()
            .iter()
            .map(|v| v * (a * a) + DMatrix::identity(d, d) * s2)
            .collect();
        GaussianMixture::from_log_weights(self.log_weights.clone(), means, covs)
    }

    /// The score (if `score` is given) and the log-density at `(t, x)`.
    fn eval<S: Scalar>(&self, t: f64, x: &[S], score: Option<&mut [S]>) -> S {
        let d = self.dim;
        let c = self.log_weights.len();
        let (a, s2) = (self.sde.alpha(t), self.sde.sigma2(t));
        let a2 = a * a;
        // Scratch: log-terms (c), component scores (c·d), residual (d), whitened residual (d).
        let mut buf = vec![S::zero(); c + c * d + 2 * d];
        let (logw, rest) = buf.split_at_mut(c);
        let (comp, rest) = rest.split_at_mut(c * d);
        let (r, u) = rest.split_at_mut(d);
        let mut inv_e = vec![0.0; d];
        for i in 0..c {
            if self.log_weights[i] == f64::NEG_INFINITY {
                logw[i] = S::cst(f64::NEG_INFINITY);
                continue;
            }
            let m = &self.means[i * d..(i + 1) * d];
            let q = &self.eigvecs[i * d * d..(i + 1) * d * d];
            let lam = &self.eigvals[i * d..(i + 1) * d];
            let mut det = 1.0;
            for j in 0..d {
                let e = a2 * lam[j] + s2;
                det *= e;
                inv_e[j] = 1.0 / e;
            }
            for l in 0..d {
                r[l] = x[l] - a * m[l];
            }
            // z = Qᵀ r, u = z / e, quad = Σ z² / e.
            let mut quad = S::zero();
            for j in 0..d {
                let mut z = S::zero();
                for l in 0..d {
                    z += r[l] * q[l * d + j];
                }
                let uj = z * inv_e[j];
                quad += z * uj;
                u[j] = uj;
            }
            logw[i] =
                S::cst(self.log_weights[i] - 0.5 * (d as f64 * LN_2PI + det.ln())) - quad * 0.5;
            if score.is_some() {
                // Component score −Q u.
                for l in 0..d {
                    let mut s = S::zero();
                    for j in 0..d {
                        s += u[j] * q[l * d + j];
                    }
                    comp[i * d + l] = -s;
                }
            }
        }
        let lse = log_sum_exp(logw);
        if let Some(score) = score {
            score[..d].iter_mut().for_each(|s| *s = S::zero());
            for i in 0..c {
                if logw[i].re() == f64::NEG_INFINITY {
                    continue;
                }
                let w = (logw[i] - lse).exp();
                for l in 0..d {
                    score[l] += w * comp[i * d + l];
                }
            }
        }
        lse
    }
}

impl<S: Scalar> DiffusionPrior<S> for GaussianMixturePrior {
    fn dim(&self) -> usize {
        self.dim
    }

    fn sde(&self) -> VpSde {
        self.sde
    }

    fn score(&self, t: f64, x: &[S], score: &mut [S]) {
        self.eval(t, x, Some(score));
    }

    fn sample_terminal(&self, rng: &mut StreamRng, x: &mut [S]) {
        let d = self.dim;
        let t = self.sde.t_max();
        let (a, s2) = (self.sde.alpha(t), self.sde.sigma2(t));
        let u: f64 = rng.random();
        let i = self.cum_weights.partition_point(|&c| c <= u);
        let m = &self.means[i * d..(i + 1) * d];
        let q = &self.eigvecs[i * d * d..(i + 1) * d * d];
        let lam = &self.eigvals[i * d..(i + 1) * d];
        let xi: Vec<f64> = (0..d)
            .map(|j| (a * a * lam[j] + s2).sqrt() * standard_normal(rng))
            .collect();
        for l in 0..d {
            let mut s = a * m[l];
            for j in 0..d {
                s += q[l * d + j] * xi[j];
            }
            x[l] = S::cst(s);
        }
    }

    fn log_density(&self, t: f64, x: &[S]) -> Option<S> {
        Some(self.eval(t, x, None))
    }

    fn score_and_log_density(&self, t: f64, x: &[S], score: &mut [S]) -> Option<S> {
        Some(self.eval(t, x, Some(score)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffsmc::rng::{Purpose, StreamKey};
    use diffsmc_gaussian_mixture::PaperConfig;
    use num_dual::{Dual64, DualStruct};

    fn prior(d: usize, c: usize, seed: u64) -> GaussianMixturePrior {
        let mixture = PaperConfig::new(d, c).unwrap().random_prior(seed).unwrap();
        GaussianMixturePrior::new(&mixture, VpSde::default()).unwrap()
    }

    fn points(d: usize, n: usize, scale: f64, seed: u64) -> Vec<Vec<f64>> {
        let key = StreamKey::new(seed, 0, Purpose::Other(9));
        (0..n)
            .map(|i| {
                let mut rng = key.rng(i);
                (0..d).map(|_| scale * standard_normal(&mut rng)).collect()
            })
            .collect()
    }

    /// The score against central finite differences of the log-density, at several noise
    /// levels, including t = 0 (the prior itself) and t = T.
    ///
    /// Tolerance: with step h the central difference has truncation error h²/6 · |∂³ log p|
    /// and rounding error ~ ε |log p| / h. With h = 1e-5 and |log p| ≲ 1e3 (points a few
    /// standard deviations out) both are ≲ 1e-7; we allow 1e-6 (1 + |s|).
    #[test]
    fn score_matches_finite_differences_of_log_density() {
        let d = 4;
        let p = prior(d, 3, 11);
        let h = 1e-5;
        for &t in &[0.0, 1e-3, 0.05, 0.3, 0.7, 1.0] {
            let scale = 5.0 * p.sde.alpha(t) + 1.0;
            for x in points(d, 20, scale, 3) {
                let mut s = vec![0.0; d];
                DiffusionPrior::<f64>::score(&p, t, &x, &mut s);
                for l in 0..d {
                    let (mut xp, mut xm) = (x.clone(), x.clone());
                    xp[l] += h;
                    xm[l] -= h;
                    let lp = |y: &[f64]| DiffusionPrior::<f64>::log_density(&p, t, y).unwrap();
                    let fd = (lp(&xp) - lp(&xm)) / (2.0 * h);
                    assert!(
                        (fd - s[l]).abs() < 1e-6 * (1.0 + s[l].abs()),
                        "t={t} l={l}: score {} fd {fd}",
                        s[l]
                    );
                }
            }
        }
    }

    /// The log-density is the noised mixture's (built independently by the GM crate with
    /// Cholesky factors), and a dual-number run gives the score as the derivative exactly.
    #[test]
    fn log_density_matches_noised_mixture_and_duals() {
        let d = 5;
        let p = prior(d, 4, 2);
        for &t in &[0.0, 0.2, 1.0] {
            let noised = p.noised(t).unwrap();
            for x in points(d, 10, 4.0, 5) {
                let lp = DiffusionPrior::<f64>::log_density(&p, t, &x).unwrap();
                let reference = noised.log_density(&x).unwrap();
                assert!((lp - reference).abs() < 1e-10 * (1.0 + reference.abs()));
                let mut s = vec![0.0; d];
                DiffusionPrior::<f64>::score(&p, t, &x, &mut s);
                for l in 0..d {
                    let xd: Vec<Dual64> = x
                        .iter()
                        .enumerate()
                        .map(|(k, &v)| Dual64::new(v, if k == l { 1.0 } else { 0.0 }))
                        .collect();
                    let mut sd = vec![Dual64::from(0.0); d];
                    let ld = p.score_and_log_density(t, &xd, &mut sd).unwrap();
                    assert!((ld.eps - s[l]).abs() < 1e-10 * (1.0 + s[l].abs()));
                    assert!((ld.re() - lp).abs() < 1e-12 * (1.0 + lp.abs()));
                    assert!((sd[l].re() - s[l]).abs() < 1e-12 * (1.0 + s[l].abs()));
                }
            }
        }
    }

    /// Terminal draws have the noised mixture's mean and covariance: per coordinate the error
    /// of the sample mean is below 5 standard errors (sd/√n), and the variance within 5·sd·√(2/n)
    /// relative (a Gaussian-like fourth moment; the mixture at T is close to N(0, I)).
    #[test]
    fn terminal_sampler_matches_noised_moments() {
        let d = 3;
        let p = prior(d, 5, 8);
        let n = 20_000;
        let key = StreamKey::new(4, 0, Purpose::Move);
        let mut xs = vec![0.0; n * d];
        for (i, x) in xs.chunks_exact_mut(d).enumerate() {
            DiffusionPrior::<f64>::sample_terminal(&p, &mut key.rng(i), x);
        }
        let noised = p.noised(1.0).unwrap();
        let (mean, cov) = (noised.mean(), noised.covariance());
        for l in 0..d {
            let m = xs.iter().skip(l).step_by(d).sum::<f64>() / n as f64;
            let v = xs
                .iter()
                .skip(l)
                .step_by(d)
                .map(|x| (x - m).powi(2))
                .sum::<f64>()
                / n as f64;
            let sd = cov[(l, l)].sqrt();
            assert!((m - mean[l]).abs() < 5.0 * sd / (n as f64).sqrt());
            assert!((v / cov[(l, l)] - 1.0).abs() < 5.0 * (2.0 / n as f64).sqrt());
        }
    }
}
