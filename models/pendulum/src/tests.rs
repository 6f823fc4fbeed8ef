use diffsmc::grad::{GradMode, GradOptions, Parametric, ParticleFilterNll, gradient};
use diffsmc::{ResamplerSpec, SmcConfig};

use crate::*;

fn short_cfg(n: usize) -> SimConfig {
    let mut c = SimConfig::paper();
    c.n_steps = n;
    c.t_end = 4.0 * n as f64 / 256.0;
    c
}

#[test]
fn psnr_closed_forms() {
    let x: Vec<f64> = (0..64).map(|i| (i as f64) / 64.0).collect();
    assert_eq!(psnr(&x, &x, 1.0).unwrap(), f64::INFINITY);
    // A constant offset c: MSE = c², PSNR = −20 log₁₀ c.
    for c in [0.1, 0.01, 0.25] {
        let y: Vec<f64> = x.iter().map(|v| v + c).collect();
        let p = psnr(&x, &y, 1.0).unwrap();
        assert!((p + 20.0 * c.log10()).abs() < 1e-9, "{p}");
    }
    // Data range L: +20 log₁₀ L.
    let y: Vec<f64> = x.iter().map(|v| v + 0.1).collect();
    assert!((psnr(&x, &y, 255.0).unwrap() - (20.0 + 20.0 * 255f64.log10())).abs() < 1e-9);
    assert!(psnr(&x, &y[..3], 1.0).is_err());
    assert!(psnr(&x, &y, 0.0).is_err());
}

#[test]
fn ssim_known_pairs() {
    let img = render(0.7);
    // Identical images: exactly 1.
    assert!((ssim(&img, &img, SIDE, SIDE).unwrap() - 1.0).abs() < 1e-12);
    // Constant images a and b: σ = 0, so SSIM = (2ab + C₁)/(a² + b² + C₁) at every window.
    let (a, b) = (0.3, 0.6);
    let c1 = (0.01f64).powi(2);
    let expected = (2.0 * a * b + c1) / (a * a + b * b + c1);
    let got = ssim(&vec![a; PIXELS], &vec![b; PIXELS], SIDE, SIDE).unwrap();
    assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
    // Hand-computed global case (one 4×4 window): x half 0 / half 1, y = x/2.
    // μx = 0.5, μy = 0.25, σx² = 0.25, σy² = 0.0625, σxy = 0.125, C₁ = 1e-4, C₂ = 9e-4:
    // SSIM = (0.25 + 1e-4)(0.25 + 9e-4) / ((0.3125 + 1e-4)(0.3125 + 9e-4)).
    let x: Vec<f64> = (0..16).map(|i| if i < 8 { 0.0 } else { 1.0 }).collect();
    let y: Vec<f64> = x.iter().map(|v| v / 2.0).collect();
    let hand = (0.2501 * 0.2509) / (0.3126 * 0.3134);
    let got = ssim_with(&x, &y, 4, 4, Window::Uniform { size: 4 }, 1.0).unwrap();
    assert!((got - hand).abs() < 1e-12, "{got} vs {hand}");
    // Structure destroyed: an image against its negative scores below 0.
    let neg: Vec<f64> = img.iter().map(|v| 1.0 - v).collect();
    assert!(ssim(&img, &neg, SIDE, SIDE).unwrap() < 0.0);
    assert!(ssim(&img, &img[..10], SIDE, SIDE).is_err());
    assert!(ssim_with(&x, &y, 4, 4, Window::Uniform { size: 5 }, 1.0).is_err());
}

#[test]
fn renderer_geometry() {
    // Straight down: symmetric about the vertical centre line x = 16 (columns c and 31 − c).
    let img = render(0.0);
    for r in 0..SIDE {
        for c in 0..SIDE {
            assert!((img[r * SIDE + c] - img[r * SIDE + SIDE - 1 - c]).abs() < 1e-12);
        }
    }
    // Above the pivot nothing is drawn when hanging down (rows < 15).
    assert!(img[..14 * SIDE].iter().all(|&v| v == 0.0));
    // Horizontal (α = π/2): the bob at x = 16 + 12.8 on the middle row.
    let img = render(std::f64::consts::FRAC_PI_2);
    assert_eq!(img[16 * SIDE + 28], 1.0);
    assert_eq!(img[28 * SIDE + 16], 0.0);
    // Anti-aliased: some pixel strictly between 0 and 1.
    assert!(img.iter().any(|&v| v > 0.05 && v < 0.95));
    assert!(img.iter().all(|&v| (0.0..=1.0).contains(&v)));
}

