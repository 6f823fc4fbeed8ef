//! `num-dual`'s [`DualNum`] for [`Rev`] (the elementary functions, each recording its
//! partial derivatives), so that `Rev` is a [`crate::Scalar`].

use super::*;

impl DualStruct for Rev {
    type Real = f64;
    type Inner = f64;
    #[inline]
    fn re(&self) -> f64 {
        self.v
    }
    #[inline]
    fn from_inner(inner: &f64) -> Rev {
        Rev::constant(*inner)
    }
}

impl Mappable<Rev> for Rev {
    type Output<O> = O;
    #[inline]
    fn map_dual<M: Fn(Rev) -> O, O>(self, f: M) -> O {
        f(self)
    }
}

impl DualNum for Rev {
    type Primitive = f64;
    const NDERIV: usize = 1;
    type InnerDual = f64;

    #[inline]
    fn from_re(re: f64) -> Rev {
        Rev::constant(re)
    }

    #[inline]
    fn scale(self, factor: &f64) -> Rev {
        self * *factor
    }

    #[inline]
    fn recip(&self) -> Rev {
        let r = self.v.recip();
        rec1(r, *self, || -r * r)
    }

    #[inline]
    fn powi(&self, n: i32) -> Rev {
        let x = self.v;
        let v = x.powi(n);
        match n {
            0 => Rev::constant(v),
            1 => rec1(v, *self, || 1.0),
            2 => rec1(v, *self, || 2.0 * x),
            _ => rec1(v, *self, || x.powi(n - 3) * x * x * f64::from(n)),
        }
    }

    #[inline]
    fn powf(&self, n: f64) -> Rev {
        let x = self.v;
        let v = x.powf(n);
        if n == 0.0 {
            Rev::constant(v)
        } else if n == 1.0 {
            rec1(v, *self, || 1.0)
        } else if (n - 2.0).abs() < f64::EPSILON {
            rec1(v, *self, || 2.0 * x)
        } else {
            rec1(v, *self, || x.powf(n - 3.0) * x * x * n)
        }
    }

    #[inline]
    fn sqrt(&self) -> Rev {
        let v = self.v.sqrt();
        rec1(v, *self, || v * self.v.recip() * 0.5)
    }

    #[inline]
    fn cbrt(&self) -> Rev {
        let v = self.v.cbrt();
        rec1(v, *self, || v * self.v.recip() * (1.0 / 3.0))
    }

    #[inline]
    fn exp(&self) -> Rev {
        let v = self.v.exp();
        rec1(v, *self, || v)
    }

    #[inline]
    fn exp2(&self) -> Rev {
        let v = self.v.exp2();
        rec1(v, *self, || v * std::f64::consts::LN_2)
    }

    #[inline]
    fn exp_m1(&self) -> Rev {
        rec1(self.v.exp_m1(), *self, || self.v.exp())
    }

    #[inline]
    fn ln(&self) -> Rev {
        rec1(self.v.ln(), *self, || self.v.recip())
    }

    #[inline]
    fn log(&self, base: f64) -> Rev {
        rec1(self.v.log(base), *self, || self.v.recip() / base.ln())
    }

    #[inline]
    fn log2(&self) -> Rev {
        rec1(self.v.log2(), *self, || {
            self.v.recip() / std::f64::consts::LN_2
        })
    }

    #[inline]
    fn log10(&self) -> Rev {
        rec1(self.v.log10(), *self, || {
            self.v.recip() / std::f64::consts::LN_10
        })
    }

    #[inline]
    fn ln_1p(&self) -> Rev {
        rec1(self.v.ln_1p(), *self, || (self.v + 1.0).recip())
    }

    #[inline]
    fn sin(&self) -> Rev {
        rec1(self.v.sin(), *self, || self.v.cos())
    }

    #[inline]
    fn cos(&self) -> Rev {
        rec1(self.v.cos(), *self, || -self.v.sin())
    }

    #[inline]
    fn tan(&self) -> Rev {
        rec1(self.v.tan(), *self, || {
            let c = self.v.cos();
            1.0 / (c * c)
        })
    }

    #[inline]
    fn sin_cos(&self) -> (Rev, Rev) {
        let (s, c) = self.v.sin_cos();
        (rec1(s, *self, || c), rec1(c, *self, || -s))
    }

