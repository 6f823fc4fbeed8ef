use super::*;
use crate::rng::{Purpose, StreamRng, standard_normal};
use num_dual::Dual64;

fn cloud(n: usize, d: usize, seed: u64) -> (Particles<f64>, Vec<f64>) {
    let key = StreamKey::new(seed, 0, Purpose::Other(7));
    let mut rng: StreamRng = key.rng(0);
    let x: Vec<f64> = (0..n * d).map(|_| standard_normal(&mut rng)).collect();
    let mut lw: Vec<f64> = (0..n)
        .map(|i| {
            let xi = &x[i * d..(i + 1) * d];
            -0.5 * xi.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f64>()
        })
        .collect();
    crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
    (Particles::from_vec(n, d, x).unwrap(), lw)
}

fn run<S: Scalar>(r: &OtResampler, x: &Particles<S>, lw: &[S]) -> (Particles<S>, ResampleInfo) {
    let mut out = Particles::zeros(x.len(), x.dim());
    let mut olw = vec![S::zero(); x.len()];
    let info = r
        .resample(
            x,
            lw,
            StreamKey::new(1, 1, Purpose::Resample),
            &mut out,
            &mut olw,
        )
        .unwrap();
    let ln_n = (x.len() as f64).ln();
    assert!(olw.iter().all(|w| (w.re() + ln_n).abs() < 1e-15));
    (out, info)
}

#[test]
fn ot_fast_kernel_matches_generic() {
    for &(n, d) in &[(1, 1), (7, 3), (300, 8), (513, 2), (70, 40)] {
        let (x, lw) = cloud(n, d, n as u64);
        let ya = Soa::from_fn(n, d, |i, k| x.particle(i)[k] * 0.7);
        let xs = Soa::from_fn(n, d, |i, k| x.particle(i)[k]);
        let mut h = vec![f64::NEG_INFINITY; ya.stride];
        for i in 0..n {
            h[i] = lw[i] * 3.0;
        }
        let mut slow = vec![0.0; n];
        for (p, s) in slow.iter_mut().enumerate() {
            *s = lse_row_generic(&ya, p, &ya, &h);
        }
        let mut slow_rows = vec![0.0; n * d];
        for (p, row) in slow_rows.chunks_exact_mut(d).enumerate() {
            transport_row_generic(&ya, p, &ya, &xs, &h, slow[p], row);
        }
        for isa in Isa::available() {
            let mut fast = Vec::new();
            lse_pass_isa(isa, &ya, &ya, &h, &mut fast, false);
            for (a, b) in fast.iter().zip(&slow) {
                assert!(
                    (a - b).abs() < 1e-12 * b.abs().max(1.0),
                    "{isa:?}: {a} vs {b}"
                );
            }
            // Rows in two uneven calls (offsets), against the generic transport.
            let mut rows = vec![0.0; n * d];
            let cut = n / 3;
            let (r0, r1) = rows.split_at_mut(cut * d);
            transport_rows_f64(isa, &ya, 0, &ya, &xs, &h, &slow, r0);
            transport_rows_f64(isa, &ya, cut, &ya, &xs, &h, &slow, r1);
            for (a, b) in rows.iter().zip(&slow_rows) {
                assert!(
                    (a - b).abs() < 1e-12 * b.abs().max(1.0),
                    "{isa:?}: {a} vs {b}"
                );
            }
        }
    }
}

/// Every instruction-set level of the `f64` passes solves the same problem to round-off: same
/// iteration count and transported points to 1e-12 (d = 8, 300 points, absolute ε = 0.3 with
/// annealing, so the comparison runs through the ε-stages too).
#[test]
fn ot_instruction_sets_agree_to_round_off() {
    let (x, lw) = cloud(300, 8, 12);
    let cfg = OtConfig::new(0.3).unwrap();
    let sol = |isa: Isa| {
        let s = Sinkhorn::solve_isa(&cfg, &x, &lw, false, isa).unwrap();
        let mut out = Particles::zeros(300, 8);
        s.transport_isa(&mut out, false, isa);
        (s.iterations, s.converged, out)
    };
    let (it0, c0, base) = sol(Isa::Baseline);
    assert!(c0);
    for isa in Isa::available() {
        let (it, c, out) = sol(isa);
        assert_eq!((it, c), (it0, c0), "{isa:?}");
        for (a, b) in out.as_slice().iter().zip(base.as_slice()) {
            assert!((a - b).abs() < 1e-12, "{isa:?}: {a} vs {b}");
        }
    }
}

