//! Reverse-mode automatic differentiation on a thread-local tape.
//!
//! [`Rev`] is a [`Scalar`](crate::Scalar): every model and resampler written for `S: Scalar`
//! runs on it unchanged. Each operation on a `Rev` computes its value exactly as `f64` would
//! (bit for bit, so decisions taken on values are the same as in an `f64` run) and records one
//! node on the current thread's tape: the indices of at most two parents and the local partial
//! derivatives with respect to them. [`backward`] then sweeps the tape once from the last node
//! to the first and returns the [`Adjoints`] of every node — the gradient of one output with
//! respect to all inputs in a single sweep, whatever their number.
//!
//! # Thread-locality and scopes
//!
//! The tape lives in a thread-local. A `Rev` refers to its node by index, so it is only
//! meaningful on the thread that made it and within the [`with_tape`] scope that was current
//! when it was made: using it on another thread or after its scope ended silently refers to an
//! unrelated node (or panics in [`backward`] if the index is past the end of the tape). Constants
//! ([`Rev::constant`], `Rev::from(x)`, `Rev::zero()`) have no node and can be used anywhere.
//! Run every recording inside [`with_tape`], which gives it a fresh tape and restores the previous
//! one afterwards (nested scopes are fine; tape allocations are reused from a small per-thread
//! pool). Code outside any `with_tape` records onto the thread's base tape, which is never
//! cleared.
//!
//! # Cost
//!
//! One node is 24 bytes (two `u32` parent indices and two `f64` partials); node values are not
//! stored. An operation whose operands are all constants records nothing; an operation with one
//! non-constant operand records a one-parent node. Each recorded operation costs one
//! thread-local access, one `RefCell` borrow and one `Vec` push. [`backward`] allocates one
//! `f64` adjoint per node and visits each node once, skipping nodes whose adjoint is zero.
//! [`custom`] operations record one parentless node per output and run their own backward pass,
//! so an O(N²) loop can be recorded with O(outputs) nodes.
//!
//! Derivative conventions follow `num-dual`'s first-order `Dual` (e.g. `powi(0)`/`powf(0.0)` are
//! constant, `abs` has slope ±1 by the sign bit, `tan`/`tanh` derivatives are `1/cos²`/`1/cosh²`).
//! `%` (which `num-dual` leaves unimplemented) is differentiated as `a - b·trunc(a/b)` with the
//! quotient held fixed: ∂/∂a = 1, ∂/∂b = −trunc(a/b).
//!
//! ```
//! use diffsmc::tape::{Rev, backward, with_tape};
//! use num_dual::DualNum;
//!
//! // d/dx (x · e^x) at x = 1 is 2e.
//! let g = with_tape(|| {
//!     let x = Rev::var(1.0);
//!     let y = x * x.exp();
//!     backward(&[(y, 1.0)]).of(x)
//! });
//! assert!((g - 2.0 * 1f64.exp()).abs() < 1e-14);
//! ```

use std::cell::RefCell;
use std::fmt;
use std::iter::{Product, Sum};
use std::ops::{
    Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Rem, RemAssign, Sub, SubAssign,
};

use num_dual::{DualNum, DualStruct, Mappable};
use num_traits::{FromPrimitive, Inv, Num, One, Signed, Zero};

/// Parent index meaning "no parent" / node index meaning "constant".
const NONE: u32 = u32::MAX;

/// How many cleared tapes each thread keeps for reuse by [`with_tape`].
const POOL_MAX: usize = 4;

/// One recorded operation: up to two parents and the partials with respect to them.
#[derive(Clone, Copy)]
struct Node {
    parents: [u32; 2],
    partials: [f64; 2],
}

/// A registered custom operation whose outputs are nodes `first..first + len`.
struct OpEntry {
    first: u32,
    len: u32,
    op: Box<dyn CustomOp>,
}

/// One tape: nodes in recording order and custom ops sorted by their first output.
#[derive(Default)]
struct Tape {
    nodes: Vec<Node>,
    ops: Vec<OpEntry>,
}

impl Tape {
    const fn new() -> Self {
        Tape {
            nodes: Vec::new(),
            ops: Vec::new(),
        }
    }
}

/// The thread's current tape and a pool of cleared tapes for reuse.
struct State {
    tape: Tape,
    pool: Vec<Tape>,
}

thread_local! {
    static STATE: RefCell<State> = const {
        RefCell::new(State { tape: Tape::new(), pool: Vec::new() })
    };
}

/// Appends a node to the current tape and returns the variable holding `v`.
#[inline]
fn push(v: f64, parents: [u32; 2], partials: [f64; 2]) -> Rev {
    STATE.with(|s| {
        let nodes = &mut s.borrow_mut().tape.nodes;
        let i = nodes.len();
        assert!(i < NONE as usize, "tape: more than u32::MAX - 1 nodes");
        nodes.push(Node { parents, partials });
        Rev { v, i: i as u32 }
    })
}

