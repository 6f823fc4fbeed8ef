use diffsmc::rng::{Purpose, StreamKey};
use num_dual::{Dual2_64, Dual64, DualNum, DualSVec64};

use crate::{Activation, Linear, Mlp, lift, sigmoid};

fn swish(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// A 2 → 2 → 1 swish network with hand-chosen parameters, computed by hand.
#[test]
fn forward_matches_hand_computation() {
    let mut net = Mlp::new(&[2, 2, 1], Activation::Swish, 0).unwrap();
    // W0 = [[1, -2], [0.5, 3]], b0 = [0.1, -0.2], W1 = [[2, -1]], b1 = [0.3].
    let theta = [1.0, -2.0, 0.5, 3.0, 0.1, -0.2, 2.0, -1.0, 0.3];
    net.set_flat(&theta).unwrap();
    let x = [0.7, -0.4];
    let h0 = swish(1.0 * 0.7 - 2.0 * -0.4 + 0.1); // swish(1.6)
    let h1 = swish(0.5 * 0.7 + 3.0 * -0.4 - 0.2); // swish(-1.05)
    let expected = 2.0 * h0 - 1.0 * h1 + 0.3;
    let mut out = [0.0];
    net.forward(&theta, &x, &mut out, &mut []);
    assert!(
        (out[0] - expected).abs() < 1e-15,
        "{} vs {expected}",
        out[0]
    );
    net.eval(&x, &mut out, &mut []);
    assert!((out[0] - expected).abs() < 1e-15);
    // The same by hand with explicit numbers: swish(1.6) = 1.6/(1+e^-1.6).
    assert!((h0 - 1.6 / (1.0 + (-1.6f64).exp())).abs() < 1e-16);

    // With an output activation (tanh) and as layers.
    let net_t = net.clone().with_output_activation(Activation::Tanh);
    net_t.forward(&theta, &x, &mut out, &mut []);
    assert!((out[0] - expected.tanh()).abs() < 1e-15);
    let layers = net.layers(&theta).unwrap();
    assert_eq!(layers[0].weight(), &[1.0, -2.0, 0.5, 3.0]);
    assert_eq!(layers[1].bias(), &[0.3]);
}

#[test]
fn linear_forward_by_hand() {
    let l = Linear::new(
        2,
        3,
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        vec![0.0, 1.0, -1.0],
    )
    .unwrap();
    let mut out = [0.0; 3];
    l.forward(&[1.0, -1.0], &mut out);
    assert_eq!(out, [-1.0, 0.0, -2.0]);
    assert_eq!(
        l.to_flat(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 1.0, -1.0]
    );
    let ld = l.cast::<Dual64>();
    let mut od = [Dual64::from(0.0); 3];
    ld.forward(&[Dual64::new(1.0, 1.0), Dual64::from(-1.0)], &mut od);
    assert_eq!(od.map(|d| d.eps), [1.0, 3.0, 5.0]);
    assert!(Linear::<f64>::new(2, 3, vec![0.0; 5], vec![0.0; 3]).is_err());
    assert!(Linear::<f64>::zeros(0, 3).is_err());
    assert!(Linear::<f64>::from_flat(2, 3, &[0.0; 8]).is_err());
}

/// A 3-hidden-layer residual tanh network (exercises both scratch buffers and the skips)
/// against a straightforward layer-by-layer evaluation with allocations.
#[test]
fn deep_residual_forward_matches_reference() {
    for residual in [false, true] {
        for act in [
            Activation::Swish,
            Activation::Tanh,
            Activation::SINE,
            Activation::Identity,
        ] {
            let net = Mlp::new(&[3, 5, 5, 5, 4, 2], act, 11)
                .unwrap()
                .with_residual(residual);
            let mut theta = net.to_flat();
            for (i, t) in theta.iter_mut().enumerate() {
                *t += 0.01 * (i as f64).sin(); // non-zero biases
            }
            let x = [0.3, -1.2, 0.8];
            let layers = net.layers(&theta).unwrap();
            let mut h = x.to_vec();
            for (l, layer) in layers.iter().enumerate() {
                let mut o = vec![0.0; layer.n_out()];
                layer.forward(&h, &mut o);
                if l + 1 < layers.len() {
                    for (j, v) in o.iter_mut().enumerate() {
                        *v = act.apply(*v);
                        if residual && l >= 1 && layer.n_in() == layer.n_out() {
                            *v += h[j];
                        }
                    }
                }
                h = o;
            }
            let mut scratch = vec![0.0; net.scratch_len()];
            assert_eq!(scratch.len(), 10);
            let mut out = [0.0; 2];
            net.forward(&theta, &x, &mut out, &mut scratch);
            for k in 0..2 {
                assert!(
                    (out[k] - h[k]).abs() < 1e-13,
                    "{act:?} residual {residual}: {out:?} vs {h:?}"
                );
            }
        }
    }
}

/// Forward-mode derivatives of `Σ_k c_k out_k` w.r.t. every parameter (in chunks of 8 lanes,
/// as forward-mode `gradient` does) and every input, against central finite differences with
/// h = 1e-6. The network is smooth, so the difference is the O(h²) truncation (~1e-12 for
/// these O(1) curvatures) plus round-off ~1e-16/h ≈ 1e-10: tolerance 1e-7 absolute.
#[test]
fn dual_gradient_matches_finite_differences() {
    for (widths, act, residual) in [
        (vec![4, 32, 2], Activation::Swish, false),
        (vec![3, 6, 6, 2], Activation::Tanh, true),
        (vec![2, 5, 5, 5, 1], Activation::Sine { omega: 2.0 }, true),
    ] {
        let net = Mlp::new(&widths, act, 3).unwrap().with_residual(residual);
        let mut theta = net.to_flat();
        for (i, t) in theta.iter_mut().enumerate() {
            *t += 0.05 * ((i * 7 % 13) as f64 / 13.0 - 0.5);
        }
        let n_in = net.n_inputs();
        let n_out = net.n_outputs();
        let x: Vec<f64> = (0..n_in).map(|i| 0.5 - 0.3 * i as f64).collect();
        let c: Vec<f64> = (0..n_out).map(|k| 1.0 + k as f64).collect();
        let f = |th: &[f64], x: &[f64]| {
            let mut out = vec![0.0; n_out];
            let mut s = vec![0.0; net.scratch_len()];
            net.forward(th, x, &mut out, &mut s);
            out.iter().zip(&c).map(|(o, c)| o * c).sum::<f64>()
        };
        // θ-gradient by chunks of 8 lanes.
        let p = net.n_params();
        let mut grad = vec![0.0; p];
        for start in (0..p).step_by(8) {
            let th: Vec<DualSVec64<8>> = theta
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let d = DualSVec64::<8>::from_re(v);
                    if (start..start + 8).contains(&i) {
                        d.derivative(i - start)
                    } else {
                        d
                    }
                })
                .collect();
            let xd: Vec<DualSVec64<8>> = x.iter().map(|&v| DualSVec64::from_re(v)).collect();
            let mut out = vec![DualSVec64::<8>::from_re(0.0); n_out];
            let mut s = vec![DualSVec64::<8>::from_re(0.0); net.scratch_len()];
            net.forward(&th, &xd, &mut out, &mut s);
            let y: DualSVec64<8> = out.iter().zip(&c).map(|(o, &c)| *o * c).sum();
            let lanes = y
                .eps
                .0
                .map(|v| v.as_slice().to_vec())
                .unwrap_or(vec![0.0; 8]);
            for (l, g) in lanes.iter().enumerate() {
                if start + l < p {
                    grad[start + l] = *g;
                }
            }
        }
        let h = 1e-6;
        for i in 0..p {
            let (mut tp, mut tm) = (theta.clone(), theta.clone());
            tp[i] += h;
            tm[i] -= h;
            let fd = (f(&tp, &x) - f(&tm, &x)) / (2.0 * h);
            assert!(
                (fd - grad[i]).abs() < 1e-7,
                "{widths:?} param {i}: dual {} fd {fd}",
                grad[i]
            );
        }
        // Input gradient with Dual64, one input at a time.
        let thd: Vec<Dual64> = theta.iter().map(|&v| Dual64::from(v)).collect();
        for i in 0..n_in {
            let xd: Vec<Dual64> = x
                .iter()
                .enumerate()
                .map(|(j, &v)| Dual64::new(v, if i == j { 1.0 } else { 0.0 }))
                .collect();
            let mut out = vec![Dual64::from(0.0); n_out];
            let mut s = vec![Dual64::from(0.0); net.scratch_len()];
            net.forward(&thd, &xd, &mut out, &mut s);
            let g: f64 = out.iter().zip(&c).map(|(o, c)| o.eps * c).sum();
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[i] += h;
            xm[i] -= h;
            let fd = (f(&theta, &xp) - f(&theta, &xm)) / (2.0 * h);
            assert!((fd - g).abs() < 1e-7, "input {i}: dual {g} fd {fd}");
        }
    }
}

