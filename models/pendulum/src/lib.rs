//! # diffsmc-pendulum: the vision-based pendulum (Andersson & Zhao 2025, §4.4, appendix J)
//!
//! - [`simulate`]: the pendulum SDE `dZ¹ = Z² dt`, `dZ² = −(g/l) sin Z¹ dt` plus noise
//!   `ζ ~ N(0, Λ Δ)` by Euler–Maruyama (g = 9.81, l = 0.4, t ∈ [0, 4], 256 steps,
//!   Z₀ = (π/4, 0)), observed as 32×32 greyscale images [`render`]`(Z¹) + N(0, σ_obs²)`;
//! - [`NeuralPendulum`]: the neural state-space model of both settings ([`Setting`]): SIREN
//!   dynamics on `h(z) = [sin z¹, cos z¹, z²/10]` and a transposed-convolution decoder,
//!   learnt together by minimising the particle-filter negative log-likelihood (reverse
//!   mode: each block of particles' network evaluations is one custom tape operation, see
//!   `diffsmc-nn` and [`PendulumSsm`]'s block move);
//! - [`ssim`] and [`psnr`] to score predicted image sequences.

mod metrics;
mod neural;
mod sim;

pub use metrics::{SSIM_K1, SSIM_K2, Window, psnr, sequence_scores, ssim, ssim_with};
pub use neural::{
    HIDDEN, NeuralPendulum, OMEGA0, PendulumSsm, Setting, Unrolled, VEL_SCALE, decoder_net,
    dynamics_net, features,
};
pub use sim::{
    BOB_RADIUS, PIXELS, PendulumData, ROD, ROD_HALF_WIDTH, SIDE, SimConfig, render, simulate,
    true_step,
};

#[cfg(test)]
mod tests;