#[test]
fn simulator_is_seeded_and_follows_the_ode_without_noise() {
    let cfg = SimConfig::paper();
    let a = simulate(&cfg, 3).unwrap();
    let b = simulate(&cfg, 3).unwrap();
    assert_eq!(a.states, b.states);
    assert_eq!(a.images, b.images);
    assert_ne!(a.states, simulate(&cfg, 4).unwrap().states);
    // Λ = 0: the explicit Euler recursion exactly.
    let mut det = cfg.clone();
    det.lambda = [0.0, 0.0];
    let d = simulate(&det, 0).unwrap();
    let dt = 4.0 / 256.0;
    let mut z = [std::f64::consts::FRAC_PI_4, 0.0];
    for s in &d.states[1..] {
        z = [z[0] + z[1] * dt, z[1] - 9.81 / 0.4 * z[0].sin() * dt];
        assert_eq!(*s, z);
    }
    // Pixel noise σ_obs = 0.01, clipped to [0, 1]: a pixel whose clean value is exactly 0
    // or 1 keeps half its draws, so its mean squared residual is σ²/2; anti-aliased edge
    // pixels (clean value strictly inside) keep (nearly) all, up to σ². 257·1024 draws give
    // the mean square a relative standard error ≈ 0.4%, so ±5% is a wide margin.
    let ms: f64 = a
        .images
        .iter()
        .flatten()
        .zip(a.clean.iter().flatten())
        .map(|(y, c)| (y - c).powi(2))
        .sum::<f64>()
        / (257.0 * 1024.0);
    let frac_edge = a
        .clean
        .iter()
        .flatten()
        .filter(|&&c| c > 0.0 && c < 1.0)
        .count() as f64
        / (257.0 * 1024.0);
    let lo = 0.5e-4 * 0.95;
    let hi = 0.5e-4 * (1.0 + frac_edge) * 1.05;
    assert!(ms > lo && ms < hi, "{ms} not in ({lo}, {hi})");
    let mut bad = cfg.clone();
    bad.sigma_obs = -1.0;
    assert!(simulate(&bad, 0).is_err());
}

#[test]
fn network_shapes_and_parameter_counts() {
    let d = dynamics_net(5, 0).unwrap();
    assert_eq!(
        d.n_params(),
        5 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 2
    );
    let r = decoder_net(0).unwrap();
    assert_eq!(r.n_outputs(), 1024);
    assert_eq!(
        r.n_params(),
        3 * 16 + 16 + 16 * 256 + 256 + (9 * 32 * 16 + 32) + (9 * 16 * 32 + 16) + (9 * 16 + 1)
    );
    assert!(Setting::from_number(3).is_err());
}

