//! Independent runs spread over ranks: run `i` on rank `i mod K`, results gathered to rank 0 in
//! run order, so what rank 0 reports does not depend on the number of ranks.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::comm::Communicator;
use crate::error::{DistError, Result};

/// Runs `f(0), …, f(n_runs − 1)`, run `i` on rank `i mod size`, and returns all results in
/// run order on rank 0 (`None` on the other ranks). Results travel as JSON (`serde_json`
/// with `float_roundtrip`, so every finite `f64` comes back with the same bits); a result must
/// serialise and deserialise to itself, and non-finite floats do not (JSON has no NaN): store
/// them as `Option<f64>`.
///
/// Every rank calls it with the same `n_runs`. A result that fails to encode or decode is
/// [`DistError::Gather`] naming the rank, on rank 0.
///
/// ```
/// use diffsmc_mpi::{ThreadComm, run_distributed};
/// let out = ThreadComm::run(3, |c| run_distributed(c, 7, |i| i * i).unwrap());
/// assert_eq!(out[0].as_deref(), Some(&[0, 1, 4, 9, 16, 25, 36][..]));
/// assert!(out[1].is_none() && out[2].is_none());
/// ```
pub fn run_distributed<C, T, F>(comm: &C, n_runs: usize, f: F) -> Result<Option<Vec<T>>>
where
    C: Communicator + ?Sized,
    T: Serialize + DeserializeOwned,
    F: Fn(usize) -> T,
{
    let (k, me) = (comm.size(), comm.rank());
    let mine: Vec<T> = (me..n_runs).step_by(k).map(&f).collect();
    // An encoding failure must not skip the collective: send an empty message instead.
    let (bytes, enc_err) = match serde_json::to_vec(&mine) {
        Ok(b) => (b, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let gathered = comm.gather_bytes(0, &bytes);
    if let Some(e) = enc_err {
        return Err(DistError::Gather {
            rank: me,
            message: e,
        });
    }
    let Some(parts) = gathered else {
        return Ok(None);
    };
    let mut per_rank: Vec<std::vec::IntoIter<T>> = Vec::with_capacity(k);
    for (r, b) in parts.iter().enumerate() {
        let v: Vec<T> = serde_json::from_slice(b).map_err(|e| DistError::Gather {
            rank: r,
            message: format!("results of rank {r}: {e}"),
        })?;
        if v.len() != (r..n_runs).step_by(k).len() {
            return Err(DistError::Gather {
                rank: r,
                message: format!("rank {r} sent {} results", v.len()),
            });
        }
        per_rank.push(v.into_iter());
    }
    let mut out = Vec::with_capacity(n_runs);
    for i in 0..n_runs {
        out.push(per_rank[i % k].next().expect("counted above"));
    }
    Ok(Some(out))
}
