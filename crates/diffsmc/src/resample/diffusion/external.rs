//! Diffusion resampling with externally supplied standard normals (cross-checks against other
//! implementations, e.g. the JAX reference, on the same noise).
//!
//! [`DiffusionNoise::draw`] returns exactly the normals [`DiffusionResampler::resample`] draws
//! for a key, and [`DiffusionResampler::resample_with_noise`] runs the same arithmetic on
//! given normals, so `resample_with_noise(draw(key))` equals `resample(key)` bit for bit.

use super::*;

/// The standard normals one diffusion resampling of `m` output particles in dimension `d`
/// consumes, in the whitened coordinates: the initial state `U(0) ~ N(0, I)` of every output
/// particle and, for the SDE dynamics (and Tweedie), the increment `ξ` of every step.
///
/// Layouts (the reference implementation's): `initial[j * d + c]` (`m × d`, particle-major)
/// and `increments[(k * m + j) * d + c]` (`K × m × d`, step-major). With the probability-flow
/// ODE the increments are not used and may be empty.
///
/// ```
/// use diffsmc::resample::diffusion::DiffusionNoise;
/// let noise = DiffusionNoise::new(2, 1, 3, vec![0.5, -1.0], vec![])?; // m = 2, d = 1, K = 3
/// assert_eq!(noise.initial(), &[0.5, -1.0]);
/// assert!(DiffusionNoise::new(2, 1, 3, vec![0.5], vec![]).is_err()); // m·d = 2 needed
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionNoise {
    m: usize,
    d: usize,
    steps: usize,
    initial: Vec<f64>,
    increments: Vec<f64>,
}

impl DiffusionNoise {
    /// Noise for `m` particles in dimension `d` over `steps` steps. `initial` must have `m·d`
    /// finite entries; `increments` either none or `steps·m·d` finite entries.
    pub fn new(
        m: usize,
        d: usize,
        steps: usize,
        initial: Vec<f64>,
        increments: Vec<f64>,
    ) -> Result<Self> {
        if initial.len() != m * d {
            return Err(SmcError::DimensionMismatch {
                what: "initial normals (m * d)",
                expected: m * d,
                got: initial.len(),
            });
        }
        if !increments.is_empty() && increments.len() != steps * m * d {
            return Err(SmcError::DimensionMismatch {
                what: "increment normals (K * m * d, or none)",
                expected: steps * m * d,
                got: increments.len(),
            });
        }
        if initial.iter().chain(&increments).any(|v| !v.is_finite()) {
            return Err(SmcError::invalid(
                "noise",
                "a non-finite normal",
                "finite standard normal draws",
            ));
        }
        Ok(DiffusionNoise {
            m,
            d,
            steps,
            initial,
            increments,
        })
    }

    /// The normals [`DiffusionResampler::resample`] with `config` draws for `m` output
    /// particles in dimension `d` and `key`: stream `key.rng(j)` gives `d` initial normals of
    /// particle `j`, then `d` per step when the dynamics are noisy (no increments otherwise).
    pub fn draw(config: &DiffusionConfig, m: usize, d: usize, key: StreamKey) -> Self {
        let steps = step_coefficients(config);
        let noisy = steps.iter().any(|s| s.kxi != 0.0);
        let k = steps.len();
        let mut initial = vec![0.0; m * d];
        let mut increments = if noisy { vec![0.0; k * m * d] } else { vec![] };
        for j in 0..m {
            let mut rng = key.rng(j);
            for v in &mut initial[j * d..(j + 1) * d] {
                *v = standard_normal(&mut rng);
            }
            if noisy {
                for step in 0..k {
                    let at = (step * m + j) * d;
                    for v in &mut increments[at..at + d] {
                        *v = standard_normal(&mut rng);
                    }
                }
            }
        }
        DiffusionNoise {
            m,
            d,
            steps: k,
            initial,
            increments,
        }
    }

    /// Output particles `m`.
    pub fn particles(&self) -> usize {
        self.m
    }
    /// Dimension `d`.
    pub fn dim(&self) -> usize {
        self.d
    }
    /// Steps `K`.
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// The initial normals, `m × d` particle-major.
    pub fn initial(&self) -> &[f64] {
        &self.initial
    }
    /// The step increments, `K × m × d` step-major (empty if none were given or drawn).
    pub fn increments(&self) -> &[f64] {
        &self.increments
    }
}