fn marginals(plan: &OtPlan<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut rows = vec![0.0; n];
    let mut cols = vec![0.0; n];
    for i in 0..n {
        for j in 0..n {
            rows[i] += plan.matrix[i * n + j];
            cols[j] += plan.matrix[i * n + j];
        }
    }
    (rows, cols)
}

#[test]
fn ot_sinkhorn_marginals_match_to_tolerance() {
    for &(eps, scale) in &[
        (0.1, CostScale::Mean),
        (0.5, CostScale::Max),
        (1.0, CostScale::None),
    ] {
        for &tol in &[1e-3, 1e-6] {
            let n = 40;
            let (x, lw) = cloud(n, 2, 3);
            let cfg = OtConfig::new(eps)
                .unwrap()
                .with_tolerance(tol)
                .unwrap()
                .with_max_iterations(10_000)
                .unwrap()
                .with_scale(scale);
            let plan = OtResampler::new(cfg).transport_plan(&x, &lw).unwrap();
            assert!(plan.converged);
            let (rows, cols) = marginals(&plan, n);
            let row_err: f64 = rows.iter().map(|r| (r - 1.0 / n as f64).abs()).sum();
            assert!(row_err < 1e-12, "row error {row_err}");
            // The final row update perturbs the exact columns by at most about the
            // measured row error (Sinkhorn errors contract).
            let col_err: f64 = cols.iter().zip(&lw).map(|(c, l)| (c - l.exp()).abs()).sum();
            assert!(
                col_err <= tol,
                "eps {eps} tol {tol}: column error {col_err}"
            );
            // The error measured for free in the solver is that of the returned plan.
            assert!(
                (col_err - plan.marginal_error).abs() < 1e-12,
                "{col_err} vs {}",
                plan.marginal_error
            );
        }
    }
}

/// Brute force: with weights k_j / N, exact OT between uniform and w is an assignment of
/// the N sources to the multiset of targets; minimise the total cost over permutations.
fn brute_force_assignment(x: &[f64], d: usize, counts: &[usize]) -> Vec<usize> {
    let n = counts.len();
    let targets: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(j, &c)| std::iter::repeat_n(j, c))
        .collect();
    let mut perm: Vec<usize> = (0..n).collect();
    let mut best = (f64::INFINITY, vec![]);
    fn heap(k: usize, perm: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
        if k == 1 {
            f(perm);
            return;
        }
        heap(k - 1, perm, f);
        for i in 0..k - 1 {
            if k.is_multiple_of(2) {
                perm.swap(i, k - 1);
            } else {
                perm.swap(0, k - 1);
            }
            heap(k - 1, perm, f);
        }
    }
    heap(n, &mut perm, &mut |p: &[usize]| {
        let mut c = 0.0;
        for i in 0..n {
            let j = targets[p[i]];
            for k in 0..d {
                let z = x[i * d + k] - x[j * d + k];
                c += z * z;
            }
        }
        if c < best.0 {
            best = (c, p.iter().map(|&q| targets[q]).collect());
        }
    });
    best.1
}

