//! Fast numeric kernels shared by the resamplers: a branch-free `exp` for non-positive
//! arguments, lane-wise sums and maxima in a fixed order, and the plain/fused multiply-add
//! switch they are written over.
//!
//! Everything here works on `f64` lanes (the value part, or the value and derivative lanes of
//! a dual number laid out flat) and is written so that the loops calling it vectorise. The
//! summation orders are fixed (a lane accumulator of [`CH`] entries, then a fixed tree), so
//! results do not depend on the number of threads or on how a caller chunks its work.
//!
//! Users: the diffusion resampler's portable lane kernels (`resample::diffusion`; its AVX-512
//! kernel has its own table-driven exponential and shares only the reduction constants and
//! [`EXP_MIN_ARG`]) and the entropic-OT resampler's `f64` Sinkhorn passes
//! (`resample::ot`), and the particle filter's normaliser and weights
//! ([`exp_shifted_sums`], public). Otherwise crate-internal.

/// Chunk width of the vectorised loops (`f64` lanes processed together).
pub(crate) const CH: usize = 8;

/// `a · b + c`, plain (two roundings) or fused (one rounding; only where the CPU has FMA).
pub(crate) trait MulAdd {
    fn madd(a: f64, b: f64, c: f64) -> f64;
}

/// `a · b + c` with two roundings (compiles to a multiply and an add everywhere).
#[derive(Debug)]
pub(crate) struct Plain;
impl MulAdd for Plain {
    #[inline(always)]
    fn madd(a: f64, b: f64, c: f64) -> f64 {
        a * b + c
    }
}

/// `a · b + c` with one rounding; use only in code compiled with the `fma` target feature
/// (otherwise `mul_add` is a slow library call).
#[cfg(target_arch = "x86_64")]
#[derive(Debug)]
pub(crate) struct Fused;
#[cfg(target_arch = "x86_64")]
impl MulAdd for Fused {
    #[inline(always)]
    fn madd(a: f64, b: f64, c: f64) -> f64 {
        a.mul_add(b, c)
    }
}

/// `ln 2` split for Cody–Waite reduction: `LN2_HI` has trailing zero bits (0x3FE62E42FEE00000),
/// so `n · LN2_HI` is exact for the `|n| ≤ 1022` used here.
pub(crate) const LN2_HI: f64 = 6.931_471_803_691_238e-1;
/// `ln 2 − LN2_HI`.
pub(crate) const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// `1.5 · 2^52`: adding it rounds to an integer held in the low mantissa bits.
pub(crate) const EXP_SHIFT: f64 = 6_755_399_441_055_744.0;
/// Below this argument [`exp_nonpos`] returns 0 (`exp(−708) ≈ 3.3e-308`, near the smallest
/// normal number).
pub(crate) const EXP_MIN_ARG: f64 = -708.0;
/// Taylor coefficients `1/j!`, `j = 0..=12`, of the polynomial in [`exp_nonpos`].
pub(crate) const EXP_C: [f64; 13] = [
    1.0,
    1.0,
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
];

/// Branch-free `exp(x)` for `x ≤ 0` (max-subtracted logits; small positive rounding excursions
/// are fine up to 709), including `-inf` (→ 0); results below `exp(−708)` are flushed to 0.
///
/// Cody–Waite reduction `x = n ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-12 Taylor polynomial
/// (truncation error < 2.5e-16 relative) evaluated by Estrin's scheme (short dependency
/// chains; faster than Horner's scheme in vectorised loops), and `2^n`
/// assembled in the exponent bits. Relative error < 1e-15 (≈ 5e-16 measured; tested against
/// `f64::exp`). `F` chooses plain or fused multiply-adds.
#[inline(always)]
pub(crate) fn exp_nonpos<F: MulAdd>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const C: [f64; 13] = EXP_C;
    let ok = x > EXP_MIN_ARG;
    let xc = if ok { x } else { EXP_MIN_ARG };
    let kf = F::madd(xc, LOG2E, EXP_SHIFT);
    let bits = kf.to_bits();
    let nf = kf - EXP_SHIFT;
    let r = F::madd(-nf, LN2_LO, F::madd(-nf, LN2_HI, xc));
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let p01 = F::madd(C[1], r, C[0]);
    let p23 = F::madd(C[3], r, C[2]);
    let p45 = F::madd(C[5], r, C[4]);
    let p67 = F::madd(C[7], r, C[6]);
    let p89 = F::madd(C[9], r, C[8]);
    let p1011 = F::madd(C[11], r, C[10]);
    let q0 = F::madd(p23, r2, p01);
    let q1 = F::madd(p67, r2, p45);
    let q2 = F::madd(p1011, r2, p89);
    let s0 = F::madd(q1, r4, q0);
    let s1 = F::madd(C[12], r4, q2);
    let p = F::madd(s1, r8, s0);
    // 2^n: the low bits of `bits` hold n (two's complement); n + 1023 ∈ [1, 1023].
    let scale = f64::from_bits(bits.wrapping_add(1023) << 52);
    if ok { p * scale } else { 0.0 }
}

