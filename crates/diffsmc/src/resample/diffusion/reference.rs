//! The Gaussian reference `N(μ, Σ)` of the diffusion resampler and the whitening of the
//! particles against it (weighted moments or a user reference, jittered Cholesky factor).

use super::*;

/// Whitened particles with positive weight, dimension-major (`z[k * n + i]`), with their
/// normalised log-weights and squared norms.
#[derive(Debug)]
pub(super) struct Whitened<S> {
    pub(super) n: usize,
    pub(super) d: usize,
    pub(super) z: Vec<S>,
    pub(super) lw: Vec<S>,
    pub(super) sqz: Vec<S>,
}

/// The lower-triangular factor `L` of the reference covariance.
#[derive(Debug)]
pub(super) enum Factor<S> {
    /// Row-major `d × d` lower-triangular.
    Full(Vec<S>),
    /// The diagonal.
    Diag(Vec<S>),
}

#[derive(Debug)]
pub(super) struct Prepared<S> {
    pub(super) d: usize,
    pub(super) mu: Vec<S>,
    pub(super) factor: Factor<S>,
    pub(super) w: Whitened<S>,
}

/// Relative pivot threshold below which a covariance counts as singular.
pub(super) const PIVOT_REL: f64 = 1e-12;

/// Cholesky with a pivot tolerance, `None` when it fails (see [`cholesky_with_tolerance`]).
pub(super) fn cholesky<S: Scalar>(a: &[S], d: usize, tol: f64) -> Option<Vec<S>> {
    cholesky_with_tolerance(a, d, tol, "covariance").ok()
}

/// Computes the reference and the whitened particles.
pub(super) fn prepare<S: Scalar>(
    cfg: &DiffusionConfig,
    particles: &Particles<S>,
    log_weights: &[S],
) -> Result<Prepared<S>> {
    let d = particles.dim();
    // Normalise defensively (the trait promises normalised weights; renormalising is cheap and
    // makes the moments exact for slightly unnormalised input).
    if log_weights
        .iter()
        .any(|w| w.re().is_nan() || w.re() == f64::INFINITY)
    {
        return Err(SmcError::invalid(
            "log_weights",
            "NaN or +inf",
            "finite log-weights (or -inf for zero weight)",
        ));
    }
    let lse = log_sum_exp(log_weights);
    if !lse.re().is_finite() {
        return Err(SmcError::invalid(
            "log_weights",
            "all -inf",
            "at least one particle with positive weight",
        ));
    }
    // Particles with zero weight contribute nothing (exactly): drop them.
    let keep: Vec<usize> = (0..particles.len())
        .filter(|&i| log_weights[i].re() > f64::NEG_INFINITY)
        .collect();
    let n = keep.len();
    for &i in &keep {
        if particles.particle(i).iter().any(|v| !v.re().is_finite()) {
            return Err(SmcError::invalid(
                "particles",
                format!("non-finite coordinate in particle {i}"),
                "finite coordinates for every particle with positive weight",
            ));
        }
    }
    let lw: Vec<S> = keep.iter().map(|&i| log_weights[i] - lse).collect();
    let w: Vec<S> = lw.iter().map(|l| l.exp()).collect();

    let (mu, factor) = match &cfg.reference {
        Reference::Fixed { mean, cov } => {
            if mean.len() != d {
                return Err(SmcError::DimensionMismatch {
                    what: "fixed reference mean vs particle dimension",
                    expected: d,
                    got: mean.len(),
                });
            }
            let l = cholesky(cov, d, 0.0).ok_or(SmcError::NotPositiveDefinite {
                what: "reference covariance",
            })?;
            (
                mean.iter().map(|&m| S::cst(m)).collect::<Vec<S>>(),
                Factor::Full(l.into_iter().map(S::cst).collect()),
            )
        }
        Reference::Full | Reference::Diagonal => {
            let diag_only = cfg.reference == Reference::Diagonal;
            let mut mu = vec![S::zero(); d];
            for (&i, &wi) in keep.iter().zip(&w) {
                for (m, &x) in mu.iter_mut().zip(particles.particle(i)) {
                    *m += wi * x;
                }
            }
            let mut cov = vec![S::zero(); d * d];
            let mut dev = vec![S::zero(); d];
            for (&i, &wi) in keep.iter().zip(&w) {
                for ((dv, &x), &m) in dev.iter_mut().zip(particles.particle(i)).zip(&mu) {
                    *dv = x - m;
                }
                for a in 0..d {
                    let wa = wi * dev[a];
                    if diag_only {
                        cov[a * d + a] += wa * dev[a];
                    } else {
                        for b in 0..=a {
                            cov[a * d + b] += wa * dev[b];
                        }
                    }
                }
            }
            for a in 0..d {
                for b in 0..a {
                    cov[b * d + a] = cov[a * d + b];
                }
            }
            let tau = jitter_scale(&cov, &mu, d)?;
            let tol = PIVOT_REL * tau;
            let factor = if diag_only {
                Factor::Diag(
                    (0..d)
                        .map(|k| {
                            let v = cov[k * d + k];
                            if v.re() > tol {
                                v.sqrt()
                            } else {
                                (v + cfg.jitter.max(2.0 * PIVOT_REL) * tau).sqrt()
                            }
                        })
                        .collect(),
                )
            } else {
                Factor::Full(jittered_cholesky(&cov, d, tau, cfg.jitter)?)
            };
            (mu, factor)
        }
    };

    // Whiten: z_i = L⁻¹ (x_i − μ), stored dimension-major.
    let mut z = vec![S::zero(); d * n];
    let mut sqz = vec![S::zero(); n];
    let mut buf = vec![S::zero(); d];
    for (col, &i) in keep.iter().enumerate() {
        for ((b, &x), &m) in buf.iter_mut().zip(particles.particle(i)).zip(&mu) {
            *b = x - m;
        }
        match &factor {
            Factor::Full(l) => solve_lower(l, d, &mut buf),
            Factor::Diag(s) => {
                for (b, &sk) in buf.iter_mut().zip(s) {
                    *b /= sk;
                }
            }
        }
        let mut sq = S::zero();
        for (k, &b) in buf.iter().enumerate() {
            if !b.re().is_finite() {
                return Err(SmcError::invalid(
                    "particles",
                    "non-finite whitened coordinate",
                    "particles whose whitened coordinates are finite",
                ));
            }
            z[k * n + col] = b;
            sq += b * b;
        }
        sqz[col] = sq;
    }
    Ok(Prepared {
        d,
        mu,
        factor,
        w: Whitened { n, d, z, lw, sqz },
    })
}

