//! The Sinkhorn solver of the OT resampler (log-domain iterations in the scalar `S`, stopping
//! on the value part) and the cost scale.

use super::*;

/// ε-scaling runs only when the cloud's mean squared distance (in cost units) exceeds this
/// many times ε. Measured (example `ot_annealing`, d = 8, N = 2048, tolerance 1e-3): at a
/// ratio of about 10 (ε = 0.1 relative to the mean) annealing from the mean took 9–11
/// iterations against 7 plain, at about 50 it was even (35–38 against 39), at about 400
/// (ε = 0.3 absolute) it saved a quarter (147 against 194).
pub(super) const ANNEAL_MIN_RATIO: f64 = 50.0;

/// The state of a solved Sinkhorn problem.
#[derive(Debug)]
pub(super) struct Sinkhorn<S> {
    /// All points, scaled (`y = (X − X̄)/sqrt(s ε)`).
    pub(super) ya: Soa<S>,
    /// The points with positive weight, scaled.
    pub(super) yb: Soa<S>,
    /// The points with positive weight, original coordinates.
    pub(super) xb: Soa<S>,
    /// Indices of the points with positive weight.
    pub(super) support: Vec<usize>,
    /// Row potentials (`f/ε`), all points.
    pub(super) u: Vec<S>,
    /// Column potentials (`g/ε`), support points.
    pub(super) v: Vec<S>,
    /// `h = v − |y_b|²`, padded with −inf, used by the last row pass.
    pub(super) hb: Vec<S>,
    /// Kernel outputs of the last row pass (`LSE_q (h_q + 2 y_p · y_q)`).
    pub(super) rows: Vec<S>,
    pub(super) scale: S,
    pub(super) iterations: usize,
    pub(super) converged: bool,
    pub(super) error: f64,
}

impl<S: Scalar> Sinkhorn<S> {
    /// Solves on the best instruction set of this CPU.
    pub(super) fn solve(
        config: &OtConfig,
        particles: &Particles<S>,
        log_weights: &[S],
        par: bool,
    ) -> Result<Self> {
        Self::solve_isa(config, particles, log_weights, par, Isa::detect())
    }

