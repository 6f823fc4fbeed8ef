//! Multi-layer perceptrons evaluated from a flat parameter vector.

use std::ops::{Add, Mul, Range};

use diffsmc::rng::{Purpose, StreamKey};
use diffsmc::tape::{self, Rev};
use diffsmc::{Result, Scalar, SmcError};

use crate::activation::Activation;
use crate::linear::{Linear, check_shape, dense, dot, glorot_fill};
use crate::prepared::{Mode, PreparedTheta};

/// The stream tag of Glorot initialisation ([`Purpose::Other`]); layer `l` uses step `l`.
pub const INIT_STREAM_TAG: u32 = 0x4e4e_494e; // "NNIN"

/// A multi-layer perceptron: dense layers of widths `widths[0] → widths[1] → … → widths[L]`
/// with an activation after every hidden layer and none (or a chosen one) on the output,
/// optionally with residual (skip) connections between hidden layers of equal width.
///
/// The network owns a flat `f64` parameter vector (its initial or current values), but every
/// evaluation routine also accepts an external flat θ of any [`Scalar`], so a
/// [`diffsmc::grad::Parametric`] model evaluates the network directly from the θ it is built
/// from, without copying it into layer structs.
///
/// **Flat layout.** Layer after layer, `W_l` (row-major, `widths[l+1] × widths[l]`, element
/// `(o, i)` at `o * widths[l] + i`) followed by `b_l` (`widths[l+1]`). [`Mlp::layer_range`]
/// gives the slices.
///
/// **Scratch.** [`Mlp::forward`] is allocation-free given a scratch slice of at least
/// [`Mlp::scratch_len`] scalars. The last hidden layer is streamed straight into the output
/// (each hidden unit is computed, activated and accumulated into the outputs in one pass), so
/// a one-hidden-layer network needs no scratch at all; deeper networks need one or two
/// buffers of the widest hidden layer.
///
/// **Fast evaluation in gradients.** Per particle and step, prefer [`Mlp::prepare`] (once per
/// θ) and [`Mlp::forward_prepared`]: on the dual numbers of a chunked forward-mode gradient,
/// where only the chunk's parameters carry derivatives, it runs the network in `f64` and
/// touches duals only for those parameters and the input Jacobian (same derivatives as
/// [`Mlp::forward`]). For the 4 → 32 → 2 network inside a particle filter this made a
/// 16-lane chunk cost ~2.6× an `f64` run instead of ~8×.
///
/// ```
/// use diffsmc_nn::{Activation, Mlp};
///
/// // The Lotka–Volterra transition network: 4 → 32 → 2 with swish, 226 parameters.
/// let net = Mlp::new(&[4, 32, 2], Activation::Swish, 7)?;
/// assert_eq!(net.n_params(), 4 * 32 + 32 + 32 * 2 + 2);
/// assert_eq!(net.scratch_len(), 0);
///
/// let theta = net.to_flat();
/// let mut out = [0.0; 2];
/// net.forward(&theta, &[2.0, 5.0, 0.1, -0.1], &mut out, &mut []);
/// // Zero biases at initialisation and swish(0) = 0: a zero input gives a zero output.
/// let mut zero = [1.0; 2];
/// net.forward(&theta, &[0.0; 4], &mut zero, &mut []);
/// assert_eq!(zero, [0.0, 0.0]);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    widths: Vec<usize>,
    activation: Activation,
    output_activation: Activation,
    residual: bool,
    offsets: Vec<usize>,
    params: Vec<f64>,
}

impl Mlp {
    /// A network with layer widths `widths` (input first, output last; at least two entries,
    /// all ≥ 1), `activation` after every hidden layer, identity on the output, no residual
    /// connections, and Glorot-uniform weights with zero biases drawn from `seed`
    /// (layer `l` from `StreamKey::new(seed, l, Purpose::Other(INIT_STREAM_TAG))`).
    pub fn new(widths: &[usize], activation: Activation, seed: u64) -> Result<Self> {
        if widths.len() < 2 {
            return Err(SmcError::invalid(
                "network widths",
                format!("{widths:?}"),
                "at least an input and an output width",
            ));
        }
        for w in widths.windows(2) {
            check_shape(w[0], w[1])?;
        }
        let mut offsets = Vec::with_capacity(widths.len());
        let mut off = 0;
        for w in widths.windows(2) {
            offsets.push(off);
            off += w[0] * w[1] + w[1];
        }
        offsets.push(off);
        let mut net = Mlp {
            widths: widths.to_vec(),
            activation,
            output_activation: Activation::Identity,
            residual: false,
            offsets,
            params: vec![0.0; off],
        };
        net.reinitialise(seed);
        Ok(net)
    }

