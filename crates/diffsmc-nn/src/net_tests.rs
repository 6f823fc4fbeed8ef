//! Tests of [`crate::Net`]: finite-difference gradients per layer type (θ and input
//! adjoints), the tape route against the `f64` vector-Jacobian product, forward-mode duals
//! against `f64`, the transposed convolution against an independent dilate-pad-correlate
//! oracle, and the initialisations.

use std::sync::Arc;

use diffsmc::rng::{Purpose, StreamKey, standard_normal};
use diffsmc::tape::{Rev, backward, with_tape};
use num_dual::Dual64;

use crate::{Init, Layer, Net, NetTheta, Padding, net_vjp};

/// θ perturbed by N(0, 0.1²) so that biases (zero at init) are non-zero too.
fn jitter(theta: &[f64], seed: u64) -> Vec<f64> {
    let mut rng = StreamKey::new(seed, 0, Purpose::Other(1)).rng(0);
    theta
        .iter()
        .map(|&v| v + 0.1 * standard_normal(&mut rng))
        .collect()
}

fn randv(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = StreamKey::new(seed, 1, Purpose::Other(2)).rng(0);
    (0..n).map(|_| standard_normal(&mut rng)).collect()
}

fn f64_out(net: &Net, theta: &[f64], x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; net.n_outputs()];
    net.forward(theta, x, &mut y);
    y
}

/// Central differences of `L = Σ c_i y_i` against `net_vjp`, in θ and in x.
///
/// Tolerance: with h = 1e-5 the truncation error is O(h² · |L'''|) ≈ 1e-10 for these
/// O(1)-scaled networks (a sine of frequency 8 has third derivative ≈ 512, times h² = 5e-8
/// at worst), and rounding is O(ε/h) ≈ 1e-11; 2e-6 absolute plus 1e-6 relative leaves a
/// wide margin while still failing on any wrong index or sign.
fn check_fd(net: &Net, theta: &[f64], x: &[f64], seed: u64) {
    let c = randv(net.n_outputs(), seed);
    let loss = |th: &[f64], xx: &[f64]| -> f64 {
        f64_out(net, th, xx)
            .iter()
            .zip(&c)
            .map(|(a, b)| a * b)
            .sum()
    };
    let (_, gth, gx) = net_vjp(net, theta, x, &c).unwrap();
    let h = 1e-5;
    let tol = |g: f64| 2e-6 + 1e-6 * g.abs();
    let mut th = theta.to_vec();
    for p in 0..theta.len() {
        th[p] = theta[p] + h;
        let up = loss(&th, x);
        th[p] = theta[p] - h;
        let dn = loss(&th, x);
        th[p] = theta[p];
        let fd = (up - dn) / (2.0 * h);
        assert!(
            (fd - gth[p]).abs() < tol(fd),
            "θ[{p}]: fd {fd} vs vjp {}",
            gth[p]
        );
    }
    let mut xx = x.to_vec();
    for i in 0..x.len() {
        xx[i] = x[i] + h;
        let up = loss(theta, &xx);
        xx[i] = x[i] - h;
        let dn = loss(theta, &xx);
        xx[i] = x[i];
        let fd = (up - dn) / (2.0 * h);
        assert!(
            (fd - gx[i]).abs() < tol(fd),
            "x[{i}]: fd {fd} vs vjp {}",
            gx[i]
        );
    }
}

fn siren() -> Net {
    Net::builder(3)
        .dense(7, true, Init::SirenFirst)
        .unwrap()
        .sine(8.0)
        .unwrap()
        .dense(6, true, Init::SirenHidden { omega0: 8.0 })
        .unwrap()
        .sine(1.0)
        .unwrap()
        .dense(2, false, Init::Glorot)
        .unwrap()
        .build(4)
        .unwrap()
}

fn relu_net() -> Net {
    Net::builder(3)
        .dense(9, true, Init::LecunNormal)
        .unwrap()
        .relu()
        .dense(2, true, Init::Glorot)
        .unwrap()
        .build(5)
        .unwrap()
}

/// 2×2×3 → 4×4×2 (ReLU) → 8×8×1.
fn conv_net() -> Net {
    Net::builder(12)
        .reshape(2, 2, 3)
        .unwrap()
        .conv_transpose(2, 3, 2, Padding::Same)
        .unwrap()
        .relu()
        .conv_transpose(1, 3, 2, Padding::Same)
        .unwrap()
        .build(6)
        .unwrap()
}

