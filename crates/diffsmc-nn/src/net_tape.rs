//! A [`Net`] at one θ, evaluated on any scalar; on the reverse-mode tape every evaluation is
//! **one** [`diffsmc::tape::custom`] operation.
//!
//! Recorded scalar by scalar, one evaluation of the pendulum decoder (≈ 4·10⁵ multiply-adds)
//! would put millions of nodes on the tape. As one custom operation it records only its outputs
//! (or a single node for [`NetTheta::gaussian_loglik`], which fuses a Gaussian likelihood head
//! into the op); the backward pass back-propagates through the `f64` activations kept by the
//! forward pass, adding straight into the adjoints of θ (dense weights row by row, the
//! convolution kernels through a per-thread accumulator) and of the input.

use std::cell::RefCell;
use std::sync::Arc;

use diffsmc::tape::{self, AdjointsMut, CustomOp, Rev};
use diffsmc::{Result, Scalar, SmcError};

use crate::net::{ACTS, GradSink, Net, Work};
use crate::net_batch::BatchWork;

thread_local! {
    static WORK: RefCell<(Work, Vec<f64>, Vec<f64>)> = RefCell::new(Default::default());
    static BATCH_WORK: RefCell<(BatchWork, Vec<f64>, Vec<f64>)> = RefCell::new(Default::default());
    /// Buffers of dropped [`BatchNetOp`]s (their activation traces and head gradients), reused
    /// by the next batches on this thread: a batch's trace is megabytes (the pendulum
    /// decoder's is 14 335 values per input), which the allocator would otherwise map and
    /// unmap, page-faulting, at every step.
    static BUF_POOL: RefCell<Vec<Vec<f64>>> = const { RefCell::new(Vec::new()) };
}

/// At most this many buffers are kept in [`BUF_POOL`] per thread.
const BUF_POOL_MAX: usize = 4;

/// An empty buffer, from the pool when it has one.
fn take_buf() -> Vec<f64> {
    BUF_POOL
        .try_with(|p| p.try_borrow_mut().ok().and_then(|mut p| p.pop()))
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Returns a buffer to the pool (dropped when the pool is full or the thread is exiting).
fn give_buf(mut v: Vec<f64>) {
    v.clear();
    let _ = BUF_POOL.try_with(|p| {
        if let Ok(mut p) = p.try_borrow_mut()
            && p.len() < BUF_POOL_MAX
        {
            p.push(v);
        }
    });
}

/// `ln √(2π)`.
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

#[derive(Debug)]
enum Mode<S> {
    /// `f64`: the values are θ.
    Real,
    /// The tape scalar: θ as tape variables.
    Tape(Arc<Vec<Rev>>),
    /// Any other scalar: the generic layers.
    Generic(Vec<S>),
}

/// A network and a parameter vector θ of scalar type `S`, prepared once (per model build) for
/// many evaluations: [`NetTheta::eval`] and [`NetTheta::gaussian_loglik`].
///
/// ```
/// use std::sync::Arc;
/// use diffsmc::tape::{Rev, backward, with_tape};
/// use diffsmc_nn::{Init, Net, NetTheta};
///
/// let net = Arc::new(Net::builder(2).dense(8, true, Init::SirenFirst)?.sine(8.0)?
///     .dense(1, false, Init::Glorot)?.build(3)?);
/// let theta0 = net.to_flat();
/// // f64
/// let p = NetTheta::new(&net, &theta0)?;
/// let mut y = [0.0];
/// p.eval(&[0.3, -0.2], &mut y);
/// // Reverse mode: one custom op; ∂y/∂θ by one backward sweep.
/// let g = with_tape(|| {
///     let th: Vec<Rev> = theta0.iter().map(|&v| Rev::var(v)).collect();
///     let p = NetTheta::new(&net, &th).unwrap();
///     let mut yr = [Rev::constant(0.0)];
///     p.eval(&[Rev::constant(0.3), Rev::constant(-0.2)], &mut yr);
///     assert_eq!(yr[0].value(), y[0]);
///     let adj = backward(&[(yr[0], 1.0)]);
///     th.iter().map(|&t| adj.of(t)).collect::<Vec<f64>>()
/// });
/// assert_eq!(g.len(), net.n_params());
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug)]
pub struct NetTheta<S> {
    net: Arc<Net>,
    values: Arc<Vec<f64>>,
    mode: Mode<S>,
}

