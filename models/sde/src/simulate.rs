//! Seeded simulation of discretely observed paths.

use diffsmc::rng::{Purpose, StreamKey, fill_standard_normal};
use diffsmc::{Result, SmcError};

use crate::models::Ou;
use crate::path::Observations;
use crate::sde::Sde;

/// `n` equally spaced times `0, dt, 2dt, …`.
///
/// ```
/// assert_eq!(diffsmc_sde::regular_times(3, 0.5), vec![0.0, 0.5, 1.0]);
/// ```
pub fn regular_times(n: usize, dt: f64) -> Vec<f64> {
    (0..n).map(|k| k as f64 * dt).collect()
}

fn check_start(d: usize, x0: &[f64]) -> Result<()> {
    if x0.len() != d {
        return Err(SmcError::DimensionMismatch {
            what: "initial state",
            expected: d,
            got: x0.len(),
        });
    }
    Ok(())
}

/// Simulates `sde` from `x0` at time `times[0]` and records it at `times` (strictly
/// increasing), by Euler–Maruyama with a step of at most `max_step` (each interval is split
/// into `⌈Δ / max_step⌉` equal steps). Interval `k` draws its noise from the stream
/// `(seed, k, Simulate)`, so a seed fixes the path.
///
/// Errors: `max_step ≤ 0`, a wrong-length `x0`, bad times (see [`Observations::new`]), and a
/// path that left the finite numbers.
///
/// ```
/// use diffsmc_sde::{DoubleWell, regular_times, simulate_euler};
/// let dw = DoubleWell::new(1.0, 1.0, 0.7)?;
/// let obs = simulate_euler(&dw, &[1.0], &regular_times(50, 0.2), 1e-3, 4)?;
/// assert_eq!(obs.len(), 50);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn simulate_euler<D: Sde<f64> + ?Sized>(
    sde: &D,
    x0: &[f64],
    times: &[f64],
    max_step: f64,
    seed: u64,
) -> Result<Observations> {
    let d = sde.dim();
    check_start(d, x0)?;
    if !(max_step > 0.0 && max_step.is_finite()) {
        return Err(SmcError::invalid(
            "simulation step",
            max_step,
            "a finite number > 0",
        ));
    }
    // Validate the times before simulating (only the times matter here; x0 fills the values).
    Observations::new(times.to_vec(), vec![x0.to_vec(); times.len()])?;
    let mut x = x0.to_vec();
    let mut b = vec![0.0; d];
    let mut sig = vec![0.0; d * d];
    let mut xi = vec![0.0; d];
    let mut out = vec![x.clone()];
    for k in 0..times.len() - 1 {
        let dt = times[k + 1] - times[k];
        let steps = (dt / max_step).ceil().max(1.0) as usize;
        let h = dt / steps as f64;
        let sh = h.sqrt();
        let mut rng = StreamKey::new(seed, k, Purpose::Simulate).rng(0);
        for _ in 0..steps {
            sde.drift(&x, &mut b);
            sde.diffusion(&x, &mut sig);
            fill_standard_normal(&mut rng, &mut xi);
            for i in 0..d {
                let mut s = 0.0;
                for j in 0..d {
                    s += sig[i * d + j] * xi[j];
                }
                x[i] += b[i] * h + s * sh;
            }
        }
        out.push(x.clone());
    }
    Observations::new(times.to_vec(), out)
}

impl Ou<f64> {
    /// Simulates the process exactly (from its Gaussian transition) from `x0` at `times[0]`,
    /// recorded at `times`; interval `k` uses the stream `(seed, k, Simulate)`.
    ///
    /// ```
    /// use diffsmc_sde::{Ou, regular_times};
    /// let ou = Ou::new(1.0, 2.0, 0.1, 1)?;
    /// let obs = ou.simulate_exact(&[2.0], &regular_times(5, 0.1), 1)?;
    /// assert!((obs.value(4)[0] - 2.0).abs() < 0.5);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn simulate_exact(&self, x0: &[f64], times: &[f64], seed: u64) -> Result<Observations> {
        let d = self.state_dim();
        check_start(d, x0)?;
        Observations::new(times.to_vec(), vec![x0.to_vec(); times.len()])?;
        let mut x = x0.to_vec();
        let mut xi = vec![0.0; d];
        let mut out = vec![x.clone()];
        for k in 0..times.len() - 1 {
            let dt = times[k + 1] - times[k];
            let decay = (-self.kappa * dt).exp();
            let u = self.kappa * dt;
            let vf = if u.abs() < 1e-4 {
                dt * (1.0 - u + u * u * 2.0 / 3.0)
            } else {
                -(-2.0 * u).exp_m1() / (2.0 * self.kappa)
            };
            let sd = self.sigma * vf.sqrt();
            let mut rng = StreamKey::new(seed, k, Purpose::Simulate).rng(0);
            fill_standard_normal(&mut rng, &mut xi);
            for i in 0..d {
                x[i] = self.mu + (x[i] - self.mu) * decay + sd * xi[i];
            }
            out.push(x.clone());
        }
        Observations::new(times.to_vec(), out)
    }
}