/// Records `v = f(a)` with `∂f/∂a = da()` (nothing recorded if `a` is a constant).
#[inline]
fn rec1(v: f64, a: Rev, da: impl FnOnce() -> f64) -> Rev {
    if a.i == NONE {
        Rev::constant(v)
    } else {
        push(v, [a.i, NONE], [da(), 0.0])
    }
}

/// Records `v = f(a, b)` with partials `da()`, `db()`; constants get no parent slot.
#[inline]
fn rec2(v: f64, a: Rev, da: impl FnOnce() -> f64, b: Rev, db: impl FnOnce() -> f64) -> Rev {
    match (a.i != NONE, b.i != NONE) {
        (false, false) => Rev::constant(v),
        (true, false) => push(v, [a.i, NONE], [da(), 0.0]),
        (false, true) => push(v, [b.i, NONE], [db(), 0.0]),
        (true, true) => push(v, [a.i, b.i], [da(), db()]),
    }
}

/// A reverse-mode scalar: a value plus the index of its node on the current thread's tape
/// (`u32::MAX` = constant, no node).
///
/// Arithmetic with `Rev`, `&Rev` and `f64` operands (on either side) and all [`DualNum`]
/// functions record onto the current tape; see the [module docs](self) for the rules.
///
/// ```
/// use diffsmc::tape::{Rev, backward, with_tape};
/// use num_dual::DualNum;
///
/// let (f, dx, dy) = with_tape(|| {
///     let x = Rev::var(2.0);
///     let y = Rev::var(3.0);
///     let f = x * y + x.sin();
///     let adj = backward(&[(f, 1.0)]);
///     (f.value(), adj.of(x), adj.of(y))
/// });
/// assert_eq!(f, 2.0 * 3.0 + 2.0_f64.sin());
/// assert!((dx - (3.0 + 2.0_f64.cos())).abs() < 1e-15); // y + cos x
/// assert_eq!(dy, 2.0); // x
/// ```
#[derive(Clone, Copy)]
pub struct Rev {
    v: f64,
    i: u32,
}

impl Rev {
    /// A new leaf (independent variable) with value `x` on this thread's current tape.
    #[inline]
    pub fn var(x: f64) -> Rev {
        push(x, [NONE, NONE], [0.0, 0.0])
    }

    /// A constant: no node, zero adjoint, usable on any thread and tape.
    #[inline]
    pub const fn constant(x: f64) -> Rev {
        Rev { v: x, i: NONE }
    }

    /// The value (what `f64` arithmetic would have computed).
    #[inline]
    pub fn value(self) -> f64 {
        self.v
    }

    /// The index of this value's node on its tape, `None` for constants.
    #[inline]
    pub fn node(self) -> Option<usize> {
        (self.i != NONE).then_some(self.i as usize)
    }
}

impl fmt::Debug for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rev")
            .field("value", &self.v)
            .field("node", &self.node())
            .finish()
    }
}

/// Formats the value only, exactly like `f64`.
impl fmt::Display for Rev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.v, f)
    }
}

/// The constant zero.
impl crate::Scalar for Rev {
    const LANES: Option<usize> = None;
    const ON_TAPE: bool = true;
    #[inline]
    fn to_lanes(&self, _eps: &mut [f64]) -> f64 {
        self.value()
    }
    #[inline]
    fn from_lanes(re: f64, _eps: &[f64]) -> Self {
        Rev::constant(re)
    }
}

impl Default for Rev {
    #[inline]
    fn default() -> Self {
        Rev::constant(0.0)
    }
}

/// A constant.
impl From<f64> for Rev {
    #[inline]
    fn from(x: f64) -> Self {
        Rev::constant(x)
    }
}

