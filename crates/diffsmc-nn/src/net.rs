//! Sequential networks of dense, sine (SIREN), ReLU, reshape and 2-D transposed-convolution
//! layers, evaluated from a flat parameter vector of any scalar.
//!
//! [`Net`] is built layer by layer with [`NetBuilder`]. Activations are flat vectors; image
//! activations are **channels last** (`HWC`: element `(y, x, c)` at `(y · W + x) · C + c`,
//! the layout of a Flax `reshape((4, 4, 16))`).
//!
//! Three evaluation routes share one layer description:
//! - `f64`: tight loops over contiguous slices (dense rows as 8-accumulator dot products,
//!   the transposed convolution as one small GEMV per input pixel and kernel tap), the
//!   activations kept in a per-thread work space (allocation-free after the first call);
//! - the reverse-mode tape scalar [`diffsmc::tape::Rev`]: the whole network is **one**
//!   [`diffsmc::tape::custom`] operation (see [`crate::net_tape`]); its backward pass
//!   back-propagates through the recorded `f64` activations by hand;
//! - any other [`Scalar`] (forward-mode duals): the same layers written generically.

use std::cell::RefCell;
use std::ops::Range;

use diffsmc::rng::{Purpose, StreamKey, standard_normal};
use diffsmc::{Result, Scalar, SmcError};
use rand::RngExt;

use crate::mlp::INIT_STREAM_TAG;

/// How a layer's weights are initialised (biases are always zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Glorot (Xavier) uniform, `U(−a, a)`, `a = √(6 / (fan_in + fan_out))`.
    Glorot,
    /// The SIREN first layer: `U(−1/n_in, 1/n_in)` (Sitzmann et al. 2020).
    SirenFirst,
    /// A SIREN hidden layer: `U(−√(6/n_in)/ω₀, √(6/n_in)/ω₀)`.
    SirenHidden {
        /// The frequency `ω₀` the bound is divided by.
        omega0: f64,
    },
    /// LeCun normal (Flax's default kernel initialiser): a normal of standard deviation
    /// `√(1/fan_in) / 0.8796` truncated to ±2 standard deviations (so the truncated
    /// variance is `1/fan_in`).
    LecunNormal,
    /// All zero.
    Zeros,
}

/// Padding of a [`Layer::ConvTranspose2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// `lax.conv_transpose(padding="SAME")` (Flax `ConvTranspose` default): output size
    /// `stride · input`; the stride-dilated input is padded by
    /// `pad_lo = ⌈(k + s − 2)/2⌉` (or `k − 1` when `s > k − 1`) before and
    /// `k + s − 2 − pad_lo` after, and correlated with the (unflipped) kernel. For `k = 3`,
    /// `s = 2`: `pad_lo = 2`, so input pixel `i` reaches output `y = 2i + 2 − ky`.
    Same,
    /// An explicit `pad_lo` on the dilated input and an explicit output size per axis
    /// (`y = s·i + pad_lo − ky`, kept when `0 ≤ y < out`).
    Explicit {
        /// Padding before the dilated input.
        pad_lo: usize,
        /// Output height.
        out_h: usize,
        /// Output width.
        out_w: usize,
    },
}

/// The geometry of a 2-D transposed convolution (channels last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvT2d {
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Input height.
    pub h_in: usize,
    /// Input width.
    pub w_in: usize,
    /// Square kernel size `k`.
    pub k: usize,
    /// Stride `s`.
    pub stride: usize,
    /// Padding before the dilated input (see [`Padding`]).
    pub pad_lo: usize,
    /// Output height.
    pub h_out: usize,
    /// Output width.
    pub w_out: usize,
}

impl ConvT2d {
    /// Parameters: the kernel `K[ky][kx][co][ci]` (`k² · c_out · c_in`) then the bias (`c_out`).
    pub fn n_params(&self) -> usize {
        self.k * self.k * self.c_out * self.c_in + self.c_out
    }
    pub(crate) fn kernel_len(&self) -> usize {
        self.k * self.k * self.c_out * self.c_in
    }
    /// Output coordinate reached from input coordinate `i` through tap `t` (if inside).
    #[inline]
    pub(crate) fn target(&self, i: usize, t: usize, n_out: usize) -> Option<usize> {
        let y = (self.stride * i + self.pad_lo).checked_sub(t)?;
        (y < n_out).then_some(y)
    }
}