impl DiffusionResampler {
    /// [`Resampler::resample`] with the standard normals taken from `noise` instead of drawn
    /// from a key: the same reference, whitening, step coefficients and score kernel, so with
    /// `noise = DiffusionNoise::draw(config, m, d, key)` the output equals `resample(.., key,
    /// ..)` bit for bit. On the reverse-mode tape scalar the score loop is recorded node by
    /// node (correct, but slow and memory-hungry: meant for small cross-checks).
    ///
    /// Errors: those of `resample`, and a [`SmcError::DimensionMismatch`] when `noise` is not
    /// for `out.len()` particles, the particle dimension and the configured number of steps,
    /// or lacks the increments the SDE dynamics need.
    ///
    /// ```
    /// use diffsmc::prelude::*;
    /// use diffsmc::resample::diffusion::DiffusionNoise;
    /// use diffsmc::resample::{DiffusionConfig, DiffusionResampler, Dynamics};
    /// use diffsmc::rng::Purpose;
    ///
    /// let config = DiffusionConfig::new().with_dynamics(Dynamics::Sde)?.with_steps(4)?;
    /// let r = DiffusionResampler::new(config.clone());
    /// let x = Particles::from_vec(3, 1, vec![0.0, 1.0, 3.0])?;
    /// let lw = vec![-(3f64).ln(); 3];
    /// let key = StreamKey::new(7, 0, Purpose::Resample);
    /// let (mut a, mut b) = (Particles::zeros(3, 1), Particles::zeros(3, 1));
    /// let (mut la, mut lb) = (vec![0.0; 3], vec![0.0; 3]);
    /// r.resample(&x, &lw, key, &mut a, &mut la)?;
    /// let noise = DiffusionNoise::draw(&config, 3, 1, key);
    /// r.resample_with_noise(&x, &lw, &noise, &mut b, &mut lb)?;
    /// assert_eq!(a.as_slice(), b.as_slice());
    /// # Ok::<(), SmcError>(())
    /// ```
    pub fn resample_with_noise<S: Scalar>(
        &self,
        particles: &Particles<S>,
        log_weights: &[S],
        noise: &DiffusionNoise,
        out: &mut Particles<S>,
        out_log_weights: &mut [S],
    ) -> Result<ResampleInfo> {
        check_shapes(particles, log_weights, out, out_log_weights)?;
        let m = out.len();
        let d = particles.dim();
        let steps = step_coefficients(&self.config);
        let noisy = steps.iter().any(|s| s.kxi != 0.0);
        if noise.m != m || noise.d != d {
            return Err(SmcError::DimensionMismatch {
                what: "noise particles * dimension vs output",
                expected: m * d,
                got: noise.m * noise.d,
            });
        }
        if noise.steps != steps.len() {
            return Err(SmcError::DimensionMismatch {
                what: "noise steps vs configured steps K",
                expected: steps.len(),
                got: noise.steps,
            });
        }
        if noisy && noise.increments.is_empty() && m * d > 0 {
            return Err(SmcError::DimensionMismatch {
                what: "increment normals the SDE dynamics need (K * m * d)",
                expected: steps.len() * m * d,
                got: 0,
            });
        }
        out_log_weights.fill(S::cst(-(m as f64).ln()));
        if m == 0 || d == 0 {
            return Ok(ResampleInfo::RESAMPLED);
        }
        let prep = prepare(&self.config, particles, log_weights)?;
        let out_buf = out.as_mut_slice();
        let (lanes, simd) = match self.kernel {
            KernelChoice::Auto => (S::LANES, Simd::detect()),
            KernelChoice::Generic => (None, Simd::Baseline),
            KernelChoice::Lanes(simd) => (S::LANES, simd),
        };
        let w = &prep.w;
        let lanes = if S::ON_TAPE { None } else { lanes };
        let (st, nz) = (&steps, noise);
        match lanes {
            Some(0) => drive_noise(&LaneKernel::<0>::new(w, simd), &prep, st, nz, out_buf),
            Some(1) => drive_noise(&LaneKernel::<1>::new(w, simd), &prep, st, nz, out_buf),
            Some(2) => drive_noise(&LaneKernel::<2>::new(w, simd), &prep, st, nz, out_buf),
            Some(3) => drive_noise(&LaneKernel::<3>::new(w, simd), &prep, st, nz, out_buf),
            Some(4) => drive_noise(&LaneKernel::<4>::new(w, simd), &prep, st, nz, out_buf),
            Some(8) => drive_noise(&LaneKernel::<8>::new(w, simd), &prep, st, nz, out_buf),
            Some(16) => drive_noise(&LaneKernel::<16>::new(w, simd), &prep, st, nz, out_buf),
            _ => drive_noise(&GenericKernel { w }, &prep, st, nz, out_buf),
        }
        Ok(ResampleInfo::RESAMPLED)
    }
}