/// The fused chain rule agrees with composing num-dual primitives (value and derivative),
/// and higher-order duals keep exact second derivatives.
#[test]
fn fused_activation_matches_generic() {
    for act in [
        Activation::Swish,
        Activation::Tanh,
        Activation::SINE,
        Activation::Sine { omega: 30.0 },
    ] {
        for &x in &[-30.0, -3.0, -0.5, 0.0, 0.2, 1.7, 12.0, 40.0] {
            let a = act.apply(Dual64::new(x, 1.3));
            let b = act.apply_generic(Dual64::new(x, 1.3));
            let tol = 1e-14 * (1.0 + x.abs());
            assert!(
                (a.re - b.re).abs() < tol,
                "{act:?} {x}: {} vs {}",
                a.re,
                b.re
            );
            assert!(
                (a.eps - b.eps).abs() < 1e-13 * (1.0 + b.eps.abs()),
                "{act:?} {x}: {} vs {}",
                a.eps,
                b.eps
            );
            assert_eq!(act.apply(x), act.value_and_derivative(x).0);
            let c = act.apply(Dual2_64::new(x, 1.0, 0.0));
            let d = act.apply_generic(Dual2_64::new(x, 1.0, 0.0));
            assert_eq!((c.re, c.v1, c.v2), (d.re, d.v1, d.v2));
        }
    }
    // Extreme inputs stay finite.
    assert_eq!(Activation::Swish.apply(-1e6), 0.0);
    assert_eq!(Activation::Swish.apply(1e6), 1e6);
    assert!(Activation::Swish.apply(Dual64::new(-800.0, 1.0)).eps.abs() < 1e-300);
    assert_eq!(sigmoid(800.0), 1.0);
    let l = lift(Dual64::new(1.0, 2.0), |v| (v.exp(), v.exp()), |x| x.exp());
    assert!((l.eps - 2.0 * 1f64.exp()).abs() < 1e-15);
}