/// One layer of a [`Net`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Layer {
    /// `y = W x (+ b)`, `W` row-major `n_out × n_in`; parameters `W` then `b` (if any).
    Dense {
        /// Input width.
        n_in: usize,
        /// Output width.
        n_out: usize,
        /// Whether the layer has a bias.
        bias: bool,
        /// Weight initialisation.
        init: Init,
    },
    /// `y = sin(ω x)` elementwise (the SIREN activation; `ω = ω₀` in a first layer).
    Sine {
        /// The frequency `ω`.
        omega: f64,
    },
    /// `y = max(x, 0)` elementwise (derivative 0 at 0).
    Relu,
    /// Reinterprets the flat activation as an `h × w × c` image (channels last); no-op on
    /// the data.
    Reshape {
        /// Height.
        h: usize,
        /// Width.
        w: usize,
        /// Channels.
        c: usize,
    },
    /// A 2-D transposed convolution (channels last).
    ConvTranspose2d(ConvT2d),
}

impl Layer {
    fn n_params(&self) -> usize {
        match *self {
            Layer::Dense {
                n_in, n_out, bias, ..
            } => n_in * n_out + if bias { n_out } else { 0 },
            Layer::ConvTranspose2d(c) => c.n_params(),
            _ => 0,
        }
    }
}

/// Builds a [`Net`] layer by layer; every method checks its shapes.
///
/// ```
/// use diffsmc_nn::{Init, Net, Padding};
///
/// // The pendulum decoder: 3 → 16 → 256, reshape 4×4×16, three stride-2 transposed
/// // convolutions to 32×32×1.
/// let net = Net::builder(3)
///     .dense(16, true, Init::LecunNormal)?.relu()
///     .dense(256, true, Init::LecunNormal)?.relu()
///     .reshape(4, 4, 16)?
///     .conv_transpose(32, 3, 2, Padding::Same)?.relu()
///     .conv_transpose(16, 3, 2, Padding::Same)?.relu()
///     .conv_transpose(1, 3, 2, Padding::Same)?
///     .build(0)?;
/// assert_eq!(net.n_outputs(), 32 * 32);
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct NetBuilder {
    n_in: usize,
    layers: Vec<Layer>,
    width: usize,
    shape: Option<(usize, usize, usize)>,
}

impl NetBuilder {
    /// Appends a dense layer to `n_out` units.
    pub fn dense(mut self, n_out: usize, bias: bool, init: Init) -> Result<Self> {
        crate::linear::check_shape(self.width, n_out)?;
        self.layers.push(Layer::Dense {
            n_in: self.width,
            n_out,
            bias,
            init,
        });
        self.width = n_out;
        self.shape = None;
        Ok(self)
    }

    /// Appends `sin(ω ·)`; `ω` must be finite and non-zero.
    pub fn sine(mut self, omega: f64) -> Result<Self> {
        if !(omega.is_finite() && omega != 0.0) {
            return Err(SmcError::invalid(
                "sine layer frequency omega",
                omega,
                "a finite non-zero number",
            ));
        }
        self.layers.push(Layer::Sine { omega });
        Ok(self)
    }

    /// Appends a ReLU.
    pub fn relu(mut self) -> Self {
        self.layers.push(Layer::Relu);
        self
    }

    /// Reinterprets the current activation (of width `h · w · c`) as an `h × w × c` image.
    pub fn reshape(mut self, h: usize, w: usize, c: usize) -> Result<Self> {
        if h * w * c != self.width || h == 0 || w == 0 || c == 0 {
            return Err(SmcError::invalid(
                "reshape",
                format!("{h}x{w}x{c} of an activation of width {}", self.width),
                "h·w·c equal to the current width, each ≥ 1",
            ));
        }
        self.layers.push(Layer::Reshape { h, w, c });
        self.shape = Some((h, w, c));
        Ok(self)
    }

