use super::*;
use crate::rng::{Purpose, StreamKey, standard_normal};
use nalgebra::{DMatrix, DVector};
use num_dual::Dual64;

/// Random model with dx = 2, dy = 2 (or other dims): A with spectral scale < 1,
/// covariances B Bᵀ + c I.
fn random_model(dx: usize, dy: usize, seed: u64) -> LinearGaussian<f64> {
    let mut rng = StreamKey::new(seed, 0, Purpose::Other(77)).rng(0);
    let mut g =
        |r: usize, c: usize, s: f64| DMatrix::from_fn(r, c, |_, _| s * standard_normal(&mut rng));
    let a = g(dx, dx, 0.4);
    let h = g(dy, dx, 1.0);
    let bq = g(dx, dx, 0.5);
    let br = g(dy, dy, 0.5);
    let bp = g(dx, dx, 0.7);
    let m0 = DVector::from_iterator(dx, g(dx, 1, 1.0).iter().copied());
    let q = &bq * bq.transpose() + DMatrix::identity(dx, dx) * 0.3;
    let r = &br * br.transpose() + DMatrix::identity(dy, dy) * 0.2;
    let p0 = &bp * bp.transpose() + DMatrix::identity(dx, dx) * 0.5;
    LinearGaussian::new(a, q, h, r, m0, p0).unwrap()
}

fn random_ys(dy: usize, steps: usize, seed: u64) -> Vec<Vec<f64>> {
    let key = StreamKey::new(seed, 0, Purpose::Other(78));
    (0..steps)
        .map(|t| {
            let mut rng = key.rng(t);
            (0..dy).map(|_| 1.5 * standard_normal(&mut rng)).collect()
        })
        .collect()
}

/// The dense joint Gaussian of (z_0..z_{T-1}, y_0..y_{T-1}), conditioned on the
/// observed (non-NaN) components of y_0..y_{upto-1}, computed with nalgebra's own f64
/// Cholesky: (log p(y_obs), E[z | y_obs], Cov[z | y_obs]).
struct Dense {
    loglik: f64,
    mean: DVector<f64>,
    cov: DMatrix<f64>,
}

fn dense(lg: &LinearGaussian<f64>, ys: &[Vec<f64>], upto: usize) -> Dense {
    let (dx, dy, steps) = (lg.state_dim(), lg.obs_dim(), ys.len());
    let (a, q, h, r) = (lg.a(), lg.q(), lg.h(), lg.r());
    let nz = steps * dx;
    // Marginal variances V_t and means A^t m0.
    let mut v = vec![lg.p0().clone()];
    let mut mu = vec![lg.m0().clone()];
    for t in 1..steps {
        v.push(a * &v[t - 1] * a.transpose() + q);
        mu.push(a * &mu[t - 1]);
    }
    let mut sz = DMatrix::zeros(nz, nz);
    for t in 0..steps {
        let mut blk = v[t].clone(); // Cov(z_s, z_t) = A^{s-t} V_t for s ≥ t
        for s in t..steps {
            sz.view_mut((s * dx, t * dx), (dx, dx)).copy_from(&blk);
            sz.view_mut((t * dx, s * dx), (dx, dx))
                .copy_from(&blk.transpose());
            blk = a * blk;
        }
    }
    let mz = DVector::from_iterator(nz, mu.iter().flat_map(|m| m.iter().copied()));
    // Observed components among the first `upto` steps.
    let obs: Vec<(usize, usize)> = (0..upto)
        .flat_map(|t| (0..dy).map(move |i| (t, i)))
        .filter(|&(t, i)| !ys[t][i].is_nan())
        .collect();
    let no = obs.len();
    // Rows of the big H for the observed components.
    let mut hb = DMatrix::zeros(no, nz);
    for (row, &(t, i)) in obs.iter().enumerate() {
        for k in 0..dx {
            hb[(row, t * dx + k)] = h[(i, k)];
        }
    }
    let mut sy = &hb * &sz * hb.transpose();
    for (p, &(t1, i)) in obs.iter().enumerate() {
        for (q_, &(t2, j)) in obs.iter().enumerate() {
            if t1 == t2 {
                sy[(p, q_)] += r[(i, j)];
            }
        }
    }
    let yv = DVector::from_iterator(no, obs.iter().map(|&(t, i)| ys[t][i]));
    let resid = yv - &hb * &mz;
    if no == 0 {
        return Dense {
            loglik: 0.0,
            mean: mz,
            cov: sz,
        };
    }
    let ch = sy.clone().cholesky().expect("dense Σ_y is PD");
    let alpha = ch.solve(&resid);
    let logdet = 2.0 * ch.l().diagonal().iter().map(|x| x.ln()).sum::<f64>();
    let loglik = -0.5 * (resid.dot(&alpha) + logdet + no as f64 * LN_2PI);
    let szy = &sz * hb.transpose();
    let mean = mz + &szy * alpha;
    let cov = &sz - &szy * ch.solve(&szy.transpose());
    Dense { loglik, mean, cov }
}

fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol * (1.0 + b.abs()),
        "{what}: {a} vs {b} (diff {:e})",
        a - b
    );
}

/// Filter log-likelihood (and increments), filtering moments and smoothing moments
/// against the dense computation.
fn check_against_dense(lg: &LinearGaussian<f64>, ys: &[Vec<f64>]) {
    let (dx, steps) = (lg.state_dim(), ys.len());
    let (f, s) = lg.smooth(ys).unwrap();
    let full = dense(lg, ys, steps);
    assert_close(f.log_likelihood, full.loglik, 1e-11, "log-likelihood");
    let mut prev = 0.0;
    for t in 0..steps {
        let d = dense(lg, ys, t + 1);
        assert_close(
            f.log_likelihood_increments[t],
            d.loglik - prev,
            1e-10,
            "increment",
        );
        prev = d.loglik;
        for a in 0..dx {
            assert_close(
                f.filter_means[t][a],
                d.mean[t * dx + a],
                1e-10,
                "filter mean",
            );
            assert_close(s.means[t][a], full.mean[t * dx + a], 1e-10, "smoother mean");
            for b in 0..dx {
                let (i, j) = (t * dx + a, t * dx + b);
                assert_close(
                    f.filter_covs[t][a * dx + b],
                    d.cov[(i, j)],
                    1e-10,
                    "filter cov",
                );
                assert_close(
                    s.covs[t][a * dx + b],
                    full.cov[(i, j)],
                    1e-10,
                    "smoother cov",
                );
            }
        }
        if t + 1 < steps {
            // Predicted moments of step t+1 = dense moments given y_0..y_t.
            for a in 0..dx {
                let i = (t + 1) * dx + a;
                assert_close(f.predicted_means[t + 1][a], d.mean[i], 1e-10, "pred mean");
                for b in 0..dx {
                    let j = (t + 1) * dx + b;
                    assert_close(
                        f.predicted_covs[t + 1][a * dx + b],
                        d.cov[(i, j)],
                        1e-10,
                        "pred cov",
                    );
                }
            }
        }
        // Symmetry is exact.
        for a in 0..dx {
            for b in 0..dx {
                assert_eq!(f.filter_covs[t][a * dx + b], f.filter_covs[t][b * dx + a]);
                assert_eq!(s.covs[t][a * dx + b], s.covs[t][b * dx + a]);
            }
        }
    }
}

#[test]
fn kalman_matches_dense_joint_gaussian() {
    for seed in 0..4 {
        let lg = random_model(2, 2, seed);
        let ys = random_ys(2, 5, seed);
        check_against_dense(&lg, &ys);
    }
    // Other shapes: dy < dx, dy > dx, scalar.
    for (dx, dy) in [(3, 1), (1, 3), (1, 1), (4, 2)] {
        let lg = random_model(dx, dy, 10 + dx as u64);
        let ys = random_ys(dy, 5, 20 + dy as u64);
        check_against_dense(&lg, &ys);
    }
}