#[test]
fn ot_small_epsilon_approaches_exact_transport() {
    let (n, d) = (6, 2);
    let (x, _) = cloud(n, d, 11);
    let counts = [3usize, 0, 1, 2, 0, 0];
    let lw: Vec<f64> = counts.iter().map(|&c| (c as f64 / n as f64).ln()).collect();
    let assign = brute_force_assignment(x.as_slice(), d, &counts);
    // Near the unregularised limit Sinkhorn converges slowly (the marginal error decays
    // like 1/iterations here), hence the generous cap.
    let mut errs = Vec::new();
    for &eps in &[0.1, 0.01, 0.001] {
        // ε relative to the mean squared distance (the thresholds below are in those units).
        let cfg = OtConfig::new(eps)
            .unwrap()
            .with_scale(CostScale::Mean)
            .with_tolerance(1e-5)
            .unwrap()
            .with_max_iterations(200_000)
            .unwrap();
        let (out, info) = run(&OtResampler::new(cfg), &x, &lw);
        assert!(info.converged, "eps {eps}: {info:?}");
        let mut err: f64 = 0.0;
        for i in 0..n {
            for k in 0..d {
                err = err.max((out.particle(i)[k] - x.particle(assign[i])[k]).abs());
            }
        }
        errs.push(err);
    }
    // ε = 0.1 blurs visibly; below, the remaining error is that of the marginal
    // tolerance, not of the regularisation.
    assert!(errs[0] > 0.05, "errors {errs:?}");
    assert!(errs[1] < 1e-3 && errs[2] < 1e-3, "errors {errs:?}");
    assert!(errs[2] <= errs[1] * 1.01, "errors {errs:?}");
}

#[test]
fn ot_preserves_weighted_mean_and_degenerate_cases() {
    // One weight 1: every particle moves onto it.
    let (x, _) = cloud(10, 3, 5);
    let mut lw = vec![f64::NEG_INFINITY; 10];
    lw[4] = 0.0;
    let (out, info) = run(&OtResampler::default(), &x, &lw);
    assert!(info.converged);
    for i in 0..10 {
        for k in 0..3 {
            assert!((out.particle(i)[k] - x.particle(4)[k]).abs() < 1e-12);
        }
    }
    // N = 1, d = 1.
    let x1 = Particles::from_vec(1, 1, vec![2.5]).unwrap();
    let (out, info) = run(&OtResampler::default(), &x1, &[0.0]);
    assert_eq!(out.as_slice(), &[2.5]);
    assert!(info.converged);
    // Repeated particles (zero scale).
    let xr = Particles::from_vec(4, 1, vec![1.0; 4]).unwrap();
    let lw4 = vec![-(4f64).ln(); 4];
    let (out, _) = run(&OtResampler::default(), &xr, &lw4);
    assert!(out.as_slice().iter().all(|&v| (v - 1.0).abs() < 1e-15));
    // Zero weights and a huge spread: finite output, mean within the tolerance's reach.
    let (mut x, mut lw) = cloud(50, 2, 9);
    x.as_mut_slice()[0] = 1e6;
    lw[3] = f64::NEG_INFINITY;
    lw[7] = f64::NEG_INFINITY;
    crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
    for scale in [CostScale::Mean, CostScale::Max, CostScale::None] {
        let cfg = OtConfig::default().with_scale(scale);
        let (out, _) = run(&OtResampler::new(cfg), &x, &lw);
        assert!(out.as_slice().iter().all(|v| v.is_finite()), "{scale}");
    }
}

#[test]
fn ot_non_convergence_is_reported() {
    let (x, lw) = cloud(64, 2, 2);
    let cfg = OtConfig::new(0.001)
        .unwrap()
        .with_tolerance(1e-12)
        .unwrap()
        .with_max_iterations(3)
        .unwrap();
    let (out, info) = run(&OtResampler::new(cfg), &x, &lw);
    assert!(!info.converged);
    assert_eq!(info.iterations, 3);
    assert!(out.as_slice().iter().all(|v| v.is_finite()));
}