    /// Appends a transposed convolution with `c_out` channels, a `k × k` kernel and stride
    /// `stride`; the current activation must be an image ([`NetBuilder::reshape`] or a
    /// previous convolution).
    pub fn conv_transpose(
        mut self,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: Padding,
    ) -> Result<Self> {
        let Some((h_in, w_in, c_in)) = self.shape else {
            return Err(SmcError::invalid(
                "conv_transpose input",
                "a flat activation",
                "an image: reshape first",
            ));
        };
        if c_out == 0 || k == 0 || stride == 0 {
            return Err(SmcError::invalid(
                "conv_transpose channels / kernel / stride",
                format!("{c_out} / {k} / {stride}"),
                "each at least 1",
            ));
        }
        let (pad_lo, h_out, w_out) = match padding {
            Padding::Same => {
                let pad_len = k + stride - 2;
                let lo = if stride > k - 1 {
                    k - 1
                } else {
                    pad_len.div_ceil(2)
                };
                (lo, h_in * stride, w_in * stride)
            }
            Padding::Explicit {
                pad_lo,
                out_h,
                out_w,
            } => {
                if out_h == 0 || out_w == 0 {
                    return Err(SmcError::invalid(
                        "conv_transpose output size",
                        format!("{out_h}x{out_w}"),
                        "each at least 1",
                    ));
                }
                (pad_lo, out_h, out_w)
            }
        };
        let c = ConvT2d {
            c_in,
            c_out,
            h_in,
            w_in,
            k,
            stride,
            pad_lo,
            h_out,
            w_out,
        };
        self.layers.push(Layer::ConvTranspose2d(c));
        self.width = h_out * w_out * c_out;
        self.shape = Some((h_out, w_out, c_out));
        Ok(self)
    }

    /// The network with weights drawn from `seed` (layer `l` from
    /// `StreamKey::new(seed, l, Purpose::Other(INIT_STREAM_TAG))`), zero biases.
    pub fn build(self, seed: u64) -> Result<Net> {
        let mut sizes = vec![self.n_in];
        let mut offsets = vec![0];
        let mut off = 0;
        let mut w = self.n_in;
        for l in &self.layers {
            w = match *l {
                Layer::Dense { n_out, .. } => n_out,
                Layer::ConvTranspose2d(c) => c.h_out * c.w_out * c.c_out,
                _ => w,
            };
            sizes.push(w);
            off += l.n_params();
            offsets.push(off);
        }
        let mut net = Net {
            layers: self.layers,
            sizes,
            offsets,
            params: vec![0.0; off],
        };
        net.reinitialise(seed);
        Ok(net)
    }
}

/// A sequential network with a flat parameter vector; see the [module](self) documentation.
///
/// **Flat layout.** Layer after layer: a dense layer's `W` (row-major `n_out × n_in`) then
/// `b`; a transposed convolution's kernel `K[ky][kx][co][ci]` then its bias `b[co]`.
///
/// ```
/// use diffsmc_nn::{Init, Net};
///
/// // A SIREN: sin(8 (W₀x + b₀)) → sin(W₁h + b₁) → W₂h.
/// let net = Net::builder(5)
///     .dense(64, true, Init::SirenFirst)?.sine(8.0)?
///     .dense(64, true, Init::SirenHidden { omega0: 8.0 })?.sine(1.0)?
///     .dense(2, false, Init::Glorot)?
///     .build(1)?;
/// assert_eq!(net.n_params(), 5 * 64 + 64 + 64 * 64 + 64 + 64 * 2);
/// let theta = net.to_flat();
/// let mut y = [0.0; 2];
/// net.forward(&theta, &[0.1, 0.9, 0.0, 0.01, -0.01], &mut y);
/// assert!(y.iter().all(|v| v.is_finite()));
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Net {
    layers: Vec<Layer>,
    /// Activation widths: `sizes[0]` the input, `sizes[l + 1]` after layer `l`.
    sizes: Vec<usize>,
    offsets: Vec<usize>,
    params: Vec<f64>,
}