    /// Sets the activation applied to the output layer (default identity).
    pub fn with_output_activation(mut self, activation: Activation) -> Self {
        self.output_activation = activation;
        self
    }

    /// Adds residual connections `h_{l+1} = h_l + act(W_l h_l + b_l)` between consecutive
    /// hidden layers of equal width (the input and output layers never get one).
    pub fn with_residual(mut self, residual: bool) -> Self {
        self.residual = residual;
        self
    }

    /// Redraws the owned parameters: Glorot-uniform weights, zero biases, from `seed`.
    pub fn reinitialise(&mut self, seed: u64) {
        for l in 0..self.n_layers() {
            let (n_in, n_out) = (self.widths[l], self.widths[l + 1]);
            let r = self.layer_range(l);
            let (w, b) = self.params[r].split_at_mut(n_in * n_out);
            glorot_fill(
                n_in,
                n_out,
                StreamKey::new(seed, l, Purpose::Other(INIT_STREAM_TAG)),
                w,
            );
            b.fill(0.0);
        }
    }

    /// Layer widths, input first.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }
    /// Number of dense layers `L`.
    pub fn n_layers(&self) -> usize {
        self.widths.len() - 1
    }
    /// Input width.
    pub fn n_inputs(&self) -> usize {
        self.widths[0]
    }
    /// Output width.
    pub fn n_outputs(&self) -> usize {
        self.widths[self.widths.len() - 1]
    }
    /// The hidden activation.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// The output activation.
    pub fn output_activation(&self) -> Activation {
        self.output_activation
    }
    /// Whether hidden layers of equal width have skip connections.
    pub fn residual(&self) -> bool {
        self.residual
    }

    /// Number of parameters `Σ_l (widths[l] · widths[l+1] + widths[l+1])`.
    pub fn n_params(&self) -> usize {
        self.offsets[self.n_layers()]
    }

    /// The range of layer `l`'s parameters (`W_l` then `b_l`) in the flat vector.
    pub fn layer_range(&self, l: usize) -> Range<usize> {
        self.offsets[l]..self.offsets[l + 1]
    }

    /// The owned parameters as a flat vector (a copy).
    pub fn to_flat(&self) -> Vec<f64> {
        self.params.clone()
    }

    /// The owned parameters as a flat slice.
    pub fn params(&self) -> &[f64] {
        &self.params
    }

    /// Replaces the owned parameters by `theta` (length [`Mlp::n_params`]).
    pub fn set_flat(&mut self, theta: &[f64]) -> Result<()> {
        self.check_theta_len(theta.len())?;
        self.params.copy_from_slice(theta);
        Ok(())
    }

    /// The layers of the network at `theta` (copies; for inspection, not for the hot path).
    pub fn layers<T: Scalar>(&self, theta: &[T]) -> Result<Vec<Linear<T>>> {
        self.check_theta_len(theta.len())?;
        (0..self.n_layers())
            .map(|l| {
                Linear::from_flat(
                    self.widths[l],
                    self.widths[l + 1],
                    &theta[self.layer_range(l)],
                )
            })
            .collect()
    }

    /// Scratch length [`Mlp::forward`] needs: 0 with one hidden layer (or none), the widest
    /// hidden layer with two, twice that with three or more.
    pub fn scratch_len(&self) -> usize {
        let l = self.n_layers();
        if l < 3 {
            return 0;
        }
        let widest = self.widths[1..l - 1].iter().copied().max().unwrap_or(0);
        widest * (l - 2).min(2)
    }

