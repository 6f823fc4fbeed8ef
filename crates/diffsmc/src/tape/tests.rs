use super::*;
use crate::{Scalar, log_sum_exp};
use num_dual::{Dual64, DualSVec64};

fn close(a: f64, b: f64, rel: f64) -> bool {
    a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
}

#[track_caller]
fn assert_close(a: f64, b: f64, rel: f64, what: &str) {
    assert!(close(a, b, rel), "{what}: {a} vs {b} (rel {rel})");
}

/// Every unary function, generic so that it runs on `f64`, `Dual64` and `Rev`.
fn un<S: Scalar>(name: &str, x: S) -> S {
    match name {
        "neg" => -x,
        "recip" => x.recip(),
        "inv" => x.inv(),
        "abs" => x.abs(),
        "powi0" => x.powi(0),
        "powi1" => x.powi(1),
        "powi2" => x.powi(2),
        "powi3" => x.powi(3),
        "powi5" => x.powi(5),
        "powi-2" => x.powi(-2),
        "powf0" => x.powf(0.0),
        "powf1" => x.powf(1.0),
        "powf2" => x.powf(2.0),
        "powf2.5" => x.powf(2.5),
        "powf-1.5" => x.powf(-1.5),
        "sqrt" => x.sqrt(),
        "cbrt" => x.cbrt(),
        "exp" => x.exp(),
        "exp2" => x.exp2(),
        "exp_m1" => x.exp_m1(),
        "ln" => x.ln(),
        "log3" => x.log(3.0),
        "log2" => x.log2(),
        "log10" => x.log10(),
        "ln_1p" => x.ln_1p(),
        "sin" => x.sin(),
        "cos" => x.cos(),
        "tan" => x.tan(),
        "sin_cos.0" => x.sin_cos().0,
        "sin_cos.1" => x.sin_cos().1,
        "asin" => x.asin(),
        "acos" => x.acos(),
        "atan" => x.atan(),
        "sinh" => x.sinh(),
        "cosh" => x.cosh(),
        "tanh" => x.tanh(),
        "asinh" => x.asinh(),
        "acosh" => x.acosh(),
        "atanh" => x.atanh(),
        "sph_j0" => x.sph_j0(),
        "sph_j1" => x.sph_j1(),
        "sph_j2" => x.sph_j2(),
        "+c" => x + 1.3,
        "-c" => x - 1.3,
        "*c" => x * 1.3,
        "/c" => x / 1.3,
        "+=c" => {
            let mut y = x;
            y += 1.3;
            y
        }
        "-=c" => {
            let mut y = x;
            y -= 1.3;
            y
        }
        "*=c" => {
            let mut y = x;
            y *= 1.3;
            y
        }
        "/=c" => {
            let mut y = x;
            y /= 1.3;
            y
        }
        "x*x" => x * x,
        "x/x" => x / x,
        "x-x" => x - x,
        "mul_add_self" => x.mul_add(x, x),
        "powd_self" => x.powd(x),
        "sum" => [x, x * 2.0, x.sin()].into_iter().sum(),
        "product" => [x, x + 1.0, x.cos()].into_iter().product(),
        _ => unreachable!("{name}"),
    }
}

