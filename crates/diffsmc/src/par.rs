//! Deterministic parallel loops: fixed chunks, results in chunk order, and the tape guard.
//!
//! Every loop of the engine that may run on rayon threads goes through this module, so three
//! rules hold everywhere:
//!
//! 1. **Fixed chunking.** The work is cut into chunks chosen by the caller (never by the
//!    number of threads), each chunk is computed sequentially, and results come back in chunk
//!    order. Anything reduced from them in order is bit-identical whatever the thread count.
//! 2. **The tape guard.** A scalar that records onto a thread-local tape
//!    ([`crate::tape::Rev`], [`Scalar::ON_TAPE`]) must stay on the calling thread: for it the
//!    loops run sequentially, in the same chunk order, so the results are the same.
//! 3. **No rayon, no threads.** Without the `rayon` feature every loop is sequential.
//!
//! The scalar parameter `S` of each function is the scalar the closure computes with; pass
//! `f64` for loops that record nothing.
//!
//! ```
//! use diffsmc::par;
//! // Sum of squares in 4 fixed chunks, reduced in order: the same bits on any thread count.
//! let v: Vec<f64> = (0..1000).map(|i| i as f64 * 0.1).collect();
//! let parts = par::map_chunks::<f64, _>(4, |c| v[c * 250..(c + 1) * 250].iter().map(|x| x * x).sum::<f64>());
//! let total: f64 = parts.iter().sum();
//! assert!((total - v.iter().map(|x| x * x).sum::<f64>()).abs() < 1e-6);
//! ```

use crate::scalar::Scalar;

/// Whether loops for scalar `S` may run on rayon threads (the `rayon` feature is on and `S`
/// does not record on a tape).
#[inline]
pub const fn may_parallelise<S: Scalar>() -> bool {
    cfg!(feature = "rayon") && !S::ON_TAPE
}

/// `f(0), …, f(chunks − 1)`, on rayon threads when there are several chunks (sequentially for
/// tape scalars), results in chunk order.
pub fn map_chunks<S: Scalar, T: Send>(
    chunks: usize,
    f: impl Fn(usize) -> T + Sync + Send,
) -> Vec<T> {
    #[cfg(feature = "rayon")]
    if chunks > 1 && may_parallelise::<S>() {
        use rayon::prelude::*;
        return (0..chunks).into_par_iter().map(f).collect();
    }
    (0..chunks).map(f).collect()
}

/// `f(c, chunk)` for the consecutive chunks of `chunk_len` elements of `data` (the last may be
/// shorter), on rayon threads when `parallel` and there are several chunks (sequentially for
/// tape scalars).
pub fn for_each_chunk_mut<S: Scalar, T: Send>(
    data: &mut [T],
    chunk_len: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk_len = chunk_len.max(1);
    #[cfg(feature = "rayon")]
    if parallel && data.len() > chunk_len && may_parallelise::<S>() {
        use rayon::prelude::*;
        data.par_chunks_mut(chunk_len)
            .enumerate()
            .for_each(|(c, chunk)| f(c, chunk));
        return;
    }
    let _ = parallel;
    for (c, chunk) in data.chunks_mut(chunk_len).enumerate() {
        f(c, chunk);
    }
}

/// [`for_each_chunk_mut`] over two slices cut in step: chunk `c` is `a[c·la .. (c+1)·la]` with
/// `b[c·lb .. (c+1)·lb]` (e.g. particles of `d` coordinates and their log-weights, with
/// `la = k·d`, `lb = k`). Both slices must have the same number of chunks.
pub fn for_each_chunk_pair_mut<S: Scalar, A: Send, B: Send>(
    a: &mut [A],
    la: usize,
    b: &mut [B],
    lb: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [A], &mut [B]) + Sync + Send,
) {
    let (la, lb) = (la.max(1), lb.max(1));
    debug_assert_eq!(
        a.len().div_ceil(la),
        b.len().div_ceil(lb),
        "chunk counts differ"
    );
    #[cfg(feature = "rayon")]
    if parallel && b.len() > lb && may_parallelise::<S>() {
        use rayon::prelude::*;
        a.par_chunks_mut(la)
            .zip(b.par_chunks_mut(lb))
            .enumerate()
            .for_each(|(c, (x, y))| f(c, x, y));
        return;
    }
    let _ = parallel;
    for (c, (x, y)) in a.chunks_mut(la).zip(b.chunks_mut(lb)).enumerate() {
        f(c, x, y);
    }
}

/// The number of rayon threads loops may use (1 without the `rayon` feature).
pub fn threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Rev;

    #[test]
    fn chunks_come_back_in_order() {
        let v = map_chunks::<f64, _>(17, |c| c * 3);
        assert_eq!(v, (0..17).map(|c| c * 3).collect::<Vec<_>>());
        let mut data: Vec<usize> = vec![0; 103];
        for_each_chunk_mut::<f64, _>(&mut data, 10, true, |c, ch| {
            for (j, x) in ch.iter_mut().enumerate() {
                *x = c * 10 + j;
            }
        });
        assert_eq!(data, (0..103).collect::<Vec<_>>());
    }

    #[test]
    fn tape_scalars_stay_on_the_calling_thread() {
        assert!(!may_parallelise::<Rev>());
        let me = std::thread::current().id();
        let ids = map_chunks::<Rev, _>(8, |_| std::thread::current().id());
        assert!(ids.iter().all(|&id| id == me));
    }

    #[test]
    fn pairs_are_cut_in_step() {
        let mut x = vec![0.0_f64; 2 * 9];
        let mut w = vec![0usize; 9];
        for_each_chunk_pair_mut::<f64, _, _>(&mut x, 2 * 4, &mut w, 4, true, |c, xs, ws| {
            for (j, (xi, wi)) in xs.chunks_mut(2).zip(ws.iter_mut()).enumerate() {
                *wi = c * 4 + j;
                xi[0] = *wi as f64;
            }
        });
        assert_eq!(w, (0..9).collect::<Vec<_>>());
        assert_eq!(x[16], 8.0);
    }
}