#[test]
fn kalman_missing_observations_match_marginalised_dense() {
    let lg = random_model(2, 2, 3);
    let mut ys = random_ys(2, 5, 3);
    ys[1] = vec![f64::NAN, f64::NAN]; // fully missing
    ys[2][0] = f64::NAN; // partially missing
    ys[4][1] = f64::NAN; // partially missing, last step
    check_against_dense(&lg, &ys);
    let f = lg.filter(&ys).unwrap();
    assert_eq!(f.log_likelihood_increments[1], 0.0);
    // A fully missing step leaves the prediction untouched.
    assert_eq!(f.filter_means[1], f.predicted_means[1]);
    assert_eq!(f.filter_covs[1], f.predicted_covs[1]);
    // First and all missing.
    let mut ys2 = random_ys(2, 5, 4);
    ys2[0] = vec![f64::NAN, f64::NAN];
    ys2[3][1] = f64::NAN;
    check_against_dense(&lg, &ys2);
    let all_missing = vec![vec![f64::NAN; 2]; 4];
    check_against_dense(&lg, &all_missing);
    assert_eq!(lg.log_likelihood(&all_missing).unwrap(), 0.0);
    // dy = 3 with two of three missing.
    let lg3 = random_model(2, 3, 5);
    let mut ys3 = random_ys(3, 5, 6);
    ys3[2] = vec![f64::NAN, 0.4, f64::NAN];
    ys3[3][2] = f64::NAN;
    check_against_dense(&lg3, &ys3);
}

#[test]
fn kalman_empty_and_single_step() {
    let lg = random_model(2, 2, 1);
    let f = lg.filter::<Vec<f64>>(&[]).unwrap();
    assert!(f.is_empty() && f.log_likelihood == 0.0);
    assert!(lg.rts(&f).unwrap().means.is_empty());
    check_against_dense(&lg, &random_ys(2, 1, 2));
}

fn to_dual(m: &DMatrix<f64>) -> DMatrix<Dual64> {
    m.map(Dual64::from)
}

#[test]
fn dual64_gradient_matches_finite_differences() {
    let lg = random_model(2, 2, 7);
    let mut ys = random_ys(2, 6, 7);
    ys[2][1] = f64::NAN;
    // Perturb one entry of each matrix in a fixed direction.
    let dir = |r: usize, c: usize, k: usize| {
        DMatrix::from_fn(r, c, |i, j| ((i + 2 * j + k) % 3) as f64 - 1.0)
    };
    let (da, dh, dm0) = (
        dir(2, 2, 0),
        dir(2, 2, 1),
        DVector::from_vec(vec![0.5, -1.0]),
    );
    // Symmetric perturbations for covariances.
    let sym = |k: usize| {
        let d = dir(2, 2, k);
        (&d + d.transpose()) * 0.25
    };
    let (dq, dr, dp0) = (sym(2), sym(3), sym(4));
    let build = |eps: f64| {
        LinearGaussian::new(
            lg.a() + &da * eps,
            lg.q() + &dq * eps,
            lg.h() + &dh * eps,
            lg.r() + &dr * eps,
            lg.m0() + &dm0 * eps,
            lg.p0() + &dp0 * eps,
        )
        .unwrap()
    };
    let h = 1e-5;
    let fd = (build(h).log_likelihood(&ys).unwrap() - build(-h).log_likelihood(&ys).unwrap())
        / (2.0 * h);
    let dual = |m: &DMatrix<f64>, d: &DMatrix<f64>| {
        DMatrix::from_fn(m.nrows(), m.ncols(), |i, j| {
            Dual64::new(m[(i, j)], d[(i, j)])
        })
    };
    let lgd = LinearGaussian::new(
        dual(lg.a(), &da),
        dual(lg.q(), &dq),
        dual(lg.h(), &dh),
        dual(lg.r(), &dr),
        DVector::from_fn(2, |i, _| Dual64::new(lg.m0()[i], dm0[i])),
        dual(lg.p0(), &dp0),
    )
    .unwrap();
    let (f, s) = lgd.smooth(&ys).unwrap();
    assert!((f.log_likelihood.re - lg.log_likelihood(&ys).unwrap()).abs() < 1e-12);
    assert_close(f.log_likelihood.eps, fd, 1e-7, "dual vs finite difference");
    // Smoother means carry derivatives too.
    let sm_fd = (build(h).smooth(&ys).unwrap().1.means[0][0]
        - build(-h).smooth(&ys).unwrap().1.means[0][0])
        / (2.0 * h);
    assert_close(s.means[0][0].eps, sm_fd, 1e-7, "smoother mean derivative");
    // Constant duals give zero derivatives.
    let lgc = LinearGaussian::new(
        to_dual(lg.a()),
        to_dual(lg.q()),
        to_dual(lg.h()),
        to_dual(lg.r()),
        lg.m0().map(Dual64::from),
        to_dual(lg.p0()),
    )
    .unwrap();
    assert_eq!(lgc.log_likelihood(&ys).unwrap().eps, 0.0);
}