const ANY: &[f64] = &[-2.3, -0.7, 0.4, 1.1, 2.9];
const POS: &[f64] = &[0.3, 0.9, 1.7, 4.2];
const UNIT: &[f64] = &[-0.8, -0.3, 0.2, 0.6];
const UNARY: &[(&str, &[f64])] = &[
    ("neg", ANY),
    ("recip", ANY),
    ("inv", ANY),
    ("abs", ANY),
    ("powi0", ANY),
    ("powi1", ANY),
    ("powi2", ANY),
    ("powi3", ANY),
    ("powi5", ANY),
    ("powi-2", ANY),
    ("powf0", POS),
    ("powf1", POS),
    ("powf2", POS),
    ("powf2.5", POS),
    ("powf-1.5", POS),
    ("sqrt", POS),
    ("cbrt", ANY),
    ("exp", ANY),
    ("exp2", ANY),
    ("exp_m1", ANY),
    ("ln", POS),
    ("log3", POS),
    ("log2", POS),
    ("log10", POS),
    ("ln_1p", &[-0.5, 0.3, 2.0]),
    ("sin", ANY),
    ("cos", ANY),
    ("tan", ANY),
    ("sin_cos.0", ANY),
    ("sin_cos.1", ANY),
    ("asin", UNIT),
    ("acos", UNIT),
    ("atan", ANY),
    ("sinh", ANY),
    ("cosh", ANY),
    ("tanh", ANY),
    ("asinh", ANY),
    ("acosh", &[1.2, 2.0, 5.5]),
    ("atanh", UNIT),
    ("sph_j0", &[1e-17, -0.9, 0.5, 2.2, 7.0]),
    ("sph_j1", &[1e-17, -0.9, 0.5, 2.2, 7.0]),
    ("sph_j2", &[1e-17, -0.9, 0.5, 2.2, 7.0]),
    ("+c", ANY),
    ("-c", ANY),
    ("*c", ANY),
    ("/c", ANY),
    ("+=c", ANY),
    ("-=c", ANY),
    ("*=c", ANY),
    ("/=c", ANY),
    ("x*x", ANY),
    ("x/x", ANY),
    ("x-x", ANY),
    ("mul_add_self", ANY),
    ("powd_self", POS),
    ("sum", ANY),
    ("product", ANY),
];

/// Value and derivative of `un(name, ·)` at `x` on a fresh tape.
fn rev_unary(name: &str, x: f64) -> (f64, f64) {
    with_tape(|| {
        let xr = Rev::var(x);
        let y = un(name, xr);
        (y.value(), backward(&[(y, 1.0)]).of(xr))
    })
}

#[test]
fn tape_unary_matches_f64_values_and_dual_derivatives() {
    for &(name, points) in UNARY {
        for &x in points {
            let (v, g) = rev_unary(name, x);
            let vf = un::<f64>(name, x);
            assert!(
                v == vf || (v.is_nan() && vf.is_nan()),
                "{name}({x}): value {v} vs f64 {vf}"
            );
            let d = un(name, Dual64::new(x, 1.0));
            assert_close(g, d.eps, 1e-12, &format!("{name}'({x})"));
        }
    }
}

/// Every binary operation with two `Rev` (or dual) operands.
fn bin<S: Scalar>(name: &str, a: S, b: S) -> S {
    match name {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        "+&" => a + &b,
        "-&" => a - &b,
        "*&" => a * &b,
        "/&" => a / &b,
        "+=" => {
            let mut c = a;
            c += b;
            c
        }
        "-=" => {
            let mut c = a;
            c -= b;
            c
        }
        "*=" => {
            let mut c = a;
            c *= b;
            c
        }
        "/=" => {
            let mut c = a;
            c /= b;
            c
        }
        "atan2" => a.atan2(b),
        "powd" => a.powd(b),
        "mul_add" => a.mul_add(b, a * 0.5),
        "abs_sub" => a.abs_sub(&b),
        _ => unreachable!("{name}"),
    }
}

const PAIRS: &[(f64, f64)] = &[(1.3, 0.7), (-2.1, 1.9), (0.4, -3.3), (2.5, 2.5)];
const POS_PAIRS: &[(f64, f64)] = &[(1.3, 0.7), (2.5, -1.2), (0.4, 3.3)];
const BINARY: &[(&str, &[(f64, f64)])] = &[
    ("+", PAIRS),
    ("-", PAIRS),
    ("*", PAIRS),
    ("/", PAIRS),
    ("+&", PAIRS),
    ("-&", PAIRS),
    ("*&", PAIRS),
    ("/&", PAIRS),
    ("+=", PAIRS),
    ("-=", PAIRS),
    ("*=", PAIRS),
    ("/=", PAIRS),
    ("atan2", PAIRS),
    ("powd", POS_PAIRS),
    ("mul_add", PAIRS),
    ("abs_sub", PAIRS),
];