    #[inline]
    fn asin(&self) -> Rev {
        rec1(self.v.asin(), *self, || {
            (1.0 - self.v * self.v).recip().sqrt()
        })
    }

    #[inline]
    fn acos(&self) -> Rev {
        rec1(self.v.acos(), *self, || {
            -(1.0 - self.v * self.v).recip().sqrt()
        })
    }

    #[inline]
    fn atan(&self) -> Rev {
        rec1(self.v.atan(), *self, || (1.0 + self.v * self.v).recip())
    }

    /// `atan2(self, other)`, i.e. the angle of `(other, self)`.
    #[inline]
    fn atan2(&self, other: Rev) -> Rev {
        let (y, x) = (self.v, other.v);
        let r2 = x * x + y * y;
        rec2(y.atan2(x), *self, || x / r2, other, || -y / r2)
    }

    #[inline]
    fn sinh(&self) -> Rev {
        rec1(self.v.sinh(), *self, || self.v.cosh())
    }

    #[inline]
    fn cosh(&self) -> Rev {
        rec1(self.v.cosh(), *self, || self.v.sinh())
    }

    #[inline]
    fn tanh(&self) -> Rev {
        rec1(self.v.tanh(), *self, || {
            let c = self.v.cosh();
            1.0 / (c * c)
        })
    }

    #[inline]
    fn asinh(&self) -> Rev {
        rec1(self.v.asinh(), *self, || {
            (1.0 + self.v * self.v).recip().sqrt()
        })
    }

    #[inline]
    fn acosh(&self) -> Rev {
        rec1(self.v.acosh(), *self, || {
            (self.v * self.v - 1.0).recip().sqrt()
        })
    }

    #[inline]
    fn atanh(&self) -> Rev {
        rec1(self.v.atanh(), *self, || (1.0 - self.v * self.v).recip())
    }

    /// Value as `f64`'s `sph_j0`; derivative `-j1(x)` (`-x/3` below machine epsilon).
    #[inline]
    fn sph_j0(&self) -> Rev {
        let x = self.v;
        rec1(DualNum::sph_j0(&x), *self, || {
            if x.abs() < f64::EPSILON {
                -x / 3.0
            } else {
                -DualNum::sph_j1(&x)
            }
        })
    }

    /// Value as `f64`'s `sph_j1`; derivative `j0 - 2 j1 / x` (`1/3` below machine epsilon).
    #[inline]
    fn sph_j1(&self) -> Rev {
        let x = self.v;
        let v = DualNum::sph_j1(&x);
        rec1(v, *self, || {
            if x.abs() < f64::EPSILON {
                1.0 / 3.0
            } else {
                DualNum::sph_j0(&x) - 2.0 * v / x
            }
        })
    }

    /// Value as `f64`'s `sph_j2`; derivative `j1 - 3 j2 / x` (`2x/15` below machine epsilon).
    #[inline]
    fn sph_j2(&self) -> Rev {
        let x = self.v;
        let v = DualNum::sph_j2(&x);
        rec1(v, *self, || {
            if x.abs() < f64::EPSILON {
                2.0 * x / 15.0
            } else {
                DualNum::sph_j1(&x) - 3.0 * v / x
            }
        })
    }

    /// Fused value (`f64::mul_add`); two nodes when all three operands are variables.
    #[inline]
    fn mul_add(&self, a: Rev, b: Rev) -> Rev {
        let x = *self;
        let v = x.v.mul_add(a.v, b.v);
        if b.i == NONE {
            rec2(v, x, || a.v, a, || x.v)
        } else {
            // The intermediate's value is never read: the tape stores no values.
            let p = rec2(0.0, x, || a.v, a, || x.v);
            rec2(v, p, || 1.0, b, || 1.0)
        }
    }

    /// Value `self.powf(exp)` as for `f64`; ∂/∂self = exp·selfᵉˣᵖ⁻¹, ∂/∂exp = value·ln(self)
    /// (0 where the value is 0).
    #[inline]
    fn powd(&self, exp: Rev) -> Rev {
        let (x, n) = (self.v, exp.v);
        let v = x.powf(n);
        rec2(
            v,
            *self,
            || n * x.powf(n - 1.0),
            exp,
            || if v == 0.0 { 0.0 } else { v * x.ln() },
        )
    }
}