/// Glorot-uniform draws: within ±a, deterministic per seed, different across seeds and
/// layers, and with the U(−a, a) moments. For a 200 × 300 layer (60 000 draws) the sample mean
/// has standard error a/√(3·60000) ≈ 0.0024·a and the sample variance (true a²/3) has standard
/// error ≈ a²·√(4/45/60000) ≈ 0.0012·a²: 5-SE tolerances.
#[test]
fn glorot_uniform_init() {
    let key = StreamKey::new(9, 0, Purpose::Other(1));
    let l = Linear::glorot_uniform(200, 300, key);
    let a = (6.0_f64 / 500.0).sqrt();
    assert!(l.weight().iter().all(|w| w.abs() <= a));
    let n = l.weight().len() as f64;
    let mean = l.weight().iter().sum::<f64>() / n;
    let var = l.weight().iter().map(|w| (w - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 5.0 * 0.0024 * a, "mean {mean}");
    assert!(
        (var - a * a / 3.0).abs() < 5.0 * 0.0012 * a * a,
        "var {var}"
    );
    assert_eq!(l, Linear::glorot_uniform(200, 300, key));

    let n1 = Mlp::new(&[4, 32, 2], Activation::Swish, 1).unwrap();
    let n1b = Mlp::new(&[4, 32, 2], Activation::Swish, 1).unwrap();
    let n2 = Mlp::new(&[4, 32, 2], Activation::Swish, 2).unwrap();
    assert_eq!(n1.to_flat(), n1b.to_flat());
    assert_ne!(n1.to_flat(), n2.to_flat());
    let r0 = n1.layer_range(0);
    let r1 = n1.layer_range(1);
    assert_eq!((r0.clone(), r1.clone()), (0..160, 160..226));
    let a0 = (6.0_f64 / 36.0).sqrt();
    let a1 = (6.0_f64 / 34.0).sqrt();
    assert!(n1.params()[0..128].iter().all(|w| w.abs() <= a0));
    assert!(n1.params()[128..160].iter().all(|&b| b == 0.0));
    assert!(n1.params()[160..224].iter().all(|w| w.abs() <= a1));
    assert!(n1.params()[224..226].iter().all(|&b| b == 0.0));
    // The two layers come from different streams.
    assert_ne!(n1.params()[0], n1.params()[160]);
    let mut n3 = n1.clone();
    n3.reinitialise(2);
    assert_eq!(n3.to_flat(), n2.to_flat());
}

#[test]
fn shape_errors() {
    assert!(Mlp::new(&[4], Activation::Swish, 0).is_err());
    assert!(Mlp::new(&[4, 0, 2], Activation::Swish, 0).is_err());
    let mut n = Mlp::new(&[2, 3], Activation::Swish, 0).unwrap();
    assert_eq!(n.scratch_len(), 0);
    assert!(n.set_flat(&[0.0; 8]).is_err());
    assert!(n.layers(&[0.0; 3]).is_err());
    assert!(n.set_flat(&[0.0; 9]).is_ok());
    // A single layer: linear output (no hidden activation).
    n.set_flat(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0, 1.0])
        .unwrap();
    let mut out = [0.0; 3];
    n.eval(&[1.0, 1.0], &mut out, &mut []);
    assert_eq!(out, [3.0, 7.0, 12.0]);
    assert_eq!(
        Mlp::new(&[2, 4, 6, 3], Activation::Tanh, 0)
            .unwrap()
            .scratch_len(),
        4
    );
}

