//! Batched `f64` passes of a [`Net`]: `m` inputs at once, GEMM-style.
//!
//! Activations of a batch are stored per layer boundary as an `m × width` block (row `j` is
//! input `j`'s activation, contiguous); the trace is the concatenation of those blocks
//! (`m ·` [`Net::trace_len`] values, the output block last).
//!
//! **Same bits as one input at a time.** Every output element is computed with the same
//! operations in the same order as [`Net::forward_f64`]: a dense output is `dot8(row, x_j)` plus
//! the bias (or `+ 0.0`), a transposed-convolution output starts at its bias and receives its
//! taps' `dot8` contributions in the single-input loop order. Only the loop nest changes: each
//! weight row (or kernel tap) is loaded once and serves all `m` inputs, two at a time from
//! registers ([`dot8x2`]). On x86-64 both passes run compiled for AVX-512 or AVX2 when the
//! CPU has them (runtime detection, as `diffsmc::exp_shifted_sums`); every operation is the
//! same IEEE operation (no fused multiply-adds), so the bits are the same on every CPU.
//!
//! The backward pass accumulates the weight adjoints over the batch (`dW_o = Σ_j g_{j,o} x_j`,
//! a GEMM) in `f64` before they reach the gradient sink once per batch, so the tape's adjoints
//! of θ are touched once per batch instead of once per input.

use crate::net::{ConvT2d, GradSink, Layer, Net, dot8};

/// Scratch of [`Net::backward_f64_batch`].
#[derive(Debug, Default)]
pub(crate) struct BatchWork {
    ga: Vec<f64>,
    gb: Vec<f64>,
    /// One dense row's weight adjoint, or a convolution's kernel-and-bias adjoint.
    dw: Vec<f64>,
}

/// `[dot8(a, b0), dot8(a, b1)]` with the same summation order as [`dot8`] for each (so the
/// same bits), `a` loaded once for both.
#[inline(always)]
pub(crate) fn dot8x2(a: &[f64], b0: &[f64], b1: &[f64]) -> [f64; 2] {
    let n = a.len().min(b0.len()).min(b1.len());
    let (a, b0, b1) = (&a[..n], &b0[..n], &b1[..n]);
    let mut s0 = [0.0f64; 8];
    let mut s1 = [0.0f64; 8];
    let ca = a.chunks_exact(8);
    let c0 = b0.chunks_exact(8);
    let c1 = b1.chunks_exact(8);
    let (ra, r0, r1) = (ca.remainder(), c0.remainder(), c1.remainder());
    for ((x, y0), y1) in ca.zip(c0).zip(c1) {
        for j in 0..8 {
            s0[j] += x[j] * y0[j];
            s1[j] += x[j] * y1[j];
        }
    }
    let tree = |s: &[f64; 8]| ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    let (mut t0, mut t1) = (tree(&s0), tree(&s1));
    for ((x, y0), y1) in ra.iter().zip(r0).zip(r1) {
        t0 += x * y0;
        t1 += x * y1;
    }
    [t0, t1]
}

/// `y_j = W x_j + b` for the `m` rows of `x` (`m × n_in`) into `y` (`m × n_out`), row by row
/// of `W`, each row serving every input.
#[inline(always)]
fn dense_forward_batch(
    w: &[f64],
    b: Option<&[f64]>,
    n_in: usize,
    n_out: usize,
    m: usize,
    x: &[f64],
    y: &mut [f64],
) {
    for (o, row) in w.chunks_exact(n_in).enumerate() {
        let bo = b.map_or(0.0, |b| b[o]);
        let mut j = 0;
        while j + 2 <= m {
            let [s0, s1] = dot8x2(
                row,
                &x[j * n_in..(j + 1) * n_in],
                &x[(j + 1) * n_in..(j + 2) * n_in],
            );
            y[j * n_out + o] = s0 + bo;
            y[(j + 1) * n_out + o] = s1 + bo;
            j += 2;
        }
        if j < m {
            y[j * n_out + o] = dot8(row, &x[j * n_in..(j + 1) * n_in]) + bo;
        }
    }
}

/// The batched transposed convolution: bias first, then per input pixel and tap every kernel
/// row against all `m` inputs (the single-input loop order per output element).
#[inline(always)]
fn convt_forward_batch(c: &ConvT2d, p: &[f64], m: usize, x: &[f64], y: &mut [f64]) {
    let (kern, b) = p.split_at(c.kernel_len());
    for yo in y.chunks_exact_mut(c.c_out) {
        yo.copy_from_slice(b);
    }
    let nin = c.h_in * c.w_in * c.c_in;
    let nout = c.h_out * c.w_out * c.c_out;
    let tap = c.c_out * c.c_in;
    for iy in 0..c.h_in {
        for ky in 0..c.k {
            let Some(oy) = c.target(iy, ky, c.h_out) else {
                continue;
            };
            for ix in 0..c.w_in {
                let xoff = (iy * c.w_in + ix) * c.c_in;
                for kx in 0..c.k {
                    let Some(ox) = c.target(ix, kx, c.w_out) else {
                        continue;
                    };
                    let mat = &kern[(ky * c.k + kx) * tap..][..tap];
                    let yoff = (oy * c.w_out + ox) * c.c_out;
                    for (co, row) in mat.chunks_exact(c.c_in).enumerate() {
                        let mut j = 0;
                        while j + 2 <= m {
                            let [s0, s1] = dot8x2(
                                row,
                                &x[j * nin + xoff..][..c.c_in],
                                &x[(j + 1) * nin + xoff..][..c.c_in],
                            );
                            y[j * nout + yoff + co] += s0;
                            y[(j + 1) * nout + yoff + co] += s1;
                            j += 2;
                        }
                        if j < m {
                            y[j * nout + yoff + co] += dot8(row, &x[j * nin + xoff..][..c.c_in]);
                        }
                    }
                }
            }
        }
    }
}

