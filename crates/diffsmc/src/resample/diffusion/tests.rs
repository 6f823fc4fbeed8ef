use super::*;
use crate::resample::{Multinomial, ResamplerSpec};
use crate::rng::Purpose;
use num_dual::{Dual64, DualNum, DualSVec64};

fn key(seed: u64) -> StreamKey {
    StreamKey::new(seed, 3, Purpose::Resample)
}

fn normalise<S: Scalar>(lw: &mut [S]) {
    let lse = log_sum_exp(lw);
    for w in lw.iter_mut() {
        *w -= lse;
    }
}

/// `n` draws from `N(0, I_d)` weighted towards `N(1, 0.5² I_d)`.
fn gaussian_case(n: usize, d: usize, seed: u64) -> (Particles<f64>, Vec<f64>) {
    let mut rng = StreamKey::new(seed, 0, Purpose::Other(9)).rng(0);
    let x: Vec<f64> = (0..n * d).map(|_| standard_normal(&mut rng)).collect();
    let mut lw: Vec<f64> = x
        .chunks(d)
        .map(|p| {
            p.iter()
                .map(|&v| -2.0 * (v - 1.0).powi(2) + 0.5 * v * v)
                .sum()
        })
        .collect();
    normalise(&mut lw);
    (Particles::from_vec(n, d, x).unwrap(), lw)
}

fn target_draws(n: usize, d: usize, seed: u64) -> Vec<f64> {
    let mut rng = StreamKey::new(seed, 0, Purpose::Other(10)).rng(0);
    (0..n * d)
        .map(|_| 1.0 + 0.5 * standard_normal(&mut rng))
        .collect()
}

fn run<S: Scalar>(
    r: &DiffusionResampler,
    x: &Particles<S>,
    lw: &[S],
    m: usize,
    seed: u64,
) -> Result<Particles<S>> {
    let mut out = Particles::zeros(m, x.dim());
    let mut olw = vec![S::zero(); m];
    r.resample(x, lw, key(seed), &mut out, &mut olw)?;
    let want = -(m as f64).ln();
    assert!(olw.iter().all(|w| w.re() == want));
    Ok(out)
}

fn coord(p: &Particles<f64>, k: usize) -> Vec<f64> {
    p.iter().map(|x| x[k]).collect()
}

/// 1-D Wasserstein-1 distance between two equal-size samples.
fn w1(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

/// Mean over coordinates of the per-coordinate W1 to exact target draws.
fn w1_to_target(p: &Particles<f64>, seed: u64) -> f64 {
    let d = p.dim();
    let t = Particles::from_vec(p.len(), d, target_draws(p.len(), d, seed)).unwrap();
    (0..d).map(|k| w1(&coord(p, k), &coord(&t, k))).sum::<f64>() / d as f64
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n)
}

#[test]
fn diffusion_consistency_improves_with_n_and_matches_multinomial() {
    // Exact draws from N(0, I) weighted to N(1, 0.5² I) in d = 2; the per-coordinate W1 to
    // exact target draws must fall as N grows, and at large T, K be comparable to that
    // of multinomial resampling (which only has Monte Carlo error).
    let cfg = DiffusionConfig::new()
        .with_horizon(3.0)
        .unwrap()
        .with_steps(16)
        .unwrap();
    let r = DiffusionResampler::new(cfg);
    let mut dist = Vec::new();
    for &n in &[256, 4096] {
        let mut w = 0.0;
        let mut wm = 0.0;
        let reps = 2;
        for rep in 0..reps {
            let (x, lw) = gaussian_case(n, 2, 100 + rep);
            let out = run(&r, &x, &lw, n, rep).unwrap();
            w += w1_to_target(&out, 200 + rep) / reps as f64;
            let mut mo = Particles::zeros(n, 2);
            let mut mlw = vec![0.0; n];
            Multinomial
                .resample(&x, &lw, key(rep), &mut mo, &mut mlw)
                .unwrap();
            wm += w1_to_target(&mo, 200 + rep) / reps as f64;
        }
        eprintln!("N = {n}: W1 diffusion {w:.4}, multinomial {wm:.4}");
        dist.push((w, wm));
    }
    let ((w_small, _), (w_big, wm_big)) = (dist[0], dist[1]);
    assert!(
        w_big < 0.6 * w_small,
        "W1 did not fall: {w_small} -> {w_big}"
    );
    assert!(
        w_big < 1.5 * wm_big + 0.01,
        "diffusion {w_big} vs multinomial {wm_big}"
    );
}