    /// Evaluates the network at the flat parameter vector `theta` (any scalar: `f64`, or the
    /// duals θ is seeded with): `out = MLP_θ(input)`. Allocation-free.
    ///
    /// Panics if `theta.len() != n_params()`, `input.len() != n_inputs()`,
    /// `out.len() != n_outputs()` or `scratch.len() < scratch_len()`.
    ///
    /// ```
    /// use diffsmc_nn::{Activation, Mlp};
    /// use num_dual::{Dual64, DualStruct};
    ///
    /// let net = Mlp::new(&[2, 3, 1], Activation::Tanh, 1)?;
    /// // Derivative of the output w.r.t. the first bias of the output layer is 1.
    /// let mut theta: Vec<Dual64> = net.to_flat().into_iter().map(Dual64::from).collect();
    /// let b_out = net.layer_range(1).end - 1;
    /// theta[b_out] = Dual64::new(theta[b_out].re, 1.0);
    /// let mut out = [Dual64::from(0.0)];
    /// net.forward(&theta, &[Dual64::from(0.3), Dual64::from(-0.2)], &mut out, &mut []);
    /// assert_eq!(out[0].eps, 1.0);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    #[inline]
    pub fn forward<S: Scalar>(&self, theta: &[S], input: &[S], out: &mut [S], scratch: &mut [S]) {
        assert_eq!(theta.len(), self.n_params(), "Mlp::forward: θ length");
        self.forward_impl(theta, input, out, scratch)
    }

    /// Evaluates the network at its owned `f64` parameters on inputs of any scalar type.
    /// Same panics as [`Mlp::forward`].
    ///
    /// ```
    /// use diffsmc_nn::{Activation, Mlp};
    /// let net = Mlp::new(&[3, 8, 8, 2], Activation::Swish, 5)?.with_residual(true);
    /// let mut scratch = vec![0.0; net.scratch_len()];
    /// let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
    /// net.eval(&[0.1, 0.2, 0.3], &mut a, &mut scratch);
    /// net.forward(&net.to_flat(), &[0.1, 0.2, 0.3], &mut b, &mut scratch);
    /// assert_eq!(a, b);
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    #[inline]
    pub fn eval<S: Scalar>(&self, input: &[S], out: &mut [S], scratch: &mut [S]) {
        self.forward_impl(&self.params, input, out, scratch)
    }

    /// Scratch lengths `(scalars, f64)` that [`Mlp::forward_split`] needs: the scalar part is
    /// [`Mlp::scratch_len`]; the `f64` part holds the input values, the Jacobians of the hidden
    /// activations w.r.t. the input and the output Jacobian (`n_out · n_in + 2 n_in` with one
    /// hidden layer).
    pub fn split_scratch_len(&self) -> (usize, usize) {
        let n_in = self.n_inputs();
        let l = self.n_layers();
        let hidden = if l >= 3 {
            let widest = self.widths[1..l - 1].iter().copied().max().unwrap_or(0);
            widest * n_in * (l - 2).min(2)
        } else {
            0
        };
        (
            self.scratch_len(),
            self.n_outputs() * n_in + 2 * n_in + hidden,
        )
    }