/// The scale `τ` the jitter is relative to: `tr(Σ)/d`, floored at `2⁻⁵² |μ|²/d` (the
/// resolution of the particles' coordinates) and at the smallest normal `f64` (all particles at
/// the origin).
pub(super) fn jitter_scale<S: Scalar>(cov: &[S], mu: &[S], d: usize) -> Result<f64> {
    let tr: f64 = (0..d).map(|k| cov[k * d + k].re()).sum::<f64>() / d as f64;
    let mu2: f64 = mu.iter().map(|m| m.re() * m.re()).sum::<f64>() / d as f64;
    if !tr.is_finite() || !mu2.is_finite() {
        return Err(SmcError::invalid(
            "particles",
            "weighted moments overflow",
            "particles whose weighted mean and covariance are finite",
        ));
    }
    Ok(tr.max(f64::EPSILON * mu2).max(f64::MIN_POSITIVE))
}

/// Cholesky of `cov`, adding `ε τ I` (ε = `jitter`, then ×100 up to four times) when a pivot is
/// `≤ 1e-12 τ`.
pub(super) fn jittered_cholesky<S: Scalar>(
    cov: &[S],
    d: usize,
    tau: f64,
    jitter: f64,
) -> Result<Vec<S>> {
    let tol = PIVOT_REL * tau;
    if let Some(l) = cholesky(cov, d, tol) {
        return Ok(l);
    }
    let mut eps = jitter.max(2.0 * PIVOT_REL);
    let mut c = cov.to_vec();
    for _ in 0..5 {
        for k in 0..d {
            c[k * d + k] = cov[k * d + k] + eps * tau;
        }
        if let Some(l) = cholesky(&c, d, tol) {
            return Ok(l);
        }
        eps *= 100.0;
    }
    Err(SmcError::NotPositiveDefinite {
        what: "weighted particle covariance (even after jitter)",
    })
}
