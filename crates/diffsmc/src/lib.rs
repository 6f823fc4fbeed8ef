//! diffsmc: differentiable sequential Monte Carlo.
pub mod error;
pub mod model;
pub mod particles;
pub mod rng;
pub mod scalar;