    /// The same result as [`Mlp::forward`], computed faster on first-order dual numbers by
    /// splitting the derivative: `out = MLP_θ(x̄) + J · (x − x̄)` where `x̄` is the value part
    /// of the input, `MLP_θ(x̄)` is evaluated on θ's duals with the input held constant, and
    /// `J = ∂MLP/∂x (θ̄, x̄)` is propagated in `f64`. The derivative lanes are exactly those of
    /// [`Mlp::forward`]; the value part may differ by rounding.
    ///
    /// Why it is faster: in a chunked gradient only a few θ entries carry derivative lanes
    /// (the rest are `num-dual` constants whose derivative is `None`), so almost every
    /// operation of the θ-pass is a plain `f64` operation, and the dense input lanes meet the
    /// network only once, through the small `n_out × n_in` Jacobian, instead of at every
    /// weight. On `f64` and on higher-order duals it simply calls [`Mlp::forward`].
    ///
    /// Panics like [`Mlp::forward`], and if `jac_scratch` is shorter than the `f64` part of
    /// [`Mlp::split_scratch_len`].
    ///
    /// ```
    /// use diffsmc_nn::{Activation, Mlp};
    /// use num_dual::{DualSVec64, DualStruct};
    ///
    /// let net = Mlp::new(&[4, 32, 2], Activation::Swish, 3)?;
    /// let (ns, nj) = net.split_scratch_len();
    /// assert_eq!((ns, nj), (0, 16));
    /// type D = DualSVec64<2>;
    /// let theta: Vec<D> = net.to_flat().iter().enumerate()
    ///     .map(|(i, &v)| if i == 5 { D::from_re(v).derivative(0) } else { D::from_re(v) })
    ///     .collect();
    /// let x = [D::from_re(2.0).derivative(1), D::from_re(5.0), D::from_re(0.1), D::from_re(0.0)];
    /// let (mut a, mut b) = ([D::from_re(0.0); 2], [D::from_re(0.0); 2]);
    /// net.forward(&theta, &x, &mut a, &mut []);
    /// net.forward_split(&theta, &x, &mut b, &mut [], &mut [0.0; 16]);
    /// for k in 0..2 {
    ///     assert!((a[k].re() - b[k].re()).abs() < 1e-13);
    ///     let (da, db) = (a[k].eps.0.unwrap(), b[k].eps.0.unwrap());
    ///     assert!((da - db).norm() < 1e-13);
    /// }
    /// # Ok::<(), diffsmc::SmcError>(())
    /// ```
    #[inline]
    pub fn forward_split<S: Scalar>(
        &self,
        theta: &[S],
        input: &[S],
        out: &mut [S],
        scratch: &mut [S],
        jac_scratch: &mut [f64],
    ) {
        if S::NDERIV != 1 {
            return self.forward(theta, input, out, scratch);
        }
        assert_eq!(theta.len(), self.n_params(), "Mlp::forward_split: θ length");
        assert_eq!(
            input.len(),
            self.n_inputs(),
            "Mlp::forward_split: input width"
        );
        assert_eq!(
            out.len(),
            self.n_outputs(),
            "Mlp::forward_split: output width"
        );
        let (need_s, need_j) = self.split_scratch_len();
        assert!(
            scratch.len() >= need_s,
            "Mlp::forward_split: scratch too short"
        );
        assert!(
            jac_scratch.len() >= need_j,
            "Mlp::forward_split: jac_scratch too short"
        );
        let n_in = self.n_inputs();
        let n_out = self.n_outputs();
        let nl = self.n_layers();
        let (jout, rest) = jac_scratch[..need_j].split_at_mut(n_out * n_in);
        let (xre, rest) = rest.split_at_mut(n_in);
        let (jrow, rest) = rest.split_at_mut(n_in);
        for (v, x) in xre.iter_mut().zip(input) {
            *v = x.re();
        }
        jout.fill(0.0);
        let act = self.activation;

        if nl == 1 {
            let (w, b) = self.layer(theta, 0);
            for o in 0..n_out {
                let row = &w[o * n_in..(o + 1) * n_in];
                out[o] = dot(xre, row) + b[o];
                for (j, wv) in jout[o * n_in..(o + 1) * n_in].iter_mut().zip(row) {
                    *j = wv.re();
                }
            }
        } else {
            // Materialised hidden layers 0 .. nl-2: activations (θ-duals) in `scratch`,
            // their input Jacobians (f64, width × n_in, row-major) in `ja`/`jb`.
            let half_s = if nl >= 4 { need_s / 2 } else { need_s };
            let (sa, sb) = scratch[..need_s].split_at_mut(half_s);
            let half_j = if nl >= 4 { rest.len() / 2 } else { rest.len() };
            let (ja, jb) = rest.split_at_mut(half_j);
            let mut in_a = false;
            for l in 0..nl - 2 {
                let (w, bias) = self.layer(theta, l);
                let (wi, wo) = (self.widths[l], self.widths[l + 1]);
                let skip = self.skip(l);
                let (src, srcj, dst, dstj): (&[S], &[f64], &mut [S], &mut [f64]) = if l == 0 {
                    (&[], &[], &mut sa[..wo], &mut ja[..wo * n_in])
                } else if in_a {
                    (
                        &sa[..wi],
                        &ja[..wi * n_in],
                        &mut sb[..wo],
                        &mut jb[..wo * n_in],
                    )
                } else {
                    (
                        &sb[..wi],
                        &jb[..wi * n_in],
                        &mut sa[..wo],
                        &mut ja[..wo * n_in],
                    )
                };
                for j in 0..wo {
                    let row = &w[j * wi..(j + 1) * wi];
                    let (h, df) = if l == 0 {
                        act_split(act, dot(xre, row) + bias[j])
                    } else {
                        act_split(act, dot(row, src) + bias[j])
                    };
                    let dj = &mut dstj[j * n_in..(j + 1) * n_in];
                    input_jacobian_row(row, srcj, l == 0, n_in, df, dj);
                    if skip {
                        dst[j] = h + src[j];
                        for (d, s) in dj.iter_mut().zip(&srcj[j * n_in..(j + 1) * n_in]) {
                            *d += s;
                        }
                    } else {
                        dst[j] = h;
                    }
                }
                in_a = l == 0 || !in_a;
            }
            // The last hidden layer, streamed into the output layer.
            let lh = nl - 2;
            let wi = self.widths[lh];
            let (cur, curj): (&[S], &[f64]) = if lh == 0 {
                (&[], &[])
            } else if in_a {
                (&sa[..wi], &ja[..wi * n_in])
            } else {
                (&sb[..wi], &jb[..wi * n_in])
            };
            let (w1, b1) = self.layer(theta, lh);
            let (w2, b2) = self.layer(theta, nl - 1);
            let hidden = self.widths[lh + 1];
            let skip = self.skip(lh);
            for (o, &bo) in out.iter_mut().zip(b2) {
                *o = bo;
            }
            for j in 0..hidden {
                let row = &w1[j * wi..(j + 1) * wi];
                let (mut h, df) = if lh == 0 {
                    act_split(act, dot(xre, row) + b1[j])
                } else {
                    act_split(act, dot(row, cur) + b1[j])
                };
                input_jacobian_row(row, curj, lh == 0, n_in, df, jrow);
                if skip {
                    h += cur[j];
                    for (d, s) in jrow.iter_mut().zip(&curj[j * n_in..(j + 1) * n_in]) {
                        *d += s;
                    }
                }
                for o in 0..n_out {
                    let w = w2[o * hidden + j];
                    out[o] += h * w;
                    let wr = w.re();
                    for (d, s) in jout[o * n_in..(o + 1) * n_in].iter_mut().zip(jrow.iter()) {
                        *d += wr * s;
                    }
                }
            }
        }
        // Output activation, then the input part of the derivative: out += J (x − x̄).
        for o in 0..n_out {
            let jo = &mut jout[o * n_in..(o + 1) * n_in];
            if self.output_activation != Activation::Identity {
                let (y, df) = act_split(self.output_activation, out[o]);
                out[o] = y;
                for d in jo.iter_mut() {
                    *d *= df;
                }
            }
            for (x, (&xr, &j)) in input.iter().zip(xre.iter().zip(jo.iter())) {
                out[o] += (*x - xr) * j;
            }
        }
    }

