//! Activation functions and the fused first-order chain rule.

use diffsmc::Scalar;

/// An elementwise activation function.
///
/// On `f64` and on first-order dual numbers (`Dual64`, `DualSVec64<N>`) [`Activation::apply`]
/// evaluates the function and its derivative once in `f64` on the value part and applies the
/// chain rule in one scaled copy of the dual ([`lift`]); on higher-order duals it composes the
/// `num-dual` primitives instead, so second derivatives stay exact.
///
/// ```
/// use diffsmc_nn::Activation;
/// use num_dual::Dual64;
///
/// let swish = Activation::Swish;
/// assert_eq!(swish.apply(0.0_f64), 0.0);
/// // swish(x) = x / (1 + e^{-x}); swish'(0) = 1/2.
/// let d = swish.apply(Dual64::new(0.0, 1.0));
/// assert!((d.eps - 0.5).abs() < 1e-15);
/// assert_eq!(Activation::Identity.apply(3.0_f64), 3.0);
/// assert!((Activation::Sine { omega: 2.0 }.apply(0.25_f64) - 0.5_f64.sin()).abs() < 1e-15);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// `x`.
    Identity,
    /// `x · sigmoid(x) = x / (1 + e^{-x})` (also called SiLU).
    #[default]
    Swish,
    /// `tanh(x)`.
    Tanh,
    /// `sin(omega · x)` (SIREN uses `omega = 30` on the first layer; `omega = 1` is plain sine).
    Sine {
        /// The frequency `omega`.
        omega: f64,
    },
}

impl Activation {
    /// Plain sine, `sin(x)`.
    pub const SINE: Activation = Activation::Sine { omega: 1.0 };

    /// The value and the derivative at `x`, in `f64`.
    ///
    /// ```
    /// use diffsmc_nn::Activation;
    /// let (f, df) = Activation::Tanh.value_and_derivative(0.5);
    /// assert!((f - 0.5_f64.tanh()).abs() < 1e-16);
    /// assert!((df - (1.0 - f * f)).abs() < 1e-16);
    /// ```
    #[inline]
    pub fn value_and_derivative(self, x: f64) -> (f64, f64) {
        match self {
            Activation::Identity => (x, 1.0),
            Activation::Swish => {
                let s = sigmoid(x);
                if x == f64::NEG_INFINITY {
                    (0.0, 0.0)
                } else {
                    (x * s, s * (1.0 + x * (1.0 - s)))
                }
            }
            Activation::Tanh => {
                let t = x.tanh();
                (t, 1.0 - t * t)
            }
            Activation::Sine { omega } => {
                let (s, c) = (omega * x).sin_cos();
                (s, omega * c)
            }
        }
    }

    /// Applies the activation to one scalar (fused chain rule on `f64` and first-order duals).
    #[inline]
    pub fn apply<S: Scalar>(self, x: S) -> S {
        match self {
            Activation::Identity => x,
            _ => lift(
                x,
                |v| self.value_and_derivative(v),
                |x| self.apply_generic(x),
            ),
        }
    }

    /// Applies the activation by composing `num-dual` primitives (exact to every derivative
    /// order; slower than [`Activation::apply`] on first-order duals).
    pub fn apply_generic<S: Scalar>(self, x: S) -> S {
        match self {
            Activation::Identity => x,
            Activation::Swish => x / ((-x).exp() + 1.0),
            Activation::Tanh => x.tanh(),
            Activation::Sine { omega } => (x * omega).sin(),
        }
    }

    /// Applies the activation to every element of a slice.
    #[inline]
    pub fn apply_slice<S: Scalar>(self, xs: &mut [S]) {
        if self != Activation::Identity {
            for x in xs {
                *x = self.apply(*x);
            }
        }
    }
}

/// The logistic function `1 / (1 + e^{-x})`.
///
/// ```
/// assert_eq!(diffsmc_nn::sigmoid(0.0), 0.5);
/// assert_eq!(diffsmc_nn::sigmoid(-1000.0), 0.0);
/// ```
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Applies a scalar function `f` to a dual number by the chain rule, given `f` and `f'` at the
/// value part in `f64`: the result has value `f(x.re)` and derivative `f'(x.re) · x.eps`.
///
/// On `f64` (`S::NDERIV == 0`) it returns `f(x)` exactly; on first-order duals
/// (`S::NDERIV == 1`: `Dual64`, `DualSVec64<N>`) it costs one scaling of the derivative lanes
/// (the value part may differ from `f(x.re)` by one rounding); on higher-order duals, where
/// `f` and `f'` alone do not determine the result, it calls `generic(x)`, which must compute
/// the same function from `num-dual` primitives.
///
/// ```
/// use diffsmc_nn::lift;
/// use num_dual::{Dual64, Dual2_64};
///
/// let cube = |v: f64| (v * v * v, 3.0 * v * v);
/// let d = lift(Dual64::new(2.0, 1.0), cube, |x| x * x * x);
/// assert!((d.re - 8.0).abs() < 1e-14 && (d.eps - 12.0).abs() < 1e-14);
/// // Second-order duals take the generic path and keep the second derivative (6x = 12).
/// let d2 = lift(Dual2_64::new(2.0, 1.0, 0.0), cube, |x| x * x * x);
/// assert!((d2.v2 - 12.0).abs() < 1e-14);
/// ```
#[inline]
pub fn lift<S: Scalar>(x: S, f: impl FnOnce(f64) -> (f64, f64), generic: impl FnOnce(S) -> S) -> S {
    match S::NDERIV {
        0 => S::cst(f(x.re()).0),
        1 => {
            let v = x.re();
            let (fv, dfv) = f(v);
            // For first-order duals `x * c` scales the value and every derivative lane.
            x * dfv + (fv - v * dfv)
        }
        _ => generic(x),
    }
}