thread_local! {
    /// Per-thread activation buffer of the `f64` forward pass.
    pub(crate) static ACTS: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
    /// Per-thread copy of θ's values for [`Net::forward`] on `f64`.
    static THETA: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

impl Net {
    /// Starts a network with `n_in` inputs.
    pub fn builder(n_in: usize) -> NetBuilder {
        NetBuilder {
            n_in,
            layers: Vec::new(),
            width: n_in,
            shape: None,
        }
    }

    /// The layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }
    /// Input width.
    pub fn n_inputs(&self) -> usize {
        self.sizes[0]
    }
    /// Output width.
    pub fn n_outputs(&self) -> usize {
        self.sizes[self.sizes.len() - 1]
    }
    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.offsets[self.layers.len()]
    }
    /// The range of layer `l`'s parameters in the flat vector (empty for parameter-free
    /// layers).
    pub fn layer_range(&self, l: usize) -> Range<usize> {
        self.offsets[l]..self.offsets[l + 1]
    }
    /// The owned parameters (initial or set values).
    pub fn params(&self) -> &[f64] {
        &self.params
    }
    /// The owned parameters as a vector.
    pub fn to_flat(&self) -> Vec<f64> {
        self.params.clone()
    }
    /// Replaces the owned parameters.
    pub fn set_flat(&mut self, theta: &[f64]) -> Result<()> {
        self.check_theta(theta.len())?;
        self.params.copy_from_slice(theta);
        Ok(())
    }
    /// Total length of the activation trace (input, every layer's output).
    pub fn trace_len(&self) -> usize {
        self.sizes.iter().sum()
    }
    /// Activation widths (input first, then after each layer).
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    pub(crate) fn check_theta(&self, len: usize) -> Result<()> {
        if len != self.n_params() {
            return Err(SmcError::DimensionMismatch {
                what: "network parameter vector",
                expected: self.n_params(),
                got: len,
            });
        }
        Ok(())
    }

    /// Redraws the owned parameters from `seed` (see [`NetBuilder::build`]).
    pub fn reinitialise(&mut self, seed: u64) {
        for l in 0..self.layers.len() {
            let r = self.layer_range(l);
            let p = &mut self.params[r];
            p.fill(0.0);
            let key = StreamKey::new(seed, l, Purpose::Other(INIT_STREAM_TAG));
            match self.layers[l] {
                Layer::Dense {
                    n_in, n_out, init, ..
                } => init_fill(init, n_in, n_out, key, &mut p[..n_in * n_out]),
                Layer::ConvTranspose2d(c) => {
                    let fan_in = c.c_in * c.k * c.k;
                    let fan_out = c.c_out * c.k * c.k;
                    init_fill(
                        Init::LecunNormal,
                        fan_in,
                        fan_out,
                        key,
                        &mut p[..c.kernel_len()],
                    )
                }
                _ => {}
            }
        }
    }

    /// Evaluates the network at `theta` (any scalar) on `input`, writing `out`.
    ///
    /// On `f64` this is the fast path; on [`diffsmc::tape::Rev`] it records one custom tape
    /// operation when θ was prepared (use [`Net::prepare`] and [`Net::eval`] for that);
    /// here, on other scalars, every layer runs generically.
    ///
    /// Panics if the lengths do not match the network.
    pub fn forward<S: Scalar>(&self, theta: &[S], input: &[S], out: &mut [S]) {
        assert_eq!(theta.len(), self.n_params(), "Net::forward: θ length");
        assert_eq!(input.len(), self.n_inputs(), "Net::forward: input width");
        assert_eq!(out.len(), self.n_outputs(), "Net::forward: output width");
        if S::LANES == Some(0) {
            // f64: the fast path on copies of the values (for repeated evaluations at one θ
            // prefer `prepare` + `eval`, which keep θ's values once).
            THETA.with_borrow_mut(|th| {
                th.clear();
                th.extend(theta.iter().map(|t| t.re()));
                ACTS.with_borrow_mut(|acts| {
                    let x: Vec<f64> = input.iter().map(|v| v.re()).collect();
                    self.forward_f64(th, &x, acts);
                    let n = acts.len();
                    for (o, &v) in out.iter_mut().zip(&acts[n - self.n_outputs()..]) {
                        *o = S::cst(v);
                    }
                });
            });
            return;
        }
        self.forward_generic(theta, input, out);
    }

    /// The generic forward pass (any scalar; allocates its activations).
    pub(crate) fn forward_generic<S: Scalar>(&self, theta: &[S], input: &[S], out: &mut [S]) {
        let mut cur: Vec<S> = input.to_vec();
        for (l, layer) in self.layers.iter().enumerate() {
            let p = &theta[self.layer_range(l)];
            cur = match *layer {
                Layer::Dense {
                    n_in, n_out, bias, ..
                } => {
                    let (w, b) = p.split_at(n_in * n_out);
                    (0..n_out)
                        .map(|o| {
                            let mut acc = if bias { b[o] } else { S::zero() };
                            for (wi, xi) in w[o * n_in..(o + 1) * n_in].iter().zip(&cur) {
                                acc += *wi * *xi;
                            }
                            acc
                        })
                        .collect()
                }
                Layer::Sine { omega } => cur.iter().map(|&x| (x * omega).sin()).collect(),
                Layer::Relu => cur
                    .iter()
                    .map(|&x| if x.re() > 0.0 { x } else { S::zero() })
                    .collect(),
                Layer::Reshape { .. } => cur,
                Layer::ConvTranspose2d(c) => {
                    let (kern, b) = p.split_at(c.kernel_len());
                    let mut y = vec![S::zero(); c.h_out * c.w_out * c.c_out];
                    for o in 0..c.h_out * c.w_out {
                        y[o * c.c_out..(o + 1) * c.c_out].copy_from_slice(b);
                    }
                    for iy in 0..c.h_in {
                        for ix in 0..c.w_in {
                            let xp = &cur[(iy * c.w_in + ix) * c.c_in..][..c.c_in];
                            for ky in 0..c.k {
                                let Some(oy) = c.target(iy, ky, c.h_out) else {
                                    continue;
                                };
                                for kx in 0..c.k {
                                    let Some(ox) = c.target(ix, kx, c.w_out) else {
                                        continue;
                                    };
                                    let t = ky * c.k + kx;
                                    let o = oy * c.w_out + ox;
                                    for co in 0..c.c_out {
                                        let row = &kern[(t * c.c_out + co) * c.c_in..][..c.c_in];
                                        let mut acc = S::zero();
                                        for (wi, xi) in row.iter().zip(xp) {
                                            acc += *wi * *xi;
                                        }
                                        y[o * c.c_out + co] += acc;
                                    }
                                }
                            }
                        }
                    }
                    y
                }
            };
        }
        out.copy_from_slice(&cur);
    }

    /// The `f64` forward pass keeping every activation: `acts` becomes the concatenation of
    /// the input and each layer's output ([`Net::trace_len`] values); the output is its last
    /// [`Net::n_outputs`] values. Reuses `acts`' allocation.
    pub fn forward_f64(&self, theta: &[f64], input: &[f64], acts: &mut Vec<f64>) {
        acts.clear();
        acts.resize(self.trace_len(), 0.0);
        acts[..input.len()].copy_from_slice(input);
        let mut off = 0;
        for (l, layer) in self.layers.iter().enumerate() {
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            let (prev, next) = acts.split_at_mut(off + n_in);
            let x = &prev[off..];
            let y = &mut next[..n_out];
            let p = &theta[self.layer_range(l)];
            match *layer {
                Layer::Dense { bias, .. } => {
                    let (w, b) = p.split_at(n_in * n_out);
                    for (o, (yo, row)) in y.iter_mut().zip(w.chunks_exact(n_in)).enumerate() {
                        *yo = dot8(row, x) + if bias { b[o] } else { 0.0 };
                    }
                }
                Layer::Sine { omega } => {
                    for (yo, &xi) in y.iter_mut().zip(x) {
                        *yo = (omega * xi).sin();
                    }
                }
                Layer::Relu => {
                    for (yo, &xi) in y.iter_mut().zip(x) {
                        *yo = xi.max(0.0);
                    }
                }
                Layer::Reshape { .. } => y.copy_from_slice(x),
                Layer::ConvTranspose2d(c) => convt_forward(&c, p, x, y),
            }
            off += n_in;
        }
    }

    /// Back-propagates `gout` (the adjoint of the output) through a trace recorded by
    /// [`Net::forward_f64`] at `theta`: adds `∂/∂θ` to `sink` and writes the adjoint of the
    /// input to `gx`. `work` is scratch (grown as needed).
    pub(crate) fn backward_f64(
        &self,
        theta: &[f64],
        acts: &[f64],
        gout: &[f64],
        sink: &mut impl GradSink,
        gx: &mut [f64],
        work: &mut Work,
    ) {
        let nl = self.layers.len();
        let widest = self.sizes.iter().copied().max().unwrap_or(0);
        work.ga.clear();
        work.ga.resize(widest, 0.0);
        work.gb.clear();
        work.gb.resize(widest, 0.0);
        let mut g = std::mem::take(&mut work.ga);
        let mut gin = std::mem::take(&mut work.gb);
        g[..gout.len()].copy_from_slice(gout);
        let mut end = acts.len() - self.n_outputs();
        for l in (0..nl).rev() {
            let (n_in, n_out) = (self.sizes[l], self.sizes[l + 1]);
            let x = &acts[end - n_in..end];
            end -= n_in;
            let r = self.layer_range(l);
            let p = &theta[r.clone()];
            let gy = &g[..n_out];
            let gi = &mut gin[..n_in];
            match self.layers[l] {
                Layer::Dense { bias, .. } => {
                    let (w, _) = p.split_at(n_in * n_out);
                    gi.fill(0.0);
                    for (o, &go) in gy.iter().enumerate() {
                        if go == 0.0 {
                            continue;
                        }
                        let row = &w[o * n_in..(o + 1) * n_in];
                        for (a, &wv) in gi.iter_mut().zip(row) {
                            *a += go * wv;
                        }
                        sink.add_scaled(r.start + o * n_in, go, x);
                        if bias {
                            sink.add(r.start + n_in * n_out + o, go);
                        }
                    }
                }
                Layer::Sine { omega } => {
                    for ((a, &go), &xi) in gi.iter_mut().zip(gy).zip(x) {
                        *a = go * omega * (omega * xi).cos();
                    }
                }
                Layer::Relu => {
                    for ((a, &go), &xi) in gi.iter_mut().zip(gy).zip(x) {
                        *a = if xi > 0.0 { go } else { 0.0 };
                    }
                }
                Layer::Reshape { .. } => gi.copy_from_slice(gy),
                Layer::ConvTranspose2d(c) => {
                    work.dk.clear();
                    work.dk.resize(c.n_params(), 0.0);
                    convt_backward(&c, p, x, gy, gi, &mut work.dk);
                    sink.add_slice(r.start, &work.dk);
                }
            }
            std::mem::swap(&mut g, &mut gin);
        }
        gx.copy_from_slice(&g[..self.n_inputs()]);
        work.ga = g;
        work.gb = gin;
    }
}