fn all_integrators() -> Vec<(Integrator, Dynamics)> {
    let mut v = Vec::new();
    for i in [
        Integrator::EulerMaruyama,
        Integrator::LordRougemont,
        Integrator::JentzenKloeden,
    ] {
        v.push((i, Dynamics::Ode));
        v.push((i, Dynamics::Sde));
    }
    v.push((Integrator::Tweedie, Dynamics::Sde));
    v
}

#[test]
fn every_integrator_recovers_gaussian_target_moments() {
    // Target N(1, 0.25) per coordinate; the weighted input has ESS ≈ 0.3 N ≈ 600, so the
    // Monte Carlo error of the mean is ≈ 0.5/√600 ≈ 0.02 and of the variance ≈ 0.25·√(2/600)
    // ≈ 0.015. On top come the discretisation error (K = 16 steps on [0, 2]) and the
    // finite-ensemble score bias; tolerances: mean ± 0.08, variance within [0.15, 0.35].
    let (x, lw) = gaussian_case(2048, 2, 5);
    for (integ, dy) in all_integrators() {
        let cfg = DiffusionConfig::new()
            .with_dynamics(dy)
            .unwrap()
            .with_integrator(integ)
            .unwrap()
            .with_horizon(2.0)
            .unwrap()
            .with_steps(16)
            .unwrap();
        let out = run(&DiffusionResampler::new(cfg), &x, &lw, 2048, 1).unwrap();
        assert!(out.as_slice().iter().all(|v| v.is_finite()));
        for k in 0..2 {
            let (m, v) = mean_var(&coord(&out, k));
            eprintln!("{integ:?}/{dy:?} coord {k}: mean {m:.4} var {v:.4}");
            assert!((m - 1.0).abs() < 0.08, "{integ:?}/{dy:?}: mean {m}");
            assert!(v > 0.15 && v < 0.35, "{integ:?}/{dy:?}: var {v}");
        }
    }
}

#[test]
fn fixed_and_diagonal_references_recover_target_moments() {
    // Same target and tolerances as above, with a fixed reference N(0.9, 0.3 I) (a user
    // guess close to the target, not the weighted fit) and with the diagonal fit. (A
    // reference much wider than the target, e.g. N(0, 2 I), needs many more steps: the
    // discretisation error scales with the reference, and with the SDE the last step
    // leaves noise of variance ≈ (1 − e^{2aΔ}) Σ_ref.)
    let (x, lw) = gaussian_case(2048, 2, 5);
    let fixed = Reference::Fixed {
        mean: vec![0.9, 0.9],
        cov: vec![0.3, 0.0, 0.0, 0.3],
    };
    for reference in [fixed, Reference::Diagonal] {
        let cfg = DiffusionConfig::new()
            .with_reference(reference.clone())
            .unwrap()
            .with_horizon(2.0)
            .unwrap()
            .with_steps(16)
            .unwrap();
        let out = run(&DiffusionResampler::new(cfg), &x, &lw, 2048, 1).unwrap();
        for k in 0..2 {
            let (m, v) = mean_var(&coord(&out, k));
            eprintln!("{reference:?} coord {k}: mean {m:.4} var {v:.4}");
            assert!((m - 1.0).abs() < 0.08, "{reference:?}: mean {m}");
            assert!(v > 0.15 && v < 0.35, "{reference:?}: var {v}");
        }
    }
}

/// Input particles and weights depending on θ: shift θ₀, scale 1 + θ₁/2, weights tilted by
/// θ₀ (and by θ₁ when present).
fn param_case<S: Scalar>(theta: &[S], n: usize, d: usize) -> (Particles<S>, Vec<S>) {
    let mut rng = StreamKey::new(77, 0, Purpose::Other(3)).rng(0);
    let t0 = theta[0];
    let t1 = if theta.len() > 1 { theta[1] } else { S::zero() };
    let scale = S::one() + t1 * 0.5;
    let mut x = Vec::with_capacity(n * d);
    let mut lw = Vec::with_capacity(n);
    for _ in 0..n {
        let mut l = S::zero();
        for k in 0..d {
            let v = t0 + scale * standard_normal(&mut rng) + k as f64 * 0.3;
            l += v * (t0 * 0.7 + 0.2) - v * v * (t1 * 0.1 + 0.3);
            x.push(v);
        }
        lw.push(l);
    }
    normalise(&mut lw);
    (Particles::from_vec(n, d, x).unwrap(), lw)
}