/// Runs `f` with a fresh, empty tape on this thread and restores the thread's previous tape
/// afterwards, also when `f` panics. Nested calls are fine. The finished tape is cleared and
/// kept (up to 4 per thread, one per nesting level in practice) so that later calls reuse its
/// allocation: a loop of `with_tape` calls allocates once, and a thread keeps the capacity of
/// its largest tapes until it exits.
///
/// Every [`Rev`] recorded inside `f` is meaningless once `with_tape` returns: take the values
/// and adjoints you need out of the closure.
///
/// ```
/// use diffsmc::tape::{Rev, tape_len, with_tape};
///
/// with_tape(|| {
///     let x = Rev::var(1.0);
///     let _y = x * 2.0;
///     assert_eq!(tape_len(), 2);
///     with_tape(|| assert_eq!(tape_len(), 0));
///     assert_eq!(tape_len(), 2);
/// });
/// ```
pub fn with_tape<R>(f: impl FnOnce() -> R) -> R {
    /// Puts the previous tape back and recycles the finished one.
    struct Restore(Option<Tape>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let Some(prev) = self.0.take() else { return };
            let Ok(mut used) =
                STATE.try_with(|s| std::mem::replace(&mut s.borrow_mut().tape, prev))
            else {
                return;
            };
            // Custom ops are dropped here, outside any borrow of the state.
            used.nodes.clear();
            used.ops.clear();
            let _ = STATE.try_with(|s| {
                let pool = &mut s.borrow_mut().pool;
                if pool.len() < POOL_MAX {
                    pool.push(used);
                }
            });
        }
    }
    let prev = STATE.with(|s| {
        let mut s = s.borrow_mut();
        let fresh = s.pool.pop().unwrap_or_default();
        std::mem::replace(&mut s.tape, fresh)
    });
    let _restore = Restore(Some(prev));
    f()
}

/// Number of nodes on this thread's current tape.
pub fn tape_len() -> usize {
    STATE.with(|s| s.borrow().tape.nodes.len())
}

/// An estimate of the heap bytes held by this thread's current tape: allocated node capacity
/// (24 bytes per node), the custom-op list and the custom ops' own structs (not memory they
/// own on the heap).
pub fn tape_bytes() -> usize {
    STATE.with(|s| {
        let s = s.borrow();
        let t = &s.tape;
        t.nodes.capacity() * std::mem::size_of::<Node>()
            + t.ops.capacity() * std::mem::size_of::<OpEntry>()
            + t.ops
                .iter()
                .map(|o| std::mem::size_of_val(&*o.op))
                .sum::<usize>()
    })
}

/// The adjoints (∂ seed-weighted output / ∂ node) of every node of a tape, from [`backward`].
#[derive(Debug, Clone)]
pub struct Adjoints {
    adj: Vec<f64>,
}

impl Adjoints {
    /// The adjoint of `x`: 0.0 for constants and for nodes recorded after the sweep.
    #[inline]
    pub fn of(&self, x: Rev) -> f64 {
        if x.i == NONE {
            0.0
        } else {
            self.adj.get(x.i as usize).copied().unwrap_or(0.0)
        }
    }

    /// All adjoints, indexed by node ([`Rev::node`]).
    pub fn as_slice(&self) -> &[f64] {
        &self.adj
    }
}

/// Backward sweep over this thread's current tape, seeded with `adjoint(out) = w` for each
/// `(out, w)`; seeds on the same node add up and seeds on constants are ignored. Does not
/// clear the tape, so it can be called again with other seeds.
///
/// Custom ops run when the sweep reaches their first output (and are skipped when all their
/// output adjoints are zero). They must not record onto the tape from their backward pass.
///
/// # Panics
/// If a seed refers to a node past the end of the current tape (a `Rev` from another tape).
pub fn backward(seeds: &[(Rev, f64)]) -> Adjoints {
    STATE.with(|s| {
        let s = s.borrow();
        let tape = &s.tape;
        let n = tape.nodes.len();
        let mut adj = vec![0.0; n];
        for &(x, w) in seeds {
            if x.i != NONE {
                let i = x.i as usize;
                assert!(
                    i < n,
                    "tape::backward: seed node {i} is not on this thread's current tape \
                     ({n} nodes)"
                );
                adj[i] += w;
            }
        }
        let mut ops = tape.ops.iter().rev();
        let mut next_op = ops.next();
        for i in (0..n).rev() {
            if let Some(op) = next_op
                && op.first as usize == i
            {
                let (lo, hi) = adj.split_at_mut(i);
                let out_adj = &hi[..op.len as usize];
                if out_adj.iter().any(|&a| a != 0.0) {
                    op.op.backward(out_adj, &mut AdjointsMut { adj: lo });
                }
                next_op = ops.next();
                continue;
            }
            let a = adj[i];
            if a == 0.0 {
                continue;
            }
            let node = tape.nodes[i];
            if node.parents[0] != NONE {
                adj[node.parents[0] as usize] += a * node.partials[0];
                if node.parents[1] != NONE {
                    adj[node.parents[1] as usize] += a * node.partials[1];
                }
            }
        }
        Adjoints { adj }
    })
}

/// A vector-valued operation with a hand-written backward pass, recorded by [`custom`].
///
/// Used where recording node by node would be too large, e.g. the O(N²) diffusion score loop:
/// its tape then holds one node per output instead of one per multiply-add.
pub trait CustomOp: Send {
    /// `out_adj`: adjoints of this op's outputs (in recording order); add the contributions to
    /// the op's inputs through `inputs.add(x, v)`. Must not record onto the tape.
    fn backward(&self, out_adj: &[f64], inputs: &mut AdjointsMut<'_>);
}

/// Write access to the adjoints of all nodes recorded before a custom op, handed to
/// [`CustomOp::backward`].
#[derive(Debug)]
pub struct AdjointsMut<'a> {
    adj: &'a mut [f64],
}