impl<S: Scalar> NetTheta<S> {
    /// Prepares `theta` (length [`Net::n_params`]) for `net`.
    pub fn new(net: &Arc<Net>, theta: &[S]) -> Result<Self> {
        net.check_theta(theta.len())?;
        let values: Vec<f64> = theta.iter().map(|t| t.re()).collect();
        let mode = if tape::as_rev(&S::zero()).is_some() {
            Mode::Tape(Arc::new(
                theta
                    .iter()
                    .map(|t| tape::as_rev(t).unwrap_or_else(|| Rev::constant(t.re())))
                    .collect(),
            ))
        } else if S::LANES == Some(0) {
            Mode::Real
        } else {
            Mode::Generic(theta.to_vec())
        };
        Ok(NetTheta {
            net: Arc::clone(net),
            values: Arc::new(values),
            mode,
        })
    }

    /// The network.
    pub fn net(&self) -> &Net {
        &self.net
    }

    /// θ's values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// `out = Net_θ(x)`. Panics if `x` or `out` have the wrong length.
    pub fn eval(&self, x: &[S], out: &mut [S]) {
        let net = &*self.net;
        assert_eq!(x.len(), net.n_inputs(), "NetTheta::eval: input width");
        assert_eq!(out.len(), net.n_outputs(), "NetTheta::eval: output width");
        match &self.mode {
            Mode::Real => ACTS.with_borrow_mut(|acts| {
                WORK.with_borrow_mut(|(_, xv, _)| {
                    xv.clear();
                    xv.extend(x.iter().map(|v| v.re()));
                    net.forward_f64(&self.values, xv, acts);
                });
                let n = acts.len();
                for (o, &v) in out.iter_mut().zip(&acts[n - net.n_outputs()..]) {
                    *o = S::cst(v);
                }
            }),
            Mode::Tape(th) => {
                let (values, op) = self.record(th, x, None);
                let mut r = vec![Rev::constant(0.0); values.len()];
                tape::custom(&values, Box::new(op), &mut r);
                for (o, ri) in out.iter_mut().zip(r) {
                    *o = tape::from_rev(ri).expect("S is Rev in tape mode");
                }
            }
            Mode::Generic(theta) => net.forward_generic(theta, x, out),
        }
    }

    /// `scale · (1/n) Σ_i ln N(target_i; μ_i, σ²)` with `μ = Net_θ(x)` and `n` the output
    /// width: a Gaussian likelihood averaged over the outputs (e.g. pixels) and scaled. On
    /// the tape the network **and** the head are one custom operation with a single output.
    ///
    /// Errors if `target` has the wrong length or `sigma` is not finite and > 0.
    pub fn gaussian_loglik(&self, x: &[S], target: &[f64], sigma: f64, scale: f64) -> Result<S> {
        let net = &*self.net;
        let n = net.n_outputs();
        if target.len() != n {
            return Err(SmcError::DimensionMismatch {
                what: "likelihood target",
                expected: n,
                got: target.len(),
            });
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(SmcError::invalid(
                "likelihood sigma",
                sigma,
                "a finite number > 0",
            ));
        }
        assert_eq!(x.len(), net.n_inputs(), "NetTheta::gaussian_loglik: input");
        let c = scale / n as f64;
        let konst = -(sigma.ln() + LN_SQRT_2PI) * scale;
        let inv2 = 0.5 / (sigma * sigma);
        Ok(match &self.mode {
            Mode::Real => ACTS.with_borrow_mut(|acts| {
                WORK.with_borrow_mut(|(_, xv, _)| {
                    xv.clear();
                    xv.extend(x.iter().map(|v| v.re()));
                    net.forward_f64(&self.values, xv, acts);
                });
                let mu = &acts[acts.len() - n..];
                let ss: f64 = mu.iter().zip(target).map(|(m, y)| (y - m) * (y - m)).sum();
                S::cst(konst - c * inv2 * ss)
            }),
            Mode::Tape(th) => {
                let head = Head {
                    target,
                    c,
                    inv2,
                    konst,
                };
                let (values, op) = self.record(th, x, Some(head));
                let mut r = [Rev::constant(0.0)];
                tape::custom(&values, Box::new(op), &mut r);
                tape::from_rev(r[0]).expect("S is Rev in tape mode")
            }
            Mode::Generic(theta) => {
                let mut mu = vec![S::zero(); n];
                net.forward_generic(theta, x, &mut mu);
                let mut ss = S::zero();
                for (m, &y) in mu.iter().zip(target) {
                    let r = *m - y;
                    ss += r * r;
                }
                ss * (-c * inv2) + konst
            }
        })
    }