#[test]
#[should_panic(expected = "scratch too short")]
fn short_scratch_panics() {
    let n = Mlp::new(&[2, 4, 4, 1], Activation::Tanh, 0).unwrap();
    let mut out = [0.0];
    n.eval(&[0.0, 0.0], &mut out, &mut [0.0; 3]);
}

fn lanes<const N: usize>(d: &DualSVec64<N>) -> Vec<f64> {
    d.eps
        .0
        .map(|v| v.as_slice().to_vec())
        .unwrap_or(vec![0.0; N])
}

/// The fast routes (`forward_split`, `forward_prepared` in its sparse and split modes) give
/// the derivative lanes of the reference `forward` to round-off, for deep residual networks
/// with an output activation, with the derivative directions on some parameters, on the
/// inputs, or on both.
/// Networks the evaluation routes are checked on — the Lotka–Volterra shape, a deep residual
/// one, a sine network with a tanh output, and single-layer ones — each with its widths and a
/// θ perturbed away from the initialisation (non-zero biases).
fn route_networks() -> Vec<(Vec<usize>, Mlp, Vec<f64>)> {
    let specs = vec![
        (
            vec![4, 32, 2],
            Activation::Swish,
            Activation::Identity,
            false,
        ),
        (
            vec![3, 5, 5, 5, 4, 2],
            Activation::Tanh,
            Activation::Swish,
            true,
        ),
        (vec![2, 6, 6, 1], Activation::SINE, Activation::Tanh, true),
        (vec![3, 2], Activation::Swish, Activation::Identity, false),
        (vec![3, 2], Activation::Swish, Activation::Tanh, false),
    ];
    specs
        .into_iter()
        .map(|(widths, act, out_act, residual)| {
            let net = Mlp::new(&widths, act, 5)
                .unwrap()
                .with_output_activation(out_act)
                .with_residual(residual);
            let theta0: Vec<f64> = net
                .to_flat()
                .iter()
                .enumerate()
                .map(|(i, &v)| v + 0.1 * ((i * 5 % 11) as f64 / 11.0 - 0.5))
                .collect();
            (widths, net, theta0)
        })
        .collect()
}