/// A smooth seeded family: particles and log-weights depending on θ.
fn family<S: Scalar>(theta: S, n: usize, d: usize) -> (Particles<S>, Vec<S>) {
    let (x, _) = cloud(n, d, 21);
    let xs: Vec<S> = x
        .as_slice()
        .iter()
        .enumerate()
        .map(|(i, &v)| theta * (0.3 + 0.01 * i as f64) + (theta * 0.5 + 1.0) * v)
        .collect();
    let p = Particles::from_vec(n, d, xs).unwrap();
    let mut lw: Vec<S> = p
        .iter()
        .map(|xi| {
            let mut s = S::zero();
            for &v in xi {
                s -= (v - theta) * (v - theta) * 0.5;
            }
            s
        })
        .collect();
    crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
    (p, lw)
}

fn statistic<S: Scalar>(p: &Particles<S>) -> S {
    let mut s = S::zero();
    for (i, v) in p.as_slice().iter().enumerate() {
        s += *v * (1.0 + 0.1 * (i % 7) as f64) + *v * *v * 0.05;
    }
    s
}

#[test]
fn ot_derivatives_match_central_differences() {
    for scale in [CostScale::Mean, CostScale::Max, CostScale::None] {
        // A fixed number of iterations (unreachable tolerance) makes the map one smooth
        // composition, the same for θ ± h.
        let cfg = OtConfig::new(0.2)
            .unwrap()
            .with_tolerance(1e-300)
            .unwrap()
            .with_max_iterations(30)
            .unwrap()
            .with_scale(scale);
        let r = OtResampler::new(cfg);
        let (n, d) = (24, 2);
        let theta = 0.3;
        let (xd, lwd) = family(Dual64::new(theta, 1.0), n, d);
        let (outd, _) = run(&r, &xd, &lwd);
        let sd = statistic(&outd);
        let f = |t: f64| {
            let (x, lw) = family(t, n, d);
            statistic(&run(&r, &x, &lw).0)
        };
        let h = 1e-5;
        let fd = (f(theta + h) - f(theta - h)) / (2.0 * h);
        assert!(
            (sd.eps - fd).abs() < 1e-6 * fd.abs().max(1.0),
            "{scale}: dual {} vs fd {fd}",
            sd.eps
        );
        assert!((sd.re - f(theta)).abs() < 1e-10 * sd.re.abs().max(1.0));
    }
}

#[test]
fn ot_dual_derivatives_are_finite_with_zero_weights() {
    let (n, d) = (12, 2);
    let (x, lw) = family(Dual64::new(0.2, 1.0), n, d);
    let mut lw = lw;
    lw[0] = Dual64::new(f64::NEG_INFINITY, f64::NAN);
    lw[5] = Dual64::new(f64::NEG_INFINITY, 1.0);
    crate::particles::normalise_log_weights(&mut lw, 0).unwrap();
    for scale in [CostScale::Mean, CostScale::Max, CostScale::None] {
        let r = OtResampler::new(OtConfig::default().with_scale(scale));
        let (out, _) = run(&r, &x, &lw);
        assert!(
            out.as_slice()
                .iter()
                .all(|v| v.re.is_finite() && v.eps.is_finite()),
            "{scale}"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(64))]
    #[test]
    fn ot_outputs_are_convex_combinations(
        n in 1usize..40,
        d in 1usize..4,
        seed in 0u64..1000,
        eps in 0.01f64..2.0,
        spread in -3.0f64..3.0,
    ) {
        let (x, lw) = cloud(n, d, seed);
        // Rescale the cloud by 10^spread: results must not depend on the units much.
        let scale = 10f64.powf(spread);
        let xs = Particles::from_vec(n, d, x.as_slice().iter().map(|v| v * scale).collect())
            .unwrap();
        let r = OtResampler::new(OtConfig::new(eps).unwrap());
        let (out, info) = run(&r, &xs, &lw);
        proptest::prop_assert!(info.iterations >= 1);
        for k in 0..d {
            let lo = (0..n).map(|i| xs.particle(i)[k]).fold(f64::INFINITY, f64::min);
            let hi = (0..n).map(|i| xs.particle(i)[k]).fold(f64::NEG_INFINITY, f64::max);
            let tol = 1e-12 * (hi - lo).abs().max(scale);
            for i in 0..n {
                let v = out.particle(i)[k];
                proptest::prop_assert!(v.is_finite() && v >= lo - tol && v <= hi + tol);
            }
        }
        if info.converged {
            // Mean preserved up to tol · max|X|.
            for k in 0..d {
                let m_out = (0..n).map(|i| out.particle(i)[k]).sum::<f64>() / n as f64;
                let m_w: f64 = (0..n).map(|i| lw[i].exp() * xs.particle(i)[k]).sum();
                let xmax = xs.as_slice().iter().fold(0.0f64, |a, v| a.max(v.abs()));
                proptest::prop_assert!((m_out - m_w).abs() <= 2.0 * 1e-3 * xmax + 1e-12 * xmax);
            }
        }
    }
}