    /// The batch size of `x` (`m` inputs one after another) and a check of `out`'s length
    /// (`m · per_out`).
    fn batch_len(&self, x: usize, out: usize, per_out: usize) -> Result<usize> {
        let n_in = self.net.n_inputs();
        if n_in == 0 || !x.is_multiple_of(n_in) {
            return Err(SmcError::invalid(
                "batched network input length",
                format!("{x} values for an input width of {n_in}"),
                "a whole number of inputs (a multiple of the input width)",
            ));
        }
        let m = x / n_in;
        if out != m * per_out {
            return Err(SmcError::DimensionMismatch {
                what: "batched network output",
                expected: m * per_out,
                got: out,
            });
        }
        Ok(m)
    }

    /// `out_j = Net_θ(x_j)` for the `m` inputs of `x` (one after another, `m ·`
    /// [`Net::n_inputs`] values) into `out` (`m ·` [`Net::n_outputs`] values).
    ///
    /// Every output has the same bits as [`NetTheta::eval`] on its input alone, on every
    /// scalar. On `f64` (and on the tape's forward pass) the layers run GEMM-style: each
    /// weight row serves all `m` inputs. On [`diffsmc::tape::Rev`] the batch is **one**
    /// custom tape operation (`m · n_outputs` output nodes) whose backward pass accumulates
    /// the weight adjoints over the batch before adding them to θ's adjoints once. Other
    /// scalars evaluate the inputs one at a time.
    ///
    /// Errors if `x`'s length is not a multiple of the input width or `out`'s length is not
    /// `m ·` [`Net::n_outputs`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use diffsmc_nn::{Init, Net, NetTheta};
    ///
    /// let net = Arc::new(Net::builder(2).dense(8, true, Init::SirenFirst)?.sine(8.0)?
    ///     .dense(1, false, Init::Glorot)?.build(3)?);
    /// let p = NetTheta::new(&net, &net.to_flat())?;
    /// let xs = [0.3, -0.2, 1.0, 0.5, -0.7, 0.1];
    /// let mut ys = [0.0; 3];
    /// p.eval_batch(&xs, &mut ys)?;
    /// for j in 0..3 {
    ///     let mut y = [0.0];
    ///     p.eval(&xs[2 * j..2 * j + 2], &mut y);
    ///     assert_eq!(y[0].to_bits(), ys[j].to_bits());
    /// }
    /// assert!(p.eval_batch(&xs[..5], &mut ys).is_err());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn eval_batch(&self, x: &[S], out: &mut [S]) -> Result<()> {
        let net = &*self.net;
        let (n_in, n_out) = (net.n_inputs(), net.n_outputs());
        let m = self.batch_len(x.len(), out.len(), n_out)?;
        if m == 0 {
            return Ok(());
        }
        match &self.mode {
            Mode::Real => ACTS.with_borrow_mut(|acts| {
                BATCH_WORK.with_borrow_mut(|(_, xv, _)| {
                    xv.clear();
                    xv.extend(x.iter().map(|v| v.re()));
                    net.forward_f64_batch(&self.values, m, xv, acts);
                });
                let n = acts.len();
                for (o, &v) in out.iter_mut().zip(&acts[n - m * n_out..]) {
                    *o = S::cst(v);
                }
            }),
            Mode::Tape(th) => {
                let (values, op) = self.record_batch(th, m, x, None);
                let mut r = vec![Rev::constant(0.0); values.len()];
                tape::custom(&values, Box::new(op), &mut r);
                for (o, ri) in out.iter_mut().zip(r) {
                    *o = tape::from_rev(ri).expect("S is Rev in tape mode");
                }
            }
            Mode::Generic(theta) => {
                for (xj, oj) in x.chunks_exact(n_in).zip(out.chunks_exact_mut(n_out)) {
                    net.forward_generic(theta, xj, oj);
                }
            }
        }
        Ok(())
    }

    /// [`NetTheta::gaussian_loglik`] for the `m` inputs of `x` (one after another) against one
    /// shared `target`: `out_j = scale · (1/n) Σ_i ln N(target_i; Net_θ(x_j)_i, σ²)`, each with
    /// the same bits as [`NetTheta::gaussian_loglik`] on `x_j` alone. On the tape the batch's
    /// networks and heads are **one** custom operation with `m` outputs.
    ///
    /// Errors as [`NetTheta::gaussian_loglik`], and if `x`'s length is not a multiple of the
    /// input width or `out` does not have one slot per input.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use diffsmc_nn::{Init, Net, NetTheta};
    ///
    /// let net = Arc::new(Net::builder(1).dense(4, true, Init::LecunNormal)?.relu()
    ///     .dense(3, true, Init::LecunNormal)?.build(0)?);
    /// let p = NetTheta::new(&net, &net.to_flat())?;
    /// let (xs, target) = ([0.5, -1.0], [0.1, 0.2, 0.3]);
    /// let mut ll = [0.0; 2];
    /// p.gaussian_loglik_batch(&xs, &target, 0.5, 1.0, &mut ll)?;
    /// assert_eq!(ll[1].to_bits(), p.gaussian_loglik(&xs[1..], &target, 0.5, 1.0)?.to_bits());
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    pub fn gaussian_loglik_batch(
        &self,
        x: &[S],
        target: &[f64],
        sigma: f64,
        scale: f64,
        out: &mut [S],
    ) -> Result<()> {
        let net = &*self.net;
        let (n_in, n) = (net.n_inputs(), net.n_outputs());
        if target.len() != n {
            return Err(SmcError::DimensionMismatch {
                what: "likelihood target",
                expected: n,
                got: target.len(),
            });
        }
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(SmcError::invalid(
                "likelihood sigma",
                sigma,
                "a finite number > 0",
            ));
        }
        let m = self.batch_len(x.len(), out.len(), 1)?;
        if m == 0 {
            return Ok(());
        }
        let c = scale / n as f64;
        let konst = -(sigma.ln() + LN_SQRT_2PI) * scale;
        let inv2 = 0.5 / (sigma * sigma);
        match &self.mode {
            Mode::Real => ACTS.with_borrow_mut(|acts| {
                BATCH_WORK.with_borrow_mut(|(_, xv, _)| {
                    xv.clear();
                    xv.extend(x.iter().map(|v| v.re()));
                    net.forward_f64_batch(&self.values, m, xv, acts);
                });
                let mus = &acts[acts.len() - m * n..];
                for (o, mu) in out.iter_mut().zip(mus.chunks_exact(n)) {
                    let ss: f64 = mu.iter().zip(target).map(|(m, y)| (y - m) * (y - m)).sum();
                    *o = S::cst(konst - c * inv2 * ss);
                }
            }),
            Mode::Tape(th) => {
                let head = Head {
                    target,
                    c,
                    inv2,
                    konst,
                };
                let (values, op) = self.record_batch(th, m, x, Some(head));
                let mut r = vec![Rev::constant(0.0); m];
                tape::custom(&values, Box::new(op), &mut r);
                for (o, ri) in out.iter_mut().zip(r) {
                    *o = tape::from_rev(ri).expect("S is Rev in tape mode");
                }
            }
            Mode::Generic(_) => {
                for (xj, o) in x.chunks_exact(n_in).zip(out.iter_mut()) {
                    *o = self.gaussian_loglik(xj, target, sigma, scale)?;
                }
            }
        }
        Ok(())
    }

    /// [`NetTheta::record`] for a batch of `m` inputs: one op for all of them.
    fn record_batch(
        &self,
        th: &Arc<Vec<Rev>>,
        m: usize,
        x: &[S],
        head: Option<Head<'_>>,
    ) -> (Vec<f64>, BatchNetOp) {
        let net = &*self.net;
        let xr: Vec<Rev> = x
            .iter()
            .map(|v| tape::as_rev(v).unwrap_or_else(|| Rev::constant(v.re())))
            .collect();
        let xv: Vec<f64> = x.iter().map(|v| v.re()).collect();
        let mut acts = take_buf();
        net.forward_f64_batch(&self.values, m, &xv, &mut acts);
        let n = net.n_outputs();
        let mus = &acts[acts.len() - m * n..];
        let (values, head_grad) = match head {
            None => (mus.to_vec(), None),
            Some(h) => {
                let mut values = Vec::with_capacity(m);
                let mut g = take_buf();
                g.reserve(m * n);
                for mu in mus.chunks_exact(n) {
                    let mut ss = 0.0;
                    g.extend(mu.iter().zip(h.target).map(|(m, y)| {
                        ss += (y - m) * (y - m);
                        2.0 * h.c * h.inv2 * (y - m)
                    }));
                    values.push(h.konst - h.c * h.inv2 * ss);
                }
                (values, Some(g))
            }
        };
        let op = BatchNetOp {
            net: Arc::clone(&self.net),
            values: Arc::clone(&self.values),
            theta: Arc::clone(th),
            m,
            x: xr,
            acts,
            head_grad,
        };
        (values, op)
    }

    /// Runs the `f64` forward pass and builds the custom op (with the head's output gradient
    /// when there is a head).
    fn record(&self, th: &Arc<Vec<Rev>>, x: &[S], head: Option<Head<'_>>) -> (Vec<f64>, NetOp) {
        let net = &*self.net;
        let xr: Vec<Rev> = x
            .iter()
            .map(|v| tape::as_rev(v).unwrap_or_else(|| Rev::constant(v.re())))
            .collect();
        let xv: Vec<f64> = x.iter().map(|v| v.re()).collect();
        let mut acts = Vec::new();
        net.forward_f64(&self.values, &xv, &mut acts);
        let n = net.n_outputs();
        let mu = &acts[acts.len() - n..];
        let (values, head_grad) = match head {
            None => (mu.to_vec(), None),
            Some(h) => {
                let mut ss = 0.0;
                let g: Vec<f64> = mu
                    .iter()
                    .zip(h.target)
                    .map(|(m, y)| {
                        ss += (y - m) * (y - m);
                        2.0 * h.c * h.inv2 * (y - m)
                    })
                    .collect();
                (vec![h.konst - h.c * h.inv2 * ss], Some(g))
            }
        };
        let op = NetOp {
            net: Arc::clone(&self.net),
            values: Arc::clone(&self.values),
            theta: Arc::clone(th),
            x: xr,
            acts,
            head_grad,
        };
        (values, op)
    }
}

