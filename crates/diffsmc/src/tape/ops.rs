//! Arithmetic on [`Rev`]: the operators (by value and by reference, mixed with `f64`),
//! comparisons, and the `num-traits` implementations (`Zero`, `One`, `Num`, `Signed`, `Inv`,
//! `Sum`, `Product`, `FromPrimitive`).

use super::*;

#[inline]
fn add_rr(a: Rev, b: Rev) -> Rev {
    rec2(a.v + b.v, a, || 1.0, b, || 1.0)
}
#[inline]
fn add_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v + b, a, || 1.0)
}
#[inline]
fn add_fr(a: f64, b: Rev) -> Rev {
    rec1(a + b.v, b, || 1.0)
}
#[inline]
fn sub_rr(a: Rev, b: Rev) -> Rev {
    rec2(a.v - b.v, a, || 1.0, b, || -1.0)
}
#[inline]
fn sub_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v - b, a, || 1.0)
}
#[inline]
fn sub_fr(a: f64, b: Rev) -> Rev {
    rec1(a - b.v, b, || -1.0)
}
#[inline]
fn mul_rr(a: Rev, b: Rev) -> Rev {
    rec2(a.v * b.v, a, || b.v, b, || a.v)
}
#[inline]
fn mul_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v * b, a, || b)
}
#[inline]
fn mul_fr(a: f64, b: Rev) -> Rev {
    rec1(a * b.v, b, || a)
}
#[inline]
fn div_rr(a: Rev, b: Rev) -> Rev {
    let v = a.v / b.v;
    rec2(v, a, || 1.0 / b.v, b, || -v / b.v)
}
#[inline]
fn div_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v / b, a, || 1.0 / b)
}
#[inline]
fn div_fr(a: f64, b: Rev) -> Rev {
    let v = a / b.v;
    rec1(v, b, || -v / b.v)
}
#[inline]
fn rem_rr(a: Rev, b: Rev) -> Rev {
    rec2(a.v % b.v, a, || 1.0, b, || -(a.v / b.v).trunc())
}
#[inline]
fn rem_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v % b, a, || 1.0)
}
#[inline]
fn rem_fr(a: f64, b: Rev) -> Rev {
    rec1(a % b.v, b, || -(a / b.v).trunc())
}

macro_rules! binop {
    ($Tr:ident, $m:ident, $TrA:ident, $ma:ident, $rr:ident, $rf:ident, $fr:ident) => {
        impl $Tr for Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: Rev) -> Rev {
                $rr(self, rhs)
            }
        }
        impl $Tr<&Rev> for Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: &Rev) -> Rev {
                $rr(self, *rhs)
            }
        }
        impl $Tr<Rev> for &Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: Rev) -> Rev {
                $rr(*self, rhs)
            }
        }
        impl $Tr<&Rev> for &Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: &Rev) -> Rev {
                $rr(*self, *rhs)
            }
        }
        impl $Tr<f64> for Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: f64) -> Rev {
                $rf(self, rhs)
            }
        }
        impl $Tr<f64> for &Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: f64) -> Rev {
                $rf(*self, rhs)
            }
        }
        impl $Tr<Rev> for f64 {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: Rev) -> Rev {
                $fr(self, rhs)
            }
        }
        impl $Tr<&Rev> for f64 {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: &Rev) -> Rev {
                $fr(self, *rhs)
            }
        }
        impl $TrA for Rev {
            #[inline]
            fn $ma(&mut self, rhs: Rev) {
                *self = $rr(*self, rhs);
            }
        }
        impl $TrA<&Rev> for Rev {
            #[inline]
            fn $ma(&mut self, rhs: &Rev) {
                *self = $rr(*self, *rhs);
            }
        }
        impl $TrA<f64> for Rev {
            #[inline]
            fn $ma(&mut self, rhs: f64) {
                *self = $rf(*self, rhs);
            }
        }
    };
}

binop!(Add, add, AddAssign, add_assign, add_rr, add_rf, add_fr);
binop!(Sub, sub, SubAssign, sub_assign, sub_rr, sub_rf, sub_fr);
binop!(Mul, mul, MulAssign, mul_assign, mul_rr, mul_rf, mul_fr);
binop!(Div, div, DivAssign, div_assign, div_rr, div_rf, div_fr);
binop!(Rem, rem, RemAssign, rem_assign, rem_rr, rem_rf, rem_fr);

impl Neg for Rev {
    type Output = Rev;
    #[inline]
    fn neg(self) -> Rev {
        rec1(-self.v, self, || -1.0)
    }
}

impl Neg for &Rev {
    type Output = Rev;
    #[inline]
    fn neg(self) -> Rev {
        -*self
    }
}

