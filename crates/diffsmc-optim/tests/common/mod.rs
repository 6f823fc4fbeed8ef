//! Test objectives shared by the integration tests.
#![allow(dead_code)]

/// Rosenbrock function `(1 − x)² + 100 (y − x²)²`, minimum 0 at (1, 1).
pub fn rosenbrock(x: &[f64]) -> (f64, Vec<f64>) {
    let (a, b) = (x[0], x[1]);
    let value = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
    let grad = vec![
        -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
        200.0 * (b - a * a),
    ];
    (value, grad)
}

/// Dense symmetric matrix `Q diag(eigs) Q` with `Q = I − 2vvᵀ/‖v‖²` (a Householder reflection),
/// stored row-major.
pub fn rotated_matrix(eigs: &[f64], v: &[f64]) -> Vec<f64> {
    let n = eigs.len();
    let vv: f64 = v.iter().map(|x| x * x).sum();
    let q = |i: usize, j: usize| f64::from(u8::from(i == j)) - 2.0 * v[i] * v[j] / vv;
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|k| q(i, k) * eigs[k] * q(k, j)).sum();
        }
    }
    a
}

/// `f(x) = ½ (x − c)ᵀ A (x − c)` for a row-major symmetric `A`.
pub fn quadratic(a: &[f64], c: &[f64], x: &[f64]) -> (f64, Vec<f64>) {
    let n = c.len();
    let d: Vec<f64> = x.iter().zip(c).map(|(xi, ci)| xi - ci).collect();
    let grad: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| a[i * n + j] * d[j]).sum())
        .collect();
    let value = 0.5 * d.iter().zip(&grad).map(|(di, gi)| di * gi).sum::<f64>();
    (value, grad)
}

/// Euclidean distance.
pub fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}