#[test]
fn fast_routes_match_reference_forward() {
    type D = DualSVec64<8>;
    for (widths, net, theta0) in route_networks() {
        let p = net.n_params();
        // Direction sets: the first 8 parameters, 8 spread over every layer, none.
        let spread: Vec<usize> = (0..8).map(|k| k * (p - 1) / 7).collect();
        for active in [(0..8.min(p)).collect::<Vec<_>>(), spread, vec![]] {
            for input_lanes in [false, true] {
                let theta: Vec<D> = theta0
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| match active.iter().position(|&a| a == i) {
                        Some(l) => D::from_re(v).derivative(l),
                        None => D::from_re(v),
                    })
                    .collect();
                let n_in = net.n_inputs();
                let x: Vec<D> = (0..n_in)
                    .map(|i| {
                        let d = D::from_re(0.4 - 0.35 * i as f64);
                        if input_lanes && i < 2 {
                            d.derivative(7 - i)
                        } else {
                            d
                        }
                    })
                    .collect();
                let n_out = net.n_outputs();
                let (ns, nf) = net.prepared_scratch_len();
                let mut scratch = vec![D::from_re(0.0); ns.max(net.scratch_len())];
                let mut work = vec![0.0; nf];
                let mut reference = vec![D::from_re(0.0); n_out];
                net.forward(&theta, &x, &mut reference, &mut scratch);
                let mut split = vec![D::from_re(0.0); n_out];
                net.forward_split(&theta, &x, &mut split, &mut scratch, &mut work);
                let prep = net.prepare(&theta);
                assert_eq!(prep.n_active(), Some(active.len()));
                let mut sparse = vec![D::from_re(0.0); n_out];
                net.forward_prepared(&prep, &x, &mut sparse, &mut scratch, &mut work);
                for k in 0..n_out {
                    let r = lanes(&reference[k]);
                    for (name, got) in [("split", &split[k]), ("sparse", &sparse[k])] {
                        assert!(
                            (got.re - reference[k].re).abs() < 1e-13,
                            "{widths:?} {name}: value {} vs {}",
                            got.re,
                            reference[k].re
                        );
                        for (a, b) in lanes(got).iter().zip(&r) {
                            assert!(
                                (a - b).abs() < 1e-12 * (1.0 + b.abs()),
                                "{widths:?} {name} active {active:?} inputs {input_lanes}: {:?} vs {r:?}",
                                lanes(got)
                            );
                        }
                    }
                }
            }
        }
        // f64 and Dual64 through the prepared route.
        let prep = net.prepare(&theta0);
        assert_eq!(prep.n_active(), Some(0));
        let x: Vec<f64> = (0..net.n_inputs()).map(|i| 0.1 * i as f64).collect();
        let (ns, nf) = net.prepared_scratch_len();
        let mut a = vec![0.0; net.n_outputs()];
        let mut b = vec![0.0; net.n_outputs()];
        net.forward(&theta0, &x, &mut a, &mut vec![0.0; net.scratch_len()]);
        net.forward_prepared(&prep, &x, &mut b, &mut vec![0.0; ns], &mut vec![0.0; nf]);
        assert_eq!(a, b);
        let th1: Vec<Dual64> = theta0
            .iter()
            .enumerate()
            .map(|(i, &v)| Dual64::new(v, if i == p - 1 { 1.0 } else { 0.0 }))
            .collect();
        let x1: Vec<Dual64> = x.iter().map(|&v| Dual64::from(v)).collect();
        let mut c = vec![Dual64::from(0.0); net.n_outputs()];
        let mut d = vec![Dual64::from(0.0); net.n_outputs()];
        net.forward(
            &th1,
            &x1,
            &mut c,
            &mut vec![Dual64::from(0.0); net.scratch_len()],
        );
        let prep1 = net.prepare(&th1);
        assert_eq!(prep1.n_active(), Some(1));
        net.forward_prepared(
            &prep1,
            &x1,
            &mut d,
            &mut vec![Dual64::from(0.0); ns],
            &mut vec![0.0; nf],
        );
        for k in 0..net.n_outputs() {
            assert!((c[k].eps - d[k].eps).abs() < 1e-13, "{:?} vs {:?}", c, d);
        }
    }
}