type Params = (
    DMatrix<f64>,
    DMatrix<f64>,
    DMatrix<f64>,
    DMatrix<f64>,
    DVector<f64>,
    DMatrix<f64>,
);

fn base() -> Params {
    let i2 = DMatrix::<f64>::identity(2, 2);
    (
        i2.clone() * 0.5,
        i2.clone(),
        DMatrix::from_row_slice(1, 2, &[1.0, 1.0]),
        DMatrix::from_element(1, 1, 0.5),
        DVector::zeros(2),
        i2,
    )
}

fn dm(what: &'static str, expected: usize, got: usize) -> SmcError {
    SmcError::DimensionMismatch {
        what,
        expected,
        got,
    }
}

#[test]
fn constructor_errors_are_typed() {
    let (a, q, h, r, m0, p0) = base();
    let ok = LinearGaussian::new(
        a.clone(),
        q.clone(),
        h.clone(),
        r.clone(),
        m0.clone(),
        p0.clone(),
    );
    assert!(ok.is_ok());
    let new = |a: &DMatrix<f64>,
               q: &DMatrix<f64>,
               h: &DMatrix<f64>,
               r: &DMatrix<f64>,
               m0: &DVector<f64>,
               p0: &DMatrix<f64>| {
        LinearGaussian::new(
            a.clone(),
            q.clone(),
            h.clone(),
            r.clone(),
            m0.clone(),
            p0.clone(),
        )
        .unwrap_err()
    };
    let z = DMatrix::<f64>::zeros(0, 0);
    assert_eq!(
        new(&z, &q, &h, &r, &m0, &p0),
        dm("state dimension (rows of A), at least", 1, 0)
    );
    assert_eq!(
        new(&a, &q, &DMatrix::zeros(0, 2), &r, &m0, &p0),
        dm("observation dimension (rows of H), at least", 1, 0)
    );
    assert_eq!(
        new(&DMatrix::zeros(2, 3), &q, &h, &r, &m0, &p0),
        dm("columns of A (= rows of A)", 2, 3)
    );
    assert_eq!(
        new(&a, &DMatrix::identity(3, 3), &h, &r, &m0, &p0),
        dm("rows of Q (= state dimension)", 2, 3)
    );
    assert_eq!(
        new(&a, &DMatrix::identity(2, 3), &h, &r, &m0, &p0),
        dm("columns of Q", 2, 3)
    );
    assert_eq!(
        new(&a, &q, &DMatrix::zeros(1, 3), &r, &m0, &p0),
        dm("columns of H (= state dimension)", 2, 3)
    );
    assert_eq!(
        new(&a, &q, &h, &DMatrix::identity(2, 2), &m0, &p0),
        dm("rows of R (= observation dimension)", 1, 2)
    );
    assert_eq!(
        new(&a, &q, &h, &DMatrix::zeros(1, 2), &m0, &p0),
        dm("columns of R", 1, 2)
    );
    assert_eq!(
        new(&a, &q, &h, &r, &DVector::zeros(3), &p0),
        dm("length of m0 (= state dimension)", 2, 3)
    );
    assert_eq!(
        new(&a, &q, &h, &r, &m0, &DMatrix::identity(1, 1)),
        dm("rows of P0 (= state dimension)", 2, 1)
    );
    assert_eq!(
        new(&a, &q, &h, &r, &m0, &DMatrix::identity(2, 1)),
        dm("columns of P0", 2, 1)
    );
    // Not positive definite (symmetric but indefinite or singular).
    let indef = DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 2.0, 1.0]);
    assert_eq!(
        new(&a, &indef, &h, &r, &m0, &p0),
        SmcError::NotPositiveDefinite { what: "Q" }
    );
    assert_eq!(
        new(&a, &q, &h, &DMatrix::zeros(1, 1), &m0, &p0),
        SmcError::NotPositiveDefinite { what: "R" }
    );
    assert_eq!(
        new(&a, &q, &h, &r, &m0, &DMatrix::zeros(2, 2)),
        SmcError::NotPositiveDefinite { what: "P0" }
    );
    // Non-symmetric and non-finite inputs.
    let nonsym = DMatrix::from_row_slice(2, 2, &[2.0, 0.5, 0.0, 2.0]);
    assert!(matches!(
        new(&a, &q, &h, &r, &m0, &nonsym),
        SmcError::InvalidParameter { name: "P0", .. }
    ));
    let mut anan = a.clone();
    anan[(1, 0)] = f64::NAN;
    assert!(matches!(
        new(&anan, &q, &h, &r, &m0, &p0),
        SmcError::InvalidParameter { name: "A", .. }
    ));
    let mut hinf = h.clone();
    hinf[(0, 1)] = f64::INFINITY;
    assert!(matches!(
        new(&a, &q, &hinf, &r, &m0, &p0),
        SmcError::InvalidParameter { name: "H", .. }
    ));
    assert!(matches!(
        new(&a, &q, &h, &r, &DVector::from_element(2, f64::NAN), &p0),
        SmcError::InvalidParameter { name: "m0", .. }
    ));
    let mut qnan = q.clone();
    qnan[(0, 0)] = f64::NAN;
    assert!(matches!(
        new(&a, &qnan, &h, &r, &m0, &p0),
        SmcError::InvalidParameter { name: "Q", .. }
    ));
}

