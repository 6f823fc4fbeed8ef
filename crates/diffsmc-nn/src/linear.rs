//! Dense (fully connected) layers.

use std::ops::{Add, Mul};

use diffsmc::rng::StreamKey;
use diffsmc::{Result, Scalar, SmcError};
use rand::RngExt;

/// `out = W · input + b` for a row-major `W` (`n_out × n_in`, `w[o * n_in + i]`) and bias `b`.
///
/// Generic over the weight type `W` so that one routine serves `f64` weights with dual inputs
/// and dual weights (a slice of θ) with dual inputs. Allocation-free.
///
/// Panics if the slice lengths disagree with `n_in = input.len()` and `n_out = out.len()`.
///
/// ```
/// use diffsmc_nn::dense;
/// let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]; // 2 × 3
/// let b = [0.5, -0.5];
/// let mut out = [0.0; 2];
/// dense(&w, &b, &[1.0, 0.0, -1.0], &mut out);
/// assert_eq!(out, [1.0 - 3.0 + 0.5, 4.0 - 6.0 - 0.5]);
/// ```
#[inline]
pub fn dense<S, W>(w: &[W], b: &[W], input: &[S], out: &mut [S])
where
    S: Scalar + Mul<W, Output = S> + Add<W, Output = S>,
    W: Copy,
{
    let n_in = input.len();
    assert_eq!(w.len(), n_in * out.len(), "dense: weight length");
    assert_eq!(b.len(), out.len(), "dense: bias length");
    for ((o, row), &bo) in out.iter_mut().zip(w.chunks_exact(n_in.max(1))).zip(b) {
        *o = dot(row, input) + bo;
    }
}

/// `Σ_i input[i] · row[i]` (zero for empty slices).
#[inline]
pub(crate) fn dot<S, W>(row: &[W], input: &[S]) -> S
where
    S: Scalar + Mul<W, Output = S>,
    W: Copy,
{
    let mut acc = S::zero();
    for (&x, &w) in input.iter().zip(row) {
        acc += x * w;
    }
    acc
}

/// A dense layer `x ↦ W x + b` with `W` stored row-major (`n_out × n_in`) and bias `b`
/// (`n_out`). Its flat parameter vector is `W` (row-major) followed by `b`.
///
/// ```
/// use diffsmc::rng::{Purpose, StreamKey};
/// use diffsmc_nn::Linear;
///
/// let layer = Linear::glorot_uniform(3, 2, StreamKey::new(1, 0, Purpose::Other(0)));
/// assert_eq!(layer.n_params(), 3 * 2 + 2);
/// let limit = (6.0_f64 / 5.0).sqrt();
/// assert!(layer.weight().iter().all(|w| w.abs() <= limit));
/// assert!(layer.bias().iter().all(|&b| b == 0.0));
///
/// // Weights as f64, inputs as duals: derivatives flow through the input.
/// use num_dual::Dual64;
/// let x = [Dual64::new(1.0, 1.0), Dual64::from(0.0), Dual64::from(0.0)];
/// let mut out = [Dual64::from(0.0); 2];
/// layer.forward(&x, &mut out);
/// assert_eq!(out[1].eps, layer.weight()[3]); // ∂(W x)_1 / ∂x_0 = W[1, 0]
///
/// let back = Linear::from_flat(3, 2, &layer.to_flat()).unwrap();
/// assert_eq!(back, layer);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Linear<T = f64> {
    n_in: usize,
    n_out: usize,
    weight: Vec<T>,
    bias: Vec<T>,
}

impl<T: Scalar> Linear<T> {
    /// A layer from its weight (row-major, `n_out × n_in`) and bias (`n_out`).
    pub fn new(n_in: usize, n_out: usize, weight: Vec<T>, bias: Vec<T>) -> Result<Self> {
        check_shape(n_in, n_out)?;
        if weight.len() != n_in * n_out {
            return Err(SmcError::DimensionMismatch {
                what: "layer weight (n_out * n_in)",
                expected: n_in * n_out,
                got: weight.len(),
            });
        }
        if bias.len() != n_out {
            return Err(SmcError::DimensionMismatch {
                what: "layer bias (n_out)",
                expected: n_out,
                got: bias.len(),
            });
        }
        Ok(Linear {
            n_in,
            n_out,
            weight,
            bias,
        })
    }

