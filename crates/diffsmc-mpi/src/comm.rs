//! The communication the distributed algorithms need, behind one small trait.
//!
//! Every method is a *collective*: all ranks of the communicator call it, in the same order,
//! with arguments of the agreed shapes. The algorithms of this crate only call collectives in
//! an order that does not depend on data a rank alone holds (errors that stop a run are
//! detected from values every rank has), so no rank is left waiting.
//!
//! Implementations: [`SingleRank`] (one process, no communication), [`ThreadComm`] (several
//! ranks as threads of one process, for tests without MPI) and, with the `mpi` feature,
//! [`crate::MpiComm`] (rsmpi over the system's MPI).

use std::sync::{Arc, Condvar, Mutex};

/// The collectives the distributed algorithms are written against.
///
/// ```
/// use diffsmc_mpi::{Communicator, ThreadComm};
/// let sums = ThreadComm::run(3, |c| {
///     let all = c.all_gather_v(&vec![c.rank() as f64; c.rank() + 1]);
///     (all, c.exclusive_scan(c.rank() as u64 + 1))
/// });
/// assert_eq!(sums[2].0, vec![0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
/// assert_eq!(sums.iter().map(|s| s.1).collect::<Vec<_>>(), vec![0, 1, 3]);
/// ```
pub trait Communicator {
    /// This process's rank, `0 ≤ rank < size`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Every rank's `local` (of any length, possibly different per rank), concatenated in rank
    /// order, on every rank.
    fn all_gather_v(&self, local: &[f64]) -> Vec<f64>;
    /// Personalised exchange: `send` holds, in rank order, `send_counts[r]` values for each
    /// rank `r` (`send_counts.len() == size`). Returns what every rank sent to this one,
    /// concatenated in source-rank order, and the count from each source.
    fn all_to_all_v(&self, send: &[f64], send_counts: &[usize]) -> (Vec<f64>, Vec<usize>);
    /// Every rank's `local` (of any length), concatenated in rank order, on `root` (`None`
    /// on the other ranks).
    fn gather_v(&self, root: usize, local: &[f64]) -> Option<Vec<f64>>;
    /// Every rank's bytes on `root`, in rank order (`None` on the other ranks).
    fn gather_bytes(&self, root: usize, local: &[u8]) -> Option<Vec<Vec<u8>>>;
    /// `root`'s `buf` copied into `buf` on every rank.
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>);

    /// The maximum of `x` over ranks (exact, so order does not matter).
    fn all_reduce_max(&self, x: f64) -> f64 {
        self.all_gather_v(&[x])
            .into_iter()
            .fold(f64::NEG_INFINITY, f64::max)
    }
    /// The sum of `x` over ranks, added in rank order (so the result is the same on every rank
    /// and for every transport).
    fn all_reduce_sum(&self, x: f64) -> f64 {
        self.all_gather_v(&[x]).into_iter().fold(0.0, |a, b| a + b)
    }
    /// The sum of `x` over the ranks before this one (0 on rank 0); integers, so exact.
    fn exclusive_scan(&self, x: u64) -> u64 {
        // u64 → two exact f64 halves, so any u64 survives the f64 transport.
        let all = self.all_gather_v(&[(x >> 32) as f64, (x & 0xffff_ffff) as f64]);
        all.chunks_exact(2)
            .take(self.rank())
            .map(|p| ((p[0] as u64) << 32) | p[1] as u64)
            .fold(0u64, u64::wrapping_add)
    }
}

/// One process, no communication: the collectives of a communicator of size 1.
///
/// ```
/// use diffsmc_mpi::{Communicator, SingleRank};
/// let c = SingleRank;
/// assert_eq!((c.rank(), c.size()), (0, 1));
/// assert_eq!(c.all_gather_v(&[1.0, 2.0]), vec![1.0, 2.0]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleRank;

impl Communicator for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_gather_v(&self, local: &[f64]) -> Vec<f64> {
        local.to_vec()
    }
    fn all_to_all_v(&self, send: &[f64], send_counts: &[usize]) -> (Vec<f64>, Vec<usize>) {
        assert_eq!(send_counts.len(), 1, "all_to_all_v: one count per rank");
        (send.to_vec(), vec![send.len()])
    }
    fn gather_v(&self, _root: usize, local: &[f64]) -> Option<Vec<f64>> {
        Some(local.to_vec())
    }
    fn gather_bytes(&self, _root: usize, local: &[u8]) -> Option<Vec<Vec<u8>>> {
        Some(vec![local.to_vec()])
    }
    fn broadcast_bytes(&self, _root: usize, _buf: &mut Vec<u8>) {}
}