#[test]
fn siren_gradients_match_finite_differences() {
    let net = siren();
    let th = jitter(net.params(), 1);
    check_fd(&net, &th, &[0.3, -0.7, 0.05], 2);
}

#[test]
fn relu_gradients_match_finite_differences() {
    let net = relu_net();
    let th = jitter(net.params(), 3);
    let x = [0.4, -1.1, 0.8];
    // No pre-activation within 1e-3 of the kink (where a 1e-5 difference could cross it).
    let mut acts = Vec::new();
    net.forward_f64(&th, &x, &mut acts);
    assert!(acts[3..12].iter().all(|p| p.abs() > 1e-3));
    check_fd(&net, &th, &x, 4);
}

#[test]
fn conv_transpose_and_reshape_gradients_match_finite_differences() {
    let net = conv_net();
    assert_eq!(net.n_outputs(), 64);
    let th = jitter(net.params(), 5);
    let x = randv(12, 6);
    let mut acts = Vec::new();
    net.forward_f64(&th, &x, &mut acts);
    // The ReLU's input (the first convolution's output, 32 values) away from the kink.
    let relu_in = &acts[12 + 12..12 + 12 + 32];
    assert!(relu_in.iter().all(|p| p.abs() > 1e-3), "{relu_in:?}");
    check_fd(&net, &th, &x, 7);
}

/// The transposed convolution against an independent oracle: dilate the input by the
/// stride, pad by (2, 1) (lax "SAME" for k = 3, s = 2) and correlate with the kernel.
#[test]
fn conv_transpose_matches_dilate_pad_correlate() {
    let (h, w, ci, co, k) = (3, 2, 2, 3, 3);
    let net = Net::builder(h * w * ci)
        .reshape(h, w, ci)
        .unwrap()
        .conv_transpose(co, k, 2, Padding::Same)
        .unwrap()
        .build(0)
        .unwrap();
    let th = jitter(net.params(), 8);
    let x = randv(h * w * ci, 9);
    let y = f64_out(&net, &th, &x);
    let (ho, wo) = (2 * h, 2 * w);
    assert_eq!(y.len(), ho * wo * co);
    let kern = |ky: usize, kx: usize, o: usize, i: usize| th[((ky * k + kx) * co + o) * ci + i];
    let bias = &th[k * k * co * ci..];
    // Dilated and padded input: size (2h − 1) + 3.
    let (hp, wp) = (2 * h - 1 + 3, 2 * w - 1 + 3);
    let mut xp = vec![0.0; hp * wp * ci];
    for iy in 0..h {
        for ix in 0..w {
            for c in 0..ci {
                xp[((2 * iy + 2) * wp + 2 * ix + 2) * ci + c] = x[(iy * w + ix) * ci + c];
            }
        }
    }
    for oy in 0..ho {
        for ox in 0..wo {
            for o in 0..co {
                let mut acc = bias[o];
                for ky in 0..k {
                    for kx in 0..k {
                        for c in 0..ci {
                            acc += xp[((oy + ky) * wp + ox + kx) * ci + c] * kern(ky, kx, o, c);
                        }
                    }
                }
                let got = y[(oy * wo + ox) * co + o];
                assert!((got - acc).abs() < 1e-13, "({oy},{ox},{o}): {got} vs {acc}");
            }
        }
    }
}