fn resampled_mean<S: Scalar>(r: &DiffusionResampler, theta: &[S], n: usize, d: usize) -> S {
    let (x, lw) = param_case(theta, n, d);
    let out = run(r, &x, &lw, n, 42).unwrap();
    let mut s = S::zero();
    for p in out.iter() {
        s += p[0] + p[d - 1] * 0.5;
    }
    s / n as f64
}

fn fd<F: Fn(f64) -> f64>(f: F, x: f64, h: f64) -> f64 {
    (f(x + h) - f(x - h)) / (2.0 * h)
}

#[test]
fn dual_derivative_matches_central_finite_difference() {
    // The resampling map is smooth in θ for a fixed seed, so the Dual64 derivative must
    // match a central difference of the same seeded f64 map. With h = 1e-5 the truncation
    // error is O(h²·g''') ≈ 1e-10 and the rounding error ≈ 1e-16·|g|/h ≈ 1e-11; the dual
    // and f64 runs also differ by rounding in their value parts (≈ 1e-13 relative), so a
    // tolerance of 1e-6 (relative to max(1, |g'|)) is generous but still catches any
    // missing derivative path (those are O(0.1–1)).
    let (n, d, theta, h) = (96, 2, 0.3, 1e-5);
    for (integ, dy) in [
        (Integrator::EulerMaruyama, Dynamics::Ode),
        (Integrator::JentzenKloeden, Dynamics::Sde),
        (Integrator::Tweedie, Dynamics::Sde),
    ] {
        for reference in [Reference::Full, Reference::Diagonal] {
            let cfg = DiffusionConfig::new()
                .with_dynamics(dy)
                .unwrap()
                .with_integrator(integ)
                .unwrap()
                .with_reference(reference.clone())
                .unwrap();
            let r = DiffusionResampler::new(cfg);
            let g = resampled_mean(&r, &[Dual64::new(theta, 1.0)], n, d);
            let want = fd(|t| resampled_mean(&r, &[t], n, d), theta, h);
            let tol = 1e-6 * want.abs().max(1.0);
            assert!(
                (g.eps - want).abs() < tol,
                "{integ:?}/{dy:?}/{reference:?}: dual {} vs fd {want}",
                g.eps
            );
            assert!(
                g.eps.abs() > 1e-3,
                "derivative suspiciously small: {}",
                g.eps
            );
        }
    }
}

#[test]
fn dual_vec_gradient_matches_finite_differences() {
    // Two parameters at once with DualSVec64<2>, same tolerance argument as above.
    let (n, d, h) = (80, 3, 1e-5);
    let theta = [0.2, -0.4];
    let cfg = DiffusionConfig::new()
        .with_dynamics(Dynamics::Sde)
        .unwrap()
        .with_integrator(Integrator::LordRougemont)
        .unwrap();
    let r = DiffusionResampler::new(cfg);
    let th: Vec<DualSVec64<2>> = (0..2)
        .map(|i| DualSVec64::from_re(theta[i]).derivative(i))
        .collect();
    let g = resampled_mean(&r, &th, n, d);
    let grad = g.eps.unwrap_generic(nalgebra::Const::<2>, nalgebra::U1);
    let f64_at = |t: [f64; 2]| resampled_mean(&r, &t, n, d);
    let want = [
        fd(|t| f64_at([t, theta[1]]), theta[0], h),
        fd(|t| f64_at([theta[0], t]), theta[1], h),
    ];
    for i in 0..2 {
        let tol = 1e-6 * want[i].abs().max(1.0);
        assert!(
            (grad[i] - want[i]).abs() < tol,
            "param {i}: {} vs {}",
            grad[i],
            want[i]
        );
    }
    assert!((g.re - f64_at(theta)).abs() < 1e-10);
}