impl AdjointsMut<'_> {
    /// Adds `v` to the adjoint of `x`; no-op for constants.
    ///
    /// # Panics
    /// If `x` was recorded after the op (or on another tape).
    #[inline]
    pub fn add(&mut self, x: Rev, v: f64) {
        if x.i != NONE {
            self.adj[x.i as usize] += v;
        }
    }
}

/// `x` as a [`Rev`] when the generic scalar `S` is `Rev`, else `None`: lets code written for
/// any [`crate::Scalar`] take a hand-written tape route (a [`custom`] operation) on the tape.
///
/// ```
/// use diffsmc::tape::{as_rev, from_rev, Rev};
/// assert_eq!(as_rev(&Rev::constant(2.0)).map(Rev::value), Some(2.0));
/// assert!(as_rev(&2.0_f64).is_none());
/// let x: Rev = from_rev(Rev::constant(1.5)).unwrap();
/// assert_eq!(x.value(), 1.5);
/// assert!(from_rev::<f64>(Rev::constant(1.5)).is_none());
/// ```
#[inline]
pub fn as_rev<S: crate::Scalar>(x: &S) -> Option<Rev> {
    (x as &dyn std::any::Any).downcast_ref::<Rev>().copied()
}

/// The inverse of [`as_rev`]: `r` as an `S` when `S` is `Rev`, else `None`.
#[inline]
pub fn from_rev<S: crate::Scalar>(r: Rev) -> Option<S> {
    let mut out = S::cst(r.value());
    let slot = (&mut out as &mut dyn std::any::Any).downcast_mut::<Rev>()?;
    *slot = r;
    Some(out)
}

/// Records `values.len()` output nodes (parentless) and registers `op` to run when the backward
/// sweep reaches them; writes the outputs to `out` (same length as `values`). All inputs the op
/// refers to must have been recorded before this call (they then have smaller indices). With no
/// values nothing is recorded.
///
/// ```
/// use diffsmc::tape::{AdjointsMut, CustomOp, Rev, backward, custom, with_tape};
///
/// /// y = Σ a_i x_i for fixed weights a.
/// struct Dot {
///     a: Vec<f64>,
///     x: Vec<Rev>,
/// }
/// impl CustomOp for Dot {
///     fn backward(&self, out_adj: &[f64], inputs: &mut AdjointsMut<'_>) {
///         for (&a, &x) in self.a.iter().zip(&self.x) {
///             inputs.add(x, a * out_adj[0]);
///         }
///     }
/// }
///
/// with_tape(|| {
///     let x: Vec<Rev> = [1.0, 2.0, 3.0].iter().map(|&v| Rev::var(v)).collect();
///     let a = vec![0.5, -1.0, 2.0];
///     let value: f64 = a.iter().zip(&x).map(|(a, x)| a * x.value()).sum();
///     let mut y = [Rev::constant(0.0)];
///     custom(&[value], Box::new(Dot { a: a.clone(), x: x.clone() }), &mut y);
///     let z = y[0] * y[0]; // z = y², dz/dx_i = 2 y a_i
///     let adj = backward(&[(z, 1.0)]);
///     for (xi, ai) in x.iter().zip(&a) {
///         assert_eq!(adj.of(*xi), 2.0 * value * ai);
///     }
/// });
/// ```
///
/// # Panics
/// If `out.len() != values.len()`.
pub fn custom(values: &[f64], op: Box<dyn CustomOp>, out: &mut [Rev]) {
    assert_eq!(
        values.len(),
        out.len(),
        "tape::custom: values and out lengths differ"
    );
    if values.is_empty() {
        return;
    }
    STATE.with(|s| {
        let tape = &mut s.borrow_mut().tape;
        let first = tape.nodes.len();
        assert!(
            first + values.len() < NONE as usize,
            "tape: more than u32::MAX - 1 nodes"
        );
        tape.nodes.extend(values.iter().map(|_| Node {
            parents: [NONE, NONE],
            partials: [0.0, 0.0],
        }));
        tape.ops.push(OpEntry {
            first: first as u32,
            len: values.len() as u32,
            op,
        });
        for (k, (o, &v)) in out.iter_mut().zip(values).enumerate() {
            *o = Rev {
                v,
                i: (first + k) as u32,
            };
        }
    });
}

mod dual;
mod ops;
#[cfg(test)]
// The tests exercise the by-reference operators and `x - x`, `x / x` on purpose.
#[allow(clippy::op_ref, clippy::eq_op)]
mod tests;