    /// A layer with all parameters zero.
    pub fn zeros(n_in: usize, n_out: usize) -> Result<Self> {
        Self::new(
            n_in,
            n_out,
            vec![T::zero(); n_in * n_out],
            vec![T::zero(); n_out],
        )
    }

    /// A layer from a flat parameter slice (`W` row-major, then `b`).
    pub fn from_flat(n_in: usize, n_out: usize, theta: &[T]) -> Result<Self> {
        check_shape(n_in, n_out)?;
        let np = n_in * n_out + n_out;
        if theta.len() != np {
            return Err(SmcError::DimensionMismatch {
                what: "layer parameter vector",
                expected: np,
                got: theta.len(),
            });
        }
        let (w, b) = theta.split_at(n_in * n_out);
        Self::new(n_in, n_out, w.to_vec(), b.to_vec())
    }

    /// The flat parameter vector (`W` row-major, then `b`).
    pub fn to_flat(&self) -> Vec<T> {
        let mut v = self.weight.clone();
        v.extend_from_slice(&self.bias);
        v
    }

    /// Input width.
    pub fn n_in(&self) -> usize {
        self.n_in
    }
    /// Output width.
    pub fn n_out(&self) -> usize {
        self.n_out
    }
    /// Number of parameters, `n_in · n_out + n_out`.
    pub fn n_params(&self) -> usize {
        self.n_in * self.n_out + self.n_out
    }
    /// The weight matrix, row-major.
    pub fn weight(&self) -> &[T] {
        &self.weight
    }
    /// The weight matrix, row-major, mutably.
    pub fn weight_mut(&mut self) -> &mut [T] {
        &mut self.weight
    }
    /// The bias.
    pub fn bias(&self) -> &[T] {
        &self.bias
    }
    /// The bias, mutably.
    pub fn bias_mut(&mut self) -> &mut [T] {
        &mut self.bias
    }

    /// `out = W · input + b`. Panics if `input.len() != n_in` or `out.len() != n_out`.
    #[inline]
    pub fn forward<S>(&self, input: &[S], out: &mut [S])
    where
        S: Scalar + Mul<T, Output = S> + Add<T, Output = S>,
    {
        assert_eq!(input.len(), self.n_in, "Linear::forward: input width");
        dense(&self.weight, &self.bias, input, out)
    }
}

impl Linear<f64> {
    /// Glorot (Xavier) uniform weights, `W_ij ~ U(−a, a)` with `a = sqrt(6 / (n_in + n_out))`,
    /// drawn in row-major order from stream 0 of `key`; zero bias (the convention of Flax and
    /// PyTorch-style Glorot initialisers).
    pub fn glorot_uniform(n_in: usize, n_out: usize, key: StreamKey) -> Self {
        let mut weight = vec![0.0; n_in * n_out];
        glorot_fill(n_in, n_out, key, &mut weight);
        Linear {
            n_in,
            n_out,
            weight,
            bias: vec![0.0; n_out],
        }
    }

    /// The same layer with parameters of another scalar type (constants: zero derivatives).
    pub fn cast<S: Scalar>(&self) -> Linear<S> {
        Linear {
            n_in: self.n_in,
            n_out: self.n_out,
            weight: self.weight.iter().map(|&w| S::cst(w)).collect(),
            bias: self.bias.iter().map(|&b| S::cst(b)).collect(),
        }
    }
}

/// Fills `w` (`n_out × n_in`) with Glorot-uniform draws from stream 0 of `key`.
pub(crate) fn glorot_fill(n_in: usize, n_out: usize, key: StreamKey, w: &mut [f64]) {
    let limit = (6.0 / (n_in + n_out) as f64).sqrt();
    let mut rng = key.rng(0);
    for v in w {
        *v = rng.random_range(-limit..limit);
    }
}

pub(crate) fn check_shape(n_in: usize, n_out: usize) -> Result<()> {
    if n_in == 0 {
        return Err(SmcError::invalid("layer input width", n_in, "at least 1"));
    }
    if n_out == 0 {
        return Err(SmcError::invalid("layer output width", n_out, "at least 1"));
    }
    Ok(())
}