#[test]
fn lane_kernels_agree_with_generic_kernel() {
    // The fast lane kernels (f64 and dual lanes, FMA and a polynomial exp, tiles with
    // online max-rescaling) compute the same function as the generic scalar code, at every
    // instruction-set level the CPU has: values and derivatives agree to rounding (1e-11
    // relative; the logits are O(10), so exponentials differ by ≲ 1e-14 relative, and
    // errors do not grow over K = 8 steps).
    let (n, d) = (300, 3); // n not a multiple of the chunk or tile sizes
    for dy in [Dynamics::Ode, Dynamics::Sde] {
        let cfg = DiffusionConfig::new().with_dynamics(dy).unwrap();
        let slow = DiffusionResampler::new(cfg.clone()).generic_kernel();
        for simd in Simd::available() {
            let fast = DiffusionResampler::new(cfg.clone()).lane_kernel(simd);
            let th = [
                DualSVec64::<2>::from_re(0.1).derivative(0),
                DualSVec64::from_re(0.2).derivative(1),
            ];
            let (x, lw) = param_case(&th, n, d);
            let a = run(&fast, &x, &lw, n, 9).unwrap();
            let b = run(&slow, &x, &lw, n, 9).unwrap();
            for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
                assert!(
                    (u.re - v.re).abs() < 1e-11 * (1.0 + v.re.abs()),
                    "{u} vs {v}"
                );
                let (eu, ev) = (
                    u.eps.unwrap_generic(nalgebra::Const::<2>, nalgebra::U1),
                    v.eps.unwrap_generic(nalgebra::Const::<2>, nalgebra::U1),
                );
                for i in 0..2 {
                    assert!(
                        (eu[i] - ev[i]).abs() < 1e-10 * (1.0 + ev[i].abs()),
                        "{u} vs {v}"
                    );
                }
            }
            let (xf, lwf) = param_case(&[0.1_f64, 0.2], n, d);
            let a = run(&fast, &xf, &lwf, n, 9).unwrap();
            let b = run(&slow, &xf, &lwf, n, 9).unwrap();
            for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
                assert!(
                    (u - v).abs() < 1e-11 * (1.0 + v.abs()),
                    "{simd:?}: {u} vs {v}"
                );
            }
        }
    }
}

/// Lane kernel with `P` derivative lanes (two seeded, the others zero) vs generic kernel.
fn check_lanes<const P: usize>(simd: Simd) {
    let (n, d) = (300, 2);
    let cfg = DiffusionConfig::new().with_dynamics(Dynamics::Sde).unwrap();
    let slow = DiffusionResampler::new(cfg.clone()).generic_kernel();
    let fast = DiffusionResampler::new(cfg).lane_kernel(simd);
    let th = [
        DualSVec64::<P>::from_re(0.1).derivative(0),
        DualSVec64::from_re(0.2).derivative(P - 1),
    ];
    let (x, lw) = param_case(&th, n, d);
    let a = run(&fast, &x, &lw, n, 9).unwrap();
    let b = run(&slow, &x, &lw, n, 9).unwrap();
    for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
        assert!(
            (u.re - v.re).abs() < 1e-11 * (1.0 + v.re.abs()),
            "P = {P}: {u} vs {v}"
        );
        let eu = u.eps.unwrap_generic(nalgebra::Const::<P>, nalgebra::U1);
        let ev = v.eps.unwrap_generic(nalgebra::Const::<P>, nalgebra::U1);
        for i in 0..P {
            assert!(
                (eu[i] - ev[i]).abs() < 1e-10 * (1.0 + ev[i].abs()),
                "P = {P}: {u} vs {v}"
            );
        }
    }
}

#[test]
fn every_lane_count_agrees_with_generic_kernel() {
    for simd in Simd::available() {
        check_lanes::<1>(simd);
        check_lanes::<3>(simd);
        check_lanes::<4>(simd);
        check_lanes::<8>(simd);
    }
    // Dual64 takes the one-lane kernel.
    let r = DiffusionResampler::default();
    let (x, lw) = param_case(&[Dual64::new(0.1, 1.0)], 100, 2);
    let a = run(&r, &x, &lw, 100, 1).unwrap();
    let b = run(&r.clone().generic_kernel(), &x, &lw, 100, 1).unwrap();
    for (u, v) in a.as_slice().iter().zip(b.as_slice()) {
        assert!((u.re - v.re).abs() < 1e-11 && (u.eps - v.eps).abs() < 1e-10 * (1.0 + v.eps.abs()));
    }
}

fn assert_finite(p: &Particles<f64>) {
    assert!(
        p.as_slice().iter().all(|v| v.is_finite()),
        "non-finite output"
    );
}