/// Scratch of [`Net::backward_f64`].
#[derive(Debug, Default)]
pub(crate) struct Work {
    ga: Vec<f64>,
    gb: Vec<f64>,
    dk: Vec<f64>,
}

/// Where the backward pass puts `∂/∂θ`: a dense vector ([`VecSink`]) or the tape's adjoints.
pub(crate) trait GradSink {
    /// `∂/∂θ[p] += v`.
    fn add(&mut self, p: usize, v: f64);
    /// `∂/∂θ[start + i] += alpha · x[i]`.
    fn add_scaled(&mut self, start: usize, alpha: f64, x: &[f64]);
    /// `∂/∂θ[start + i] += v[i]`.
    fn add_slice(&mut self, start: usize, v: &[f64]);
}

/// A dense gradient vector.
pub(crate) struct VecSink<'a>(pub &'a mut [f64]);

impl GradSink for VecSink<'_> {
    #[inline]
    fn add(&mut self, p: usize, v: f64) {
        self.0[p] += v;
    }
    #[inline]
    fn add_scaled(&mut self, start: usize, alpha: f64, x: &[f64]) {
        for (g, &xi) in self.0[start..start + x.len()].iter_mut().zip(x) {
            *g += alpha * xi;
        }
    }
    #[inline]
    fn add_slice(&mut self, start: usize, v: &[f64]) {
        for (g, &vi) in self.0[start..start + v.len()].iter_mut().zip(v) {
            *g += vi;
        }
    }
}