    /// Prepares θ for repeated evaluation with [`Mlp::forward_prepared`] (once per model
    /// build; it copies θ and finds the entries that carry derivatives).
    ///
    /// Panics if `theta.len() != n_params()`.
    pub fn prepare<S: Scalar>(&self, theta: &[S]) -> PreparedTheta<S> {
        assert_eq!(theta.len(), self.n_params(), "Mlp::prepare: θ length");
        PreparedTheta::new(self, theta)
    }

    /// Scratch lengths `(scalars, f64)` that [`Mlp::forward_prepared`] needs in every mode.
    pub fn prepared_scratch_len(&self) -> (usize, usize) {
        let (ns, nj) = self.split_scratch_len();
        (ns, nj.max(self.sparse_work_len()))
    }

    fn sparse_work_len(&self) -> usize {
        let nl = self.n_layers();
        let widest = self.widths.iter().copied().max().unwrap_or(0);
        let acts: usize = self.widths[..nl].iter().sum();
        let dfs: usize = self.widths[1..].iter().sum();
        acts + dfs + self.n_outputs() + 3 * widest
    }

    /// `(layer, row, column)` of flat parameter `p` (column `None` for a bias).
    pub(crate) fn locate(&self, p: usize) -> (usize, usize, Option<usize>) {
        let l = self.offsets.partition_point(|&o| o <= p) - 1;
        let (n_in, n_out) = (self.widths[l], self.widths[l + 1]);
        let q = p - self.offsets[l];
        if q < n_in * n_out {
            (l, q / n_in, Some(q % n_in))
        } else {
            (l, q - n_in * n_out, None)
        }
    }

