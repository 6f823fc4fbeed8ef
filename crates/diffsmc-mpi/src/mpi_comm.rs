//! The MPI transport (rsmpi), with the `mpi` feature.

use mpi::Count;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};

use crate::comm::Communicator;

/// `MPI_COMM_WORLD` as a [`Communicator`]. Create one per process with [`MpiComm::init`];
/// MPI is finalised when it is dropped.
pub struct MpiComm {
    world: SimpleCommunicator,
    // Declared after `world` so that it is dropped (MPI_Finalize) last.
    _universe: Universe,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiComm")
            .field("rank", &self.world.rank())
            .field("size", &self.world.size())
            .finish()
    }
}

fn count(n: usize) -> Count {
    Count::try_from(n).expect("message larger than MPI's i32 count (checked by the callers)")
}

fn displs(counts: &[Count]) -> Vec<Count> {
    let mut off = 0;
    counts
        .iter()
        .map(|&c| {
            let d = off;
            off += c;
            d
        })
        .collect()
}

impl MpiComm {
    /// Initialises MPI (`None` if it was already initialised in this process).
    pub fn init() -> Option<Self> {
        let universe = mpi::initialize()?;
        let world = universe.world();
        Some(MpiComm {
            world,
            _universe: universe,
        })
    }

    fn all_gather_counts(&self, n: usize) -> Vec<Count> {
        let mut counts = vec![0 as Count; self.size()];
        self.world.all_gather_into(&count(n), &mut counts[..]);
        counts
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_gather_v(&self, local: &[f64]) -> Vec<f64> {
        let counts = self.all_gather_counts(local.len());
        let d = displs(&counts);
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut buf = vec![0.0; total];
        {
            let mut part = PartitionMut::new(&mut buf[..], &counts[..], &d[..]);
            self.world.all_gather_varcount_into(local, &mut part);
        }
        buf
    }
    fn all_to_all_v(&self, send: &[f64], send_counts: &[usize]) -> (Vec<f64>, Vec<usize>) {
        assert_eq!(
            send_counts.len(),
            self.size(),
            "all_to_all_v: one count per rank"
        );
        let sc: Vec<Count> = send_counts.iter().map(|&c| count(c)).collect();
        let mut rc = vec![0 as Count; self.size()];
        self.world.all_to_all_into(&sc[..], &mut rc[..]);
        let (sd, rd) = (displs(&sc), displs(&rc));
        let total: usize = rc.iter().map(|&c| c as usize).sum();
        let mut recv = vec![0.0; total];
        {
            let sp = Partition::new(send, &sc[..], &sd[..]);
            let mut rp = PartitionMut::new(&mut recv[..], &rc[..], &rd[..]);
            self.world.all_to_all_varcount_into(&sp, &mut rp);
        }
        (recv, rc.iter().map(|&c| c as usize).collect())
    }
    fn gather_v(&self, root: usize, local: &[f64]) -> Option<Vec<f64>> {
        let root_proc = self.world.process_at_rank(root as i32);
        let n = count(local.len());
        if self.rank() == root {
            let mut counts = vec![0 as Count; self.size()];
            root_proc.gather_into_root(&n, &mut counts[..]);
            let d = displs(&counts);
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let mut buf = vec![0.0; total];
            {
                let mut part = PartitionMut::new(&mut buf[..], &counts[..], &d[..]);
                root_proc.gather_varcount_into_root(local, &mut part);
            }
            Some(buf)
        } else {
            root_proc.gather_into(&n);
            root_proc.gather_varcount_into(local);
            None
        }
    }
    fn gather_bytes(&self, root: usize, local: &[u8]) -> Option<Vec<Vec<u8>>> {
        let root_proc = self.world.process_at_rank(root as i32);
        let n = count(local.len());
        if self.rank() == root {
            let mut counts = vec![0 as Count; self.size()];
            root_proc.gather_into_root(&n, &mut counts[..]);
            let d = displs(&counts);
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let mut buf = vec![0u8; total];
            {
                let mut part = PartitionMut::new(&mut buf[..], &counts[..], &d[..]);
                root_proc.gather_varcount_into_root(local, &mut part);
            }
            Some(
                counts
                    .iter()
                    .zip(&d)
                    .map(|(&c, &o)| buf[o as usize..(o + c) as usize].to_vec())
                    .collect(),
            )
        } else {
            root_proc.gather_into(&n);
            root_proc.gather_varcount_into(local);
            None
        }
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
        let root_proc = self.world.process_at_rank(root as i32);
        let mut n = buf.len() as u64;
        root_proc.broadcast_into(&mut n);
        buf.resize(n as usize, 0);
        root_proc.broadcast_into(&mut buf[..]);
    }
}
