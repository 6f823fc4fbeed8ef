//! Tests of the batched evaluations ([`NetTheta::eval_batch`],
//! [`NetTheta::gaussian_loglik_batch`]): the same bits as one input at a time for every layer
//! kind and scalar, one tape node per output (one op per batch), and the batched backward pass
//! against central finite differences and against the per-input tape ops.

use std::sync::Arc;

use diffsmc::SmcError;
use diffsmc::rng::{Purpose, StreamKey, standard_normal};
use diffsmc::tape::{Rev, backward, tape_len, with_tape};
use num_dual::Dual64;

use crate::{Init, Net, NetTheta, Padding};

fn jitter(theta: &[f64], seed: u64) -> Vec<f64> {
    let mut rng = StreamKey::new(seed, 0, Purpose::Other(11)).rng(0);
    theta
        .iter()
        .map(|&v| v + 0.1 * standard_normal(&mut rng))
        .collect()
}

fn randv(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StreamKey::new(seed, 1, Purpose::Other(12)).rng(0);
    (0..n).map(|_| standard_normal(&mut rng)).collect()
}

/// Dense and sine layers, with inputs wider than 8 (so `dot8`'s chunks and remainder both run)
/// and a bias-free output.
fn siren() -> Net {
    Net::builder(5)
        .dense(20, true, Init::SirenFirst)
        .unwrap()
        .sine(8.0)
        .unwrap()
        .dense(17, true, Init::SirenHidden { omega0: 8.0 })
        .unwrap()
        .sine(1.0)
        .unwrap()
        .dense(2, false, Init::Glorot)
        .unwrap()
        .build(4)
        .unwrap()
}

/// Dense, ReLU, reshape and two transposed convolutions (input channels 10 and 9: chunks and
/// remainders of `dot8`), 3 → 8×8×2.
fn decoder() -> Net {
    Net::builder(3)
        .dense(40, true, Init::LecunNormal)
        .unwrap()
        .relu()
        .reshape(2, 2, 10)
        .unwrap()
        .conv_transpose(9, 3, 2, Padding::Same)
        .unwrap()
        .relu()
        .conv_transpose(2, 3, 2, Padding::Same)
        .unwrap()
        .build(6)
        .unwrap()
}