    /// Solves with the `f64` passes on `isa` (which must be available on this CPU).
    pub(super) fn solve_isa(
        config: &OtConfig,
        particles: &Particles<S>,
        log_weights: &[S],
        par: bool,
        isa: Isa,
    ) -> Result<Self> {
        let n = particles.len();
        let d = particles.dim();
        if n == 0 {
            return Err(SmcError::invalid("particles", 0, "at least one particle"));
        }
        if log_weights.len() != n {
            return Err(SmcError::DimensionMismatch {
                what: "log-weights vs particles",
                expected: n,
                got: log_weights.len(),
            });
        }
        let nf = n as f64;
        // Column marginal b = w (renormalised defensively; a no-op for normalised input).
        let lse_w = log_sum_exp(log_weights);
        if !lse_w.re().is_finite() {
            return Err(SmcError::invalid(
                "log_weights",
                lse_w.re(),
                "normalised log-weights (at least one finite)",
            ));
        }
        let support: Vec<usize> = (0..n)
            .filter(|&j| log_weights[j].re() > f64::NEG_INFINITY)
            .collect();
        let log_b: Vec<S> = support.iter().map(|&j| log_weights[j] - lse_w).collect();

        // Centre and scale.
        let mut mean = vec![S::zero(); d];
        for x in particles.iter() {
            for (m, &xk) in mean.iter_mut().zip(x) {
                *m += xk;
            }
        }
        for m in &mut mean {
            *m /= nf;
        }
        let scale = match config.scale {
            CostScale::None => S::one(),
            CostScale::Mean => {
                let mut s = S::zero();
                for x in particles.iter() {
                    for (&xk, &m) in x.iter().zip(&mean) {
                        let z = xk - m;
                        s += z * z;
                    }
                }
                s * (2.0 / nf)
            }
            CostScale::Max => max_sq_distance(particles, par),
        };
        let scale = if scale.re() > 0.0 && scale.re().is_finite() {
            scale
        } else {
            // All particles equal (or d = 0): the cost vanishes, any scale will do.
            S::one()
        };
        // ε-scaling: the first `stages` iterations use ε_k = ε ρ^{−(stages − k)}, k = 0, 1, …,
        // from about the mean pairwise squared distance of the cloud in cost units (cost/ε of
        // order one) down to ε, each warm-starting the next; then ε. The number of stages is
        // an integer read off the value part, so the schedule is a constant of the map (the
        // derivatives are those of the iterations run, as without annealing). Below
        // `ANNEAL_MIN_RATIO` plain Sinkhorn converges in a few iterations and the stages would
        // only add to them.
        let target = config.epsilon;
        let stages = match config.anneal {
            Some(rho) => {
                let mut m2 = 0.0;
                for x in particles.iter() {
                    for (&xk, &m) in x.iter().zip(&mean) {
                        let z = xk.re() - m.re();
                        m2 += z * z;
                    }
                }
                let eps0 = 2.0 * m2 / nf / scale.re();
                if eps0 > ANNEAL_MIN_RATIO * target && eps0.is_finite() {
                    ((eps0 / target).ln() / (1.0 / rho).ln()).ceil().min(64.0) as i32
                } else {
                    0
                }
            }
            None => 0,
        };
        let eps_at = |it: usize| match config.anneal {
            Some(rho) if (it as i64 - 1) < stages as i64 => {
                target * rho.powi(-(stages - (it as i32 - 1)))
            }
            _ => target,
        };
        let mut eps = eps_at(1);
        let c = (scale * eps).sqrt().recip();
        let mut ya = Soa::from_fn(n, d, |i, k| (particles.particle(i)[k] - mean[k]) * c);
        let mut yb = Soa::from_fn(support.len(), d, |j, k| ya.get(k, support[j]));
        let xb = Soa::from_fn(support.len(), d, |j, k| particles.particle(support[j])[k]);
        let mut qa = ya.sq_norms();
        let mut qb = yb.sq_norms();

        let log_a = -nf.ln();
        let neg_inf = S::cst(f64::NEG_INFINITY);
        let mut ha = vec![neg_inf; ya.stride];
        let mut hb = vec![neg_inf; yb.stride];
        let mut rows = Vec::with_capacity(n);
        let mut cols = Vec::with_capacity(support.len());

        // Start from f = 0 (any constant would do: the first column update absorbs it).
        let mut u = vec![S::zero(); n];
        let mut v = vec![S::zero(); support.len()];

        // Column marginal targets b_j on the value part, for the convergence test.
        let b_re: Vec<f64> = log_b.iter().map(|l| l.re().exp()).collect();

        // One iteration is a column update (columns exact) then a row update (rows exact).
        // The convergence test is OTT-JAX's: the L1 error of the column marginal of the plan
        // whose rows are exact, Σ_j |Σ_i P_ij − b_j|. It falls out of the next column pass
        // (Σ_i P_ij = exp(v_j − |y_j|² + cols_j)), so it is free and checked at every
        // iteration; a converged solve ends on that pass and uses the plan it measured.
        let mut iterations = 0;
        let mut converged = false;
        let mut error = f64::INFINITY;
        // Whether (u, v) is a complete iterate at the target ε (its error counts).
        let mut at_target = false;
        // Over-relaxation of the column update, and the error before the last one.
        let mut omega = config.relax;
        let mut relaxed = false;
        let mut last_error = f64::INFINITY;
        loop {
            let at_cap = iterations == config.max_iterations;
            if !at_cap {
                let next = eps_at(iterations + 1);
                if next != eps {
                    // Same potentials f, g in cost units: u = f/ε and the scaled points change.
                    let r = eps / next;
                    let rs = r.sqrt();
                    ya.scale_by(rs);
                    yb.scale_by(rs);
                    for q in qa.iter_mut().chain(qb.iter_mut()) {
                        *q *= r;
                    }
                    for ui in &mut u {
                        *ui *= r;
                    }
                    eps = next;
                    at_target = false;
                }
            }
            // Column pass: the column marginal of (u, v), then columns exact.
            for (h, (&ui, &q)) in ha.iter_mut().zip(u.iter().zip(&qa)) {
                *h = ui - q;
            }
            lse_pass_isa(isa, &yb, &ya, &ha, &mut cols, par);
            if iterations > 0 && (at_target || at_cap) {
                error = 0.0;
                for j in 0..v.len() {
                    let l = v[j].re() - qb[j].re() + cols[j].re();
                    error += (l.exp() - b_re[j]).abs();
                }
                // Only a plan at the target ε counts.
                if at_target && error <= config.tolerance {
                    converged = true;
                    break;
                }
                // Safeguard of the over-relaxation: plain Sinkhorn from the first relaxed
                // iterate whose error grew (a decision on the value part, like the stop).
                if at_target && relaxed && error > last_error {
                    omega = 1.0;
                }
                last_error = error;
            }
            if at_cap {
                break;
            }
            relaxed = at_target && omega != 1.0;
            if relaxed {
                // Over-relaxed column update (same units: no ε change since (u, v)).
                for (j, vj) in v.iter_mut().enumerate() {
                    let full = log_b[j] - (cols[j] - qb[j]);
                    *vj += (full - *vj) * omega;
                }
            } else {
                for (j, vj) in v.iter_mut().enumerate() {
                    *vj = log_b[j] - (cols[j] - qb[j]);
                }
            }
            // Row pass: rows exact.
            for (h, (&vj, &q)) in hb.iter_mut().zip(v.iter().zip(&qb)) {
                *h = vj - q;
            }
            lse_pass_isa(isa, &ya, &yb, &hb, &mut rows, par);
            for i in 0..n {
                u[i] = S::cst(log_a) - (rows[i] - qa[i]);
            }
            iterations += 1;
            at_target = eps == target;
        }
        if !error.is_finite() {
            converged = false;
        }
        Ok(Sinkhorn {
            ya,
            yb,
            xb,
            support,
            u,
            v,
            hb,
            rows,
            scale,
            iterations,
            converged,
            error,
        })
    }

