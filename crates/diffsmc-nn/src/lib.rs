//! # diffsmc-nn: small neural layers for differentiable SMC
//!
//! Dense layers, activations and multi-layer perceptrons written once for any
//! [`diffsmc::Scalar`] (`f64`, `Dual64`, `DualSVec64<N>`, …), so a neural network inside a
//! state-space model is differentiated end to end by the same forward-mode dual numbers as the
//! rest of the particle filter.
//!
//! - [`Linear`]: a dense layer `x ↦ W x + b` (`W` row-major), Glorot-uniform initialisation.
//! - [`Activation`]: swish, tanh, sine, identity, with a fused chain rule on first-order duals
//!   ([`lift`]).
//! - [`Mlp`]: a multi-layer perceptron (optionally residual) with a **flat parameter vector**:
//!   [`Mlp::n_params`], [`Mlp::to_flat`], and [`Mlp::forward`] evaluating the network directly
//!   from a flat θ slice of any scalar, allocation-free given a scratch buffer.
//!
//! - [`Net`] ([`NetBuilder`]): sequential networks of dense, sine/SIREN ([`Init::SirenFirst`],
//!   [`Init::SirenHidden`]), ReLU, reshape and 2-D transposed-convolution layers;
//!   [`NetTheta`] evaluates one at a θ of any scalar, as **one** custom reverse-mode tape
//!   operation per evaluation on [`diffsmc::tape::Rev`] (optionally fused with a Gaussian
//!   likelihood head, [`NetTheta::gaussian_loglik`]); [`NetTheta::eval_batch`] and
//!   [`NetTheta::gaussian_loglik_batch`] evaluate a batch of inputs (e.g. a block of particles,
//!   `diffsmc::FeynmanKac::move_block`) GEMM-style, with the single-input bits, as one tape op.
//!
//! The flat view is what a [`diffsmc::grad::Parametric`] model needs: it receives θ as a slice
//! of dual numbers (each forward-mode chunk of `diffsmc::grad::gradient` seeds a few of them) and evaluates the
//! network from it per particle and per step.
//!
//! ```
//! use diffsmc_nn::{Activation, Mlp};
//! use num_dual::{DualSVec64, DualStruct};
//!
//! let net = Mlp::new(&[4, 32, 2], Activation::Swish, 0)?;
//! let theta0 = net.to_flat();
//! assert_eq!(theta0.len(), 226);
//!
//! // Seed derivative directions for parameters 0..8 and evaluate on duals.
//! let theta: Vec<DualSVec64<8>> = theta0
//!     .iter()
//!     .enumerate()
//!     .map(|(i, &v)| {
//!         let d = DualSVec64::<8>::from_re(v);
//!         if i < 8 { d.derivative(i) } else { d }
//!     })
//!     .collect();
//! let x = [2.0, 5.0, 0.01, -0.02].map(DualSVec64::<8>::from_re);
//! let mut y = [DualSVec64::<8>::from_re(0.0); 2];
//! net.forward(&theta, &x, &mut y, &mut []);
//!
//! let mut y64 = [0.0; 2];
//! net.forward(&theta0, &[2.0, 5.0, 0.01, -0.02], &mut y64, &mut []);
//! assert!((y[0].re() - y64[0]).abs() < 1e-12);
//! # Ok::<(), diffsmc::SmcError>(())
//! ```

mod activation;
mod linear;
mod mlp;
mod net;
mod net_batch;
mod net_tape;
mod prepared;
mod tape;

pub use activation::{Activation, lift, sigmoid};
pub use linear::{Linear, dense};
pub use mlp::{INIT_STREAM_TAG, Mlp};
pub use net::{ConvT2d, Init, Layer, Net, NetBuilder, Padding};
pub use net_tape::{NetTheta, net_vjp};
pub use prepared::{PreparedTheta, derivative_is_zero};

#[cfg(test)]
mod net_batch_tests;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod tests;