/// What one rank deposits for the others in a [`ThreadComm`] collective.
#[derive(Debug)]
enum Payload {
    F64(Vec<f64>),
    Bytes(Vec<u8>),
}

/// A barrier that a panicking rank breaks, so that the other ranks panic too instead of
/// waiting for ever.
#[derive(Debug)]
struct Barrier {
    n: usize,
    state: Mutex<BarrierState>,
    cv: Condvar,
}

#[derive(Debug)]
struct BarrierState {
    waiting: usize,
    generation: u64,
    broken: bool,
}

impl Barrier {
    fn wait(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        assert!(!s.broken, "ThreadComm: another rank panicked");
        s.waiting += 1;
        if s.waiting == self.n {
            s.waiting = 0;
            s.generation += 1;
            self.cv.notify_all();
            return;
        }
        let gen0 = s.generation;
        while s.generation == gen0 && !s.broken {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        assert!(!s.broken, "ThreadComm: another rank panicked");
    }
    fn break_it(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.broken = true;
        self.cv.notify_all();
    }
}

#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    /// `slots[src][dst]`: what `src` deposited for `dst` in the current collective.
    slots: Mutex<Vec<Vec<Option<Payload>>>>,
}

/// Several ranks as threads of one process, exchanging through shared memory: the
/// collectives of a real communicator of any size, for tests and experiments without MPI.
/// Start the ranks with [`ThreadComm::run`].
#[derive(Debug, Clone)]
pub struct ThreadComm {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

/// Breaks the barrier when its rank's thread unwinds.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.barrier.break_it();
        }
    }
}