#[test]
fn degenerate_inputs_give_finite_output() {
    for dy in [Dynamics::Ode, Dynamics::Sde] {
        for reference in [Reference::Full, Reference::Diagonal] {
            let cfg = DiffusionConfig::new()
                .with_dynamics(dy)
                .unwrap()
                .with_reference(reference)
                .unwrap();
            let r = DiffusionResampler::new(cfg);
            // One weight 1, the others 0: the output collapses onto that particle.
            let (x, _) = gaussian_case(50, 3, 1);
            let mut lw = vec![f64::NEG_INFINITY; 50];
            lw[7] = 0.0;
            let out = run(&r, &x, &lw, 50, 1).unwrap();
            assert_finite(&out);
            for p in out.iter() {
                for (a, b) in p.iter().zip(x.particle(7)) {
                    assert!((a - b).abs() < 1e-3, "{a} vs {b}");
                }
            }
            // Identical particles (Σ = 0): jitter, output at the particle.
            let x = Particles::from_vec(20, 2, [1.5, -2.0].repeat(20)).unwrap();
            let lw = vec![-(20f64).ln(); 20];
            let out = run(&r, &x, &lw, 20, 2).unwrap();
            assert_finite(&out);
            assert!(
                out.iter()
                    .all(|p| (p[0] - 1.5).abs() < 1e-3 && (p[1] + 2.0).abs() < 1e-3)
            );
            // All particles at the origin.
            let x = Particles::zeros(5, 2);
            let out = run(&r, &x, &[-(5f64).ln(); 5], 5, 2).unwrap();
            assert!(out.as_slice().iter().all(|v| v.abs() < 1e-20));
            // N = 1, and more outputs than inputs.
            let x = Particles::from_vec(1, 2, vec![3.0, 4.0]).unwrap();
            let out = run(&r, &x, &[0.0], 4, 3).unwrap();
            assert_finite(&out);
            assert!(
                out.iter()
                    .all(|p| (p[0] - 3.0).abs() < 1e-3 && (p[1] - 4.0).abs() < 1e-3)
            );
            // d = 1.
            let (x, lw) = gaussian_case(300, 1, 4);
            let out = run(&r, &x, &lw, 300, 4).unwrap();
            assert_finite(&out);
            let (m, _) = mean_var(&coord(&out, 0));
            assert!((m - 1.0).abs() < 0.15, "d = 1 mean {m}");
            // Particles on a line in d = 2 (singular covariance).
            let xs: Vec<f64> = (0..40).flat_map(|i| [i as f64, 2.0 * i as f64]).collect();
            let x = Particles::from_vec(40, 2, xs).unwrap();
            let out = run(&r, &x, &[-(40f64).ln(); 40], 40, 5).unwrap();
            assert_finite(&out);
            // Huge and tiny scales: output mean tracks the weighted mean, relative to scale.
            for scale in [1e8, 1e-8, 1e150, 1e-150] {
                let (x0, lw) = gaussian_case(200, 2, 6);
                let xs: Vec<f64> = x0.as_slice().iter().map(|v| (v + 3.0) * scale).collect();
                let x = Particles::from_vec(200, 2, xs).unwrap();
                let out = run(&r, &x, &lw, 200, 6).unwrap();
                assert_finite(&out);
                let (m, _) = mean_var(&coord(&out, 0));
                let w: Vec<f64> = lw.iter().map(|l| l.exp()).collect();
                let wm: f64 = x.iter().zip(&w).map(|(p, w)| p[0] * w).sum();
                assert!(((m - wm) / scale).abs() < 0.2, "scale {scale}: {m} vs {wm}");
            }
        }
    }
}

#[test]
fn bad_inputs_give_typed_errors() {
    let r = DiffusionResampler::default();
    let x = Particles::<f64>::zeros(3, 2);
    let mut out = Particles::zeros(3, 2);
    let mut olw = vec![0.0; 3];
    let k = key(0);
    let e = r.resample(&x, &[f64::NEG_INFINITY; 3], k, &mut out, &mut olw);
    assert!(matches!(
        e,
        Err(SmcError::InvalidParameter {
            name: "log_weights",
            ..
        })
    ));
    let e = r.resample(&x, &[0.0, f64::NAN, 0.0], k, &mut out, &mut olw);
    assert!(matches!(e, Err(SmcError::InvalidParameter { .. })));
    let e = r.resample(&x, &[0.0; 2], k, &mut out, &mut olw);
    assert!(matches!(e, Err(SmcError::DimensionMismatch { .. })));
    let bad = Particles::from_vec(3, 2, vec![0.0, 1.0, f64::NAN, 0.0, 1.0, 2.0]).unwrap();
    let e = r.resample(&bad, &[-(3f64).ln(); 3], k, &mut out, &mut olw);
    assert!(matches!(
        e,
        Err(SmcError::InvalidParameter {
            name: "particles",
            ..
        })
    ));
    let mut out3 = Particles::zeros(3, 3);
    let e = r.resample(&x, &[-(3f64).ln(); 3], k, &mut out3, &mut olw);
    assert!(matches!(e, Err(SmcError::DimensionMismatch { .. })));
    let fixed = DiffusionResampler::new(
        DiffusionConfig::new()
            .with_fixed_reference(
                vec![0.0; 3],
                vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            )
            .unwrap(),
    );
    let e = fixed.resample(&x, &[-(3f64).ln(); 3], k, &mut out, &mut olw);
    assert!(matches!(e, Err(SmcError::DimensionMismatch { .. })));
}