/// The reverse-mode gradient of the PF NLL equals forward mode on a short sequence with a
/// smaller θ subset check: forward mode over all ≈1.5·10⁵ parameters is too slow, so compare
/// the reverse gradient's directional derivative with a central difference of the value
/// along a random direction (common random numbers make the value a smooth function of θ
/// under the diffusion resampler).
#[test]
fn reverse_gradient_matches_directional_difference() {
    let cfg = short_cfg(3);
    let data = simulate(&cfg, 2).unwrap();
    for setting in [Setting::One, Setting::Two] {
        let fam = NeuralPendulum::new(setting, &data, &cfg, 1).unwrap();
        let theta = fam.initial_theta();
        let smc = SmcConfig::new(4).unwrap();
        let spec: ResamplerSpec = "diffusion:T=1,K=4".parse().unwrap();
        let nll = ParticleFilterNll::new(&fam, &smc, &spec, 5);
        let rev = GradOptions::default().with_mode(GradMode::Reverse);
        let (v, g) = gradient(&nll, &theta, &rev).unwrap();
        assert!(v.is_finite());
        assert_eq!(g.len(), fam.n_params());
        // Direction: random signs scaled by 1e-2 / √p.
        let p = theta.len();
        let dir: Vec<f64> = (0..p)
            .map(|i| if (i * 2654435761) % 7 < 3 { 1.0 } else { -1.0 } / (p as f64).sqrt())
            .collect();
        let h = 1e-4;
        let at = |s: f64| {
            let th: Vec<f64> = theta.iter().zip(&dir).map(|(t, d)| t + s * d).collect();
            diffsmc::grad::value(&nll, &th).unwrap()
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        let dd: f64 = g.iter().zip(&dir).map(|(a, b)| a * b).sum();
        // Truncation O(h²) on an O(1)-curvature loss plus rounding O(1e-16 |v| / h): both
        // far below 1e-5 relative; 1e-4 relative allows for the resampler's smooth but
        // strongly curved map.
        assert!(
            (fd - dd).abs() < 1e-4 * fd.abs().max(1e-3),
            "setting {}: fd {fd} vs reverse {dd}",
            setting.number()
        );
    }
}

#[test]
fn unroll_and_decode() {
    let cfg = short_cfg(4);
    let data = simulate(&cfg, 2).unwrap();
    let fam = NeuralPendulum::new(Setting::Two, &data, &cfg, 1).unwrap();
    let theta = fam.initial_theta();
    let (states, imgs) = fam.unroll(&theta, 4).unwrap();
    assert_eq!((states.len(), imgs.len(), imgs[0].len()), (5, 5, PIXELS));
    assert_eq!(states[0], cfg.z0);
    let dec = fam.decode_states(&theta, &states).unwrap();
    assert_eq!(dec, imgs);
    assert!(fam.unroll(&theta[1..], 4).is_err());
}

/// The neural model's block move (batched networks) against the per-particle calls: the same
/// bits for `f64`, at step 0 and later steps, in both settings, for a block not starting at 0.
#[test]
fn block_move_has_the_per_particle_bits() {
    use diffsmc::FeynmanKac;
    use diffsmc::smc::step::{move_key, move_particle};
    let cfg = short_cfg(3);
    let data = simulate(&cfg, 2).unwrap();
    for setting in [Setting::One, Setting::Two] {
        let fam = NeuralPendulum::new(setting, &data, &cfg, 1).unwrap();
        let model = fam.model::<f64>(&fam.initial_theta()).unwrap();
        let (first, m) = (3, 5);
        let xp: Vec<f64> = (0..2 * m)
            .map(|i| cfg.z0[i % 2] + 0.1 * (i as f64 * 1.7).sin())
            .collect();
        for t in [0, 2] {
            let key = move_key(7, t);
            let prev = (t > 0).then_some(&xp[..]);
            let (mut x, mut g) = (vec![0.0; 2 * m], vec![0.0; m]);
            model.move_block(t, key, first, prev, &mut x, &mut g);
            for j in 0..m {
                let mut xj = [0.0; 2];
                let pj = prev.map(|p| &p[2 * j..2 * j + 2]);
                let gj = move_particle(&model, t, key, first + j, pj, &mut xj);
                assert_eq!(xj[0].to_bits(), x[2 * j].to_bits(), "t = {t}, j = {j}");
                assert_eq!(xj[1].to_bits(), x[2 * j + 1].to_bits(), "t = {t}, j = {j}");
                assert_eq!(gj.to_bits(), g[j].to_bits(), "t = {t}, j = {j}");
            }
            if t > 0 {
                // The noise moved the particles apart.
                assert_ne!(x[0].to_bits(), x[2].to_bits());
            }
        }
    }
}

/// A Feynman–Kac model that hides its inner model's block move, so the engine moves its
/// particles one at a time (the default [`diffsmc::FeynmanKac::move_block`]).
struct PerParticle<M>(M);

impl<S: diffsmc::Scalar, M: diffsmc::FeynmanKac<S>> diffsmc::FeynmanKac<S> for PerParticle<M> {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn n_steps(&self) -> usize {
        self.0.n_steps()
    }
    fn sample_initial(&self, rng: &mut diffsmc::rng::StreamRng, x: &mut [S]) {
        self.0.sample_initial(rng, x)
    }
    fn log_potential_initial(&self, x: &[S]) -> S {
        self.0.log_potential_initial(x)
    }
    fn sample_transition(
        &self,
        t: usize,
        xp: &[S],
        rng: &mut diffsmc::rng::StreamRng,
        x: &mut [S],
    ) {
        self.0.sample_transition(t, xp, rng, x)
    }
    fn log_potential(&self, t: usize, xp: &[S], x: &[S]) -> S {
        self.0.log_potential(t, xp, x)
    }
}

struct PerParticleFamily<'a>(&'a NeuralPendulum);

impl Parametric for PerParticleFamily<'_> {
    type Model<S: diffsmc::Scalar> = PerParticle<<NeuralPendulum as Parametric>::Model<S>>;
    fn n_params(&self) -> usize {
        self.0.n_params()
    }
    fn model<S: diffsmc::Scalar>(&self, theta: &[S]) -> diffsmc::Result<Self::Model<S>> {
        Ok(PerParticle(self.0.model(theta)?))
    }
}

/// The reverse pass through the batched tape ops against the per-particle tape ops: the same
/// value bits (the forward run is bit-identical) and the same gradient up to the order in
/// which the batch's weight adjoints are summed.
#[test]
fn block_reverse_gradient_matches_per_particle() {
    let cfg = short_cfg(3);
    let data = simulate(&cfg, 2).unwrap();
    for setting in [Setting::One, Setting::Two] {
        let fam = NeuralPendulum::new(setting, &data, &cfg, 1).unwrap();
        let theta = fam.initial_theta();
        let smc = SmcConfig::new(5).unwrap();
        let spec: ResamplerSpec = "diffusion:T=1,K=4".parse().unwrap();
        let rev = GradOptions::default().with_mode(GradMode::Reverse);
        let (v, g) = gradient(&ParticleFilterNll::new(&fam, &smc, &spec, 5), &theta, &rev).unwrap();
        let pp = PerParticleFamily(&fam);
        let (v1, g1) =
            gradient(&ParticleFilterNll::new(&pp, &smc, &spec, 5), &theta, &rev).unwrap();
        assert_eq!(v.to_bits(), v1.to_bits(), "setting {}", setting.number());
        let scale = g1.iter().fold(0.0f64, |a, b| a.max(b.abs()));
        assert!(scale > 0.0);
        for (i, (a, b)) in g.iter().zip(&g1).enumerate() {
            assert!(
                (a - b).abs() <= 1e-10 * scale,
                "setting {}: θ[{i}] {a} vs {b}",
                setting.number()
            );
        }
    }
}
