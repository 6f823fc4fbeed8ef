//! Bayesian inference on model parameters: priors (and, as they land, transforms, particle
//! MCMC and diagnostics).

pub mod prior;

pub use prior::{Marginal, Prior, ProductPrior};
