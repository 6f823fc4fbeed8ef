//! A parameter vector prepared for fast repeated network evaluation.

use std::any::Any;
use std::sync::Arc;

use diffsmc::tape::{self, Rev};

use crate::tape::TapeNet;

use diffsmc::Scalar;
use num_dual::{Dual64, DualSVec64};

use crate::mlp::Mlp;

/// Whether a scalar's derivative part is known to be zero: `Some(true)` for `f64`, for a
/// `Dual64` with zero `eps`, and for a `DualSVec64<N>` (N ∈ {1, 2, 3, 4, 5, 6, 7, 8, 12, 16,
/// 24, 32}) whose derivative is absent or zero; `Some(false)` when it is non-zero; `None` for
/// other scalar types (their derivative part cannot be inspected generically).
///
/// Forward-mode gradients seed a few derivative directions at a time; this finds which
/// parameters carry them.
///
/// ```
/// use diffsmc_nn::derivative_is_zero;
/// use num_dual::{Dual64, DualSVec64};
/// assert_eq!(derivative_is_zero(&1.5_f64), Some(true));
/// assert_eq!(derivative_is_zero(&Dual64::new(1.0, 0.0)), Some(true));
/// assert_eq!(derivative_is_zero(&Dual64::new(1.0, 2.0)), Some(false));
/// assert_eq!(derivative_is_zero(&DualSVec64::<8>::from_re(1.0)), Some(true));
/// assert_eq!(derivative_is_zero(&DualSVec64::<8>::from_re(1.0).derivative(3)), Some(false));
/// ```
pub fn derivative_is_zero<S: Scalar>(x: &S) -> Option<bool> {
    let a = x as &dyn Any;
    if a.is::<f64>() {
        return Some(true);
    }
    if let Some(d) = a.downcast_ref::<Dual64>() {
        return Some(d.eps == 0.0);
    }
    macro_rules! svec {
        ($($n:literal),*) => {
            $(
                if let Some(d) = a.downcast_ref::<DualSVec64<$n>>() {
                    return Some(d.eps.0.as_ref().is_none_or(|v| v.iter().all(|e| *e == 0.0)));
                }
            )*
        };
    }
    svec!(8, 16, 4, 2, 1, 3, 5, 6, 7, 12, 24, 32);
    None
}

/// How [`Mlp::forward_prepared`] evaluates a prepared θ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `f64` (no derivatives): the plain forward pass.
    Real,
    /// First-order duals with known sparsity: an `f64` forward pass, an `f64` backward pass
    /// per output, and dual arithmetic only for the parameters that carry derivatives.
    Sparse,
    /// Other first-order duals: [`Mlp::forward_split`].
    Split,
    /// Higher-order duals: [`Mlp::forward`].
    Generic,
    /// The reverse-mode tape scalar: one custom tape operation per evaluation.
    Tape,
}

/// One parameter that carries derivative lanes: where it sits and its tangent `θ_p − θ̄_p`
/// (a dual with zero value part).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Active<S> {
    pub layer: usize,
    pub row: usize,
    /// Column of a weight; `None` for a bias.
    pub col: Option<usize>,
    pub tangent: S,
}

/// A flat parameter vector θ prepared once (per model build) for many evaluations of one
/// [`Mlp`] with [`Mlp::forward_prepared`]: it keeps θ, its value parts in `f64`, and — for
/// the dual types [`derivative_is_zero`] can inspect — the list of the entries that carry
/// derivative lanes.
///
/// In a chunked forward-mode gradient only a chunk of 8 or 16 of the parameters carry
/// derivatives; the prepared evaluation then costs an `f64` forward pass, one `f64` backward
/// pass per output, and a few dual operations, whatever the chunk width.
///
/// ```
/// use diffsmc_nn::{Activation, Mlp};
/// use num_dual::{DualSVec64, DualStruct};
///
/// let net = Mlp::new(&[4, 32, 2], Activation::Swish, 3)?;
/// type D = DualSVec64<8>;
/// let theta: Vec<D> = net.to_flat().iter().enumerate()
///     .map(|(i, &v)| if (100..108).contains(&i) { D::from_re(v).derivative(i - 100) } else { D::from_re(v) })
///     .collect();
/// let prep = net.prepare(&theta);
/// assert_eq!(prep.n_active(), Some(8));
/// let x = [D::from_re(2.0).derivative(0), D::from_re(5.0), D::from_re(0.1), D::from_re(0.0)];
/// let (mut a, mut b) = ([D::from_re(0.0); 2], [D::from_re(0.0); 2]);
/// let (ns, nf) = net.prepared_scratch_len();
/// net.forward(&theta, &x, &mut a, &mut []);
/// net.forward_prepared(&prep, &x, &mut b, &mut vec![D::from_re(0.0); ns], &mut vec![0.0; nf]);
/// for k in 0..2 {
///     assert!((a[k].re() - b[k].re()).abs() < 1e-13);
///     let (da, db) = (a[k].eps.0.unwrap(), b[k].eps.0.unwrap());
///     assert!((da - db).norm() < 1e-12);
/// }
/// # Ok::<(), diffsmc::SmcError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PreparedTheta<S> {
    pub(crate) theta: Vec<S>,
    pub(crate) values: Vec<f64>,
    pub(crate) mode: Mode,
    pub(crate) active: Vec<Active<S>>,
    /// θ as tape variables, with the network (tape mode only).
    pub(crate) tape: Option<Arc<TapeNet>>,
}

impl<S: Scalar> PreparedTheta<S> {
    /// θ as given.
    pub fn theta(&self) -> &[S] {
        &self.theta
    }
    /// The value parts of θ.
    pub fn values(&self) -> &[f64] {
        &self.values
    }
    /// Number of entries found to carry derivatives (`None` when the scalar type cannot be
    /// inspected, or is of higher order, and every entry is treated as active).
    pub fn n_active(&self) -> Option<usize> {
        match self.mode {
            Mode::Real => Some(0),
            Mode::Sparse => Some(self.active.len()),
            Mode::Split | Mode::Generic | Mode::Tape => None,
        }
    }

    pub(crate) fn new(net: &Mlp, theta: &[S]) -> Self {
        let values: Vec<f64> = theta.iter().map(|t| t.re()).collect();
        let mut active = Vec::new();
        // The tape scalar (tested on a constant, so that an empty θ is classified too).
        if tape::as_rev(&S::zero()).is_some() {
            let th: Vec<Rev> = theta
                .iter()
                .map(|t| tape::as_rev(t).unwrap_or_else(|| Rev::constant(t.re())))
                .collect();
            return PreparedTheta {
                theta: theta.to_vec(),
                values,
                mode: Mode::Tape,
                active,
                tape: Some(Arc::new(TapeNet::new(net, th))),
            };
        }
        let mode = match S::NDERIV {
            0 => Mode::Real,
            1 => {
                let mut sparse = true;
                for (p, t) in theta.iter().enumerate() {
                    match derivative_is_zero(t) {
                        Some(true) => {}
                        Some(false) => {
                            let (layer, row, col) = net.locate(p);
                            active.push(Active {
                                layer,
                                row,
                                col,
                                tangent: *t - values[p],
                            });
                        }
                        None => {
                            sparse = false;
                            break;
                        }
                    }
                }
                if sparse {
                    Mode::Sparse
                } else {
                    active.clear();
                    Mode::Split
                }
            }
            _ => Mode::Generic,
        };
        PreparedTheta {
            theta: theta.to_vec(),
            values,
            mode,
            active,
            tape: None,
        }
    }
}