#[cfg(feature = "rayon")]
#[test]
fn ot_is_deterministic_across_thread_counts() {
    let (x, lw) = cloud(700, 3, 4);
    let r = OtResampler::default();
    let (a, ia) = run(&r, &x, &lw);
    let (b, ib) = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| run(&r, &x, &lw));
    assert_eq!(ia, ib);
    assert_eq!(a, b);
}

#[test]
fn ot_bad_inputs_are_typed_errors() {
    assert!(matches!(
        OtConfig::new(-1.0),
        Err(SmcError::InvalidParameter { name: "eps", .. })
    ));
    assert!(matches!(
        OtConfig::new(f64::NAN),
        Err(SmcError::InvalidParameter { name: "eps", .. })
    ));
    assert!(matches!(
        OtConfig::default().with_tolerance(0.0),
        Err(SmcError::InvalidParameter { name: "tol", .. })
    ));
    assert!(matches!(
        OtConfig::default().with_max_iterations(0),
        Err(SmcError::InvalidParameter { name: "iters", .. })
    ));
    for w in [0.0, 2.0, -1.0, f64::NAN] {
        assert!(matches!(
            OtConfig::default().with_relaxation(w),
            Err(SmcError::InvalidParameter { name: "relax", .. })
        ));
    }
    let (x, lw) = cloud(5, 1, 1);
    let r = OtResampler::default();
    let mut out = Particles::zeros(4, 1);
    let mut olw = vec![0.0; 4];
    let key = StreamKey::new(0, 0, Purpose::Resample);
    assert!(matches!(
        r.resample(&x, &lw, key, &mut out, &mut olw),
        Err(SmcError::DimensionMismatch { .. })
    ));
    let mut out = Particles::zeros(5, 1);
    let mut olw = vec![0.0; 5];
    let bad = vec![f64::NAN; 5];
    assert!(r.resample(&x, &bad, key, &mut out, &mut olw).is_err());
}

/// ε-scaling changes the path, not the fixed point: run to a tight tolerance, the annealed and
/// the plain solver move the particles to the same points (to 1e-6: the marginal error 1e-9
/// times the cloud's spread, with room for rounding), and the annealed one takes fewer
/// iterations at a small absolute ε (a deterministic property of this instance: 8-D cloud,
/// ε = 0.3 on squared distances of order 16, where plain Sinkhorn needs hundreds).
#[test]
fn ot_annealing_reaches_the_same_plan_in_fewer_iterations() {
    let (x, lw) = cloud(96, 8, 5);
    let x = Particles::from_vec(96, 8, x.as_slice().iter().map(|v| 2.0 * v).collect()).unwrap();
    let base = OtConfig::new(0.3)
        .unwrap()
        .with_scale(CostScale::None)
        .with_tolerance(1e-9)
        .unwrap()
        .with_max_iterations(20_000)
        .unwrap();
    let plain = base.with_anneal(None).unwrap();
    let (a, ia) = run(&OtResampler::new(plain), &x, &lw);
    for rho in [0.5, 0.7] {
        let annealed = base.with_anneal(Some(rho)).unwrap();
        let (b, ib) = run(&OtResampler::new(annealed), &x, &lw);
        assert!(ia.converged && ib.converged);
        let diff = a
            .as_slice()
            .iter()
            .zip(b.as_slice())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-6, "ρ = {rho}: max |Δx*| = {diff}");
        assert!(
            ib.iterations < ia.iterations,
            "ρ = {rho}: {} annealed vs {} plain iterations",
            ib.iterations,
            ia.iterations
        );
    }
}