/// The tape route (one custom op, and the fused likelihood head) gives the f64 VJP.
#[test]
fn tape_op_matches_vjp() {
    for net in [siren(), conv_net()] {
        let net = Arc::new(net);
        let th = jitter(net.params(), 10);
        let x = randv(net.n_inputs(), 11);
        let c = randv(net.n_outputs(), 12);
        let (y, gth, gx) = net_vjp(&net, &th, &x, &c).unwrap();
        let (yr, gth_r, gx_r, nodes) = with_tape(|| {
            let tr: Vec<Rev> = th.iter().map(|&v| Rev::var(v)).collect();
            let xr: Vec<Rev> = x.iter().map(|&v| Rev::var(v)).collect();
            let before = diffsmc::tape::tape_len();
            let p = NetTheta::new(&net, &tr).unwrap();
            let mut out = vec![Rev::constant(0.0); net.n_outputs()];
            p.eval(&xr, &mut out);
            let nodes = diffsmc::tape::tape_len() - before;
            let seeds: Vec<(Rev, f64)> = out.iter().copied().zip(c.iter().copied()).collect();
            let adj = backward(&seeds);
            (
                out.iter().map(|r| r.value()).collect::<Vec<_>>(),
                tr.iter().map(|&t| adj.of(t)).collect::<Vec<_>>(),
                xr.iter().map(|&t| adj.of(t)).collect::<Vec<_>>(),
                nodes,
            )
        });
        // One node per output: no per-scalar nodes.
        assert_eq!(nodes, net.n_outputs());
        assert_eq!(y, yr);
        for (a, b) in gth.iter().zip(&gth_r).chain(gx.iter().zip(&gx_r)) {
            assert!((a - b).abs() < 1e-12 * a.abs().max(1.0), "{a} vs {b}");
        }

        // Fused Gaussian head: L = s/n Σ ln N(t_i; y_i, σ²); ∂L/∂y_i = s/n (t_i − y_i)/σ².
        let target = randv(net.n_outputs(), 13);
        let (sigma, scale) = (0.3, 0.5);
        let n = net.n_outputs() as f64;
        let gy: Vec<f64> = y
            .iter()
            .zip(&target)
            .map(|(m, t)| scale / n * (t - m) / (sigma * sigma))
            .collect();
        let (_, gth_h, gx_h) = net_vjp(&net, &th, &x, &gy).unwrap();
        let expected: f64 = y
            .iter()
            .zip(&target)
            .map(|(m, t)| {
                -0.5 * ((t - m) / sigma).powi(2)
                    - sigma.ln()
                    - 0.5 * (2.0 * std::f64::consts::PI).ln()
            })
            .sum::<f64>()
            * scale
            / n;
        let p64 = NetTheta::new(&net, &th).unwrap();
        let v64 = p64.gaussian_loglik(&x, &target, sigma, scale).unwrap();
        assert!((v64 - expected).abs() < 1e-12 * expected.abs().max(1.0));
        let (v, g1, g2, nodes) = with_tape(|| {
            let tr: Vec<Rev> = th.iter().map(|&v| Rev::var(v)).collect();
            let xr: Vec<Rev> = x.iter().map(|&v| Rev::var(v)).collect();
            let p = NetTheta::new(&net, &tr).unwrap();
            let before = diffsmc::tape::tape_len();
            let l = p.gaussian_loglik(&xr, &target, sigma, scale).unwrap();
            let nodes = diffsmc::tape::tape_len() - before;
            let adj = backward(&[(l, 1.0)]);
            (
                l.value(),
                tr.iter().map(|&t| adj.of(t)).collect::<Vec<_>>(),
                xr.iter().map(|&t| adj.of(t)).collect::<Vec<_>>(),
                nodes,
            )
        });
        assert_eq!(nodes, 1);
        assert!((v - expected).abs() < 1e-12 * expected.abs().max(1.0));
        for (a, b) in gth_h.iter().zip(&g1).chain(gx_h.iter().zip(&g2)) {
            assert!((a - b).abs() < 1e-12 * a.abs().max(1.0), "{a} vs {b}");
        }
    }
}

/// Forward-mode duals: the value part equals the f64 forward pass and the derivative lane
/// equals the VJP contracted with the seeded direction.
#[test]
fn dual_forward_agrees_with_f64() {
    for net in [siren(), relu_net(), conv_net()] {
        let net = Arc::new(net);
        let th = jitter(net.params(), 14);
        let x = randv(net.n_inputs(), 15);
        let dth = randv(th.len(), 16);
        let dx = randv(x.len(), 17);
        let c = randv(net.n_outputs(), 18);
        let thd: Vec<Dual64> = th
            .iter()
            .zip(&dth)
            .map(|(&v, &d)| Dual64::new(v, d))
            .collect();
        let xd: Vec<Dual64> = x
            .iter()
            .zip(&dx)
            .map(|(&v, &d)| Dual64::new(v, d))
            .collect();
        let p = NetTheta::new(&net, &thd).unwrap();
        let mut yd = vec![Dual64::from(0.0); net.n_outputs()];
        p.eval(&xd, &mut yd);
        let (y, gth, gx) = net_vjp(&net, &th, &x, &c).unwrap();
        for (a, b) in yd.iter().zip(&y) {
            assert!((a.re - b).abs() < 1e-12 * b.abs().max(1.0));
        }
        let jvp: f64 = yd.iter().zip(&c).map(|(a, ci)| a.eps * ci).sum();
        let vjp: f64 = gth.iter().zip(&dth).map(|(a, b)| a * b).sum::<f64>()
            + gx.iter().zip(&dx).map(|(a, b)| a * b).sum::<f64>();
        assert!(
            (jvp - vjp).abs() < 1e-10 * vjp.abs().max(1.0),
            "{jvp} vs {vjp}"
        );
        // The generic `Net::forward` on f64 equals the prepared f64 route bit for bit.
        let p64 = NetTheta::new(&net, &th).unwrap();
        let mut y2 = vec![0.0; net.n_outputs()];
        p64.eval(&x, &mut y2);
        assert_eq!(y, y2);
    }
}

