//! The scalar abstraction: every model and resampler is written once for `S: Scalar`
//! and runs on `f64` (filtering) and on forward-mode dual numbers (gradients).

use num_dual::DualNum;

/// A real number type the engine can compute with: `f64`, or a `num-dual` dual number
/// whose primitive is `f64` (`Dual64`, `DualSVec64<N>`, …).
///
/// The value part is `x.re()` (from [`num_dual::DualStruct`], re-exported in the prelude).
/// Decisions (resample or not, which index, sorting) are taken on `.re()` of the run's own
/// values, never on a separate `f64` run.
///
/// ```
/// use diffsmc::Scalar;
/// use num_dual::Dual64;
///
/// fn square_plus_one<S: Scalar>(x: S) -> S {
///     x * x + 1.0
/// }
/// assert_eq!(square_plus_one(3.0_f64), 10.0);
/// let d = square_plus_one(Dual64::new(3.0, 1.0));
/// assert_eq!((d.re, d.eps), (10.0, 6.0));
/// ```
pub trait Scalar: DualNum<Primitive = f64> + Copy + Send + Sync + 'static {
    /// A constant (zero derivative part).
    #[inline]
    fn cst(x: f64) -> Self {
        Self::from(x)
    }
}

impl<T> Scalar for T where T: DualNum<Primitive = f64> + Copy + Send + Sync + 'static {}

/// Whether `S` records onto a thread-local tape ([`crate::tape::Rev`]): such computations must
/// stay on the calling thread, so parallel loops run sequentially for it.
#[inline]
pub(crate) fn records_on_tape<S: 'static>() -> bool {
    std::any::TypeId::of::<S>() == std::any::TypeId::of::<crate::tape::Rev>()
}

/// Numerically stable `log(sum(exp(v)))` over a slice; `-inf` for an empty slice or when all
/// entries are `-inf`. The maximum is chosen on the value part and subtracted as a scalar, so
/// derivatives are exact softmax-weighted sums.
///
/// ```
/// let v = [0.0_f64, (2.0_f64).ln()];
/// assert!((diffsmc::log_sum_exp(&v) - (3.0_f64).ln()).abs() < 1e-15);
/// ```
pub fn log_sum_exp<S: Scalar>(v: &[S]) -> S {
    let mut imax = None;
    let mut max = f64::NEG_INFINITY;
    for (i, x) in v.iter().enumerate() {
        let r = x.re();
        if r > max || (imax.is_none() && r.is_nan()) {
            max = r;
            imax = Some(i);
        }
        if r.is_nan() {
            return *x;
        }
    }
    let Some(imax) = imax else {
        return S::cst(f64::NEG_INFINITY);
    };
    if max == f64::NEG_INFINITY {
        return S::cst(f64::NEG_INFINITY);
    }
    if max == f64::INFINITY {
        return v[imax];
    }
    let m = v[imax];
    let mut acc = S::zero();
    for x in v {
        if x.re() != f64::NEG_INFINITY {
            acc += (*x - m).exp();
        }
    }
    m + acc.ln()
}