/// Adjoints of the batched transposed convolution: `gx_j = Σ Mᵀ g_{j,o}`, `dK += Σ_j g_{j,o}
/// x_{j,p}ᵀ`, `db += Σ_j Σ_o g_{j,o}` (`dk` holds kernel then bias, zeroed by the caller).
#[inline(always)]
fn convt_backward_batch(
    c: &ConvT2d,
    p: &[f64],
    m: usize,
    x: &[f64],
    gy: &[f64],
    gx: &mut [f64],
    dk: &mut [f64],
) {
    let kern = &p[..c.kernel_len()];
    let (dkern, db) = dk.split_at_mut(c.kernel_len());
    for go in gy.chunks_exact(c.c_out) {
        for (d, &g) in db.iter_mut().zip(go) {
            *d += g;
        }
    }
    gx.fill(0.0);
    let nin = c.h_in * c.w_in * c.c_in;
    let nout = c.h_out * c.w_out * c.c_out;
    let tap = c.c_out * c.c_in;
    for iy in 0..c.h_in {
        for ky in 0..c.k {
            let Some(oy) = c.target(iy, ky, c.h_out) else {
                continue;
            };
            for ix in 0..c.w_in {
                let xoff = (iy * c.w_in + ix) * c.c_in;
                for kx in 0..c.k {
                    let Some(ox) = c.target(ix, kx, c.w_out) else {
                        continue;
                    };
                    let t = ky * c.k + kx;
                    let mat = &kern[t * tap..][..tap];
                    let dmat = &mut dkern[t * tap..][..tap];
                    let yoff = (oy * c.w_out + ox) * c.c_out;
                    for j in 0..m {
                        let xp = &x[j * nin + xoff..][..c.c_in];
                        let gxp = &mut gx[j * nin + xoff..][..c.c_in];
                        let go = &gy[j * nout + yoff..][..c.c_out];
                        for ((&g, row), drow) in go
                            .iter()
                            .zip(mat.chunks_exact(c.c_in))
                            .zip(dmat.chunks_exact_mut(c.c_in))
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
}

impl Net {
    /// The batched `f64` forward pass keeping every activation: `input` holds `m` inputs one
    /// after another (`m ·` [`Net::n_inputs`] values); `acts` becomes the `m × width` blocks of
    /// the input and of every layer's output (`m ·` [`Net::trace_len`] values), the outputs
    /// being its last `m ·` [`Net::n_outputs`] values. Each output has the same bits as
    /// [`Net::forward_f64`] on that input alone. Reuses `acts`' allocation.
    pub(crate) fn forward_f64_batch(
        &self,
        theta: &[f64],
        m: usize,
        input: &[f64],
        acts: &mut Vec<f64>,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                #[allow(unsafe_code)]
                unsafe fn avx512(net: &Net, th: &[f64], m: usize, x: &[f64], a: &mut Vec<f64>) {
                    net.forward_f64_batch_impl(th, m, x, a)
                }
                // SAFETY: AVX-512F was detected at run time just above.
                #[allow(unsafe_code)]
                return unsafe { avx512(self, theta, m, input, acts) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                #[target_feature(enable = "avx2")]
                #[allow(unsafe_code)]
                unsafe fn avx2(net: &Net, th: &[f64], m: usize, x: &[f64], a: &mut Vec<f64>) {
                    net.forward_f64_batch_impl(th, m, x, a)
                }
                // SAFETY: AVX2 was detected at run time just above.
                #[allow(unsafe_code)]
                return unsafe { avx2(self, theta, m, input, acts) };
            }
        }
        self.forward_f64_batch_impl(theta, m, input, acts)
    }

    #[inline(always)]
    fn forward_f64_batch_impl(&self, theta: &[f64], m: usize, input: &[f64], acts: &mut Vec<f64>) {
        let sizes = self.sizes();
        acts.clear();
        acts.resize(m * self.trace_len(), 0.0);
        acts[..input.len()].copy_from_slice(input);
        let mut off = 0;
        for (l, layer) in self.layers().iter().enumerate() {
            let (n_in, n_out) = (sizes[l], sizes[l + 1]);
            let (prev, next) = acts.split_at_mut(off + m * n_in);
            let x = &prev[off..];
            let y = &mut next[..m * n_out];
            let p = &theta[self.layer_range(l)];
            match *layer {
                Layer::Dense { bias, .. } => {
                    let (w, b) = p.split_at(n_in * n_out);
                    dense_forward_batch(w, bias.then_some(b), n_in, n_out, m, x, y);
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
                Layer::ConvTranspose2d(c) => convt_forward_batch(&c, p, m, x, y),
            }
            off += m * n_in;
        }
    }

    /// Back-propagates `gout` (`m × n_outputs`, the adjoints of the batch's outputs) through a
    /// trace recorded by [`Net::forward_f64_batch`] at `theta`: adds `∂/∂θ` (summed over the
    /// batch) to `sink` and writes the adjoints of the `m` inputs to `gx` (`m × n_inputs`).
    pub(crate) fn backward_f64_batch<G: GradSink>(
        &self,
        theta: &[f64],
        m: usize,
        acts: &[f64],
        gout: &[f64],
        sink: &mut G,
        gx: &mut [f64],
        work: &mut BatchWork,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                #[target_feature(enable = "avx512f")]
                #[allow(unsafe_code)]
                unsafe fn avx512<G: GradSink>(
                    net: &Net,
                    a: (&[f64], usize, &[f64], &[f64]),
                    sink: &mut G,
                    gx: &mut [f64],
                    work: &mut BatchWork,
                ) {
                    net.backward_f64_batch_impl(a.0, a.1, a.2, a.3, sink, gx, work)
                }
                // SAFETY: AVX-512F was detected at run time just above.
                #[allow(unsafe_code)]
                return unsafe { avx512(self, (theta, m, acts, gout), sink, gx, work) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                #[target_feature(enable = "avx2")]
                #[allow(unsafe_code)]
                unsafe fn avx2<G: GradSink>(
                    net: &Net,
                    a: (&[f64], usize, &[f64], &[f64]),
                    sink: &mut G,
                    gx: &mut [f64],
                    work: &mut BatchWork,
                ) {
                    net.backward_f64_batch_impl(a.0, a.1, a.2, a.3, sink, gx, work)
                }
                // SAFETY: AVX2 was detected at run time just above.
                #[allow(unsafe_code)]
                return unsafe { avx2(self, (theta, m, acts, gout), sink, gx, work) };
            }
        }
        self.backward_f64_batch_impl(theta, m, acts, gout, sink, gx, work)
    }

    #[inline(always)]
    fn backward_f64_batch_impl<G: GradSink>(
        &self,
        theta: &[f64],
        m: usize,
        acts: &[f64],
        gout: &[f64],
        sink: &mut G,
        gx: &mut [f64],
        work: &mut BatchWork,
    ) {
        let sizes = self.sizes();
        let nl = self.layers().len();
        let widest = sizes.iter().copied().max().unwrap_or(0);
        work.ga.clear();
        work.ga.resize(m * widest, 0.0);
        work.gb.clear();
        work.gb.resize(m * widest, 0.0);
        let mut g = std::mem::take(&mut work.ga);
        let mut gin = std::mem::take(&mut work.gb);
        g[..gout.len()].copy_from_slice(gout);
        let mut end = acts.len() - m * self.n_outputs();
        for l in (0..nl).rev() {
            let (n_in, n_out) = (sizes[l], sizes[l + 1]);
            let x = &acts[end - m * n_in..end];
            end -= m * n_in;
            let r = self.layer_range(l);
            let p = &theta[r.clone()];
            let gy = &g[..m * n_out];
            let gi = &mut gin[..m * n_in];
            match self.layers()[l] {
                Layer::Dense { bias, .. } => {
                    let w = &p[..n_in * n_out];
                    gi.fill(0.0);
                    work.dw.clear();
                    work.dw.resize(n_in, 0.0);
                    for (o, row) in w.chunks_exact(n_in).enumerate() {
                        let dw = &mut work.dw[..];
                        dw.fill(0.0);
                        let mut db = 0.0;
                        let mut any = false;
                        for j in 0..m {
                            let go = gy[j * n_out + o];
                            if go == 0.0 {
                                continue;
                            }
                            any = true;
                            db += go;
                            let gij = &mut gi[j * n_in..(j + 1) * n_in];
                            let xj = &x[j * n_in..(j + 1) * n_in];
                            for ((a, &wv), (d, &xv)) in
                                gij.iter_mut().zip(row).zip(dw.iter_mut().zip(xj))
                            {
                                *a += go * wv;
                                *d += go * xv;
                            }
                        }
                        if any {
                            sink.add_slice(r.start + o * n_in, dw);
                            if bias {
                                sink.add(r.start + n_in * n_out + o, db);
                            }
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
                    work.dw.clear();
                    work.dw.resize(c.n_params(), 0.0);
                    convt_backward_batch(&c, p, m, x, gy, gi, &mut work.dw);
                    sink.add_slice(r.start, &work.dw);
                }
            }
            std::mem::swap(&mut g, &mut gin);
        }
        gx.copy_from_slice(&g[..m * self.n_inputs()]);
        work.ga = g;
        work.gb = gin;
    }
}