/// Second-order duals take the generic route and keep exact second derivatives.
#[test]
fn prepared_route_on_second_order_duals() {
    let net = Mlp::new(&[2, 4, 1], Activation::Tanh, 1).unwrap();
    let theta: Vec<Dual2_64> = net
        .to_flat()
        .iter()
        .enumerate()
        .map(|(i, &v)| Dual2_64::new(v, if i == 0 { 1.0 } else { 0.0 }, 0.0))
        .collect();
    let prep = net.prepare(&theta);
    assert_eq!(prep.n_active(), None);
    let x = [Dual2_64::from(0.3), Dual2_64::from(-0.7)];
    let (mut a, mut b) = ([Dual2_64::from(0.0)], [Dual2_64::from(0.0)]);
    net.forward(&theta, &x, &mut a, &mut []);
    let (ns, nf) = net.prepared_scratch_len();
    net.forward_prepared(
        &prep,
        &x,
        &mut b,
        &mut vec![Dual2_64::from(0.0); ns],
        &mut vec![0.0; nf],
    );
    assert_eq!((a[0].re, a[0].v1, a[0].v2), (b[0].re, b[0].v1, b[0].v2));
    assert!(a[0].v2 != 0.0);
}

/// The reverse-mode tape route of `forward_prepared` (one custom tape operation per
/// evaluation, back-propagated by hand) against the network recorded node by node with
/// `Mlp::forward` on the same tape scalar: same values up to summation order, and the same
/// adjoints of every parameter and input (1e-12 relative: both are exact derivatives of the
/// same function, computed in a different order), for plain, residual, deep and
/// single-layer networks with every activation, and an output seeded with arbitrary weights.
#[test]
fn tape_route_matches_node_by_node_recording() {
    use diffsmc::tape::{Rev, backward, tape_len, with_tape};
    for (widths, net, theta0) in route_networks() {
        let x0: Vec<f64> = (0..net.n_inputs()).map(|i| 0.4 - 0.35 * i as f64).collect();
        let seeds: Vec<f64> = (0..net.n_outputs()).map(|o| 1.0 - 0.7 * o as f64).collect();
        // Returns (outputs, d/dθ, d/dx, nodes recorded) of Σ_o seeds_o · y_o.
        let run = |prepared: bool| {
            with_tape(|| {
                let th: Vec<Rev> = theta0.iter().map(|&v| Rev::var(v)).collect();
                let x: Vec<Rev> = x0.iter().map(|&v| Rev::var(v)).collect();
                let start = tape_len();
                let mut y = vec![Rev::constant(0.0); net.n_outputs()];
                if prepared {
                    let prep = net.prepare(&th);
                    let (ns, nf) = net.prepared_scratch_len();
                    let mut s = vec![Rev::constant(0.0); ns];
                    let mut w = vec![0.0; nf];
                    net.forward_prepared(&prep, &x, &mut y, &mut s, &mut w);
                } else {
                    let mut s = vec![Rev::constant(0.0); net.scratch_len()];
                    net.forward(&th, &x, &mut y, &mut s);
                }
                let nodes = tape_len() - start;
                let sd: Vec<(Rev, f64)> = y.iter().copied().zip(seeds.iter().copied()).collect();
                let adj = backward(&sd);
                (
                    y.iter().map(|r| r.value()).collect::<Vec<_>>(),
                    th.iter().map(|&r| adj.of(r)).collect::<Vec<_>>(),
                    x.iter().map(|&r| adj.of(r)).collect::<Vec<_>>(),
                    nodes,
                )
            })
        };
        let (ya, ga, xa, na) = run(false);
        let (yb, gb, xb, nb) = run(true);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(1.0);
        for (a, b) in ya.iter().zip(&yb) {
            assert!(close(*a, *b), "{widths:?} value {a} vs {b}");
        }
        for (a, b) in ga.iter().zip(&gb).chain(xa.iter().zip(&xb)) {
            assert!(close(*a, *b), "{widths:?} adjoint {a} vs {b}");
        }
        assert!(ga.iter().any(|&g| g != 0.0));
        // The custom operation records only its outputs.
        assert_eq!(nb, net.n_outputs(), "{widths:?}");
        assert!(na > 4 * nb, "{widths:?}: {na} nodes node by node");
    }
}
