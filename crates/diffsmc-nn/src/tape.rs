//! The network as one reverse-mode tape operation ([`diffsmc::tape::custom`]).
//!
//! Recorded node by node, one evaluation of a 4 → 32 → 2 network puts about 700 nodes on the
//! tape (every multiply-add of every weight). As one custom operation it records only its
//! outputs; the backward pass re-runs the `f64` forward pass and back-propagates through it by
//! hand, adding to the adjoints of θ and of the input.

use std::sync::Arc;

use diffsmc::tape::{self, AdjointsMut, CustomOp, Rev};

use crate::mlp::Mlp;

/// A network and θ as tape variables (shared by every evaluation at this θ).
#[derive(Debug)]
pub(crate) struct TapeNet {
    net: Mlp,
    theta: Vec<Rev>,
    values: Vec<f64>,
}

/// Per-layer buffers of one evaluation: the layer inputs `h_l` and the pre-activations, and
/// the adjoint buffers of the backward pass (reused across calls on a thread).
#[derive(Debug, Default)]
struct Trace {
    h: Vec<Vec<f64>>,
    pre: Vec<Vec<f64>>,
    hbar: Vec<f64>,
    hin: Vec<f64>,
    prebar: Vec<f64>,
    x: Vec<f64>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Trace> = std::cell::RefCell::new(Trace::default());
}

impl TapeNet {
    pub(crate) fn new(net: &Mlp, theta: Vec<Rev>) -> Self {
        let values = theta.iter().map(|r| r.value()).collect();
        TapeNet {
            net: net.clone(),
            theta,
            values,
        }
    }

    /// `f64` forward pass: `pre_l = W_l h_l + b_l`, `h_{l+1} = f_l(pre_l) (+ h_l)`.
    fn forward(&self, x: &[f64], tr: &mut Trace, out: &mut [f64]) {
        let net = &self.net;
        let nl = net.n_layers();
        tr.h.resize_with(nl, Vec::new);
        tr.pre.resize_with(nl, Vec::new);
        tr.h[0].clear();
        tr.h[0].extend_from_slice(x);
        for l in 0..nl {
            let (n_in, n_out) = (net.widths()[l], net.widths()[l + 1]);
            let r = net.layer_range(l);
            let (w, b) = self.values[r].split_at(n_in * n_out);
            let act = if l + 1 == nl {
                net.output_activation()
            } else {
                net.activation()
            };
            let skip = net.skip(l);
            let (hs, rest) = tr.h.split_at_mut(l + 1);
            let h = &hs[l];
            let pre = &mut tr.pre[l];
            pre.clear();
            pre.extend(
                w.chunks_exact(n_in)
                    .zip(b)
                    .map(|(row, &bo)| row.iter().zip(h).map(|(a, c)| a * c).sum::<f64>() + bo),
            );
            let dst: &mut [f64] = if l + 1 == nl {
                &mut out[..n_out]
            } else {
                let next = &mut rest[0];
                next.resize(n_out, 0.0);
                next
            };
            for (j, (o, &p)) in dst.iter_mut().zip(pre.iter()).enumerate() {
                *o = act.value_and_derivative(p).0 + if skip { h[j] } else { 0.0 };
            }
        }
    }
}

/// One evaluation at a recorded input, with what its backward pass needs: the layer inputs
/// `h_l` and the activation derivatives `f_l'(pre_l)`, concatenated over the layers.
#[derive(Debug)]
struct MlpOp {
    net: Arc<TapeNet>,
    x: Vec<Rev>,
    h: Vec<f64>,
    df: Vec<f64>,
}

impl CustomOp for MlpOp {
    fn backward(&self, out_adj: &[f64], adj: &mut AdjointsMut<'_>) {
        SCRATCH.with(|s| self.backward_with(&mut s.borrow_mut(), out_adj, adj));
    }
}

impl MlpOp {
    fn backward_with(&self, tr: &mut Trace, out_adj: &[f64], adj: &mut AdjointsMut<'_>) {
        let tn = &*self.net;
        let net = &tn.net;
        let widths = net.widths();
        let nl = net.n_layers();
        // hbar = adjoint of h_{l+1} (the output at l = nl − 1).
        let mut hbar = std::mem::take(&mut tr.hbar);
        let mut hin = std::mem::take(&mut tr.hin);
        let mut prebar = std::mem::take(&mut tr.prebar);
        hbar.clear();
        hbar.extend_from_slice(out_adj);
        let mut h_end = self.h.len();
        let mut df_end = self.df.len();
        for l in (0..nl).rev() {
            let (n_in, n_out) = (widths[l], widths[l + 1]);
            let r = net.layer_range(l);
            let w = &tn.values[r.start..r.start + n_in * n_out];
            let h = &self.h[h_end - n_in..h_end];
            let df = &self.df[df_end - n_out..df_end];
            h_end -= n_in;
            df_end -= n_out;
            prebar.clear();
            prebar.extend(hbar.iter().zip(df).map(|(g, d)| g * d));
            hin.clear();
            if net.skip(l) {
                hin.extend_from_slice(&hbar);
            } else {
                hin.resize(n_in, 0.0);
            }
            for (o, &pb) in prebar.iter().enumerate() {
                if pb == 0.0 {
                    continue;
                }
                let row = &w[o * n_in..(o + 1) * n_in];
                let prow = &tn.theta[r.start + o * n_in..r.start + (o + 1) * n_in];
                for i in 0..n_in {
                    adj.add(prow[i], pb * h[i]);
                    hin[i] += row[i] * pb;
                }
                adj.add(tn.theta[r.start + n_in * n_out + o], pb);
            }
            std::mem::swap(&mut hbar, &mut hin);
        }
        for (x, &g) in self.x.iter().zip(&hbar) {
            adj.add(*x, g);
        }
        tr.hbar = hbar;
        tr.hin = hin;
        tr.prebar = prebar;
    }
}

/// Evaluates `net` at θ (as tape variables in `tn`) and the input `x`, recording one custom
/// operation; writes the outputs to `out`.
pub(crate) fn forward_tape(tn: &Arc<TapeNet>, x: Vec<Rev>, out: &mut [Rev]) {
    let net = &tn.net;
    let nl = net.n_layers();
    let mut values = vec![0.0; net.n_outputs()];
    let (h, df) = SCRATCH.with(|s| {
        let tr = &mut *s.borrow_mut();
        let mut xv = std::mem::take(&mut tr.x);
        xv.clear();
        xv.extend(x.iter().map(|r| r.value()));
        tn.forward(&xv, tr, &mut values);
        tr.x = xv;
        let h: Vec<f64> = tr.h[..nl].iter().flatten().copied().collect();
        let mut df = Vec::with_capacity(net.widths()[1..].iter().sum());
        for (l, pre) in tr.pre[..nl].iter().enumerate() {
            let act = if l + 1 == nl {
                net.output_activation()
            } else {
                net.activation()
            };
            df.extend(pre.iter().map(|&p| act.value_and_derivative(p).1));
        }
        (h, df)
    });
    let op = MlpOp {
        net: Arc::clone(tn),
        x,
        h,
        df,
    };
    tape::custom(&values, Box::new(op), out);
}
