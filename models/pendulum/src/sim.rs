//! The pendulum SDE (Euler–Maruyama) and the anti-aliased renderer.

use diffsmc::rng::{Purpose, StreamKey, standard_normal};
use diffsmc::{Result, SmcError};

/// Image side (pixels).
pub const SIDE: usize = 32;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;
/// Rod length `l` in the dynamics, and the rod's drawn length as a fraction of the image side.
pub const ROD: f64 = 0.4;
/// Half-width of the drawn rod, in pixels (a 2-point line at 50 dpi on a 32-pixel figure).
pub const ROD_HALF_WIDTH: f64 = 0.7;
/// Radius of the drawn bob, in pixels (a 6-point marker at 50 dpi).
pub const BOB_RADIUS: f64 = 2.1;

/// Stream tag of the process noise (`Purpose::Other`; step `j` is the key's step).
pub const PROCESS_STREAM_TAG: u32 = 0x5044_5052; // "PDPR"
/// Stream tag of the pixel noise (`Purpose::Other`; frame `j` is the key's step).
pub const PIXEL_STREAM_TAG: u32 = 0x5044_5058; // "PDPX"

/// The simulation settings: `Z_j¹ = Z_{j−1}¹ + Z_{j−1}² Δ + ζ¹`,
/// `Z_j² = Z_{j−1}² − (g/l) sin(Z_{j−1}¹) Δ + ζ²`, `ζ ~ N(0, Λ Δ)` with diagonal `Λ`
/// (the Euler–Maruyama step of the SDE with diffusion `Λ^{1/2} dW`), observed through
/// [`render`] plus `N(0, σ_obs²)` pixel noise, clipped to `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Gravity `g`.
    pub g: f64,
    /// Length `l`.
    pub length: f64,
    /// End time (the grid is `[0, t_end]`).
    pub t_end: f64,
    /// Number of Euler–Maruyama steps.
    pub n_steps: usize,
    /// Initial state `(angle, angular velocity)`.
    pub z0: [f64; 2],
    /// The diagonal of `Λ` (per unit time).
    pub lambda: [f64; 2],
    /// Pixel noise standard deviation `σ_obs`.
    pub sigma_obs: f64,
}

impl SimConfig {
    /// The paper's setting 1: `g = 9.81`, `l = 0.4`, `t ∈ [0, 4]` in 256 steps,
    /// `Z_0 = (π/4, 0)`, `Λ = 0.01 I`, `σ_obs = 0.01`.
    pub fn paper() -> Self {
        SimConfig {
            g: 9.81,
            length: ROD,
            t_end: 4.0,
            n_steps: 256,
            z0: [std::f64::consts::FRAC_PI_4, 0.0],
            lambda: [0.01, 0.01],
            sigma_obs: 0.01,
        }
    }

    /// Setting 2's data: as [`SimConfig::paper`] with `Λ = 0.1 · diag(0, 1)`.
    pub fn paper_setting2() -> Self {
        SimConfig {
            lambda: [0.0, 0.1],
            ..Self::paper()
        }
    }

    /// The step `Δ = t_end / n_steps`.
    pub fn dt(&self) -> f64 {
        self.t_end / self.n_steps as f64
    }

    fn check(&self) -> Result<()> {
        let pos = |what: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(SmcError::invalid(what, v, "a finite number > 0"))
            }
        };
        pos("pendulum g", self.g)?;
        pos("pendulum length", self.length)?;
        pos("pendulum t_end", self.t_end)?;
        pos("pendulum sigma_obs", self.sigma_obs)?;
        if self.n_steps == 0 {
            return Err(SmcError::invalid("pendulum n_steps", 0, "at least 1"));
        }
        for v in self.lambda {
            if !(v.is_finite() && v >= 0.0) {
                return Err(SmcError::invalid(
                    "pendulum lambda",
                    v,
                    "a finite number ≥ 0",
                ));
            }
        }
        if !self.z0.iter().all(|v| v.is_finite()) {
            return Err(SmcError::invalid(
                "pendulum z0",
                format!("{:?}", self.z0),
                "finite",
            ));
        }
        Ok(())
    }
}

/// A simulated data set: the states, the clean renders and the noisy observations.
#[derive(Debug, Clone)]
pub struct PendulumData {
    /// `n_steps + 1` states, `Z_0` first.
    pub states: Vec<[f64; 2]>,
    /// `render(Z_j)` per frame.
    pub clean: Vec<Vec<f64>>,
    /// The observations `clip(render(Z_j) + N(0, σ_obs² I), 0, 1)`.
    pub images: Vec<Vec<f64>>,
    /// The step `Δ`.
    pub dt: f64,
}