    /// Evaluates the network at a prepared θ: the same result as [`Mlp::forward`] (derivative
    /// lanes exact; value parts equal up to rounding), by the fastest route for the scalar:
    ///
    /// - `f64`: the plain forward pass;
    /// - `Dual64` / `DualSVec64<N>` (whose derivative parts [`crate::derivative_is_zero`] can
    ///   inspect): an `f64` forward pass, an `f64` backward pass per output giving the input
    ///   Jacobian and the sensitivities to the few parameters that carry derivatives, and
    ///   `out = y + J (x − x̄) + Σ_active (∂y/∂θ_p) (θ_p − θ̄_p)` in dual arithmetic — its cost
    ///   hardly depends on the chunk width, and its value part is that of the `f64` pass;
    /// - the reverse-mode tape scalar [`diffsmc::Rev`]: one custom tape operation per
    ///   evaluation (its backward pass back-propagates through an `f64` re-run by hand), so
    ///   the tape holds the outputs only, not a node per weight;
    /// - other first-order duals: [`Mlp::forward_split`];
    /// - higher-order duals: [`Mlp::forward`].
    ///
    /// `scratch` and `work` must be at least [`Mlp::prepared_scratch_len`] long. Panics on
    /// wrong lengths.
    #[inline]
    pub fn forward_prepared<S: Scalar>(
        &self,
        prep: &PreparedTheta<S>,
        input: &[S],
        out: &mut [S],
        scratch: &mut [S],
        work: &mut [f64],
    ) {
        assert_eq!(
            prep.theta.len(),
            self.n_params(),
            "Mlp::forward_prepared: θ length"
        );
        match prep.mode {
            Mode::Real | Mode::Generic => self.forward(&prep.theta, input, out, scratch),
            Mode::Split => self.forward_split(&prep.theta, input, out, scratch, work),
            Mode::Sparse => self.forward_sparse(prep, input, out, work),
            Mode::Tape => {
                let tn = prep
                    .tape
                    .as_ref()
                    .expect("tape mode holds the tape network");
                let x: Vec<Rev> = input
                    .iter()
                    .map(|v| tape::as_rev(v).unwrap_or_else(|| Rev::constant(v.re())))
                    .collect();
                let mut y = vec![Rev::constant(0.0); out.len()];
                crate::tape::forward_tape(tn, x, &mut y);
                for (o, &r) in out.iter_mut().zip(&y) {
                    *o = tape::from_rev(r).unwrap_or_else(|| S::cst(r.value()));
                }
            }
        }
    }