#[test]
fn observation_and_smoother_errors_are_typed() {
    let (a, q, h, r, m0, p0) = base();
    let lg = LinearGaussian::new(a, q, h, r, m0, p0).unwrap();
    assert_eq!(
        lg.filter(&[vec![0.1], vec![0.2, 0.3]]).unwrap_err(),
        dm("observation length", 1, 2)
    );
    for value in [f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            lg.filter(&[[0.1], [0.2], [value]]).unwrap_err(),
            SmcError::NonFinite {
                what: "observation",
                step: 2,
                component: 0,
                value
            }
        );
    }
    let lg2 = random_model(2, 3, 1);
    assert_eq!(
        lg2.filter(&[[0.0, f64::NAN, f64::NEG_INFINITY]])
            .unwrap_err(),
        SmcError::NonFinite {
            what: "observation",
            step: 0,
            component: 2,
            value: f64::NEG_INFINITY
        }
    );
    // The smoother rejects outputs of another model or inconsistent outputs.
    let f = lg.filter(&[[0.1], [0.2]]).unwrap();
    let other = random_model(3, 1, 2);
    assert_eq!(other.rts(&f).unwrap_err(), dm("filter mean length", 3, 2));
    let mut broken = f.clone();
    broken.predicted_covs.pop();
    assert_eq!(
        lg.rts(&broken).unwrap_err(),
        dm("predicted covariances (steps)", 2, 1)
    );
    let mut singular = f.clone();
    singular.predicted_covs[1] = vec![0.0; 4];
    assert_eq!(
        lg.rts(&singular).unwrap_err(),
        SmcError::NotPositiveDefinite {
            what: "predicted covariance"
        }
    );
}

#[test]
fn innovation_covariance_loss_of_definiteness_is_typed() {
    // R is PD, but a huge H makes H P Hᵀ + R overflow to inf on the value part.
    let big = 1e200;
    let lg = LinearGaussian::new(
        DMatrix::from_element(1, 1, 1.0),
        DMatrix::from_element(1, 1, 1.0),
        DMatrix::from_element(1, 1, big),
        DMatrix::from_element(1, 1, 1.0),
        DVector::zeros(1),
        DMatrix::from_element(1, 1, 1.0),
    )
    .unwrap();
    assert_eq!(
        lg.filter(&[[0.0]]).unwrap_err(),
        SmcError::NotPositiveDefinite {
            what: "innovation covariance"
        }
    );
}