/// `y = convT(x)` in `f64`: bias first, then per input pixel and tap one `c_out × c_in` GEMV.
fn convt_forward(c: &ConvT2d, p: &[f64], x: &[f64], y: &mut [f64]) {
    let (kern, b) = p.split_at(c.kernel_len());
    for yo in y.chunks_exact_mut(c.c_out) {
        yo.copy_from_slice(b);
    }
    let tap = c.c_out * c.c_in;
    for iy in 0..c.h_in {
        for ky in 0..c.k {
            let Some(oy) = c.target(iy, ky, c.h_out) else {
                continue;
            };
            for ix in 0..c.w_in {
                let xp = &x[(iy * c.w_in + ix) * c.c_in..][..c.c_in];
                for kx in 0..c.k {
                    let Some(ox) = c.target(ix, kx, c.w_out) else {
                        continue;
                    };
                    let m = &kern[(ky * c.k + kx) * tap..][..tap];
                    let yo = &mut y[(oy * c.w_out + ox) * c.c_out..][..c.c_out];
                    for (v, row) in yo.iter_mut().zip(m.chunks_exact(c.c_in)) {
                        *v += dot8(row, xp);
                    }
                }
            }
        }
    }
}

/// Adjoints of `convT`: `gx = Σ Mᵀ g_o` per input pixel, `dK += g_o x_pᵀ`, `db += Σ g_o`
/// (`dk` holds kernel then bias, zeroed by the caller).
fn convt_backward(c: &ConvT2d, p: &[f64], x: &[f64], gy: &[f64], gx: &mut [f64], dk: &mut [f64]) {
    let kern = &p[..c.kernel_len()];
    let (dkern, db) = dk.split_at_mut(c.kernel_len());
    for go in gy.chunks_exact(c.c_out) {
        for (d, &g) in db.iter_mut().zip(go) {
            *d += g;
        }
    }
    gx.fill(0.0);
    let tap = c.c_out * c.c_in;
    for iy in 0..c.h_in {
        for ky in 0..c.k {
            let Some(oy) = c.target(iy, ky, c.h_out) else {
                continue;
            };
            for ix in 0..c.w_in {
                let xp = &x[(iy * c.w_in + ix) * c.c_in..][..c.c_in];
                let gxp = &mut gx[(iy * c.w_in + ix) * c.c_in..][..c.c_in];
                for kx in 0..c.k {
                    let Some(ox) = c.target(ix, kx, c.w_out) else {
                        continue;
                    };
                    let t = ky * c.k + kx;
                    let m = &kern[t * tap..][..tap];
                    let dm = &mut dkern[t * tap..][..tap];
                    let go = &gy[(oy * c.w_out + ox) * c.c_out..][..c.c_out];
                    for ((&g, row), drow) in go
                        .iter()
                        .zip(m.chunks_exact(c.c_in))
                        .zip(dm.chunks_exact_mut(c.c_in))
                    {
                        if g == 0.0 {
                            continue;
                        }
                        for ((a, &w), (d, &xi)) in
                            gxp.iter_mut().zip(row).zip(drow.iter_mut().zip(xp))
                        {
                            *a += g * w;
                            *d += g * xi;
                        }
                    }
                }
            }
        }
    }
}

