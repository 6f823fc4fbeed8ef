//! Distributed sequential Monte Carlo for diffsmc.
//!
//! - [`run_filter`]: the bootstrap particle filter with its particles split across the ranks
//!   of a [`Communicator`], bit-identical to [`diffsmc::Smc::run`] with the same seed for every
//!   number of ranks (index resamplers, any trigger).
//! - [`run_island_filter`]: the island particle filter (each rank a sub-filter with local
//!   resampling, a ring exchange of particles every few steps).
//! - [`run_distributed`]: independent runs (filter runs, PMMH chains, experiment repeats)
//!   spread over ranks, gathered on rank 0 in run order.
//!
//! The algorithms only talk through [`Communicator`], implemented by [`SingleRank`], by
//! [`ThreadComm`] (ranks as threads, for tests without MPI) and, with the non-default `mpi`
//! feature, by `MpiComm` (rsmpi over the system's MPI). The single-process engine does not
//! depend on this crate. docs/distributed.md describes running on a cluster, the
//! communication volume per step and measured scaling.
//!
//! ```
//! use diffsmc::prelude::*;
//! use diffsmc_mpi::{DistConfig, DistResampler, ThreadComm, run_filter};
//! use diffsmc_lgssm::Lgssm;
//!
//! let lgssm = Lgssm::<f64>::paper(0.5, 1.0, 1)?;
//! let (_, ys) = lgssm.simulate(30, 1);
//! let data = lgssm.with_data(ys)?;
//! let model = Bootstrap(&data);
//! let single: SmcOutput<f64> = Smc::new(SmcConfig::new(500)?).run(&model, &Systematic, 9)?;
//! let r = DistResampler::from_spec(&ResamplerSpec::Systematic)?;
//! let config = DistConfig::new(500)?;
//! for ranks in 1..=4 {
//!     let outs = ThreadComm::run(ranks, |c| run_filter(c, &model, &r, &config, 9).unwrap());
//!     assert!(outs.iter().all(|o| o.log_likelihood == single.log_likelihood));
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod comm;
mod error;
mod filter;
mod island;
#[cfg(feature = "mpi")]
mod mpi_comm;
mod runs;

pub use comm::{Communicator, SingleRank, ThreadComm};
pub use error::{DistError, Result};
pub use filter::{DistConfig, DistOutput, DistResampler, block_starts, run_filter};
pub use island::{IslandConfig, IslandOutput, run_island_filter};
#[cfg(feature = "mpi")]
pub use mpi_comm::MpiComm;
pub use runs::run_distributed;