/// The true transition for a given noise draw `ζ`.
#[inline]
pub fn true_step(cfg: &SimConfig, z: [f64; 2], zeta: [f64; 2]) -> [f64; 2] {
    let dt = cfg.dt();
    [
        z[0] + z[1] * dt + zeta[0],
        z[1] - cfg.g / cfg.length * z[0].sin() * dt + zeta[1],
    ]
}

/// Simulates a data set from `seed` (step `j`'s process noise from stream 0 of
/// `StreamKey::new(seed, j, Purpose::Other(PROCESS_STREAM_TAG))`, frame `j`'s pixel noise
/// likewise with [`PIXEL_STREAM_TAG`]).
///
/// ```
/// use diffsmc_pendulum::{SimConfig, simulate, PIXELS};
/// let d = simulate(&SimConfig::paper(), 1)?;
/// assert_eq!(d.states.len(), 257);
/// assert_eq!(d.images[0].len(), PIXELS);
/// assert!(d.images.iter().flatten().all(|&p| (0.0..=1.0).contains(&p)));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn simulate(cfg: &SimConfig, seed: u64) -> Result<PendulumData> {
    cfg.check()?;
    let dt = cfg.dt();
    let sd = [(cfg.lambda[0] * dt).sqrt(), (cfg.lambda[1] * dt).sqrt()];
    let mut states = Vec::with_capacity(cfg.n_steps + 1);
    let mut z = cfg.z0;
    states.push(z);
    for j in 1..=cfg.n_steps {
        let mut rng = StreamKey::new(seed, j, Purpose::Other(PROCESS_STREAM_TAG)).rng(0);
        let zeta = [
            sd[0] * standard_normal(&mut rng),
            sd[1] * standard_normal(&mut rng),
        ];
        z = true_step(cfg, z, zeta);
        states.push(z);
    }
    let clean: Vec<Vec<f64>> = states.iter().map(|s| render(s[0])).collect();
    let images = clean
        .iter()
        .enumerate()
        .map(|(j, img)| {
            let mut rng = StreamKey::new(seed, j, Purpose::Other(PIXEL_STREAM_TAG)).rng(0);
            img.iter()
                .map(|&p| (p + cfg.sigma_obs * standard_normal(&mut rng)).clamp(0.0, 1.0))
                .collect()
        })
        .collect();
    Ok(PendulumData {
        states,
        clean,
        images,
        dt,
    })
}

/// Renders the pendulum at angle `alpha` as a 32×32 greyscale image (row-major, row 0 at
/// the top, values in `[0, 1]`, white on black).
///
/// The image is the unit square with the pivot at its centre `(0.5, 0.5)`; the bob sits at
/// `(0.5 + 0.4 sin α, 0.5 − 0.4 cos α)` (y up, so α = 0 hangs straight down). The shape is
/// the union of a rod (the segment pivot–bob, half-width [`ROD_HALF_WIDTH`] pixels) and a
/// disc (radius [`BOB_RADIUS`] pixels) around the bob, the sizes of the reference's
/// matplotlib figure (a 2-point line and a 6-point marker at 50 dpi). Anti-aliasing is
/// analytic: a pixel whose centre lies at distance `d` (in pixels) from the rod's segment
/// or the bob's centre gets coverage `clamp(r − d + 1/2, 0, 1)` for that part's radius `r`
/// (a one-pixel linear ramp across the edge, exact for a straight edge crossing a pixel
/// vertically); the pixel value is the larger of the two coverages.
///
/// ```
/// use diffsmc_pendulum::{render, SIDE};
/// let img = render(0.0);
/// // Hanging straight down: the bob's centre (16, 28.8) is in column 16, row 28 is bright.
/// assert_eq!(img[28 * SIDE + 16], 1.0);
/// assert_eq!(img[0], 0.0);
/// ```
pub fn render(alpha: f64) -> Vec<f64> {
    let s = SIDE as f64;
    // Pixel coordinates: column x to the right, row y downwards; centres at (c + ½, r + ½).
    let (px, py) = (0.5 * s, 0.5 * s);
    let (bx, by) = (px + ROD * alpha.sin() * s, py + ROD * alpha.cos() * s);
    let (dx, dy) = (bx - px, by - py);
    let len2 = dx * dx + dy * dy;
    let mut img = vec![0.0; PIXELS];
    for r in 0..SIDE {
        for c in 0..SIDE {
            let (x, y) = (c as f64 + 0.5, r as f64 + 0.5);
            let t = (((x - px) * dx + (y - py) * dy) / len2).clamp(0.0, 1.0);
            let d_rod = ((x - px - t * dx).powi(2) + (y - py - t * dy).powi(2)).sqrt();
            let d_bob = ((x - bx).powi(2) + (y - by).powi(2)).sqrt();
            let cov = |rad: f64, d: f64| (rad - d + 0.5).clamp(0.0, 1.0);
            img[r * SIDE + c] = cov(ROD_HALF_WIDTH, d_rod).max(cov(BOB_RADIUS, d_bob));
        }
    }
    img
}
