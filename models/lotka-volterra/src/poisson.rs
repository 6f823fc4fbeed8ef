//! The Poisson observation model, generic over the scalar (the rate carries derivatives).

use std::sync::OnceLock;

use diffsmc::Scalar;
use diffsmc_nn::lift;

/// Counts below this use a table of `ln k!` (exact sums of logarithms); above, Stirling's
/// series.
const TABLE_LEN: usize = 1024;

fn table() -> &'static [f64] {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Vec::with_capacity(TABLE_LEN);
        let mut acc = 0.0_f64;
        t.push(0.0);
        for k in 1..TABLE_LEN {
            acc += (k as f64).ln();
            t.push(acc);
        }
        t
    })
}

/// `ln k! = ln Γ(k + 1)` in `f64`: a table for `k < 1024`, Stirling's series beyond (relative
/// error below 1e-15 there).
///
/// ```
/// use diffsmc_lotka_volterra::ln_factorial;
/// assert_eq!(ln_factorial(0), 0.0);
/// assert!((ln_factorial(5) - 120f64.ln()).abs() < 1e-14);
/// ```
pub fn ln_factorial(k: u64) -> f64 {
    if k < TABLE_LEN as u64 {
        return table()[k as usize];
    }
    let n = k as f64 + 1.0; // ln Γ(n)
    let inv = 1.0 / n;
    let inv2 = inv * inv;
    (n - 0.5) * n.ln() - n
        + 0.5 * (2.0 * std::f64::consts::PI).ln()
        + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 / 1680.0)))
}

/// `log p(k | λ) = k log λ − λ − log k!` for a Poisson count `k` and a rate `λ ≥ 0` of any
/// scalar type (derivatives flow through the rate). `log p(0 | 0) = 0`; `λ < 0` gives NaN.
///
/// ```
/// use diffsmc_lotka_volterra::poisson_log_pmf;
/// use num_dual::Dual64;
///
/// let lp = poisson_log_pmf(3, 2.0_f64);
/// assert!((lp - (3.0 * 2f64.ln() - 2.0 - 6f64.ln())).abs() < 1e-14);
/// // d/dλ log p = k/λ − 1.
/// let d = poisson_log_pmf(3, Dual64::new(2.0, 1.0));
/// assert!((d.eps - 0.5).abs() < 1e-15);
/// ```
#[inline]
pub fn poisson_log_pmf<S: Scalar>(k: u64, rate: S) -> S {
    poisson_log_pmf_with(k, rate, ln_factorial(k))
}

/// [`poisson_log_pmf`] with `ln k!` supplied (precomputed once per observation).
#[inline]
pub fn poisson_log_pmf_with<S: Scalar>(k: u64, rate: S, ln_k_factorial: f64) -> S {
    if k == 0 {
        return -rate;
    }
    rate.ln() * (k as f64) - rate - ln_k_factorial
}

/// `log p(k | λ)` for the logistic rate `λ = scale / (1 + e^z)`, as a function of the logit
/// `z` (of any scalar type), computed stably for every `z`: `log λ = log scale − softplus(z)`
/// never underflows to `−inf` when `λ` does. On `f64` and first-order duals the value and the
/// derivative `σ(z) (λ − k)` with `σ(z) = 1/(1 + e^{−z})` are evaluated in `f64` and applied
/// by one chain rule ([`diffsmc_nn::lift`]); higher-order duals compose primitives.
///
/// ```
/// use diffsmc_lotka_volterra::{logistic_poisson_log_pmf, poisson_log_pmf};
/// let z = -1.3_f64;
/// let rate = 5.0 / (1.0 + z.exp());
/// let a = logistic_poisson_log_pmf(4, z, 5.0, diffsmc_lotka_volterra::ln_factorial(4));
/// assert!((a - poisson_log_pmf(4, rate)).abs() < 1e-13);
/// // Far in the tail the naive rate underflows to 0 (log p = −inf); this stays finite.
/// assert!(logistic_poisson_log_pmf(2, 800.0_f64, 5.0, 2f64.ln()).is_finite());
/// ```
#[inline]
pub fn logistic_poisson_log_pmf<S: Scalar>(k: u64, z: S, scale: f64, ln_k_factorial: f64) -> S {
    let kf = k as f64;
    let ln_scale = scale.ln();
    lift(
        z,
        |z| {
            // e = e^{−|z|} ∈ (0, 1]: σ(z), σ(−z) and log(1 + e^z) without cancellation.
            let e = (-z.abs()).exp();
            let (s, sm) = if z >= 0.0 {
                (1.0 / (1.0 + e), e / (1.0 + e))
            } else {
                (e / (1.0 + e), 1.0 / (1.0 + e))
            };
            let softplus = z.max(0.0) + e.ln_1p();
            let rate = scale * sm;
            let log_rate = ln_scale - softplus;
            let lp = if k == 0 {
                -rate
            } else {
                kf * log_rate - rate - ln_k_factorial
            };
            (lp, s * (rate - kf))
        },
        |z| {
            let sp = if z.re() > 0.0 {
                z + (-z).exp().ln_1p()
            } else {
                z.exp().ln_1p()
            };
            let log_rate = -sp + ln_scale;
            let rate = log_rate.exp();
            if k == 0 {
                -rate
            } else {
                log_rate * kf - rate - ln_k_factorial
            }
        },
    )
}