impl ThreadComm {
    /// Runs `f` on `size ≥ 1` ranks, each a thread with its own communicator, and returns
    /// their results in rank order. A panic on one rank makes the others panic at their next
    /// collective (no hang), and is then propagated.
    ///
    /// ```
    /// use diffsmc_mpi::{Communicator, ThreadComm};
    /// let r = ThreadComm::run(4, |c| c.all_reduce_sum(c.rank() as f64));
    /// assert_eq!(r, vec![6.0; 4]);
    /// ```
    pub fn run<T: Send>(size: usize, f: impl Fn(&ThreadComm) -> T + Sync) -> Vec<T> {
        assert!(size >= 1, "ThreadComm::run: at least one rank");
        let shared = Arc::new(Shared {
            barrier: Barrier {
                n: size,
                state: Mutex::new(BarrierState {
                    waiting: 0,
                    generation: 0,
                    broken: false,
                }),
                cv: Condvar::new(),
            },
            slots: Mutex::new(
                (0..size)
                    .map(|_| (0..size).map(|_| None).collect())
                    .collect(),
            ),
        });
        let f = &f;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..size)
                .map(|rank| {
                    let comm = ThreadComm {
                        rank,
                        size,
                        shared: Arc::clone(&shared),
                    };
                    scope.spawn(move || {
                        let _guard = PanicGuard(Arc::clone(&comm.shared));
                        f(&comm)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        })
    }

    /// The one primitive: deposit `per_dest[r]` for every rank `r`, then collect what every
    /// rank deposited for this one (in source order).
    fn exchange(&self, per_dest: Vec<Payload>) -> Vec<Payload> {
        debug_assert_eq!(per_dest.len(), self.size);
        {
            let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            for (dst, p) in per_dest.into_iter().enumerate() {
                slots[self.rank][dst] = Some(p);
            }
        }
        self.shared.barrier.wait();
        let got: Vec<Payload> = {
            let mut slots = self.shared.slots.lock().unwrap_or_else(|e| e.into_inner());
            (0..self.size)
                .map(|src| {
                    slots[src][self.rank]
                        .take()
                        .expect("ThreadComm: collectives called in different orders")
                })
                .collect()
        };
        // Nobody deposits for the next collective before everyone has collected.
        self.shared.barrier.wait();
        got
    }
}

fn f64s(p: Payload) -> Vec<f64> {
    match p {
        Payload::F64(v) => v,
        Payload::Bytes(_) => panic!("ThreadComm: collectives called in different orders"),
    }
}

fn bytes(p: Payload) -> Vec<u8> {
    match p {
        Payload::Bytes(v) => v,
        Payload::F64(_) => panic!("ThreadComm: collectives called in different orders"),
    }
}

impl Communicator for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_gather_v(&self, local: &[f64]) -> Vec<f64> {
        let per = (0..self.size)
            .map(|_| Payload::F64(local.to_vec()))
            .collect();
        self.exchange(per).into_iter().flat_map(f64s).collect()
    }
    fn all_to_all_v(&self, send: &[f64], send_counts: &[usize]) -> (Vec<f64>, Vec<usize>) {
        assert_eq!(
            send_counts.len(),
            self.size,
            "all_to_all_v: one count per rank"
        );
        assert_eq!(
            send_counts.iter().sum::<usize>(),
            send.len(),
            "all_to_all_v: counts must add up to the buffer length"
        );
        let mut off = 0;
        let per = send_counts
            .iter()
            .map(|&c| {
                let p = Payload::F64(send[off..off + c].to_vec());
                off += c;
                p
            })
            .collect();
        let got: Vec<Vec<f64>> = self.exchange(per).into_iter().map(f64s).collect();
        let counts = got.iter().map(Vec::len).collect();
        (got.concat(), counts)
    }
    fn gather_v(&self, root: usize, local: &[f64]) -> Option<Vec<f64>> {
        let per = (0..self.size)
            .map(|r| {
                Payload::F64(if r == root {
                    local.to_vec()
                } else {
                    Vec::new()
                })
            })
            .collect();
        let got = self.exchange(per);
        (self.rank == root).then(|| got.into_iter().flat_map(f64s).collect())
    }
    fn gather_bytes(&self, root: usize, local: &[u8]) -> Option<Vec<Vec<u8>>> {
        let per = (0..self.size)
            .map(|r| {
                Payload::Bytes(if r == root {
                    local.to_vec()
                } else {
                    Vec::new()
                })
            })
            .collect();
        let got = self.exchange(per);
        (self.rank == root).then(|| got.into_iter().map(bytes).collect())
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
        let per = (0..self.size)
            .map(|_| {
                Payload::Bytes(if self.rank == root {
                    buf.clone()
                } else {
                    Vec::new()
                })
            })
            .collect();
        let mut got = self.exchange(per);
        *buf = bytes(std::mem::replace(
            &mut got[root],
            Payload::Bytes(Vec::new()),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_collectives_agree_with_their_definitions() {
        for k in 1..=4 {
            let out = ThreadComm::run(k, |c| {
                let r = c.rank();
                // Rank r sends r + s values to rank s, each 100 r + s.
                let counts: Vec<usize> = (0..k).map(|s| r + s).collect();
                let send: Vec<f64> = (0..k)
                    .flat_map(|s| std::iter::repeat_n((100 * r + s) as f64, r + s))
                    .collect();
                let (recv, rc) = c.all_to_all_v(&send, &counts);
                let g = c.gather_bytes(1 % k, &[r as u8; 2]);
                let gv = c.gather_v(k - 1, &vec![r as f64; r]);
                if r == k - 1 {
                    let want: Vec<f64> = (0..k).flat_map(|s| vec![s as f64; s]).collect();
                    assert_eq!(gv.unwrap(), want);
                } else {
                    assert!(gv.is_none());
                }
                let mut b = if r == 0 { vec![7, 8, 9] } else { Vec::new() };
                c.broadcast_bytes(0, &mut b);
                (
                    recv,
                    rc,
                    g,
                    b,
                    c.all_reduce_max(-(r as f64)),
                    c.exclusive_scan(u64::MAX / 8),
                )
            });
            for (r, (recv, rc, g, b, mx, sc)) in out.into_iter().enumerate() {
                let want: Vec<f64> = (0..k)
                    .flat_map(|s| std::iter::repeat_n((100 * s + r) as f64, s + r))
                    .collect();
                assert_eq!(recv, want);
                assert_eq!(rc, (0..k).map(|s| s + r).collect::<Vec<_>>());
                if r == 1 % k {
                    let g = g.unwrap();
                    assert_eq!(g, (0..k).map(|s| vec![s as u8; 2]).collect::<Vec<_>>());
                } else {
                    assert!(g.is_none());
                }
                assert_eq!(b, vec![7, 8, 9]);
                assert_eq!(mx, 0.0);
                assert_eq!(sc, (u64::MAX / 8).wrapping_mul(r as u64));
            }
        }
    }

    #[test]
    fn a_panicking_rank_does_not_hang_the_others() {
        let r = std::panic::catch_unwind(|| {
            ThreadComm::run(3, |c| {
                if c.rank() == 1 {
                    panic!("rank 1 fails");
                }
                c.all_gather_v(&[1.0])
            })
        });
        assert!(r.is_err());
    }
}