fn rev_binary(f: impl Fn(Rev, Rev) -> Rev, a: f64, b: f64) -> (f64, f64, f64) {
    with_tape(|| {
        let (ar, br) = (Rev::var(a), Rev::var(b));
        let y = f(ar, br);
        let adj = backward(&[(y, 1.0)]);
        (y.value(), adj.of(ar), adj.of(br))
    })
}

#[test]
fn tape_binary_matches_f64_values_and_dual_derivatives() {
    for &(name, pairs) in BINARY {
        for &(a, b) in pairs {
            let (v, ga, gb) = rev_binary(|x, y| bin(name, x, y), a, b);
            assert_eq!(v, bin::<f64>(name, a, b), "{name}({a}, {b}) value");
            let da = bin(name, Dual64::new(a, 1.0), Dual64::from(b)).eps;
            let db = bin(name, Dual64::from(a), Dual64::new(b, 1.0)).eps;
            assert_close(ga, da, 1e-12, &format!("∂a {name}({a}, {b})"));
            assert_close(gb, db, 1e-12, &format!("∂b {name}({a}, {b})"));
            // One operand constant: the same partial for the other one.
            let (v1, g1) = with_tape(|| {
                let ar = Rev::var(a);
                let y = bin(name, ar, Rev::constant(b));
                (y.value(), backward(&[(y, 1.0)]).of(ar))
            });
            assert_eq!(v1, v);
            assert_close(g1, da, 1e-12, &format!("∂a {name}({a}, const)"));
            let (v2, g2) = with_tape(|| {
                let br = Rev::var(b);
                let y = bin(name, Rev::constant(a), br);
                (y.value(), backward(&[(y, 1.0)]).of(br))
            });
            assert_eq!(v2, v);
            assert_close(g2, db, 1e-12, &format!("∂b {name}(const, {b})"));
        }
    }
}