/// Annealing stages are not counted as converged: a cap that ends inside the schedule
/// reports non-convergence even with a tolerance any plan meets.
#[test]
fn ot_annealing_stages_never_count_as_converged() {
    let (x, lw) = cloud(32, 3, 6);
    let cfg = OtConfig::new(1e-3)
        .unwrap()
        .with_scale(CostScale::None)
        .with_tolerance(10.0)
        .unwrap()
        .with_max_iterations(4)
        .unwrap()
        .with_anneal(Some(0.5))
        .unwrap();
    let (out, info) = run(&OtResampler::new(cfg), &x, &lw);
    assert!(!info.converged && info.iterations == 4);
    assert!(out.as_slice().iter().all(|v| v.is_finite()));
    // The same budget without annealing meets that tolerance at once.
    let (_, plain) = run(&OtResampler::new(cfg.with_anneal(None).unwrap()), &x, &lw);
    assert!(plain.converged && plain.iterations == 1);
}

/// Where plain Sinkhorn is fast (ε a tenth of the mean squared distance, ratio 10 < 50), the
/// default annealing does nothing: bit-identical to `anneal=none`.
#[test]
fn ot_annealing_is_skipped_for_large_epsilon() {
    let (x, lw) = cloud(64, 4, 7);
    let cfg = OtConfig::new(0.1).unwrap().with_scale(CostScale::Mean);
    assert_eq!(cfg.anneal(), Some(OtConfig::DEFAULT_ANNEAL));
    let (a, ia) = run(&OtResampler::new(cfg), &x, &lw);
    let (b, ib) = run(&OtResampler::new(cfg.with_anneal(None).unwrap()), &x, &lw);
    assert_eq!(ia, ib);
    let bits = |p: &Particles<f64>| p.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
}

/// Over-relaxation changes the path, not the fixed point: to a tight tolerance the relaxed and
/// the plain solver move the particles to the same points (to 1e-6, as for annealing above),
/// and the relaxed ones take fewer iterations (a deterministic property of this instance: 8-D
/// cloud, absolute ε = 0.3, where plain Sinkhorn needs hundreds).
#[test]
fn ot_relaxation_reaches_the_same_plan_in_fewer_iterations() {
    let (x, lw) = cloud(200, 8, 8);
    let base = OtConfig::new(0.3)
        .unwrap()
        .with_anneal(None)
        .unwrap()
        .with_tolerance(1e-9)
        .unwrap()
        .with_max_iterations(20_000)
        .unwrap();
    let (a, ia) = run(
        &OtResampler::new(base.with_relaxation(1.0).unwrap()),
        &x,
        &lw,
    );
    assert!(ia.converged);
    for w in [1.3, 1.5, 1.8] {
        let (b, ib) = run(&OtResampler::new(base.with_relaxation(w).unwrap()), &x, &lw);
        assert!(ib.converged, "ω = {w}");
        let diff = a
            .as_slice()
            .iter()
            .zip(b.as_slice())
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f64::max);
        assert!(diff < 1e-6, "ω = {w}: max |Δx*| = {diff}");
        assert!(
            ib.iterations < ia.iterations,
            "ω = {w}: {} relaxed vs {} plain iterations",
            ib.iterations,
            ia.iterations
        );
    }
    // Under-relaxation (ω < 1) converges too.
    let (c, slow) = run(
        &OtResampler::new(base.with_relaxation(0.7).unwrap()),
        &x,
        &lw,
    );
    assert!(slow.converged);
    let diff = a
        .as_slice()
        .iter()
        .zip(c.as_slice())
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-6, "ω = 0.7: max |Δx*| = {diff}");
}