/// Sum of [`CH`] lane accumulators by a fixed tree.
#[inline(always)]
pub(crate) fn hsum(a: &[f64; CH]) -> f64 {
    ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
}

/// Maximum of [`CH`] lanes (NaN lanes are ignored).
#[inline(always)]
pub(crate) fn hmax(a: &[f64; CH]) -> f64 {
    a.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// Maximum of a slice whose length is a multiple of [`CH`], with [`CH`] lanes.
#[inline(always)]
pub(crate) fn lane_max(v: &[f64]) -> f64 {
    let mut m = [f64::NEG_INFINITY; CH];
    for vc in v.chunks_exact(CH) {
        for c in 0..CH {
            m[c] = if vc[c] > m[c] { vc[c] } else { m[c] };
        }
    }
    hmax(&m)
}

/// `Σ v_i` for a slice whose length is a multiple of [`CH`], with [`CH`] lane accumulators.
#[inline(always)]
pub(crate) fn lane_sum(v: &[f64]) -> f64 {
    let mut s = [0.0; CH];
    for vc in v.chunks_exact(CH) {
        for c in 0..CH {
            s[c] += vc[c];
        }
    }
    hsum(&s)
}

/// `v[i] ← exp(v[i] − m)` for every `i`, and the sums `(Σ v[i], Σ v[i]²)` of the results:
/// the exponentials of the particle filter's normaliser and of [`crate::weights_f64`].
///
/// `m` must be at least every `v[i]` (a maximum; small positive excursions up to 709 are
/// fine); `-inf` entries give 0 and results below `exp(−708)` are flushed to 0. The
/// exponential is a branch-free Cody–Waite reduction and a degree-12 polynomial (relative
/// error < 1e-15 against `f64::exp`), the sums run in 8 lane accumulators added by a fixed
/// tree, so the result depends on nothing but `v` and `m`. On x86-64 the loop runs compiled
/// for AVX-512 or AVX2 when the CPU has them; every operation is the same IEEE operation (no
/// fused multiply-adds), so the bits are the same on every CPU.
///
/// ```
/// let mut v = vec![0.0, -1.0, f64::NEG_INFINITY];
/// let (s1, s2) = diffsmc::exp_shifted_sums(&mut v, 0.0);
/// assert!((v[1] - (-1f64).exp()).abs() < 1e-15 && v[2] == 0.0);
/// assert!((s1 - (1.0 + (-1f64).exp())).abs() < 1e-15);
/// assert!((s2 - (1.0 + (-2f64).exp())).abs() < 1e-15);
/// ```
pub fn exp_shifted_sums(v: &mut [f64], m: f64) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            #[allow(unsafe_code)]
            unsafe fn avx512(v: &mut [f64], m: f64) -> (f64, f64) {
                exp_shifted_sums_impl(v, m)
            }
            // SAFETY: AVX-512F was detected at run time just above.
            #[allow(unsafe_code)]
            return unsafe { avx512(v, m) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            #[allow(unsafe_code)]
            unsafe fn avx2(v: &mut [f64], m: f64) -> (f64, f64) {
                exp_shifted_sums_impl(v, m)
            }
            // SAFETY: AVX2 was detected at run time just above.
            #[allow(unsafe_code)]
            return unsafe { avx2(v, m) };
        }
    }
    exp_shifted_sums_impl(v, m)
}

#[inline(always)]
fn exp_shifted_sums_impl(v: &mut [f64], m: f64) -> (f64, f64) {
    let mut s1 = [0.0; CH];
    let mut s2 = [0.0; CH];
    let full = v.len() / CH * CH;
    let (head, tail) = v.split_at_mut(full);
    for vc in head.chunks_exact_mut(CH) {
        for c in 0..CH {
            let e = exp_nonpos::<Plain>(vc[c] - m);
            vc[c] = e;
            s1[c] += e;
            s2[c] += e * e;
        }
    }
    for (c, x) in tail.iter_mut().enumerate() {
        let e = exp_nonpos::<Plain>(*x - m);
        *x = e;
        s1[c] += e;
        s2[c] += e * e;
    }
    (hsum(&s1), hsum(&s2))
}