/// The reverse process of every output particle with the normals of `noise` (the arithmetic
/// of [`drive`], one block of [`BLOCK`] particles at a time, sequentially).
fn drive_noise<S: Scalar, K: ScoreKernel<S>>(
    kernel: &K,
    prep: &Prepared<S>,
    steps: &[StepCoef],
    noise: &DiffusionNoise,
    out: &mut [S],
) {
    let d = prep.d;
    let m = out.len() / d;
    let noisy = steps.iter().any(|s| s.kxi != 0.0);
    let mut scratch = kernel.scratch();
    let mut u = vec![S::zero(); BLOCK * d];
    let mut q = vec![S::zero(); BLOCK * d];
    let mut mean = vec![S::zero(); BLOCK * d];
    for (bi, block) in out.chunks_mut(BLOCK * d).enumerate() {
        let nb = block.len() / d;
        let j0 = bi * BLOCK;
        let (u, q, mean) = (&mut u[..nb * d], &mut q[..nb * d], &mut mean[..nb * d]);
        for (uk, &z) in u.iter_mut().zip(&noise.initial[j0 * d..(j0 + nb) * d]) {
            *uk = S::cst(z);
        }
        for (k, st) in steps.iter().enumerate() {
            for (qk, &uk) in q.iter_mut().zip(u.iter()) {
                *qk = uk * st.beta;
            }
            kernel.means(q, st.gamma, mean, &mut scratch);
            let xi = if noisy {
                &noise.increments[(k * m + j0) * d..(k * m + j0 + nb) * d]
            } else {
                &[][..]
            };
            for c in 0..nb * d {
                let uk = u[c];
                let s = (mean[c] * st.c - uk) * st.inv_v;
                let mut next = uk * st.ku + s * st.ks;
                if noisy {
                    next += xi[c] * st.kxi;
                }
                u[c] = next;
            }
        }
        for (ub, xo) in u.chunks_exact(d).zip(block.chunks_exact_mut(d)) {
            unwhiten(prep, ub, xo);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Purpose;
    use num_dual::Dual64;

    fn cloud(n: usize, d: usize) -> (Particles<f64>, Vec<f64>) {
        let mut rng = StreamKey::new(3, 0, Purpose::Simulate).rng(0);
        let x: Vec<f64> = (0..n * d)
            .map(|i| standard_normal(&mut rng) + (i % d) as f64)
            .collect();
        let lw: Vec<f64> = (0..n).map(|i| -0.3 * (i % 7) as f64).collect();
        let l = log_sum_exp(&lw);
        (
            Particles::from_vec(n, d, x).unwrap(),
            lw.iter().map(|v| v - l).collect(),
        )
    }

    /// Supplied noise drawn as the resampler draws it reproduces `resample` bit for bit, for
    /// every integrator, both dynamics, both moment references and a block-straddling `m`.
    #[test]
    fn drawn_noise_reproduces_resample() {
        let (x, lw) = cloud(37, 3);
        let key = StreamKey::new(11, 2, Purpose::Resample);
        for dynamics in [Dynamics::Ode, Dynamics::Sde] {
            for integ in [
                Integrator::EulerMaruyama,
                Integrator::LordRougemont,
                Integrator::JentzenKloeden,
                Integrator::Tweedie,
            ] {
                if integ == Integrator::Tweedie && dynamics == Dynamics::Ode {
                    continue;
                }
                for reference in [Reference::Full, Reference::Diagonal] {
                    let cfg = DiffusionConfig::new()
                        .with_rate(-0.5)
                        .unwrap()
                        .with_horizon(2.0)
                        .unwrap()
                        .with_steps(5)
                        .unwrap()
                        .with_dynamics(dynamics)
                        .unwrap()
                        .with_integrator(integ)
                        .unwrap()
                        .with_reference(reference.clone())
                        .unwrap();
                    let r = DiffusionResampler::new(cfg.clone());
                    let (mut a, mut b) = (Particles::zeros(37, 3), Particles::zeros(37, 3));
                    let (mut la, mut lb) = (vec![0.0; 37], vec![0.0; 37]);
                    r.resample(&x, &lw, key, &mut a, &mut la).unwrap();
                    let noise = DiffusionNoise::draw(&cfg, 37, 3, key);
                    assert_eq!(noise.increments().is_empty(), dynamics == Dynamics::Ode);
                    r.resample_with_noise(&x, &lw, &noise, &mut b, &mut lb)
                        .unwrap();
                    assert_eq!(a.as_slice(), b.as_slice(), "{integ:?} {dynamics:?}");
                    assert_eq!(la, lb);
                }
            }
        }
    }

    /// The same on dual numbers (lane kernel with one derivative lane): values and tangents.
    #[test]
    fn drawn_noise_reproduces_resample_on_duals() {
        let (x, lw) = cloud(9, 2);
        let xd = Particles::from_vec(
            9,
            2,
            x.as_slice()
                .iter()
                .enumerate()
                .map(|(i, &v)| Dual64::new(v, if i == 4 { 1.0 } else { 0.0 }))
                .collect(),
        )
        .unwrap();
        let lwd: Vec<Dual64> = lw.iter().map(|&v| Dual64::from(v)).collect();
        let cfg = DiffusionConfig::new()
            .with_dynamics(Dynamics::Sde)
            .unwrap()
            .with_steps(3)
            .unwrap();
        let r = DiffusionResampler::new(cfg.clone());
        let key = StreamKey::new(5, 0, Purpose::Resample);
        let (mut a, mut b) = (Particles::zeros(9, 2), Particles::zeros(9, 2));
        let (mut la, mut lb) = (vec![Dual64::from(0.0); 9], vec![Dual64::from(0.0); 9]);
        r.resample(&xd, &lwd, key, &mut a, &mut la).unwrap();
        let noise = DiffusionNoise::draw(&cfg, 9, 2, key);
        r.resample_with_noise(&xd, &lwd, &noise, &mut b, &mut lb)
            .unwrap();
        for (p, q) in a.as_slice().iter().zip(b.as_slice()) {
            assert_eq!((p.re, p.eps), (q.re, q.eps));
        }
    }

    /// Each normal drives what it should: changing one increment of step `k` of particle `j`
    /// changes output particle `j` only (SDE), the ODE ignores the increments, and wrong sizes
    /// are typed errors.
    #[test]
    fn noise_is_routed_and_checked() {
        let (x, lw) = cloud(10, 2);
        let cfg = DiffusionConfig::new().with_steps(3).unwrap();
        let sde_cfg = cfg.clone().with_dynamics(Dynamics::Sde).unwrap();
        let key = StreamKey::new(1, 0, Purpose::Resample);
        let base = DiffusionNoise::draw(&sde_cfg, 6, 2, key);
        let mut inc = base.increments().to_vec();
        let (step, particle, coord) = (1, 4, 1);
        inc[(step * 6 + particle) * 2 + coord] += 0.5;
        let bumped = DiffusionNoise::new(6, 2, 3, base.initial().to_vec(), inc).unwrap();
        let run = |c: &DiffusionConfig, nz: &DiffusionNoise| {
            let mut out = Particles::zeros(6, 2);
            let mut olw = vec![0.0; 6];
            DiffusionResampler::new(c.clone())
                .resample_with_noise(&x, &lw, nz, &mut out, &mut olw)
                .unwrap();
            out
        };
        let (a, b) = (run(&sde_cfg, &base), run(&sde_cfg, &bumped));
        for j in 0..6 {
            assert_eq!(a.particle(j) == b.particle(j), j != 4, "particle {j}");
        }
        let ode_only = DiffusionNoise::new(6, 2, 3, base.initial().to_vec(), vec![]).unwrap();
        assert_eq!(run(&cfg, &base).as_slice(), run(&cfg, &ode_only).as_slice());
        assert_eq!(
            run(&cfg, &bumped).as_slice(),
            run(&cfg, &ode_only).as_slice()
        );

        let r = DiffusionResampler::new(cfg.clone());
        let mut out = Particles::zeros(6, 2);
        let mut olw = vec![0.0; 6];
        let wrong_k = DiffusionNoise::new(6, 2, 4, base.initial().to_vec(), vec![]).unwrap();
        assert!(matches!(
            r.resample_with_noise(&x, &lw, &wrong_k, &mut out, &mut olw),
            Err(SmcError::DimensionMismatch { .. })
        ));
        let sde = DiffusionResampler::new(sde_cfg);
        assert!(matches!(
            sde.resample_with_noise(&x, &lw, &ode_only, &mut out, &mut olw),
            Err(SmcError::DimensionMismatch { .. })
        ));
        let mut small = Particles::zeros(5, 2);
        assert!(
            r.resample_with_noise(&x, &lw, &base, &mut small, &mut olw[..5])
                .is_err()
        );
        assert!(DiffusionNoise::new(1, 1, 1, vec![f64::NAN], vec![]).is_err());
        assert!(DiffusionNoise::new(1, 1, 2, vec![0.0], vec![0.0]).is_err());
    }
}