fn nets() -> Vec<(&'static str, Arc<Net>)> {
    vec![
        ("siren", Arc::new(siren())),
        ("decoder", Arc::new(decoder())),
    ]
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn batch_outputs_have_the_single_input_bits() {
    for (name, net) in nets() {
        let th = jitter(net.params(), 1);
        let (n_in, n_out) = (net.n_inputs(), net.n_outputs());
        let target = randv(n_out, 9);
        let p = NetTheta::new(&net, &th).unwrap();
        for m in [1, 2, 3, 6] {
            let xs = randv(m * n_in, 2 + m as u64);
            // f64.
            let mut ys = vec![0.0; m * n_out];
            p.eval_batch(&xs, &mut ys).unwrap();
            let mut ll = vec![0.0; m];
            p.gaussian_loglik_batch(&xs, &target, 0.3, 0.7, &mut ll)
                .unwrap();
            let mut single = Vec::new();
            let mut single_ll = Vec::new();
            for xj in xs.chunks_exact(n_in) {
                let mut y = vec![0.0; n_out];
                p.eval(xj, &mut y);
                single.extend(y);
                single_ll.push(p.gaussian_loglik(xj, &target, 0.3, 0.7).unwrap());
            }
            assert_eq!(bits(&ys), bits(&single), "{name} m = {m}: eval");
            assert_eq!(bits(&ll), bits(&single_ll), "{name} m = {m}: loglik");
            // The tape's values are the same bits, with one node per output.
            let (yr, llr, nodes) = with_tape(|| {
                let tr: Vec<Rev> = th.iter().map(|&v| Rev::var(v)).collect();
                let xr: Vec<Rev> = xs.iter().map(|&v| Rev::var(v)).collect();
                let pr = NetTheta::new(&net, &tr).unwrap();
                let before = tape_len();
                let mut out = vec![Rev::constant(0.0); m * n_out];
                pr.eval_batch(&xr, &mut out).unwrap();
                let mut l = vec![Rev::constant(0.0); m];
                pr.gaussian_loglik_batch(&xr, &target, 0.3, 0.7, &mut l)
                    .unwrap();
                let nodes = tape_len() - before;
                let vals = |v: &[Rev]| v.iter().map(|r| r.value()).collect::<Vec<_>>();
                (vals(&out), vals(&l), nodes)
            });
            assert_eq!(nodes, m * n_out + m, "{name}: one node per output");
            assert_eq!(bits(&yr), bits(&single), "{name} m = {m}: tape eval");
            assert_eq!(bits(&llr), bits(&single_ll), "{name} m = {m}: tape loglik");
            // Forward-mode duals (generic layers) likewise.
            let td: Vec<Dual64> = th
                .iter()
                .enumerate()
                .map(|(i, &v)| Dual64::new(v, if i % 3 == 0 { 1.0 } else { 0.0 }))
                .collect();
            let xd: Vec<Dual64> = xs.iter().map(|&v| Dual64::new(v, 0.5)).collect();
            let pd = NetTheta::new(&net, &td).unwrap();
            let mut yd = vec![Dual64::from_re(0.0); m * n_out];
            pd.eval_batch(&xd, &mut yd).unwrap();
            let mut ld = vec![Dual64::from_re(0.0); m];
            pd.gaussian_loglik_batch(&xd, &target, 0.3, 0.7, &mut ld)
                .unwrap();
            for (j, xj) in xd.chunks_exact(n_in).enumerate() {
                let mut y = vec![Dual64::from_re(0.0); n_out];
                pd.eval(xj, &mut y);
                for (a, b) in y.iter().zip(&yd[j * n_out..(j + 1) * n_out]) {
                    assert_eq!(a.re.to_bits(), b.re.to_bits());
                    assert_eq!(a.eps.to_bits(), b.eps.to_bits());
                }
                let l = pd.gaussian_loglik(xj, &target, 0.3, 0.7).unwrap();
                assert_eq!(l.re.to_bits(), ld[j].re.to_bits());
                assert_eq!(l.eps.to_bits(), ld[j].eps.to_bits());
            }
        }
    }
}

/// `L(θ, x) = Σ_j Σ_i c_{j,i} Net_θ(x_j)_i + Σ_j a_j loglik_j` through the batched tape ops.
fn tape_loss_grad(
    net: &Arc<Net>,
    th: &[f64],
    xs: &[f64],
    c: &[f64],
    a: &[f64],
    target: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let m = a.len();
    with_tape(|| {
        let tr: Vec<Rev> = th.iter().map(|&v| Rev::var(v)).collect();
        let xr: Vec<Rev> = xs.iter().map(|&v| Rev::var(v)).collect();
        let p = NetTheta::new(net, &tr).unwrap();
        let mut out = vec![Rev::constant(0.0); m * net.n_outputs()];
        p.eval_batch(&xr, &mut out).unwrap();
        let mut l = vec![Rev::constant(0.0); m];
        p.gaussian_loglik_batch(&xr, target, 0.3, 0.7, &mut l)
            .unwrap();
        let seeds: Vec<(Rev, f64)> = out
            .iter()
            .copied()
            .zip(c.iter().copied())
            .chain(l.iter().copied().zip(a.iter().copied()))
            .collect();
        let adj = backward(&seeds);
        (
            tr.iter().map(|&t| adj.of(t)).collect(),
            xr.iter().map(|&t| adj.of(t)).collect(),
        )
    })
}

fn f64_loss(net: &Arc<Net>, th: &[f64], xs: &[f64], c: &[f64], a: &[f64], target: &[f64]) -> f64 {
    let p = NetTheta::new(net, th).unwrap();
    let n_in = net.n_inputs();
    let mut total = 0.0;
    for (j, xj) in xs.chunks_exact(n_in).enumerate() {
        let mut y = vec![0.0; net.n_outputs()];
        p.eval(xj, &mut y);
        let cj = &c[j * y.len()..(j + 1) * y.len()];
        total += y.iter().zip(cj).map(|(u, v)| u * v).sum::<f64>();
        total += a[j] * p.gaussian_loglik(xj, target, 0.3, 0.7).unwrap();
    }
    total
}

/// Central differences against the batched backward pass, in θ and in every input.
///
/// Tolerance as in `net_tests::check_fd`: h = 1e-5 gives truncation O(h²·|L'''|) ≲ 1e-7 and
/// rounding O(ε|L|/h) ≈ 1e-9 for these O(10)-sized losses; 2e-6 absolute plus 1e-6 relative
/// still fails on any wrong index, sign or missing batch term.
#[test]
fn batch_tape_gradients_match_finite_differences() {
    for (name, net) in nets() {
        let m = 3;
        let (n_in, n_out) = (net.n_inputs(), net.n_outputs());
        // The first draw with no ReLU input within 1e-3 of the kink (a 1e-5 step could cross
        // it; the siren has no ReLU).
        let away_from_kinks = |th: &[f64], xs: &[f64]| {
            if name != "decoder" {
                return true;
            }
            let mut acts = Vec::new();
            net.forward_f64_batch(th, m, xs, &mut acts);
            let s = net.sizes();
            let relu1 = &acts[m * s[0]..m * (s[0] + s[1])];
            let off = m * (s[0] + s[1] + s[2] + s[3]);
            let relu2 = &acts[off..off + m * s[4]];
            relu1.iter().chain(relu2).all(|v| v.abs() > 1e-3)
        };
        let (th, xs) = (20..100)
            .map(|seed| (jitter(net.params(), seed), randv(m * n_in, seed + 1000)))
            .find(|(th, xs)| away_from_kinks(th, xs))
            .expect("a draw away from the ReLU kinks");
        let c = randv(m * n_out, 22);
        let a = randv(m, 23);
        let target = randv(n_out, 24);
        let (gth, gx) = tape_loss_grad(&net, &th, &xs, &c, &a, &target);
        let h = 1e-5;
        let tol = |g: f64| 2e-6 + 1e-6 * g.abs();
        let mut t = th.clone();
        for p in 0..th.len() {
            t[p] = th[p] + h;
            let up = f64_loss(&net, &t, &xs, &c, &a, &target);
            t[p] = th[p] - h;
            let dn = f64_loss(&net, &t, &xs, &c, &a, &target);
            t[p] = th[p];
            let fd = (up - dn) / (2.0 * h);
            assert!(
                (fd - gth[p]).abs() < tol(fd),
                "{name} θ[{p}]: fd {fd} vs {}",
                gth[p]
            );
        }
        let mut x = xs.clone();
        for i in 0..xs.len() {
            x[i] = xs[i] + h;
            let up = f64_loss(&net, &th, &x, &c, &a, &target);
            x[i] = xs[i] - h;
            let dn = f64_loss(&net, &th, &x, &c, &a, &target);
            x[i] = xs[i];
            let fd = (up - dn) / (2.0 * h);
            assert!(
                (fd - gx[i]).abs() < tol(fd),
                "{name} x[{i}]: fd {fd} vs {}",
                gx[i]
            );
        }
    }
}

/// The batched op's adjoints equal the per-input ops' up to the order of summation.
#[test]
fn batch_tape_gradients_match_per_input_ops() {
    for (name, net) in nets() {
        let th = jitter(net.params(), 30);
        let m = 5;
        let (n_in, n_out) = (net.n_inputs(), net.n_outputs());
        let xs = randv(m * n_in, 31);
        let c = randv(m * n_out, 32);
        let a = randv(m, 33);
        let target = randv(n_out, 34);
        let (gth, gx) = tape_loss_grad(&net, &th, &xs, &c, &a, &target);
        let (gth1, gx1) = with_tape(|| {
            let tr: Vec<Rev> = th.iter().map(|&v| Rev::var(v)).collect();
            let xr: Vec<Rev> = xs.iter().map(|&v| Rev::var(v)).collect();
            let p = NetTheta::new(&net, &tr).unwrap();
            let mut seeds = Vec::new();
            for (j, xj) in xr.chunks_exact(n_in).enumerate() {
                let mut y = vec![Rev::constant(0.0); n_out];
                p.eval(xj, &mut y);
                seeds.extend(
                    y.into_iter()
                        .zip(c[j * n_out..(j + 1) * n_out].iter().copied()),
                );
                let l = p.gaussian_loglik(xj, &target, 0.3, 0.7).unwrap();
                seeds.push((l, a[j]));
            }
            let adj = backward(&seeds);
            (
                tr.iter().map(|&t| adj.of(t)).collect::<Vec<_>>(),
                xr.iter().map(|&t| adj.of(t)).collect::<Vec<_>>(),
            )
        });
        for (u, v) in gth.iter().zip(&gth1).chain(gx.iter().zip(&gx1)) {
            assert!(
                (u - v).abs() <= 1e-12 * u.abs().max(1.0),
                "{name}: {u} vs {v}"
            );
        }
    }
}

#[test]
fn batch_rejects_bad_lengths() {
    let net = Arc::new(siren());
    let p = NetTheta::new(&net, net.params()).unwrap();
    let mut out = vec![0.0; 4];
    // 7 values are not a whole number of 5-wide inputs.
    let err = p.eval_batch(&[0.0; 7], &mut out).unwrap_err();
    assert!(matches!(err, SmcError::InvalidParameter { .. }), "{err:?}");
    // Two inputs need 4 output slots, not 3.
    let err = p.eval_batch(&[0.0; 10], &mut out[..3]).unwrap_err();
    assert!(matches!(
        err,
        SmcError::DimensionMismatch {
            expected: 4,
            got: 3,
            ..
        }
    ));
    let mut ll = [0.0; 2];
    let err = p
        .gaussian_loglik_batch(&[0.0; 10], &[0.0; 3], 0.1, 1.0, &mut ll)
        .unwrap_err();
    assert!(matches!(
        err,
        SmcError::DimensionMismatch {
            expected: 2,
            got: 3,
            ..
        }
    ));
    let err = p
        .gaussian_loglik_batch(&[0.0; 10], &[0.0; 2], 0.0, 1.0, &mut ll)
        .unwrap_err();
    assert!(matches!(err, SmcError::InvalidParameter { .. }));
    let err = p
        .gaussian_loglik_batch(&[0.0; 10], &[0.0; 2], 0.1, 1.0, &mut ll[..1])
        .unwrap_err();
    assert!(matches!(
        err,
        SmcError::DimensionMismatch {
            expected: 2,
            got: 1,
            ..
        }
    ));
    // An empty batch is fine and writes nothing.
    p.eval_batch(&[], &mut []).unwrap();
}