/// The maximum of `v` and whether any entry is NaN, in one pass of [`CH`] lanes.
#[inline]
pub(crate) fn max_and_nan(v: &[f64]) -> (f64, bool) {
    let mut m = [f64::NEG_INFINITY; CH];
    let mut nan = [false; CH];
    let full = v.len() / CH * CH;
    for vc in v[..full].chunks_exact(CH) {
        for c in 0..CH {
            m[c] = if vc[c] > m[c] { vc[c] } else { m[c] };
            nan[c] |= vc[c].is_nan();
        }
    }
    for (c, &x) in v[full..].iter().enumerate() {
        m[c] = if x > m[c] { x } else { m[c] };
        nan[c] |= x.is_nan();
    }
    (hmax(&m), nan.iter().any(|&b| b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every step of 7.313e-4 over `[−708, 0]` (about a million points), both multiply-add
    /// forms. The bound 1e-15 is about 4.5 ulp: the polynomial truncates at < 2.5e-16 and
    /// the reduction and evaluation round a handful of times.
    #[test]
    fn exp_nonpos_is_accurate() {
        let mut worst: f64 = 0.0;
        let mut x: f64 = 0.0;
        while x > -708.0 {
            let want = x.exp();
            let plain = exp_nonpos::<Plain>(x);
            worst = worst.max(((plain - want) / want).abs());
            #[cfg(target_arch = "x86_64")]
            {
                let fused = exp_nonpos::<Fused>(x);
                worst = worst.max(((fused - want) / want).abs());
            }
            x -= 0.000_731_3;
        }
        assert!(worst < 1e-15, "worst relative error {worst:e}");
        assert_eq!(exp_nonpos::<Plain>(0.0), 1.0);
        assert_eq!(exp_nonpos::<Plain>(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpos::<Plain>(-1e300), 0.0);
        assert_eq!(exp_nonpos::<Plain>(-709.0), 0.0);
        // Small positive excursions (rounding of a subtracted maximum) stay accurate.
        let e = exp_nonpos::<Plain>(1e-12);
        assert!((e - 1e-12_f64.exp()).abs() < 1e-15);
    }

    /// Exponentials and sums against `f64::exp` and plain loops, for every tail length; the
    /// bound 1e-14 allows the 1e-15 of [`exp_nonpos`] plus reassociated sums of ≤ 43 terms.
    #[test]
    fn shifted_exponentials_and_their_sums() {
        for n in [0usize, 1, 7, 8, 9, 23, 43] {
            let v: Vec<f64> = (0..n).map(|i| -(((i * 13) % 17) as f64) * 0.7).collect();
            let (m, nan) = max_and_nan(&v);
            assert!(!nan);
            let want_m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(m, want_m);
            let mut out = v.clone();
            let (s1, s2) = exp_shifted_sums(&mut out, m);
            for (o, x) in out.iter().zip(&v) {
                assert!((o - (x - m).exp()).abs() <= 1e-15 * (x - m).exp());
            }
            let w1: f64 = v.iter().map(|x| (x - m).exp()).sum();
            let w2: f64 = v.iter().map(|x| (2.0 * (x - m)).exp()).sum();
            assert!((s1 - w1).abs() <= 1e-14 * w1.max(1e-300));
            assert!((s2 - w2).abs() <= 1e-14 * w2.max(1e-300));
        }
        let (_, nan) = max_and_nan(&[0.0, f64::NAN, 1.0]);
        assert!(nan);
        let mut out = [f64::NEG_INFINITY, 0.0];
        let (s1, _) = exp_shifted_sums(&mut out, 0.0);
        assert_eq!((out, s1), ([0.0, 1.0], 1.0));
    }

    #[test]
    fn lane_sums_and_maxima_match_plain_loops() {
        let v: Vec<f64> = (0..3 * CH).map(|i| ((i * 37) % 11) as f64 - 4.5).collect();
        let want: f64 = v.iter().sum();
        assert!((lane_sum(&v) - want).abs() < 1e-12);
        assert_eq!(lane_max(&v), 5.5);
        assert_eq!(lane_sum(&[]), 0.0);
        assert_eq!(lane_max(&[]), f64::NEG_INFINITY);
        let mut a = [1.0; CH];
        a[3] = f64::NAN;
        a[5] = 7.0;
        assert_eq!(hmax(&a), 7.0);
    }
}