#[test]
fn tape_mixed_f64_operands() {
    type Case = (&'static str, fn(Rev, f64) -> Rev, fn(Dual64, f64) -> Dual64);
    // Rev ⊗ f64 and f64 ⊗ Rev, against Dual64 with the f64 side as a constant dual.
    let cases: &[Case] = &[
        ("x+c", |x, c| x + c, |x, c| x + c),
        ("x-c", |x, c| x - c, |x, c| x - c),
        ("x*c", |x, c| x * c, |x, c| x * c),
        ("x/c", |x, c| x / c, |x, c| x / c),
        ("&x+c", |x, c| &x + c, |x, c| x + c),
        ("&x*c", |x, c| &x * c, |x, c| x * c),
        ("c+x", |x, c| c + x, |x, c| Dual64::from(c) + x),
        ("c-x", |x, c| c - x, |x, c| Dual64::from(c) - x),
        ("c*x", |x, c| c * x, |x, c| Dual64::from(c) * x),
        ("c/x", |x, c| c / x, |x, c| Dual64::from(c) / x),
        ("c+&x", |x, c| c + &x, |x, c| Dual64::from(c) + x),
        ("c/&x", |x, c| c / &x, |x, c| Dual64::from(c) / x),
        ("&x*&x", |x, _| &x * &x, |x, _| x * x),
        ("&x-x", |x, _| &x - x, |x, _| x - x),
        ("-&x", |x, _| -&x, |x, _| -x),
    ];
    for &(name, fr, fd) in cases {
        for &(x, c) in PAIRS {
            let (v, g) = with_tape(|| {
                let xr = Rev::var(x);
                let y = fr(xr, c);
                (y.value(), backward(&[(y, 1.0)]).of(xr))
            });
            let d = fd(Dual64::new(x, 1.0), c);
            let vf = fr(Rev::constant(x), c).value();
            assert_eq!(v, vf, "{name} value");
            assert_close(v, d.re, 1e-15, &format!("{name} value vs dual"));
            assert_close(g, d.eps, 1e-12, &format!("{name}' at ({x}, {c})"));
        }
    }
    // Values of the f64-on-the-left forms are plain f64 arithmetic.
    let x = Rev::constant(0.7);
    assert_eq!((2.0 - x).value(), 2.0 - 0.7);
    assert_eq!((2.0 / x).value(), 2.0 / 0.7);
    assert_eq!((2.0 * x).value(), 2.0 * 0.7);
}

#[test]
fn tape_rem_matches_fmod_and_finite_differences() {
    for &(a, b) in &[(5.3, 1.7), (-5.3, 1.7), (5.3, -2.2), (0.4, 3.0)] {
        let (v, ga, gb) = rev_binary(|x, y| x % y, a, b);
        assert_eq!(v, a % b);
        assert_eq!(ga, 1.0);
        let h = 1e-6;
        let fd = ((a % (b + h)) - (a % (b - h))) / (2.0 * h);
        assert!((gb - fd).abs() < 1e-6, "∂b {a} % {b}: {gb} vs {fd}");
        assert_eq!(gb, -(a / b).trunc());
        let (_, ga2, gb2) = rev_binary(
            |x, y| {
                let mut z = x;
                z %= y;
                z %= 10.0;
                z
            },
            a,
            b,
        );
        assert_eq!((ga2, gb2), (ga, gb));
        let (v3, g3) = with_tape(|| {
            let y = Rev::var(b);
            let z = a % y;
            (z.value(), backward(&[(z, 1.0)]).of(y))
        });
        assert_eq!((v3, g3), (a % b, gb));
        let (v4, g4) = with_tape(|| {
            let x = Rev::var(a);
            let z = x % b;
            (z.value(), backward(&[(z, 1.0)]).of(x))
        });
        assert_eq!((v4, g4), (a % b, 1.0));
    }
}

#[test]
fn tape_mul_add_all_operand_patterns() {
    let (x, a, b) = (0.7, -1.9, 2.3);
    for mask in 0..8u32 {
        let (v, g) = with_tape(|| {
            let mk = |bit: u32, v: f64| {
                if mask & (1 << bit) != 0 {
                    Rev::var(v)
                } else {
                    Rev::constant(v)
                }
            };
            let (xr, ar, br) = (mk(0, x), mk(1, a), mk(2, b));
            let y = xr.mul_add(ar, br);
            let adj = backward(&[(y, 1.0)]);
            (y.value(), [adj.of(xr), adj.of(ar), adj.of(br)])
        });
        assert_eq!(v, x.mul_add(a, b));
        let want = [a, x, 1.0];
        for k in 0..3 {
            let w = if mask & (1 << k) != 0 { want[k] } else { 0.0 };
            assert_eq!(g[k], w, "mask {mask} operand {k}");
        }
    }
}

#[test]
fn tape_signed_and_misc_traits() {
    let x = Rev::constant(-0.0);
    assert_eq!(x.abs().value().to_bits(), 0.0f64.to_bits());
    assert_eq!(Rev::constant(-2.0).signum(), -1.0);
    assert_eq!(Rev::constant(0.0).signum(), 1.0);
    assert!(Rev::constant(-2.0).is_negative() && Rev::constant(3.0).is_positive());
    assert_eq!(
        <Rev as Num>::from_str_radix("2.5", 10).unwrap().value(),
        2.5
    );
    assert!(<Rev as Num>::from_str_radix("x", 10).is_err());
    assert_eq!(Rev::from_i32(-3).unwrap().value(), -3.0);
    assert_eq!(Rev::from_usize(7).unwrap().value(), 7.0);
    assert_eq!(Rev::from_f64(0.25).unwrap(), 0.25);
    assert!(Rev::zero().is_zero() && Rev::one().is_one());
    assert_eq!(Rev::default().value(), 0.0);
    assert_eq!(<Rev as DualNum>::from_re(1.5).node(), None);
    assert_eq!(Rev::from_inner(&1.5).re(), 1.5);
    let (v, g) = with_tape(|| {
        let x = Rev::var(0.6);
        let y = x.scale(&1.7);
        (y.value(), backward(&[(y, 1.0)]).of(x))
    });
    let d = Dual64::new(0.6, 1.0).scale(&1.7);
    assert_eq!((v, g), (0.6 * 1.7, 1.7));
    assert_eq!((d.re, d.eps), (v, g));
    assert_eq!(Rev::constant(2.0).map_dual(|x| x.value() * 2.0), 4.0);
    assert!(Rev::constant(1.0) < Rev::constant(2.0));
    assert!(Rev::constant(1.0) < 2.0 && Rev::constant(1.0) == 1.0);
    assert_eq!(format!("{}", Rev::constant(1.5)), "1.5");
    assert_eq!(
        format!("{:?}", Rev::constant(1.5)),
        "Rev { value: 1.5, node: None }"
    );
    with_tape(|| {
        let v = Rev::var(2.0);
        assert_eq!(format!("{v:?}"), "Rev { value: 2.0, node: Some(0) }");
        // Sum and Product over references, values exactly as f64.
        let xs = [v, Rev::var(0.1), Rev::var(0.2)];
        let s: Rev = xs.iter().sum();
        let p: Rev = xs.iter().product();
        assert_eq!(s.value(), [2.0, 0.1, 0.2].iter().sum::<f64>());
        assert_eq!(p.value(), [2.0, 0.1, 0.2].iter().product::<f64>());
        let adj = backward(&[(s, 1.0), (p, 1.0)]);
        assert_close(adj.of(xs[1]), 1.0 + 2.0 * 0.2, 1e-15, "d(s+p)/dx1");
    });
    let empty: [Rev; 0] = [];
    assert_eq!(
        empty.iter().sum::<Rev>().value().to_bits(),
        (-0.0f64).to_bits()
    );
    assert_eq!(empty.iter().product::<Rev>().value(), 1.0);
}

fn composite<S: Scalar>(x: &[S; 3]) -> S {
    let [a, b, c] = *x;
    let t = (a * b).exp() / (c * c + 1.0) + (b.powi(3) - c).tanh() * a.ln();
    let lse = log_sum_exp(&[a * 2.0, b - c, (a * c).sin(), t]);
    lse * (a / b + 1.0) - c.sqrt().powf(1.5) + lse.powi(-2) * 2.0 + (a + b + c).ln()
}

#[test]
fn tape_composite_matches_dual_vec_gradient() {
    for x in [[0.7, 1.3, 0.4], [1.5, -0.6, 2.2], [2.0, 0.2, 0.9]] {
        let (v, g) = with_tape(|| {
            let xr = x.map(Rev::var);
            let y = composite(&xr);
            let adj = backward(&[(y, 1.0)]);
            (y.value(), xr.map(|r| adj.of(r)))
        });
        assert_eq!(v, composite(&x));
        let xd: [DualSVec64<3>; 3] =
            std::array::from_fn(|i| DualSVec64::<3>::from_re(x[i]).derivative(i));
        let d = composite(&xd);
        let dg = d.eps.0.expect("nonzero gradient");
        for i in 0..3 {
            assert_close(g[i], dg[i], 1e-12, &format!("∂{i} composite at {x:?}"));
        }
    }
}

#[test]
fn tape_log_sum_exp_gradient_is_softmax() {
    let v = [0.3, -1.2, 2.5, 0.0, 1.1];
    let (l, g) = with_tape(|| {
        let vr: Vec<Rev> = v.iter().map(|&x| Rev::var(x)).collect();
        let l = log_sum_exp(&vr);
        let adj = backward(&[(l, 1.0)]);
        (l.value(), vr.iter().map(|&r| adj.of(r)).collect::<Vec<_>>())
    });
    assert_eq!(l, log_sum_exp(&v));
    for i in 0..v.len() {
        assert_close(g[i], (v[i] - l).exp(), 1e-14, &format!("softmax {i}"));
    }
    assert_close(g.iter().sum::<f64>(), 1.0, 1e-14, "softmax sums to 1");
}

/// y_j = Σ_i A_ji x_i with a hand-written backward pass.
struct MatVec {
    a: Vec<Vec<f64>>,
    x: Vec<Rev>,
}

impl CustomOp for MatVec {
    fn backward(&self, out_adj: &[f64], inputs: &mut AdjointsMut<'_>) {
        for (row, &w) in self.a.iter().zip(out_adj) {
            for (&aji, &xi) in row.iter().zip(&self.x) {
                inputs.add(xi, aji * w);
            }
        }
    }
}

fn matvec_custom(a: &[Vec<f64>], x: &[Rev]) -> Vec<Rev> {
    let values: Vec<f64> = a
        .iter()
        .map(|row| row.iter().zip(x).map(|(a, x)| a * x.value()).sum())
        .collect();
    let mut out = vec![Rev::constant(0.0); a.len()];
    custom(
        &values,
        Box::new(MatVec {
            a: a.to_vec(),
            x: x.to_vec(),
        }),
        &mut out,
    );
    out
}

fn matvec_nodes(a: &[Vec<f64>], x: &[Rev]) -> Vec<Rev> {
    a.iter()
        .map(|row| row.iter().zip(x).map(|(&a, &x)| x * a).sum())
        .collect()
}

/// Ops before, between and after two custom matvecs; constants among the inputs.
fn pipeline(x0: &[f64], use_custom: bool) -> (f64, Vec<f64>, usize) {
    let a = vec![vec![0.5, -1.0, 2.0, 0.3], vec![1.5, 0.25, -0.7, 1.0]];
    let b = vec![vec![1.0, -2.0], vec![0.3, 0.4], vec![-1.1, 0.9]];
    let mv = |m: &[Vec<f64>], v: &[Rev]| {
        if use_custom {
            matvec_custom(m, v)
        } else {
            matvec_nodes(m, v)
        }
    };
    with_tape(|| {
        let x: Vec<Rev> = x0.iter().map(|&v| Rev::var(v)).collect();
        let mut u: Vec<Rev> = x.iter().map(|v| v.sin() * 1.5).collect();
        u.push(Rev::constant(0.8));
        u[0] *= x[1];
        let y = mv(&a, &u[..4]);
        let w: Vec<Rev> = y.iter().map(|v| v.tanh() + x[2]).collect();
        let z = mv(&b, &w);
        let out = z.iter().map(|v| v.exp()).sum::<Rev>() * y[1] + x[0].powi(2);
        let adj = backward(&[(out, 1.0)]);
        (
            out.value(),
            x.iter().map(|&r| adj.of(r)).collect(),
            tape_len(),
        )
    })
}

#[test]
fn tape_custom_op_matches_node_by_node() {
    let x0 = [0.3, -1.2, 0.8, 2.0];
    let (v1, g1, len1) = pipeline(&x0, true);
    let (v2, g2, len2) = pipeline(&x0, false);
    assert_close(v1, v2, 1e-14, "value");
    for i in 0..x0.len() {
        assert_close(g1[i], g2[i], 1e-12, &format!("∂{i}"));
    }
    assert!(len1 < len2, "custom op tape {len1} nodes vs {len2}");
    // An op whose outputs are unused is skipped; its inputs get nothing.
    with_tape(|| {
        let x = Rev::var(1.0);
        let y = matvec_custom(&[vec![2.0]], &[x]);
        let z = x * 3.0;
        let adj = backward(&[(z, 1.0)]);
        assert_eq!(adj.of(x), 3.0);
        assert_eq!(adj.of(y[0]), 0.0);
        // Seeding the op's output directly.
        let adj = backward(&[(y[0], 1.0), (z, 1.0)]);
        assert_eq!(adj.of(x), 5.0);
    });
    // No values: nothing recorded.
    with_tape(|| {
        custom(
            &[],
            Box::new(MatVec {
                a: vec![],
                x: vec![],
            }),
            &mut [],
        );
        assert_eq!(tape_len(), 0);
    });
}

#[test]
fn tape_with_tape_nesting_and_constants() {
    with_tape(|| {
        let x = Rev::var(1.5);
        let y = x * x;
        assert_eq!(tape_len(), 2);
        let inner = with_tape(|| {
            assert_eq!(tape_len(), 0);
            let u = Rev::var(3.0);
            let w = u.exp();
            assert_eq!(tape_len(), 2);
            backward(&[(w, 1.0)]).of(u)
        });
        assert_eq!(inner, 3f64.exp());
        assert_eq!(tape_len(), 2);
        // A panicking inner scope also restores the outer tape.
        let r = std::panic::catch_unwind(|| {
            with_tape(|| {
                let _ = Rev::var(1.0) * 2.0;
                panic!("inner scope panics");
            })
        });
        assert!(r.is_err());
        assert_eq!(tape_len(), 2);
        let z = y.sin() * x;
        assert_eq!(tape_len(), 4);
        let adj = backward(&[(z, 1.0)]);
        let want = 2.25f64.cos() * 3.0 * 1.5 + 2.25f64.sin();
        assert_close(adj.of(x), want, 1e-15, "outer gradient after inner scopes");
        // Seeds add up; constant seeds are ignored.
        let adj2 = backward(&[(z, 0.5), (z, 0.5), (Rev::constant(1.0), 7.0)]);
        assert_eq!(adj2.of(x), adj.of(x));
        assert_eq!(adj2.of(Rev::constant(3.0)), 0.0);
        assert_eq!(adj2.as_slice().len(), 4);
    });
    with_tape(|| {
        let a = Rev::constant(2.0);
        let b = a * 3.0 + a.exp() - a / a + 1.0 / a + a.powi(3).sin() + a.mul_add(a, a);
        let s: Rev = [a, b].iter().sum();
        assert_eq!(tape_len(), 0);
        assert_eq!((b.node(), s.node()), (None, None));
        assert_eq!(tape_bytes(), tape_bytes()); // callable on an empty tape
    });
}

#[test]
fn tape_allocation_is_reused() {
    with_tape(|| {
        let x = Rev::var(1.0);
        let mut y = x;
        for _ in 0..1000 {
            y *= 1.0001;
        }
        assert_eq!(tape_len(), 1001);
        assert!(tape_bytes() >= 1001 * 24);
    });
    for _ in 0..100 {
        with_tape(|| {
            assert_eq!(tape_len(), 0);
            assert!(tape_bytes() >= 1001 * 24, "pooled tape reused");
            let _ = Rev::var(1.0).exp();
        });
    }
    assert_eq!(std::mem::size_of::<Node>(), 24);
}

#[test]
fn tape_threads_are_independent() {
    let results: Vec<(f64, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|k| {
                s.spawn(move || {
                    with_tape(|| {
                        let x = Rev::var(k as f64 + 0.5);
                        let mut y = x;
                        for _ in 0..=k {
                            y *= x; // y = x^(k+2)
                            std::thread::yield_now();
                        }
                        let g = backward(&[(y, 1.0)]).of(x);
                        (g, tape_len())
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, &(g, len)) in results.iter().enumerate() {
        let x = k as f64 + 0.5;
        let n = k as i32 + 2;
        assert_close(g, f64::from(n) * x.powi(n - 1), 1e-13, "thread gradient");
        assert_eq!(len, k + 2);
    }
}

#[test]
fn tape_rev_is_a_scalar() {
    fn f<S: Scalar>(x: S) -> S {
        x * S::cst(2.0) + 1.0
    }
    with_tape(|| {
        let x = Rev::var(3.0);
        let y = f(x);
        assert_eq!(y.re(), 7.0);
        assert_eq!(backward(&[(y, 1.0)]).of(x), 2.0);
    });
}