#[derive(Debug, Clone, Copy)]
struct Head<'a> {
    target: &'a [f64],
    c: f64,
    inv2: f64,
    konst: f64,
}

/// One recorded evaluation.
struct NetOp {
    net: Arc<Net>,
    values: Arc<Vec<f64>>,
    theta: Arc<Vec<Rev>>,
    x: Vec<Rev>,
    acts: Vec<f64>,
    /// `∂ output / ∂ μ` of a fused likelihood head (`None`: the outputs are the network's).
    head_grad: Option<Vec<f64>>,
}

struct TapeSink<'a, 'b> {
    theta: &'a [Rev],
    adj: &'a mut AdjointsMut<'b>,
}

impl GradSink for TapeSink<'_, '_> {
    #[inline]
    fn add(&mut self, p: usize, v: f64) {
        self.adj.add(self.theta[p], v);
    }
    #[inline]
    fn add_scaled(&mut self, start: usize, alpha: f64, x: &[f64]) {
        for (&t, &xi) in self.theta[start..start + x.len()].iter().zip(x) {
            self.adj.add(t, alpha * xi);
        }
    }
    #[inline]
    fn add_slice(&mut self, start: usize, v: &[f64]) {
        for (&t, &vi) in self.theta[start..start + v.len()].iter().zip(v) {
            self.adj.add(t, vi);
        }
    }
}