#[test]
fn siren_and_lecun_initialisation() {
    let net = Net::builder(5)
        .dense(256, true, Init::SirenFirst)
        .unwrap()
        .sine(8.0)
        .unwrap()
        .dense(256, true, Init::SirenHidden { omega0: 8.0 })
        .unwrap()
        .dense(256, false, Init::LecunNormal)
        .unwrap()
        .build(0)
        .unwrap();
    let p = net.params();
    let first = &p[net.layer_range(0)][..5 * 256];
    let first_bias = &p[net.layer_range(0)][5 * 256..];
    let hidden = &p[net.layer_range(2)][..256 * 256];
    let lecun = &p[net.layer_range(3)];
    let max = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    // U(±a): every draw within the bound, and with n draws the largest |w| falls short of a
    // by more than a·0.02 with probability 0.98ⁿ (< 1e-4 for n = 1280).
    assert!(max(first) <= 0.2 && max(first) > 0.196);
    assert!(first_bias.iter().all(|&b| b == 0.0));
    let a = (6.0f64 / 256.0).sqrt() / 8.0;
    assert!(max(hidden) <= a && max(hidden) > 0.999 * a);
    // Truncated normal: variance 1/fan_in (= 1/256); the sample variance of 65 536 draws has
    // relative standard error ≈ √(2/65536)·0.9 ≈ 0.5%, so 3% is six standard errors.
    let var = lecun.iter().map(|w| w * w).sum::<f64>() / lecun.len() as f64;
    assert!((var * 256.0 - 1.0).abs() < 0.03, "{var}");
    let sd = (1.0f64 / 256.0).sqrt() / 0.879_625_661_034_239_8;
    assert!(max(lecun) <= 2.0 * sd);
}

#[test]
fn builder_rejects_bad_shapes() {
    assert!(Net::builder(10).reshape(2, 2, 2).is_err());
    assert!(
        Net::builder(8)
            .conv_transpose(2, 3, 2, Padding::Same)
            .is_err()
    );
    assert!(Net::builder(3).sine(0.0).is_err());
    assert!(Net::builder(3).dense(0, true, Init::Glorot).is_err());
    let net = conv_net();
    assert!(matches!(
        net.layers()[0],
        Layer::Reshape { h: 2, w: 2, c: 3 }
    ));
    assert!(NetTheta::new(&Arc::new(net.clone()), &[0.0; 3]).is_err());
    let p = NetTheta::new(&Arc::new(net), &vec![0.0; conv_net().n_params()]).unwrap();
    assert!(p.gaussian_loglik(&[0.0; 12], &[0.0; 3], 1.0, 1.0).is_err());
    assert!(p.gaussian_loglik(&[0.0; 12], &[0.0; 64], 0.0, 1.0).is_err());
}

/// The 4×4 → 8×8 → 16×16 → 32×32 chain of the pendulum decoder has the expected sizes.
#[test]
fn same_padding_doubles_the_side() {
    let net = Net::builder(256)
        .reshape(4, 4, 16)
        .unwrap()
        .conv_transpose(32, 3, 2, Padding::Same)
        .unwrap()
        .conv_transpose(16, 3, 2, Padding::Same)
        .unwrap()
        .conv_transpose(1, 3, 2, Padding::Same)
        .unwrap()
        .build(0)
        .unwrap();
    assert_eq!(net.sizes(), &[256, 256, 8 * 8 * 32, 16 * 16 * 16, 32 * 32]);
    for l in &net.layers()[1..] {
        let Layer::ConvTranspose2d(c) = l else {
            panic!()
        };
        assert_eq!(c.pad_lo, 2);
    }
}