/// `Σ a_i b_i` with eight independent accumulators (vectorisable; the summation order is
/// fixed, so results are bit-reproducible).
#[inline(always)]
pub(crate) fn dot8(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

fn init_fill(init: Init, fan_in: usize, fan_out: usize, key: StreamKey, w: &mut [f64]) {
    let mut rng = key.rng(0);
    let uniform = |rng: &mut diffsmc::rng::StreamRng, a: f64, w: &mut [f64]| {
        for v in w.iter_mut() {
            *v = rng.random_range(-a..a);
        }
    };
    match init {
        Init::Glorot => uniform(&mut rng, (6.0 / (fan_in + fan_out) as f64).sqrt(), w),
        Init::SirenFirst => uniform(&mut rng, 1.0 / fan_in as f64, w),
        Init::SirenHidden { omega0 } => uniform(&mut rng, (6.0 / fan_in as f64).sqrt() / omega0, w),
        Init::LecunNormal => {
            let sd = (1.0 / fan_in as f64).sqrt() / 0.879_625_661_034_239_8;
            for v in w.iter_mut() {
                let z = loop {
                    let z = standard_normal(&mut rng);
                    if z.abs() <= 2.0 {
                        break z;
                    }
                };
                *v = sd * z;
            }
        }
        Init::Zeros => w.fill(0.0),
    }
}