// ---------------------------------------------------------------------------------------------
// Comparisons (on values only, like num-dual).

impl PartialEq for Rev {
    #[inline]
    fn eq(&self, other: &Rev) -> bool {
        self.v == other.v
    }
}

impl PartialEq<f64> for Rev {
    #[inline]
    fn eq(&self, other: &f64) -> bool {
        self.v == *other
    }
}

impl PartialOrd for Rev {
    #[inline]
    fn partial_cmp(&self, other: &Rev) -> Option<std::cmp::Ordering> {
        self.v.partial_cmp(&other.v)
    }
}

impl PartialOrd<f64> for Rev {
    #[inline]
    fn partial_cmp(&self, other: &f64) -> Option<std::cmp::Ordering> {
        self.v.partial_cmp(other)
    }
}

// ---------------------------------------------------------------------------------------------
// num-traits.

impl Zero for Rev {
    #[inline]
    fn zero() -> Rev {
        Rev::constant(0.0)
    }
    #[inline]
    fn is_zero(&self) -> bool {
        self.v == 0.0
    }
}

impl One for Rev {
    #[inline]
    fn one() -> Rev {
        Rev::constant(1.0)
    }
    #[inline]
    fn is_one(&self) -> bool {
        self.v == 1.0
    }
}

impl Num for Rev {
    type FromStrRadixErr = <f64 as Num>::FromStrRadixErr;
    /// Parses an `f64` and returns it as a constant.
    fn from_str_radix(s: &str, radix: u32) -> Result<Rev, Self::FromStrRadixErr> {
        <f64 as Num>::from_str_radix(s, radix).map(Rev::constant)
    }
}

impl Signed for Rev {
    /// `|x|` with slope +1 where the sign bit is clear and −1 where it is set.
    #[inline]
    fn abs(&self) -> Rev {
        let x = *self;
        rec1(x.v.abs(), x, || {
            if x.v.is_sign_positive() { 1.0 } else { -1.0 }
        })
    }
    #[inline]
    fn abs_sub(&self, other: &Rev) -> Rev {
        if self.v <= other.v {
            Rev::zero()
        } else {
            *self - *other
        }
    }
    /// A constant (`f64::signum` of the value).
    #[inline]
    fn signum(&self) -> Rev {
        Rev::constant(Signed::signum(&self.v))
    }
    #[inline]
    fn is_positive(&self) -> bool {
        Signed::is_positive(&self.v)
    }
    #[inline]
    fn is_negative(&self) -> bool {
        Signed::is_negative(&self.v)
    }
}

impl Inv for Rev {
    type Output = Rev;
    #[inline]
    fn inv(self) -> Rev {
        self.recip()
    }
}

impl Inv for &Rev {
    type Output = Rev;
    #[inline]
    fn inv(self) -> Rev {
        self.recip()
    }
}

/// Folds from the first item (values identical to `f64`'s sum; `-0.0` for no items).
impl Sum for Rev {
    fn sum<I: Iterator<Item = Rev>>(mut iter: I) -> Rev {
        match iter.next() {
            None => Rev::constant(-0.0),
            Some(first) => iter.fold(first, |acc, x| acc + x),
        }
    }
}

/// Folds from the first item (values identical to `f64`'s sum; `-0.0` for no items).
impl<'a> Sum<&'a Rev> for Rev {
    fn sum<I: Iterator<Item = &'a Rev>>(iter: I) -> Rev {
        iter.copied().sum()
    }
}

/// Folds from the first item (values identical to `f64`'s product; `1.0` for no items).
impl Product for Rev {
    fn product<I: Iterator<Item = Rev>>(mut iter: I) -> Rev {
        match iter.next() {
            None => Rev::one(),
            Some(first) => iter.fold(first, |acc, x| acc * x),
        }
    }
}

/// Folds from the first item (values identical to `f64`'s product; `1.0` for no items).
impl<'a> Product<&'a Rev> for Rev {
    fn product<I: Iterator<Item = &'a Rev>>(iter: I) -> Rev {
        iter.copied().product()
    }
}

macro_rules! from_primitive {
    ($($m:ident: $t:ty),*) => {
        /// Constants, converted as `f64` converts.
        impl FromPrimitive for Rev {
            $(
                #[inline]
                fn $m(n: $t) -> Option<Rev> {
                    <f64 as FromPrimitive>::$m(n).map(Rev::constant)
                }
            )*
        }
    };
}

from_primitive!(
    from_isize: isize, from_i8: i8, from_i16: i16, from_i32: i32, from_i64: i64, from_i128: i128,
    from_usize: usize, from_u8: u8, from_u16: u16, from_u32: u32, from_u64: u64, from_u128: u128,
    from_f32: f32, from_f64: f64
);
