//! The forward (noising) SDE and the diffusion-time grid.

use diffsmc::{Result, SmcError};

/// The variance-preserving Ornstein–Uhlenbeck SDE `dX = -½ β(t) X dt + √β(t) dW` on
/// `t ∈ [0, T]` with the linear schedule `β(t) = β_min + (β_max − β_min) t / T`.
///
/// Its transition from time `s` to `t > s` is Gaussian:
/// `X_t | X_s ~ N(a X_s, (1 − a²) I)` with `a = α_t / α_s`, where
/// `α_t = exp(−½ ∫_0^t β)`, so `X_t | X_0 ~ N(α_t X_0, σ_t² I)` with `σ_t² = 1 − α_t²`.
///
/// The default is the usual `β_min = 0.1`, `β_max = 20`, `T = 1` (α_T ≈ 0.0066).
///
/// ```
/// use diffsmc_diffusion_prior::VpSde;
/// let sde = VpSde::default();
/// assert_eq!(sde.alpha(0.0), 1.0);
/// assert!((sde.alpha(0.5).powi(2) + sde.sigma2(0.5) - 1.0).abs() < 1e-15);
/// let (a, v) = sde.transition(0.2, 0.7);
/// assert!((a - sde.alpha(0.7) / sde.alpha(0.2)).abs() < 1e-15 && (v - (1.0 - a * a)).abs() < 1e-15);
/// assert!(VpSde::new(0.1, 20.0, 0.0).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpSde {
    beta_min: f64,
    beta_max: f64,
    t_max: f64,
}

impl Default for VpSde {
    fn default() -> Self {
        VpSde {
            beta_min: 0.1,
            beta_max: 20.0,
            t_max: 1.0,
        }
    }
}

impl VpSde {
    /// A linear schedule from `β_min ≥ 0` at `t = 0` to `β_max ≥ β_min` (`β_max > 0`) at
    /// `t = T > 0`; all finite.
    pub fn new(beta_min: f64, beta_max: f64, t_max: f64) -> Result<Self> {
        if !(beta_min >= 0.0 && beta_min.is_finite()) {
            return Err(SmcError::invalid(
                "beta_min",
                beta_min,
                "a finite number ≥ 0",
            ));
        }
        if !(beta_max >= beta_min && beta_max > 0.0 && beta_max.is_finite()) {
            return Err(SmcError::invalid(
                "beta_max",
                beta_max,
                "a finite number > 0 and ≥ beta_min",
            ));
        }
        if !(t_max > 0.0 && t_max.is_finite()) {
            return Err(SmcError::invalid("T", t_max, "a finite number > 0"));
        }
        Ok(VpSde {
            beta_min,
            beta_max,
            t_max,
        })
    }

    /// The constant schedule `β(t) = β` on `[0, T]`.
    ///
    /// ```
    /// use diffsmc_diffusion_prior::VpSde;
    /// let sde = VpSde::constant(2.0, 3.0).unwrap();
    /// assert!((sde.alpha(1.5) - (-1.5_f64).exp()).abs() < 1e-15);
    /// ```
    pub fn constant(beta: f64, t_max: f64) -> Result<Self> {
        Self::new(beta, beta, t_max)
    }

    /// `β_min`.
    pub fn beta_min(&self) -> f64 {
        self.beta_min
    }

    /// `β_max`.
    pub fn beta_max(&self) -> f64 {
        self.beta_max
    }

    /// The horizon `T`.
    pub fn t_max(&self) -> f64 {
        self.t_max
    }

    /// `β(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.beta_min + (self.beta_max - self.beta_min) * t / self.t_max
    }

    /// `∫_0^t β(u) du`.
    pub fn integrated_beta(&self, t: f64) -> f64 {
        self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t / self.t_max
    }

    /// The signal scale `α_t = exp(−½ ∫_0^t β)`.
    pub fn alpha(&self, t: f64) -> f64 {
        (-0.5 * self.integrated_beta(t)).exp()
    }

    /// The noise variance `σ_t² = 1 − α_t²` (computed with `expm1`, accurate near `t = 0`).
    pub fn sigma2(&self, t: f64) -> f64 {
        -(-self.integrated_beta(t)).exp_m1()
    }

    /// The transition from `s` to `t ≥ s`: `(a, v)` with `X_t | X_s ~ N(a X_s, v I)`,
    /// `a = α_t / α_s` and `v = 1 − a²`.
    pub fn transition(&self, s: f64, t: f64) -> (f64, f64) {
        let b = self.integrated_beta(t) - self.integrated_beta(s);
        ((-0.5 * b).exp(), -(-b).exp_m1())
    }
}