    fn forward_sparse<S: Scalar>(
        &self,
        prep: &PreparedTheta<S>,
        input: &[S],
        out: &mut [S],
        work: &mut [f64],
    ) {
        let nl = self.n_layers();
        let n_in = self.n_inputs();
        let n_out = self.n_outputs();
        assert_eq!(input.len(), n_in, "Mlp::forward_prepared: input width");
        assert_eq!(out.len(), n_out, "Mlp::forward_prepared: output width");
        let need = self.sparse_work_len();
        assert!(work.len() >= need, "Mlp::forward_prepared: work too short");
        let widest = self.widths.iter().copied().max().unwrap_or(0);
        let n_acts: usize = self.widths[..nl].iter().sum();
        let n_dfs: usize = self.widths[1..].iter().sum();
        let (acts, rest) = work[..need].split_at_mut(n_acts);
        let (dfs, rest) = rest.split_at_mut(n_dfs);
        let (y, rest) = rest.split_at_mut(n_out);
        let (u, rest) = rest.split_at_mut(widest);
        let (g, gprev) = rest.split_at_mut(widest);
        let theta = &prep.values[..];

        // Forward pass in f64, keeping every layer's input (acts) and act'(z) (dfs).
        for (a, x) in acts.iter_mut().zip(input) {
            *a = x.re();
        }
        let mut a_off = 0;
        let mut d_off = 0;
        for l in 0..nl {
            let (wi, wo) = (self.widths[l], self.widths[l + 1]);
            let (w, b) = self.layer(theta, l);
            let (prev, next) = acts.split_at_mut(a_off + wi);
            let a_in = &prev[a_off..];
            let last = l + 1 == nl;
            let act = if last {
                self.output_activation
            } else {
                self.activation
            };
            let skip = self.skip(l);
            for j in 0..wo {
                let z = dot(&w[j * wi..(j + 1) * wi], a_in) + b[j];
                let (f, df) = act.value_and_derivative(z);
                dfs[d_off + j] = df;
                if last {
                    y[j] = f;
                } else {
                    next[j] = if skip { f + a_in[j] } else { f };
                }
            }
            a_off += wi;
            d_off += wo;
        }

        // Backward pass per output: u = ∂y_o/∂z_l, g = ∂y_o/∂a_l.
        for o in 0..n_out {
            let mut acc = S::cst(y[o]);
            u[..n_out].fill(0.0);
            u[o] = dfs[n_dfs - n_out + o];
            let mut a_off = n_acts;
            let mut d_off = n_dfs - n_out;
            for l in (0..nl).rev() {
                let (wi, wo) = (self.widths[l], self.widths[l + 1]);
                a_off -= wi;
                let a_in = &acts[a_off..a_off + wi];
                for p in prep.active.iter().filter(|p| p.layer == l) {
                    let c = match p.col {
                        Some(i) => u[p.row] * a_in[i],
                        None => u[p.row],
                    };
                    if c != 0.0 {
                        acc += p.tangent * c;
                    }
                }
                let (w, _) = self.layer(theta, l);
                let g = &mut g[..wi];
                if self.skip(l) {
                    g.copy_from_slice(&gprev[..wi]);
                } else {
                    g.fill(0.0);
                }
                // g = W_lᵀ u, row by row of W_l (contiguous).
                for (row, &uj) in w.chunks_exact(wi).zip(&u[..wo]) {
                    if uj != 0.0 {
                        for (gi, &wji) in g.iter_mut().zip(row) {
                            *gi += wji * uj;
                        }
                    }
                }
                if l > 0 {
                    d_off -= wi;
                    for ((ui, &gi), &df) in u[..wi]
                        .iter_mut()
                        .zip(g.iter())
                        .zip(&dfs[d_off..d_off + wi])
                    {
                        *ui = gi * df;
                    }
                    gprev[..wi].copy_from_slice(g);
                }
            }
            // g = ∂y_o/∂x: the input part of the derivative.
            for (x, (&gk, &xr)) in input.iter().zip(g.iter().zip(acts.iter())) {
                if gk != 0.0 {
                    acc += (*x - xr) * gk;
                }
            }
            out[o] = acc;
        }
    }

    fn check_theta_len(&self, len: usize) -> Result<()> {
        if len != self.n_params() {
            return Err(SmcError::DimensionMismatch {
                what: "network parameter vector",
                expected: self.n_params(),
                got: len,
            });
        }
        Ok(())
    }