#[test]
fn bad_knobs_give_typed_errors() {
    let c = DiffusionConfig::new();
    let name = |e: SmcError| match e {
        SmcError::InvalidParameter { name, .. } => name,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(name(c.clone().with_rate(0.0).unwrap_err()), "a");
    assert_eq!(name(c.clone().with_rate(f64::NAN).unwrap_err()), "a");
    assert_eq!(name(c.clone().with_horizon(0.0).unwrap_err()), "T");
    assert_eq!(
        name(c.clone().with_horizon(f64::INFINITY).unwrap_err()),
        "T"
    );
    assert_eq!(name(c.clone().with_steps(0).unwrap_err()), "K");
    assert_eq!(name(c.clone().with_grid(vec![0.0]).unwrap_err()), "grid");
    assert_eq!(
        name(c.clone().with_grid(vec![0.1, 1.0]).unwrap_err()),
        "grid"
    );
    assert_eq!(
        name(c.clone().with_grid(vec![0.0, 1.0, 1.0]).unwrap_err()),
        "grid"
    );
    assert_eq!(name(c.clone().with_jitter(-1.0).unwrap_err()), "jitter");
    assert_eq!(
        name(c.clone().with_integrator(Integrator::Tweedie).unwrap_err()),
        "integrator"
    );
    let sde = c.clone().with_dynamics(Dynamics::Sde).unwrap();
    let tw = sde.with_integrator(Integrator::Tweedie).unwrap();
    assert_eq!(
        name(tw.with_dynamics(Dynamics::Ode).unwrap_err()),
        "dynamics"
    );
    assert!(matches!(
        c.clone()
            .with_fixed_reference(vec![0.0, 0.0], vec![1.0, 2.0, 2.0, 1.0]),
        Err(SmcError::NotPositiveDefinite { .. })
    ));
    assert!(matches!(
        c.clone()
            .with_fixed_reference(vec![0.0, 0.0], vec![1.0, 0.0, 0.0]),
        Err(SmcError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        c.clone()
            .with_fixed_reference(vec![0.0, 0.0], vec![1.0, 0.5, 0.0, 1.0]),
        Err(SmcError::InvalidParameter { name: "cov", .. })
    ));
    let g = c.with_grid(vec![0.0, 0.1, 0.5, 2.0]).unwrap();
    assert_eq!((g.steps(), g.horizon()), (3, 2.0));
    assert_eq!(g.times(), vec![0.0, 0.1, 0.5, 2.0]);
}

#[test]
fn specs_parse_print_and_reject() {
    let parse = |s: &str| s.parse::<ResamplerSpec>();
    let d = parse("diffusion").unwrap();
    assert_eq!(d, ResamplerSpec::Diffusion(DiffusionConfig::new()));
    assert!(d.is_differentiable());
    assert_eq!(d.to_string(), "diffusion");
    let s = parse("diffusion:T=2,K=8,integrator=jentzen-kloeden,sde").unwrap();
    let want = DiffusionConfig::new()
        .with_horizon(2.0)
        .unwrap()
        .with_dynamics(Dynamics::Sde)
        .unwrap()
        .with_integrator(Integrator::JentzenKloeden)
        .unwrap();
    assert_eq!(s, ResamplerSpec::Diffusion(want));
    for spec in [
        "diffusion:a=-0.5,T=3,K=32,integrator=lr,ode,cov=diag,jitter=1e-6",
        "diffusion:integrator=tweedie,sde",
        "diffusion:integrator=em,sde,K=4",
        "diffusion:grid=0;0.25;0.5;2",
        "diffusion:mean=1;2,cov=2;0.5;0.5;1",
        "diffusion:a=-1e-7,T=1e20",
    ] {
        let v = parse(spec).unwrap();
        let printed = v.to_string();
        assert_eq!(parse(&printed).unwrap(), v, "{spec} -> {printed}");
        let built = v.build::<f64>().unwrap();
        assert_eq!(built.name(), printed);
    }
    let reason = |s: &str| match parse(s) {
        Err(SmcError::BadSpec { reason, .. }) => reason,
        other => panic!("{s}: expected BadSpec, got {other:?}"),
    };
    assert!(reason("diffusion:foo=1").contains("unknown option `foo`"));
    assert!(reason("diffusion:a=1").contains("option `a`"));
    assert!(reason("diffusion:a=x").contains("option `a`"));
    assert!(reason("diffusion:T=-1").contains("option `T`"));
    assert!(reason("diffusion:K=0").contains("option `K`"));
    assert!(reason("diffusion:K=2.5").contains("option `K`"));
    assert!(reason("diffusion:integrator=rk4").contains("option `integrator`"));
    assert!(reason("diffusion:integrator=tweedie").contains("sde"));
    assert!(reason("diffusion:integrator=tweedie,ode").contains("option `integrator`"));
    assert!(reason("diffusion:sde=1").contains("bare flag"));
    assert!(reason("diffusion:cov=weird").contains("option `cov`"));
    assert!(reason("diffusion:mean=0;0").contains("option `mean`"));
    assert!(reason("diffusion:grid=0;1,T=2").contains("grid"));
    assert!(reason("diffusion:grid=1;2").contains("option `grid`"));
    assert!(reason("diffusion:T=1,T=2").contains("twice"));
    assert!(reason("diffusion:mean=0;0,cov=1;2;2;1").contains("mean/cov"));
}

#[test]
fn determinism_same_seed_and_any_thread_count() {
    // Large enough to take the parallel path (K·M·N·(d+2) ≥ PAR_MIN_WORK).
    let (x, lw) = gaussian_case(640, 2, 8);
    for dy in [Dynamics::Ode, Dynamics::Sde] {
        let r = DiffusionResampler::new(DiffusionConfig::new().with_dynamics(dy).unwrap());
        let a = run(&r, &x, &lw, 640, 5).unwrap();
        let b = run(&r, &x, &lw, 640, 5).unwrap();
        assert_eq!(a.as_slice(), b.as_slice());
        let c = run(&r, &x, &lw, 640, 6).unwrap();
        assert_ne!(a.as_slice(), c.as_slice());
        #[cfg(feature = "rayon")]
        {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap();
            let s = pool.install(|| run(&r, &x, &lw, 640, 5).unwrap());
            assert_eq!(a.as_slice(), s.as_slice());
            let pool3 = rayon::ThreadPoolBuilder::new()
                .num_threads(3)
                .build()
                .unwrap();
            let t = pool3.install(|| run(&r, &x, &lw, 640, 5).unwrap());
            assert_eq!(a.as_slice(), t.as_slice());
        }
        // Output particle j depends only on its own stream: fewer outputs give a prefix.
        let p = run(&r, &x, &lw, 37, 5).unwrap();
        assert_eq!(p.as_slice(), &a.as_slice()[..37 * 2]);
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn table_exp_is_within_an_ulp_of_libm() {
    // The AVX-512 kernel's exponential (2^{j/16} table, degree-7 polynomial): ≤ 2 ulp from
    // `f64::exp` (itself < 1 ulp from exact; measured ≤ 1.0 ulp combined) on [−708, 0], exact
    // at 0, zero at −∞ and below the flush threshold like `exp_nonpos`.
    if Simd::detect() != Simd::Avx512 {
        return;
    }
    #[allow(unsafe_code)]
    // SAFETY: AVX-512 F and FMA were detected just above.
    let f = |x: f64| unsafe { super::lanes::avx512_exp_tab(x) };
    let mut rng = StreamKey::new(5, 0, Purpose::Other(11)).rng(0);
    let mut worst = 0.0_f64;
    for i in 0..200_000 {
        let u: f64 = rand::RngExt::random(&mut rng);
        let x = if i % 2 == 0 { -40.0 * u } else { -708.0 * u };
        let (got, want) = (f(x), x.exp());
        worst = worst.max(((got - want) / want).abs() / f64::EPSILON);
    }
    assert!(worst <= 2.0, "worst relative error {worst} ulp");
    assert_eq!(f(0.0), 1.0);
    assert_eq!(f(-0.0), 1.0);
    assert_eq!(f(f64::NEG_INFINITY), 0.0);
    assert_eq!(f(-708.5), 0.0);
    assert!(f(-707.9) > 0.0 && f(-707.9).is_normal());
    assert_eq!(f(-1e-300), 1.0);
    // Every table entry is hit exactly at x = j ln2 / 16 (to rounding of the argument).
    for j in 0..16 {
        let x = -(j as f64) * std::f64::consts::LN_2 / 16.0;
        assert!(
            ((f(x) - x.exp()) / x.exp()).abs() <= 2.0 * f64::EPSILON,
            "j = {j}"
        );
    }
}

/// The whitened test ensemble and a block of queries for kernel-level tests.
fn kernel_case(n: usize, d: usize, seed: u64) -> (Prepared<f64>, Vec<f64>) {
    let (x, lw) = gaussian_case(n, d, seed);
    let prep = prepare(&DiffusionConfig::new(), &x, &lw).unwrap();
    let mut rng = StreamKey::new(seed, 1, Purpose::Other(12)).rng(0);
    let q: Vec<f64> = (0..BLOCK * d)
        .map(|_| 1.7 * standard_normal(&mut rng))
        .collect();
    (prep, q)
}

#[test]
fn blocked_f64_kernel_is_independent_of_block_and_matches_per_query_kernel() {
    // The AVX-512 f64 kernel processes the queries of a block together (register blocking:
    // each loaded chunk of z serves every query). Each query's operations are the same
    // whether it is computed alone or with others, so the means must agree *to the bit*
    // (this is what makes results independent of the thread count and of M). Against the
    // per-query portable kernel (different exponential and summation order) they agree to
    // round-off: 1e-13 relative (logits O(10), exps within 2 ulp, sums of ≤ 2100 terms).
    // n not a multiple of the tile, and d = 7 exercises the 4 + 3 coordinate groups.
    for (n, d) in [(2100, 7), (300, 8), (64, 1)] {
        let (prep, q) = kernel_case(n, d, 21);
        for simd in Simd::available() {
            let kern = LaneKernel::<0>::new(&prep.w, simd);
            let mut sc = <LaneKernel<0> as ScoreKernel<f64>>::scratch(&kern);
            for gamma in [0.0, 0.3, 2.5] {
                let mut all = vec![0.0; BLOCK * d];
                ScoreKernel::<f64>::means(&kern, &q, gamma, &mut all, &mut sc);
                assert!(all.iter().all(|v| v.is_finite()));
                for b in 0..BLOCK {
                    let mut one = vec![0.0; d];
                    let qb = &q[b * d..(b + 1) * d];
                    ScoreKernel::<f64>::means(&kern, qb, gamma, &mut one, &mut sc);
                    assert_eq!(
                        one,
                        all[b * d..(b + 1) * d],
                        "{simd:?} n {n} d {d} query {b}"
                    );
                }
                // Two queries then the other two: the same bits again.
                let mut pair = vec![0.0; 2 * d];
                for h in 0..2 {
                    let qh = &q[h * 2 * d..(h + 1) * 2 * d];
                    ScoreKernel::<f64>::means(&kern, qh, gamma, &mut pair, &mut sc);
                    assert_eq!(pair, all[h * 2 * d..(h + 1) * 2 * d]);
                }
                let base = LaneKernel::<0>::new(&prep.w, Simd::Baseline);
                let mut sb = <LaneKernel<0> as ScoreKernel<f64>>::scratch(&base);
                let mut want = vec![0.0; BLOCK * d];
                ScoreKernel::<f64>::means(&base, &q, gamma, &mut want, &mut sb);
                for (a, w) in all.iter().zip(&want) {
                    assert!(
                        (a - w).abs() <= 1e-13 * (1.0 + w.abs()),
                        "{simd:?}: {a} vs {w}"
                    );
                }
            }
        }
    }
}

#[test]
fn row_layout_is_aligned_with_an_odd_line_stride() {
    for n in [8, 16, 64, 2048, 2056] {
        let s = row_stride(n);
        assert!(
            s >= n && s.is_multiple_of(CH) && (s / CH) % 2 == 1,
            "n {n}: stride {s}"
        );
    }
    let (prep, _) = kernel_case(100, 3, 2);
    let kern = LaneKernel::<2>::new(&prep.w, Simd::Baseline);
    for lane in 0..3 {
        for k in 0..3 {
            let r = kern.row(lane, k, 0, kern.n);
            assert_eq!(r.as_ptr() as usize % 64, 0);
        }
    }
    // The value lane holds the whitened particles, padding rows beyond n hold zeros.
    let r = kern.row(0, 1, 0, kern.n);
    assert_eq!(&r[..100], &prep.w.z[100..200]);
    assert!(r[100..].iter().all(|&v| v == 0.0));
}