/// A diffusion-time grid `T = τ_0 > τ_1 > … > τ_M = 0` (`M ≥ 1` steps).
///
/// ```
/// use diffsmc_diffusion_prior::TimeGrid;
/// let g = TimeGrid::uniform(1.0, 4).unwrap();
/// assert_eq!(g.times(), &[1.0, 0.75, 0.5, 0.25, 0.0]);
/// assert_eq!(g.steps(), 4);
/// assert!(TimeGrid::new(vec![1.0, 0.5, 0.5, 0.0]).is_err());
/// assert!(TimeGrid::new(vec![1.0, 0.1]).is_err()); // must end at 0
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid {
    times: Vec<f64>,
}

impl TimeGrid {
    /// `M ≥ 1` equal steps from `T > 0` down to 0.
    pub fn uniform(t_max: f64, steps: usize) -> Result<Self> {
        if steps == 0 {
            return Err(SmcError::invalid("grid steps", steps, "at least 1"));
        }
        if !(t_max > 0.0 && t_max.is_finite()) {
            return Err(SmcError::invalid("T", t_max, "a finite number > 0"));
        }
        let times = (0..=steps)
            .map(|k| t_max * (steps - k) as f64 / steps as f64)
            .collect();
        Self::new(times)
    }

    /// An explicit grid: at least two finite times, strictly decreasing, the last one 0.
    pub fn new(times: Vec<f64>) -> Result<Self> {
        if times.len() < 2 {
            return Err(SmcError::invalid(
                "grid length",
                times.len(),
                "at least two times (T and 0)",
            ));
        }
        if let Some(&t) = times.iter().find(|t| !t.is_finite()) {
            return Err(SmcError::invalid("grid time", t, "finite times"));
        }
        if let Some(w) = times.windows(2).find(|w| w[1] >= w[0]) {
            return Err(SmcError::invalid(
                "grid time",
                w[1],
                "strictly decreasing times",
            ));
        }
        let last = times[times.len() - 1];
        if last != 0.0 {
            return Err(SmcError::invalid("last grid time", last, "exactly 0"));
        }
        Ok(TimeGrid { times })
    }

    /// The times `τ_0 > … > τ_M = 0`.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// The number of steps `M`.
    pub fn steps(&self) -> usize {
        self.times.len() - 1
    }

    /// The first time `τ_0`.
    pub fn start(&self) -> f64 {
        self.times[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_formulas() {
        let sde = VpSde::new(0.1, 20.0, 2.0).unwrap();
        // β is linear, its integral by the trapezoid rule is exact.
        let t = 1.3;
        let trap = 0.5 * t * (sde.beta(0.0) + sde.beta(t));
        assert!((sde.integrated_beta(t) - trap).abs() < 1e-12);
        assert_eq!(sde.beta(2.0), 20.0);
        // Composition of transitions: a(s→u) = a(s→t) a(t→u).
        let (a1, _) = sde.transition(0.2, 0.9);
        let (a2, _) = sde.transition(0.9, 1.7);
        let (a, v) = sde.transition(0.2, 1.7);
        assert!((a - a1 * a2).abs() < 1e-15);
        assert!((v - (1.0 - a * a)).abs() < 1e-15);
        // σ² near 0 is accurate (no cancellation).
        let s = sde.sigma2(1e-12);
        assert!((s - 0.1e-12).abs() < 1e-20);
    }

    #[test]
    fn invalid_knobs() {
        assert!(VpSde::new(-0.1, 1.0, 1.0).is_err());
        assert!(VpSde::new(2.0, 1.0, 1.0).is_err());
        assert!(VpSde::new(0.0, 0.0, 1.0).is_err());
        assert!(VpSde::new(0.1, f64::NAN, 1.0).is_err());
        assert!(VpSde::constant(1.0, f64::INFINITY).is_err());
        assert!(TimeGrid::uniform(1.0, 0).is_err());
        assert!(TimeGrid::uniform(-1.0, 3).is_err());
        assert!(TimeGrid::new(vec![0.0]).is_err());
        assert!(TimeGrid::new(vec![1.0, f64::NAN, 0.0]).is_err());
        assert!(TimeGrid::new(vec![0.5, 1.0, 0.0]).is_err());
        let g = TimeGrid::new(vec![2.0, 0.3, 0.0]).unwrap();
        assert_eq!((g.steps(), g.start()), (2, 2.0));
    }
}