    /// `(W_l, b_l)` of layer `l` inside a flat parameter slice.
    #[inline]
    fn layer<'a, W>(&self, theta: &'a [W], l: usize) -> (&'a [W], &'a [W]) {
        let p = &theta[self.offsets[l]..self.offsets[l + 1]];
        p.split_at(self.widths[l] * self.widths[l + 1])
    }

    #[inline]
    pub(crate) fn skip(&self, l: usize) -> bool {
        // Layer l maps h_l to h_{l+1}; both hidden when 1 ≤ l and l + 1 < L.
        self.residual && l >= 1 && l + 1 < self.n_layers() && self.widths[l] == self.widths[l + 1]
    }

    fn forward_impl<S, W>(&self, theta: &[W], input: &[S], out: &mut [S], scratch: &mut [S])
    where
        S: Scalar + Mul<W, Output = S> + Add<W, Output = S>,
        W: Copy,
    {
        let nl = self.n_layers();
        assert_eq!(input.len(), self.n_inputs(), "Mlp::forward: input width");
        assert_eq!(out.len(), self.n_outputs(), "Mlp::forward: output width");
        let need = self.scratch_len();
        assert!(scratch.len() >= need, "Mlp::forward: scratch too short");
        if nl == 1 {
            let (w, b) = self.layer(theta, 0);
            dense(w, b, input, out);
            self.output_activation.apply_slice(out);
            return;
        }
        // Hidden layers 0 .. nl-2 (all but the last hidden one) into ping-pong buffers.
        let half = if nl >= 4 { need / 2 } else { need };
        let (a, b) = scratch[..need].split_at_mut(half);
        let mut in_a = false; // where the current activations live (false: `input` or `b`)
        for l in 0..nl - 2 {
            let (w, bias) = self.layer(theta, l);
            let n_out = self.widths[l + 1];
            let (src, dst): (&[S], &mut [S]) = if l == 0 {
                (input, &mut a[..n_out])
            } else if in_a {
                (&a[..self.widths[l]], &mut b[..n_out])
            } else {
                (&b[..self.widths[l]], &mut a[..n_out])
            };
            dense(w, bias, src, dst);
            let skip = self.skip(l);
            for (j, h) in dst.iter_mut().enumerate() {
                let mut v = self.activation.apply(*h);
                if skip {
                    v += src[j];
                }
                *h = v;
            }
            in_a = l == 0 || !in_a;
        }
        // The last hidden layer, streamed into the output layer.
        let lh = nl - 2;
        let cur: &[S] = if lh == 0 {
            input
        } else if in_a {
            &a[..self.widths[lh]]
        } else {
            &b[..self.widths[lh]]
        };
        let (w1, b1) = self.layer(theta, lh);
        let (w2, b2) = self.layer(theta, nl - 1);
        let hidden = self.widths[lh + 1];
        let n_in = self.widths[lh];
        let skip = self.skip(lh);
        for (o, &bo) in out.iter_mut().zip(b2) {
            *o = S::zero() + bo;
        }
        for j in 0..hidden {
            let pre = dot(&w1[j * n_in..(j + 1) * n_in], cur) + b1[j];
            let mut h = self.activation.apply(pre);
            if skip {
                h += cur[j];
            }
            for (o, y) in out.iter_mut().enumerate() {
                *y += h * w2[o * hidden + j];
            }
        }
        self.output_activation.apply_slice(out);
    }
}

/// `act(pre)` by the first-order chain rule, with `act'(pre.re)` returned for the Jacobian.
#[inline]
fn act_split<S: Scalar>(act: Activation, pre: S) -> (S, f64) {
    let v = pre.re();
    let (f, df) = act.value_and_derivative(v);
    (pre * df + (f - v * df), df)
}

/// Row `j` of the input Jacobian of a hidden layer: `df · Σ_i W_ji J_i` (or `df · W_j` for the
/// first layer, whose input Jacobian is the identity).
#[inline]
fn input_jacobian_row<S: Scalar>(
    row: &[S],
    src_jac: &[f64],
    first: bool,
    n_in: usize,
    df: f64,
    dst: &mut [f64],
) {
    if first {
        for (d, w) in dst.iter_mut().zip(row) {
            *d = df * w.re();
        }
    } else {
        dst.fill(0.0);
        for (i, w) in row.iter().enumerate() {
            let wr = df * w.re();
            for (d, s) in dst.iter_mut().zip(&src_jac[i * n_in..(i + 1) * n_in]) {
                *d += wr * s;
            }
        }
    }
}