impl CustomOp for NetOp {
    fn backward(&self, out_adj: &[f64], adj: &mut AdjointsMut<'_>) {
        WORK.with_borrow_mut(|(work, gout, gx)| {
            gout.clear();
            match &self.head_grad {
                Some(g) => gout.extend(g.iter().map(|v| v * out_adj[0])),
                None => gout.extend_from_slice(out_adj),
            }
            gx.clear();
            gx.resize(self.net.n_inputs(), 0.0);
            let mut sink = TapeSink {
                theta: &self.theta,
                adj,
            };
            self.net
                .backward_f64(&self.values, &self.acts, gout, &mut sink, gx, work);
            for (&x, &g) in self.x.iter().zip(gx.iter()) {
                adj.add(x, g);
            }
        });
    }
}

/// One recorded batch of `m` evaluations.
struct BatchNetOp {
    net: Arc<Net>,
    values: Arc<Vec<f64>>,
    theta: Arc<Vec<Rev>>,
    m: usize,
    x: Vec<Rev>,
    acts: Vec<f64>,
    /// `∂ output_j / ∂ μ_j` (`m × n_outputs`) of a fused likelihood head (`None`: the outputs
    /// are the networks').
    head_grad: Option<Vec<f64>>,
}

impl Drop for BatchNetOp {
    fn drop(&mut self) {
        give_buf(std::mem::take(&mut self.acts));
        if let Some(g) = self.head_grad.take() {
            give_buf(g);
        }
    }
}