    /// `X*_i = N Σ_j P_ij X_j` for the final plan (rows exact: a convex combination).
    pub(super) fn transport(&self, out: &mut Particles<S>, par: bool) {
        self.transport_isa(out, par, Isa::detect());
    }

    /// [`Sinkhorn::transport`] with the `f64` pass on `isa` (which must be available).
    pub(super) fn transport_isa(&self, out: &mut Particles<S>, par: bool, isa: Isa) {
        let d = self.ya.d;
        let par = par && self.ya.n * self.yb.n >= PAR_MIN_ENTRIES;
        if let (Some(t), Some(s), Some(xs), Some(h), Some(rows)) = (
            (&self.ya as &dyn Any).downcast_ref::<Soa<f64>>(),
            (&self.yb as &dyn Any).downcast_ref::<Soa<f64>>(),
            (&self.xb as &dyn Any).downcast_ref::<Soa<f64>>(),
            (&self.hb as &dyn Any).downcast_ref::<Vec<f64>>(),
            (&self.rows as &dyn Any).downcast_ref::<Vec<f64>>(),
        ) && let Some(o) = (out as &mut dyn Any).downcast_mut::<Particles<f64>>()
        {
            crate::par::for_each_chunk_mut::<f64, f64>(
                o.as_mut_slice(),
                ROWS_PER_TASK * d,
                par,
                |c, chunk| transport_rows_f64(isa, t, c * ROWS_PER_TASK, s, xs, h, rows, chunk),
            );
            return;
        }
        for_rows::<S, _>(out.as_mut_slice(), d, par, |p, row| {
            transport_row_generic(&self.ya, p, &self.yb, &self.xb, &self.hb, self.rows[p], row);
        });
    }
}

/// The largest pairwise squared distance, chosen on the value part and recomputed in `S`.
pub(super) fn max_sq_distance<S: Scalar>(particles: &Particles<S>, par: bool) -> S {
    let n = particles.len();
    let d = particles.dim();
    let vals: Vec<f64> = particles.as_slice().iter().map(|v| v.re()).collect();
    let mut best = vec![(0.0_f64, 0usize); n];
    let par = par && n * n >= PAR_MIN_ENTRIES;
    for_rows::<f64, _>(&mut best, 1, par, |i, r| {
        let xi = &vals[i * d..(i + 1) * d];
        let mut b = (0.0, i);
        for j in 0..n {
            let xj = &vals[j * d..(j + 1) * d];
            let mut s = 0.0;
            for k in 0..d {
                let z = xi[k] - xj[k];
                s += z * z;
            }
            if s > b.0 {
                b = (s, j);
            }
        }
        r[0] = b;
    });
    let (mut bi, mut bj, mut bv) = (0, 0, 0.0);
    for (i, &(v, j)) in best.iter().enumerate() {
        if v > bv {
            (bi, bj, bv) = (i, j, v);
        }
    }
    let mut s = S::zero();
    for (&a, &b) in particles.particle(bi).iter().zip(particles.particle(bj)) {
        let z = a - b;
        s += z * z;
    }
    s
}
