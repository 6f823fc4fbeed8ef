//! The Kalman filter (prediction and measurement update), the log-likelihood and the
//! Rauch–Tung–Striebel smoother of a [`LinearGaussian`].

use super::*;

impl<S: Scalar> LinearGaussian<S> {
    /// Runs the Kalman filter on observations `ys` (`T` vectors of length `dy`; NaN
    /// components are missing).
    ///
    /// Errors: [`SmcError::DimensionMismatch`] for an observation of the wrong length,
    /// [`SmcError::NonFinite`] (`what: "observation"`) for a `±inf` component, and
    /// [`SmcError::NotPositiveDefinite`] (`what: "innovation covariance"`) if `H P Hᵀ + R`
    /// loses positive definiteness numerically. `T = 0` gives an empty output with
    /// log-likelihood 0.
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i1 = DMatrix::from_element(1, 1, 1.0);
    /// let lg = LinearGaussian::new(
    ///     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
    /// )?;
    /// let ys = vec![vec![0.1], vec![0.2]];
    /// let out = lg.filter(&ys)?;
    /// assert_eq!(out.len(), 2);
    /// assert_eq!(out.predicted_covs[1], vec![1.5]); // 1·0.5·1 + 1
    /// assert!(lg.filter(&[[f64::INFINITY]]).is_err());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn filter<Y: AsRef<[f64]>>(&self, ys: &[Y]) -> Result<KalmanOutput<S>> {
        let (dx, dy) = (self.dx, self.dy);
        for (t, y) in ys.iter().enumerate() {
            check_observation(y.as_ref(), dy, t)?;
        }
        let steps = ys.len();
        let mut out = KalmanOutput {
            log_likelihood: S::zero(),
            log_likelihood_increments: Vec::with_capacity(steps),
            predicted_means: Vec::with_capacity(steps),
            predicted_covs: Vec::with_capacity(steps),
            filter_means: Vec::with_capacity(steps),
            filter_covs: Vec::with_capacity(steps),
        };
        let mut m = self.m0.clone();
        let mut p = self.p0.clone();
        let mut observed = Vec::with_capacity(dy);
        for (t, y) in ys.iter().enumerate() {
            let y = y.as_ref();
            if t > 0 {
                m = matmul(&self.a, &m, dx, dx, 1);
                p = sandwich(&self.a, &p, dx, dx);
                for (pij, qij) in p.iter_mut().zip(&self.q) {
                    *pij += *qij;
                }
            }
            out.predicted_means.push(m.clone());
            out.predicted_covs.push(p.clone());
            observed.clear();
            observed.extend((0..dy).filter(|&i| !y[i].is_nan()));
            let inc = if observed.is_empty() {
                S::zero()
            } else {
                self.update(y, &observed, &mut m, &mut p)?
            };
            out.log_likelihood += inc;
            out.log_likelihood_increments.push(inc);
            out.filter_means.push(m.clone());
            out.filter_covs.push(p.clone());
        }
        Ok(out)
    }

    /// The exact log-likelihood `log p(y_0, …, y_{T-1})` (see [`filter`](Self::filter)).
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i1 = DMatrix::from_element(1, 1, 1.0);
    /// let lg = LinearGaussian::new(
    ///     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
    /// )?;
    /// // y_0 ~ N(0, 2)
    /// let ll = lg.log_likelihood(&[[0.0]])?;
    /// assert!((ll + 0.5 * (4.0 * std::f64::consts::PI).ln()).abs() < 1e-14);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn log_likelihood<Y: AsRef<[f64]>>(&self, ys: &[Y]) -> Result<S> {
        Ok(self.filter(ys)?.log_likelihood)
    }

    /// One measurement update with the observed components `obs` of `y` (by [`condition`]);
    /// returns the log-likelihood increment.
    fn update(&self, y: &[f64], obs: &[usize], m: &mut [S], p: &mut Vec<S>) -> Result<S> {
        let dx = self.dx;
        let k = obs.len();
        // H_o (k × dx), R_o (k × k), innovation v = y_o − H_o m.
        let (ho, ro) = self.observed_blocks(obs);
        let hm = matmul(&ho, m, k, dx, 1);
        let v: Vec<S> = obs
            .iter()
            .zip(&hm)
            .map(|(&i, &hmi)| S::cst(y[i]) - hmi)
            .collect();
        let c = condition(p, &ho, &ro, dx, k)?;
        let mut u = v.clone();
        solve_lower(&c.chol_innovation, k, &mut u);
        let quad = u.iter().fold(S::zero(), |acc, &x| acc + x * x);
        let inc = (quad + log_det_from_cholesky(&c.chol_innovation, k) + LN_2PI * k as f64) * -0.5;
        c.update_mean(&v, m);
        *p = c.cov;
        Ok(inc)
    }

    /// The Rauch–Tung–Striebel smoother on a filter output of this model:
    /// `G_t = P_{t|t} Aᵀ P_{t+1|t}⁻¹` (by Cholesky solves),
    /// `m_{t|T} = m_{t|t} + G_t (m_{t+1|T} − m_{t+1|t})`,
    /// `P_{t|T} = P_{t|t} + G_t (P_{t+1|T} − P_{t+1|t}) G_tᵀ` (symmetrised).
    ///
    /// Errors: [`SmcError::DimensionMismatch`] if `filtered` does not come from a model of
    /// this state dimension; [`SmcError::NotPositiveDefinite`]
    /// (`what: "predicted covariance"`) if some `P_{t+1|t}` is numerically singular.
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i1 = DMatrix::from_element(1, 1, 1.0);
    /// let lg = LinearGaussian::new(
    ///     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
    /// )?;
    /// let f = lg.filter(&[[1.0], [1.0]])?;
    /// let s = lg.rts(&f)?;
    /// assert_eq!(s.means[1], f.filter_means[1]); // the last step is the filter's
    /// assert!(s.covs[0][0] < f.filter_covs[0][0]); // more data, less uncertainty
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn rts(&self, filtered: &KalmanOutput<S>) -> Result<RtsOutput<S>> {
        let dx = self.dx;
        let steps = filtered.filter_means.len();
        for (what, len) in [
            ("filter covariances (steps)", filtered.filter_covs.len()),
            ("predicted means (steps)", filtered.predicted_means.len()),
            (
                "predicted covariances (steps)",
                filtered.predicted_covs.len(),
            ),
        ] {
            if len != steps {
                return Err(SmcError::DimensionMismatch {
                    what,
                    expected: steps,
                    got: len,
                });
            }
        }
        for t in 0..steps {
            for (what, len, expected) in [
                ("filter mean length", filtered.filter_means[t].len(), dx),
                (
                    "filter covariance size",
                    filtered.filter_covs[t].len(),
                    dx * dx,
                ),
                (
                    "predicted mean length",
                    filtered.predicted_means[t].len(),
                    dx,
                ),
                (
                    "predicted covariance size",
                    filtered.predicted_covs[t].len(),
                    dx * dx,
                ),
            ] {
                if len != expected {
                    return Err(SmcError::DimensionMismatch {
                        what,
                        expected,
                        got: len,
                    });
                }
            }
        }
        let mut means = filtered.filter_means.clone();
        let mut covs = filtered.filter_covs.clone();
        for t in (0..steps.saturating_sub(1)).rev() {
            let pp = &filtered.predicted_covs[t + 1];
            let lp = cholesky_named(pp, dx, "predicted covariance")?;
            // Gᵀ = P_{t+1|t}⁻¹ A P_{t|t}.
            let mut gt = matmul(&self.a, &filtered.filter_covs[t], dx, dx, dx);
            cholesky_solve_mat(&lp, dx, &mut gt, dx);
            let mut g = vec![S::zero(); dx * dx];
            for i in 0..dx {
                for j in 0..dx {
                    g[i * dx + j] = gt[j * dx + i];
                }
            }
            let dm: Vec<S> = means[t + 1]
                .iter()
                .zip(&filtered.predicted_means[t + 1])
                .map(|(&a, &b)| a - b)
                .collect();
            let gdm = matmul(&g, &dm, dx, dx, 1);
            for (mi, x) in means[t].iter_mut().zip(&gdm) {
                *mi += *x;
            }
            let mut dp: Vec<S> = covs[t + 1].iter().zip(pp).map(|(&a, &b)| a - b).collect();
            symmetrise(&mut dp, dx);
            let corr = sandwich(&g, &dp, dx, dx);
            for (pij, x) in covs[t].iter_mut().zip(&corr) {
                *pij += *x;
            }
            symmetrise(&mut covs[t], dx);
        }
        Ok(RtsOutput { means, covs })
    }

    /// Filter and smoother in one call.
    ///
    /// ```
    /// use diffsmc::kalman::LinearGaussian;
    /// use nalgebra::{DMatrix, DVector};
    /// let i1 = DMatrix::from_element(1, 1, 1.0);
    /// let lg = LinearGaussian::new(
    ///     i1.clone(), i1.clone(), i1.clone(), i1.clone(), DVector::zeros(1), i1,
    /// )?;
    /// let (f, s) = lg.smooth(&[[1.0], [f64::NAN], [1.0]])?;
    /// assert_eq!((f.len(), s.means.len()), (3, 3));
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn smooth<Y: AsRef<[f64]>>(&self, ys: &[Y]) -> Result<(KalmanOutput<S>, RtsOutput<S>)> {
        let f = self.filter(ys)?;
        let s = self.rts(&f)?;
        Ok((f, s))
    }
}