impl CustomOp for BatchNetOp {
    fn backward(&self, out_adj: &[f64], adj: &mut AdjointsMut<'_>) {
        BATCH_WORK.with_borrow_mut(|(work, gout, gx)| {
            gout.clear();
            match &self.head_grad {
                Some(g) => {
                    let n = self.net.n_outputs();
                    for (gj, &a) in g.chunks_exact(n).zip(out_adj) {
                        gout.extend(gj.iter().map(|v| v * a));
                    }
                }
                None => gout.extend_from_slice(out_adj),
            }
            gx.clear();
            gx.resize(self.m * self.net.n_inputs(), 0.0);
            let mut sink = TapeSink {
                theta: &self.theta,
                adj,
            };
            self.net.backward_f64_batch(
                &self.values,
                self.m,
                &self.acts,
                gout,
                &mut sink,
                gx,
                work,
            );
            for (&x, &g) in self.x.iter().zip(gx.iter()) {
                adj.add(x, g);
            }
        });
    }
}

/// `∂/∂θ` and `∂/∂x` of `Σ_i gout_i · Net_θ(x)_i` in `f64` (for tests and for callers that
/// drive their own reverse pass). Returns the output too.
///
/// ```
/// use diffsmc_nn::{Init, Net, net_vjp};
/// let net = Net::builder(1).dense(1, true, Init::Zeros)?.build(0)?;
/// // y = w x + b at w = b = 0: ∂y/∂w = x, ∂y/∂b = 1, ∂y/∂x = w = 0.
/// let (y, gth, gx) = net_vjp(&net, &[0.0, 0.0], &[2.0], &[1.0])?;
/// assert_eq!((y, gth, gx), (vec![0.0], vec![2.0, 1.0], vec![0.0]));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
pub fn net_vjp(
    net: &Net,
    theta: &[f64],
    x: &[f64],
    gout: &[f64],
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    net.check_theta(theta.len())?;
    for (what, expected, got) in [
        ("network input", net.n_inputs(), x.len()),
        ("output adjoint", net.n_outputs(), gout.len()),
    ] {
        if expected != got {
            return Err(SmcError::DimensionMismatch {
                what,
                expected,
                got,
            });
        }
    }
    let mut acts = Vec::new();
    net.forward_f64(theta, x, &mut acts);
    let y = acts[acts.len() - net.n_outputs()..].to_vec();
    let mut gth = vec![0.0; theta.len()];
    let mut gx = vec![0.0; x.len()];
    net.backward_f64(
        theta,
        &acts,
        gout,
        &mut crate::net::VecSink(&mut gth),
        &mut gx,
        &mut Work::default(),
    );
    Ok((y, gth, gx))
}
