//! The scalar abstraction: every model and resampler is written once for `S: Scalar`
//! and runs on `f64` (filtering) and on forward-mode dual numbers (gradients).

use nalgebra::SVector;
use num_dual::{Derivative, Dual2_64, Dual64, DualNum, DualSVec64};

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
pub trait Scalar: DualNum<Primitive = f64> + Copy + Send + Sync + 'static + sealed::Sealed {
    /// First-order derivative lanes, when the scalar is `f64` (`Some(0)`) or a first-order
    /// dual number (`Some(1)` for `Dual64`, `Some(N)` for `DualSVec64<N>`): kernels that
    /// carry the derivative part as flat `f64` arrays read it with [`Scalar::to_lanes`] and
    /// write it back with [`Scalar::from_lanes`]. `None` for the others (second-order duals,
    /// the tape scalar), which take the generic code paths.
    const LANES: Option<usize>;

    /// Whether the scalar records onto a thread-local tape ([`crate::tape::Rev`]):
    /// computations on it must stay on the calling thread, so the engine's parallel loops
    /// ([`crate::par`]) run sequentially for it.
    const ON_TAPE: bool = false;

    /// A constant (zero derivative part).
    #[inline]
    fn cst(x: f64) -> Self {
        Self::from(x)
    }

    /// The value part, and the derivative lanes written to `eps[..p]` when
    /// [`Scalar::LANES`] is `Some(p)` (`eps` must hold at least `p` entries). For scalars
    /// without lanes nothing is written.
    ///
    /// ```
    /// use diffsmc::Scalar;
    /// use num_dual::DualSVec64;
    /// let x = DualSVec64::<2>::from_re(1.5).derivative(1);
    /// let mut eps = [9.0; 2];
    /// assert_eq!(x.to_lanes(&mut eps), 1.5);
    /// assert_eq!(eps, [0.0, 1.0]);
    /// ```
    fn to_lanes(&self, eps: &mut [f64]) -> f64;

    /// The scalar with value `re` and derivative lanes `eps[..p]` (`p` from
    /// [`Scalar::LANES`]); for scalars without lanes, the constant `re`.
    ///
    /// ```
    /// use diffsmc::Scalar;
    /// use num_dual::Dual64;
    /// let x = Dual64::from_lanes(2.0, &[3.0]);
    /// assert_eq!((x.re, x.eps), (2.0, 3.0));
    /// ```
    fn from_lanes(re: f64, eps: &[f64]) -> Self;
}

/// `Scalar` is sealed: the engine's kernels rely on knowing every implementation (their lane
/// layout and whether they record on a tape).
mod sealed {
    pub trait Sealed {}
    impl Sealed for f64 {}
    impl Sealed for num_dual::Dual64 {}
    impl<const N: usize> Sealed for num_dual::DualSVec64<N> {}
    impl Sealed for num_dual::Dual2_64 {}
    impl Sealed for crate::tape::Rev {}
}

impl Scalar for f64 {
    const LANES: Option<usize> = Some(0);
    #[inline]
    fn to_lanes(&self, _eps: &mut [f64]) -> f64 {
        *self
    }
    #[inline]
    fn from_lanes(re: f64, _eps: &[f64]) -> Self {
        re
    }
}

impl Scalar for Dual64 {
    const LANES: Option<usize> = Some(1);
    #[inline]
    fn to_lanes(&self, eps: &mut [f64]) -> f64 {
        eps[0] = self.eps;
        self.re
    }
    #[inline]
    fn from_lanes(re: f64, eps: &[f64]) -> Self {
        Dual64::new(re, eps[0])
    }
}

impl<const N: usize> Scalar for DualSVec64<N> {
    const LANES: Option<usize> = Some(N);
    #[inline]
    fn to_lanes(&self, eps: &mut [f64]) -> f64 {
        match &self.eps.0 {
            Some(v) => eps[..N].copy_from_slice(v.as_slice()),
            None => eps[..N].fill(0.0),
        }
        self.re
    }
    #[inline]
    fn from_lanes(re: f64, eps: &[f64]) -> Self {
        let mut v = SVector::<f64, N>::zeros();
        v.as_mut_slice().copy_from_slice(&eps[..N]);
        DualSVec64::new(re, Derivative::some(v))
    }
}

impl Scalar for Dual2_64 {
    const LANES: Option<usize> = None;
    #[inline]
    fn to_lanes(&self, _eps: &mut [f64]) -> f64 {
        self.re
    }
    #[inline]
    fn from_lanes(re: f64, _eps: &[f64]) -> Self {
        Dual2_64::from(re)
    }
}

/// The lane count of `S` as a plain number: `p` for `Some(p)`, 0 for scalars without lanes.
#[inline]
pub const fn lane_count<S: Scalar>() -> usize {
    match S::LANES {
        Some(p) => p,
        None => 0,
    }
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
