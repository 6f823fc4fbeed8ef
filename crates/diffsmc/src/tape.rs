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

// ---------------------------------------------------------------------------------------------
// Arithmetic.

#[inline]
fn add_rr(a: Rev, b: Rev) -> Rev {
    rec2(a.v + b.v, a, || 1.0, b, || 1.0)
}
#[inline]
fn add_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v + b, a, || 1.0)
}
#[inline]
fn add_fr(a: f64, b: Rev) -> Rev {
    rec1(a + b.v, b, || 1.0)
}
#[inline]
fn sub_rr(a: Rev, b: Rev) -> Rev {
    rec2(a.v - b.v, a, || 1.0, b, || -1.0)
}
#[inline]
fn sub_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v - b, a, || 1.0)
}
#[inline]
fn sub_fr(a: f64, b: Rev) -> Rev {
    rec1(a - b.v, b, || -1.0)
}
#[inline]
fn mul_rr(a: Rev, b: Rev) -> Rev {
    rec2(a.v * b.v, a, || b.v, b, || a.v)
}
#[inline]
fn mul_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v * b, a, || b)
}
#[inline]
fn mul_fr(a: f64, b: Rev) -> Rev {
    rec1(a * b.v, b, || a)
}
#[inline]
fn div_rr(a: Rev, b: Rev) -> Rev {
    let v = a.v / b.v;
    rec2(v, a, || 1.0 / b.v, b, || -v / b.v)
}
#[inline]
fn div_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v / b, a, || 1.0 / b)
}
#[inline]
fn div_fr(a: f64, b: Rev) -> Rev {
    let v = a / b.v;
    rec1(v, b, || -v / b.v)
}
#[inline]
fn rem_rr(a: Rev, b: Rev) -> Rev {
    rec2(a.v % b.v, a, || 1.0, b, || -(a.v / b.v).trunc())
}
#[inline]
fn rem_rf(a: Rev, b: f64) -> Rev {
    rec1(a.v % b, a, || 1.0)
}
#[inline]
fn rem_fr(a: f64, b: Rev) -> Rev {
    rec1(a % b.v, b, || -(a / b.v).trunc())
}

macro_rules! binop {
    ($Tr:ident, $m:ident, $TrA:ident, $ma:ident, $rr:ident, $rf:ident, $fr:ident) => {
        impl $Tr for Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: Rev) -> Rev {
                $rr(self, rhs)
            }
        }
        impl $Tr<&Rev> for Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: &Rev) -> Rev {
                $rr(self, *rhs)
            }
        }
        impl $Tr<Rev> for &Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: Rev) -> Rev {
                $rr(*self, rhs)
            }
        }
        impl $Tr<&Rev> for &Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: &Rev) -> Rev {
                $rr(*self, *rhs)
            }
        }
        impl $Tr<f64> for Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: f64) -> Rev {
                $rf(self, rhs)
            }
        }
        impl $Tr<f64> for &Rev {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: f64) -> Rev {
                $rf(*self, rhs)
            }
        }
        impl $Tr<Rev> for f64 {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: Rev) -> Rev {
                $fr(self, rhs)
            }
        }
        impl $Tr<&Rev> for f64 {
            type Output = Rev;
            #[inline]
            fn $m(self, rhs: &Rev) -> Rev {
                $fr(self, *rhs)
            }
        }
        impl $TrA for Rev {
            #[inline]
            fn $ma(&mut self, rhs: Rev) {
                *self = $rr(*self, rhs);
            }
        }
        impl $TrA<&Rev> for Rev {
            #[inline]
            fn $ma(&mut self, rhs: &Rev) {
                *self = $rr(*self, *rhs);
            }
        }
        impl $TrA<f64> for Rev {
            #[inline]
            fn $ma(&mut self, rhs: f64) {
                *self = $rf(*self, rhs);
            }
        }
    };
}

binop!(Add, add, AddAssign, add_assign, add_rr, add_rf, add_fr);
binop!(Sub, sub, SubAssign, sub_assign, sub_rr, sub_rf, sub_fr);
binop!(Mul, mul, MulAssign, mul_assign, mul_rr, mul_rf, mul_fr);
binop!(Div, div, DivAssign, div_assign, div_rr, div_rf, div_fr);
binop!(Rem, rem, RemAssign, rem_assign, rem_rr, rem_rf, rem_fr);

impl Neg for Rev {
    type Output = Rev;
    #[inline]
    fn neg(self) -> Rev {
        rec1(-self.v, self, || -1.0)
    }
}

impl Neg for &Rev {
    type Output = Rev;
    #[inline]
    fn neg(self) -> Rev {
        -*self
    }
}

// ---------------------------------------------------------------------------------------------
// Comparisons (on values only, like num-dual).

impl PartialEq for Rev {
    #[inline]
    fn eq(&self, other: &Rev) -> bool {
        self.v == other.v
    }
}

impl PartialEq<f64> for Rev {
    #[inline]
    fn eq(&self, other: &f64) -> bool {
        self.v == *other
    }
}

impl PartialOrd for Rev {
    #[inline]
    fn partial_cmp(&self, other: &Rev) -> Option<std::cmp::Ordering> {
        self.v.partial_cmp(&other.v)
    }
}

impl PartialOrd<f64> for Rev {
    #[inline]
    fn partial_cmp(&self, other: &f64) -> Option<std::cmp::Ordering> {
        self.v.partial_cmp(other)
    }
}

// ---------------------------------------------------------------------------------------------
// num-traits.

impl Zero for Rev {
    #[inline]
    fn zero() -> Rev {
        Rev::constant(0.0)
    }
    #[inline]
    fn is_zero(&self) -> bool {
        self.v == 0.0
    }
}

impl One for Rev {
    #[inline]
    fn one() -> Rev {
        Rev::constant(1.0)
    }
    #[inline]
    fn is_one(&self) -> bool {
        self.v == 1.0
    }
}

impl Num for Rev {
    type FromStrRadixErr = <f64 as Num>::FromStrRadixErr;
    /// Parses an `f64` and returns it as a constant.
    fn from_str_radix(s: &str, radix: u32) -> Result<Rev, Self::FromStrRadixErr> {
        <f64 as Num>::from_str_radix(s, radix).map(Rev::constant)
    }
}

impl Signed for Rev {
    /// `|x|` with slope +1 where the sign bit is clear and −1 where it is set.
    #[inline]
    fn abs(&self) -> Rev {
        let x = *self;
        rec1(x.v.abs(), x, || {
            if x.v.is_sign_positive() { 1.0 } else { -1.0 }
        })
    }
    #[inline]
    fn abs_sub(&self, other: &Rev) -> Rev {
        if self.v <= other.v {
            Rev::zero()
        } else {
            *self - *other
        }
    }
    /// A constant (`f64::signum` of the value).
    #[inline]
    fn signum(&self) -> Rev {
        Rev::constant(Signed::signum(&self.v))
    }
    #[inline]
    fn is_positive(&self) -> bool {
        Signed::is_positive(&self.v)
    }
    #[inline]
    fn is_negative(&self) -> bool {
        Signed::is_negative(&self.v)
    }
}

impl Inv for Rev {
    type Output = Rev;
    #[inline]
    fn inv(self) -> Rev {
        self.recip()
    }
}

impl Inv for &Rev {
    type Output = Rev;
    #[inline]
    fn inv(self) -> Rev {
        self.recip()
    }
}

/// Folds from the first item (values identical to `f64`'s sum; `-0.0` for no items).
impl Sum for Rev {
    fn sum<I: Iterator<Item = Rev>>(mut iter: I) -> Rev {
        match iter.next() {
            None => Rev::constant(-0.0),
            Some(first) => iter.fold(first, |acc, x| acc + x),
        }
    }
}

/// Folds from the first item (values identical to `f64`'s sum; `-0.0` for no items).
impl<'a> Sum<&'a Rev> for Rev {
    fn sum<I: Iterator<Item = &'a Rev>>(iter: I) -> Rev {
        iter.copied().sum()
    }
}

/// Folds from the first item (values identical to `f64`'s product; `1.0` for no items).
impl Product for Rev {
    fn product<I: Iterator<Item = Rev>>(mut iter: I) -> Rev {
        match iter.next() {
            None => Rev::one(),
            Some(first) => iter.fold(first, |acc, x| acc * x),
        }
    }
}

/// Folds from the first item (values identical to `f64`'s product; `1.0` for no items).
impl<'a> Product<&'a Rev> for Rev {
    fn product<I: Iterator<Item = &'a Rev>>(iter: I) -> Rev {
        iter.copied().product()
    }
}

macro_rules! from_primitive {
    ($($m:ident: $t:ty),*) => {
        /// Constants, converted as `f64` converts.
        impl FromPrimitive for Rev {
            $(
                #[inline]
                fn $m(n: $t) -> Option<Rev> {
                    <f64 as FromPrimitive>::$m(n).map(Rev::constant)
                }
            )*
        }
    };
}

from_primitive!(
    from_isize: isize, from_i8: i8, from_i16: i16, from_i32: i32, from_i64: i64, from_i128: i128,
    from_usize: usize, from_u8: u8, from_u16: u16, from_u32: u32, from_u64: u64, from_u128: u128,
    from_f32: f32, from_f64: f64
);

// ---------------------------------------------------------------------------------------------
// num-dual.

impl DualStruct for Rev {
    type Real = f64;
    type Inner = f64;
    #[inline]
    fn re(&self) -> f64 {
        self.v
    }
    #[inline]
    fn from_inner(inner: &f64) -> Rev {
        Rev::constant(*inner)
    }
}

impl Mappable<Rev> for Rev {
    type Output<O> = O;
    #[inline]
    fn map_dual<M: Fn(Rev) -> O, O>(self, f: M) -> O {
        f(self)
    }
}

impl DualNum for Rev {
    type Primitive = f64;
    const NDERIV: usize = 1;
    type InnerDual = f64;

    #[inline]
    fn from_re(re: f64) -> Rev {
        Rev::constant(re)
    }

    #[inline]
    fn scale(self, factor: &f64) -> Rev {
        self * *factor
    }

    #[inline]
    fn recip(&self) -> Rev {
        let r = self.v.recip();
        rec1(r, *self, || -r * r)
    }

    #[inline]
    fn powi(&self, n: i32) -> Rev {
        let x = self.v;
        let v = x.powi(n);
        match n {
            0 => Rev::constant(v),
            1 => rec1(v, *self, || 1.0),
            2 => rec1(v, *self, || 2.0 * x),
            _ => rec1(v, *self, || x.powi(n - 3) * x * x * f64::from(n)),
        }
    }

    #[inline]
    fn powf(&self, n: f64) -> Rev {
        let x = self.v;
        let v = x.powf(n);
        if n == 0.0 {
            Rev::constant(v)
        } else if n == 1.0 {
            rec1(v, *self, || 1.0)
        } else if (n - 2.0).abs() < f64::EPSILON {
            rec1(v, *self, || 2.0 * x)
        } else {
            rec1(v, *self, || x.powf(n - 3.0) * x * x * n)
        }
    }

    #[inline]
    fn sqrt(&self) -> Rev {
        let v = self.v.sqrt();
        rec1(v, *self, || v * self.v.recip() * 0.5)
    }

    #[inline]
    fn cbrt(&self) -> Rev {
        let v = self.v.cbrt();
        rec1(v, *self, || v * self.v.recip() * (1.0 / 3.0))
    }

    #[inline]
    fn exp(&self) -> Rev {
        let v = self.v.exp();
        rec1(v, *self, || v)
    }

    #[inline]
    fn exp2(&self) -> Rev {
        let v = self.v.exp2();
        rec1(v, *self, || v * std::f64::consts::LN_2)
    }

    #[inline]
    fn exp_m1(&self) -> Rev {
        rec1(self.v.exp_m1(), *self, || self.v.exp())
    }

    #[inline]
    fn ln(&self) -> Rev {
        rec1(self.v.ln(), *self, || self.v.recip())
    }

    #[inline]
    fn log(&self, base: f64) -> Rev {
        rec1(self.v.log(base), *self, || self.v.recip() / base.ln())
    }

    #[inline]
    fn log2(&self) -> Rev {
        rec1(self.v.log2(), *self, || {
            self.v.recip() / std::f64::consts::LN_2
        })
    }

    #[inline]
    fn log10(&self) -> Rev {
        rec1(self.v.log10(), *self, || {
            self.v.recip() / std::f64::consts::LN_10
        })
    }

    #[inline]
    fn ln_1p(&self) -> Rev {
        rec1(self.v.ln_1p(), *self, || (self.v + 1.0).recip())
    }

    #[inline]
    fn sin(&self) -> Rev {
        rec1(self.v.sin(), *self, || self.v.cos())
    }

    #[inline]
    fn cos(&self) -> Rev {
        rec1(self.v.cos(), *self, || -self.v.sin())
    }

    #[inline]
    fn tan(&self) -> Rev {
        rec1(self.v.tan(), *self, || {
            let c = self.v.cos();
            1.0 / (c * c)
        })
    }

    #[inline]
    fn sin_cos(&self) -> (Rev, Rev) {
        let (s, c) = self.v.sin_cos();
        (rec1(s, *self, || c), rec1(c, *self, || -s))
    }

    #[inline]
    fn asin(&self) -> Rev {
        rec1(self.v.asin(), *self, || {
            (1.0 - self.v * self.v).recip().sqrt()
        })
    }

    #[inline]
    fn acos(&self) -> Rev {
        rec1(self.v.acos(), *self, || {
            -(1.0 - self.v * self.v).recip().sqrt()
        })
    }

    #[inline]
    fn atan(&self) -> Rev {
        rec1(self.v.atan(), *self, || (1.0 + self.v * self.v).recip())
    }

    /// `atan2(self, other)`, i.e. the angle of `(other, self)`.
    #[inline]
    fn atan2(&self, other: Rev) -> Rev {
        let (y, x) = (self.v, other.v);
        let r2 = x * x + y * y;
        rec2(y.atan2(x), *self, || x / r2, other, || -y / r2)
    }

    #[inline]
    fn sinh(&self) -> Rev {
        rec1(self.v.sinh(), *self, || self.v.cosh())
    }

    #[inline]
    fn cosh(&self) -> Rev {
        rec1(self.v.cosh(), *self, || self.v.sinh())
    }

    #[inline]
    fn tanh(&self) -> Rev {
        rec1(self.v.tanh(), *self, || {
            let c = self.v.cosh();
            1.0 / (c * c)
        })
    }

    #[inline]
    fn asinh(&self) -> Rev {
        rec1(self.v.asinh(), *self, || {
            (1.0 + self.v * self.v).recip().sqrt()
        })
    }

    #[inline]
    fn acosh(&self) -> Rev {
        rec1(self.v.acosh(), *self, || {
            (self.v * self.v - 1.0).recip().sqrt()
        })
    }

    #[inline]
    fn atanh(&self) -> Rev {
        rec1(self.v.atanh(), *self, || (1.0 - self.v * self.v).recip())
    }

    /// Value as `f64`'s `sph_j0`; derivative `-j1(x)` (`-x/3` below machine epsilon).
    #[inline]
    fn sph_j0(&self) -> Rev {
        let x = self.v;
        rec1(DualNum::sph_j0(&x), *self, || {
            if x.abs() < f64::EPSILON {
                -x / 3.0
            } else {
                -DualNum::sph_j1(&x)
            }
        })
    }

    /// Value as `f64`'s `sph_j1`; derivative `j0 - 2 j1 / x` (`1/3` below machine epsilon).
    #[inline]
    fn sph_j1(&self) -> Rev {
        let x = self.v;
        let v = DualNum::sph_j1(&x);
        rec1(v, *self, || {
            if x.abs() < f64::EPSILON {
                1.0 / 3.0
            } else {
                DualNum::sph_j0(&x) - 2.0 * v / x
            }
        })
    }

    /// Value as `f64`'s `sph_j2`; derivative `j1 - 3 j2 / x` (`2x/15` below machine epsilon).
    #[inline]
    fn sph_j2(&self) -> Rev {
        let x = self.v;
        let v = DualNum::sph_j2(&x);
        rec1(v, *self, || {
            if x.abs() < f64::EPSILON {
                2.0 * x / 15.0
            } else {
                DualNum::sph_j1(&x) - 3.0 * v / x
            }
        })
    }

    /// Fused value (`f64::mul_add`); two nodes when all three operands are variables.
    #[inline]
    fn mul_add(&self, a: Rev, b: Rev) -> Rev {
        let x = *self;
        let v = x.v.mul_add(a.v, b.v);
        if b.i == NONE {
            rec2(v, x, || a.v, a, || x.v)
        } else {
            // The intermediate's value is never read: the tape stores no values.
            let p = rec2(0.0, x, || a.v, a, || x.v);
            rec2(v, p, || 1.0, b, || 1.0)
        }
    }

    /// Value `self.powf(exp)` as for `f64`; ∂/∂self = exp·selfᵉˣᵖ⁻¹, ∂/∂exp = value·ln(self)
    /// (0 where the value is 0).
    #[inline]
    fn powd(&self, exp: Rev) -> Rev {
        let (x, n) = (self.v, exp.v);
        let v = x.powf(n);
        rec2(
            v,
            *self,
            || n * x.powf(n - 1.0),
            exp,
            || if v == 0.0 { 0.0 } else { v * x.ln() },
        )
    }
}

#[cfg(test)]
// The tests exercise the by-reference operators and `x - x`, `x / x` on purpose.
#[allow(clippy::op_ref, clippy::eq_op)]
mod tests {
    use super::*;
    use crate::{Scalar, log_sum_exp};
    use num_dual::{Dual64, DualSVec64};

    fn close(a: f64, b: f64, rel: f64) -> bool {
        a == b || (a - b).abs() <= rel * a.abs().max(b.abs())
    }

    #[track_caller]
    fn assert_close(a: f64, b: f64, rel: f64, what: &str) {
        assert!(close(a, b, rel), "{what}: {a} vs {b} (rel {rel})");
    }

    /// Every unary function, generic so that it runs on `f64`, `Dual64` and `Rev`.
    fn un<S: Scalar>(name: &str, x: S) -> S {
        match name {
            "neg" => -x,
            "recip" => x.recip(),
            "inv" => x.inv(),
            "abs" => x.abs(),
            "powi0" => x.powi(0),
            "powi1" => x.powi(1),
            "powi2" => x.powi(2),
            "powi3" => x.powi(3),
            "powi5" => x.powi(5),
            "powi-2" => x.powi(-2),
            "powf0" => x.powf(0.0),
            "powf1" => x.powf(1.0),
            "powf2" => x.powf(2.0),
            "powf2.5" => x.powf(2.5),
            "powf-1.5" => x.powf(-1.5),
            "sqrt" => x.sqrt(),
            "cbrt" => x.cbrt(),
            "exp" => x.exp(),
            "exp2" => x.exp2(),
            "exp_m1" => x.exp_m1(),
            "ln" => x.ln(),
            "log3" => x.log(3.0),
            "log2" => x.log2(),
            "log10" => x.log10(),
            "ln_1p" => x.ln_1p(),
            "sin" => x.sin(),
            "cos" => x.cos(),
            "tan" => x.tan(),
            "sin_cos.0" => x.sin_cos().0,
            "sin_cos.1" => x.sin_cos().1,
            "asin" => x.asin(),
            "acos" => x.acos(),
            "atan" => x.atan(),
            "sinh" => x.sinh(),
            "cosh" => x.cosh(),
            "tanh" => x.tanh(),
            "asinh" => x.asinh(),
            "acosh" => x.acosh(),
            "atanh" => x.atanh(),
            "sph_j0" => x.sph_j0(),
            "sph_j1" => x.sph_j1(),
            "sph_j2" => x.sph_j2(),
            "+c" => x + 1.3,
            "-c" => x - 1.3,
            "*c" => x * 1.3,
            "/c" => x / 1.3,
            "+=c" => {
                let mut y = x;
                y += 1.3;
                y
            }
            "-=c" => {
                let mut y = x;
                y -= 1.3;
                y
            }
            "*=c" => {
                let mut y = x;
                y *= 1.3;
                y
            }
            "/=c" => {
                let mut y = x;
                y /= 1.3;
                y
            }
            "x*x" => x * x,
            "x/x" => x / x,
            "x-x" => x - x,
            "mul_add_self" => x.mul_add(x, x),
            "powd_self" => x.powd(x),
            "sum" => [x, x * 2.0, x.sin()].into_iter().sum(),
            "product" => [x, x + 1.0, x.cos()].into_iter().product(),
            _ => unreachable!("{name}"),
        }
    }

    const ANY: &[f64] = &[-2.3, -0.7, 0.4, 1.1, 2.9];
    const POS: &[f64] = &[0.3, 0.9, 1.7, 4.2];
    const UNIT: &[f64] = &[-0.8, -0.3, 0.2, 0.6];
    const UNARY: &[(&str, &[f64])] = &[
        ("neg", ANY),
        ("recip", ANY),
        ("inv", ANY),
        ("abs", ANY),
        ("powi0", ANY),
        ("powi1", ANY),
        ("powi2", ANY),
        ("powi3", ANY),
        ("powi5", ANY),
        ("powi-2", ANY),
        ("powf0", POS),
        ("powf1", POS),
        ("powf2", POS),
        ("powf2.5", POS),
        ("powf-1.5", POS),
        ("sqrt", POS),
        ("cbrt", ANY),
        ("exp", ANY),
        ("exp2", ANY),
        ("exp_m1", ANY),
        ("ln", POS),
        ("log3", POS),
        ("log2", POS),
        ("log10", POS),
        ("ln_1p", &[-0.5, 0.3, 2.0]),
        ("sin", ANY),
        ("cos", ANY),
        ("tan", ANY),
        ("sin_cos.0", ANY),
        ("sin_cos.1", ANY),
        ("asin", UNIT),
        ("acos", UNIT),
        ("atan", ANY),
        ("sinh", ANY),
        ("cosh", ANY),
        ("tanh", ANY),
        ("asinh", ANY),
        ("acosh", &[1.2, 2.0, 5.5]),
        ("atanh", UNIT),
        ("sph_j0", &[1e-17, -0.9, 0.5, 2.2, 7.0]),
        ("sph_j1", &[1e-17, -0.9, 0.5, 2.2, 7.0]),
        ("sph_j2", &[1e-17, -0.9, 0.5, 2.2, 7.0]),
        ("+c", ANY),
        ("-c", ANY),
        ("*c", ANY),
        ("/c", ANY),
        ("+=c", ANY),
        ("-=c", ANY),
        ("*=c", ANY),
        ("/=c", ANY),
        ("x*x", ANY),
        ("x/x", ANY),
        ("x-x", ANY),
        ("mul_add_self", ANY),
        ("powd_self", POS),
        ("sum", ANY),
        ("product", ANY),
    ];

    /// Value and derivative of `un(name, ·)` at `x` on a fresh tape.
    fn rev_unary(name: &str, x: f64) -> (f64, f64) {
        with_tape(|| {
            let xr = Rev::var(x);
            let y = un(name, xr);
            (y.value(), backward(&[(y, 1.0)]).of(xr))
        })
    }

    #[test]
    fn tape_unary_matches_f64_values_and_dual_derivatives() {
        for &(name, points) in UNARY {
            for &x in points {
                let (v, g) = rev_unary(name, x);
                let vf = un::<f64>(name, x);
                assert!(
                    v == vf || (v.is_nan() && vf.is_nan()),
                    "{name}({x}): value {v} vs f64 {vf}"
                );
                let d = un(name, Dual64::new(x, 1.0));
                assert_close(g, d.eps, 1e-12, &format!("{name}'({x})"));
            }
        }
    }

    /// Every binary operation with two `Rev` (or dual) operands.
    fn bin<S: Scalar>(name: &str, a: S, b: S) -> S {
        match name {
            "+" => a + b,
            "-" => a - b,
            "*" => a * b,
            "/" => a / b,
            "+&" => a + &b,
            "-&" => a - &b,
            "*&" => a * &b,
            "/&" => a / &b,
            "+=" => {
                let mut c = a;
                c += b;
                c
            }
            "-=" => {
                let mut c = a;
                c -= b;
                c
            }
            "*=" => {
                let mut c = a;
                c *= b;
                c
            }
            "/=" => {
                let mut c = a;
                c /= b;
                c
            }
            "atan2" => a.atan2(b),
            "powd" => a.powd(b),
            "mul_add" => a.mul_add(b, a * 0.5),
            "abs_sub" => a.abs_sub(&b),
            _ => unreachable!("{name}"),
        }
    }

    const PAIRS: &[(f64, f64)] = &[(1.3, 0.7), (-2.1, 1.9), (0.4, -3.3), (2.5, 2.5)];
    const POS_PAIRS: &[(f64, f64)] = &[(1.3, 0.7), (2.5, -1.2), (0.4, 3.3)];
    const BINARY: &[(&str, &[(f64, f64)])] = &[
        ("+", PAIRS),
        ("-", PAIRS),
        ("*", PAIRS),
        ("/", PAIRS),
        ("+&", PAIRS),
        ("-&", PAIRS),
        ("*&", PAIRS),
        ("/&", PAIRS),
        ("+=", PAIRS),
        ("-=", PAIRS),
        ("*=", PAIRS),
        ("/=", PAIRS),
        ("atan2", PAIRS),
        ("powd", POS_PAIRS),
        ("mul_add", PAIRS),
        ("abs_sub", PAIRS),
    ];

    fn rev_binary(f: impl Fn(Rev, Rev) -> Rev, a: f64, b: f64) -> (f64, f64, f64) {
        with_tape(|| {
            let (ar, br) = (Rev::var(a), Rev::var(b));
            let y = f(ar, br);
            let adj = backward(&[(y, 1.0)]);
            (y.value(), adj.of(ar), adj.of(br))
        })
    }

    #[test]
    fn tape_binary_matches_f64_values_and_dual_derivatives() {
        for &(name, pairs) in BINARY {
            for &(a, b) in pairs {
                let (v, ga, gb) = rev_binary(|x, y| bin(name, x, y), a, b);
                assert_eq!(v, bin::<f64>(name, a, b), "{name}({a}, {b}) value");
                let da = bin(name, Dual64::new(a, 1.0), Dual64::from(b)).eps;
                let db = bin(name, Dual64::from(a), Dual64::new(b, 1.0)).eps;
                assert_close(ga, da, 1e-12, &format!("∂a {name}({a}, {b})"));
                assert_close(gb, db, 1e-12, &format!("∂b {name}({a}, {b})"));
                // One operand constant: the same partial for the other one.
                let (v1, g1) = with_tape(|| {
                    let ar = Rev::var(a);
                    let y = bin(name, ar, Rev::constant(b));
                    (y.value(), backward(&[(y, 1.0)]).of(ar))
                });
                assert_eq!(v1, v);
                assert_close(g1, da, 1e-12, &format!("∂a {name}({a}, const)"));
                let (v2, g2) = with_tape(|| {
                    let br = Rev::var(b);
                    let y = bin(name, Rev::constant(a), br);
                    (y.value(), backward(&[(y, 1.0)]).of(br))
                });
                assert_eq!(v2, v);
                assert_close(g2, db, 1e-12, &format!("∂b {name}(const, {b})"));
            }
        }
    }

    #[test]
    fn tape_mixed_f64_operands() {
        type Case = (&'static str, fn(Rev, f64) -> Rev, fn(Dual64, f64) -> Dual64);
        // Rev ⊗ f64 and f64 ⊗ Rev, against Dual64 with the f64 side as a constant dual.
        let cases: &[Case] = &[
            ("x+c", |x, c| x + c, |x, c| x + c),
            ("x-c", |x, c| x - c, |x, c| x - c),
            ("x*c", |x, c| x * c, |x, c| x * c),
            ("x/c", |x, c| x / c, |x, c| x / c),
            ("&x+c", |x, c| &x + c, |x, c| x + c),
            ("&x*c", |x, c| &x * c, |x, c| x * c),
            ("c+x", |x, c| c + x, |x, c| Dual64::from(c) + x),
            ("c-x", |x, c| c - x, |x, c| Dual64::from(c) - x),
            ("c*x", |x, c| c * x, |x, c| Dual64::from(c) * x),
            ("c/x", |x, c| c / x, |x, c| Dual64::from(c) / x),
            ("c+&x", |x, c| c + &x, |x, c| Dual64::from(c) + x),
            ("c/&x", |x, c| c / &x, |x, c| Dual64::from(c) / x),
            ("&x*&x", |x, _| &x * &x, |x, _| x * x),
            ("&x-x", |x, _| &x - x, |x, _| x - x),
            ("-&x", |x, _| -&x, |x, _| -x),
        ];
        for &(name, fr, fd) in cases {
            for &(x, c) in PAIRS {
                let (v, g) = with_tape(|| {
                    let xr = Rev::var(x);
                    let y = fr(xr, c);
                    (y.value(), backward(&[(y, 1.0)]).of(xr))
                });
                let d = fd(Dual64::new(x, 1.0), c);
                let vf = fr(Rev::constant(x), c).value();
                assert_eq!(v, vf, "{name} value");
                assert_close(v, d.re, 1e-15, &format!("{name} value vs dual"));
                assert_close(g, d.eps, 1e-12, &format!("{name}' at ({x}, {c})"));
            }
        }
        // Values of the f64-on-the-left forms are plain f64 arithmetic.
        let x = Rev::constant(0.7);
        assert_eq!((2.0 - x).value(), 2.0 - 0.7);
        assert_eq!((2.0 / x).value(), 2.0 / 0.7);
        assert_eq!((2.0 * x).value(), 2.0 * 0.7);
    }

    #[test]
    fn tape_rem_matches_fmod_and_finite_differences() {
        for &(a, b) in &[(5.3, 1.7), (-5.3, 1.7), (5.3, -2.2), (0.4, 3.0)] {
            let (v, ga, gb) = rev_binary(|x, y| x % y, a, b);
            assert_eq!(v, a % b);
            assert_eq!(ga, 1.0);
            let h = 1e-6;
            let fd = ((a % (b + h)) - (a % (b - h))) / (2.0 * h);
            assert!((gb - fd).abs() < 1e-6, "∂b {a} % {b}: {gb} vs {fd}");
            assert_eq!(gb, -(a / b).trunc());
            let (_, ga2, gb2) = rev_binary(
                |x, y| {
                    let mut z = x;
                    z %= y;
                    z %= 10.0;
                    z
                },
                a,
                b,
            );
            assert_eq!((ga2, gb2), (ga, gb));
            let (v3, g3) = with_tape(|| {
                let y = Rev::var(b);
                let z = a % y;
                (z.value(), backward(&[(z, 1.0)]).of(y))
            });
            assert_eq!((v3, g3), (a % b, gb));
            let (v4, g4) = with_tape(|| {
                let x = Rev::var(a);
                let z = x % b;
                (z.value(), backward(&[(z, 1.0)]).of(x))
            });
            assert_eq!((v4, g4), (a % b, 1.0));
        }
    }

    #[test]
    fn tape_mul_add_all_operand_patterns() {
        let (x, a, b) = (0.7, -1.9, 2.3);
        for mask in 0..8u32 {
            let (v, g) = with_tape(|| {
                let mk = |bit: u32, v: f64| {
                    if mask & (1 << bit) != 0 {
                        Rev::var(v)
                    } else {
                        Rev::constant(v)
                    }
                };
                let (xr, ar, br) = (mk(0, x), mk(1, a), mk(2, b));
                let y = xr.mul_add(ar, br);
                let adj = backward(&[(y, 1.0)]);
                (y.value(), [adj.of(xr), adj.of(ar), adj.of(br)])
            });
            assert_eq!(v, x.mul_add(a, b));
            let want = [a, x, 1.0];
            for k in 0..3 {
                let w = if mask & (1 << k) != 0 { want[k] } else { 0.0 };
                assert_eq!(g[k], w, "mask {mask} operand {k}");
            }
        }
    }

    #[test]
    fn tape_signed_and_misc_traits() {
        let x = Rev::constant(-0.0);
        assert_eq!(x.abs().value().to_bits(), 0.0f64.to_bits());
        assert_eq!(Rev::constant(-2.0).signum(), -1.0);
        assert_eq!(Rev::constant(0.0).signum(), 1.0);
        assert!(Rev::constant(-2.0).is_negative() && Rev::constant(3.0).is_positive());
        assert_eq!(
            <Rev as Num>::from_str_radix("2.5", 10).unwrap().value(),
            2.5
        );
        assert!(<Rev as Num>::from_str_radix("x", 10).is_err());
        assert_eq!(Rev::from_i32(-3).unwrap().value(), -3.0);
        assert_eq!(Rev::from_usize(7).unwrap().value(), 7.0);
        assert_eq!(Rev::from_f64(0.25).unwrap(), 0.25);
        assert!(Rev::zero().is_zero() && Rev::one().is_one());
        assert_eq!(Rev::default().value(), 0.0);
        assert_eq!(<Rev as DualNum>::from_re(1.5).node(), None);
        assert_eq!(Rev::from_inner(&1.5).re(), 1.5);
        let (v, g) = with_tape(|| {
            let x = Rev::var(0.6);
            let y = x.scale(&1.7);
            (y.value(), backward(&[(y, 1.0)]).of(x))
        });
        let d = Dual64::new(0.6, 1.0).scale(&1.7);
        assert_eq!((v, g), (0.6 * 1.7, 1.7));
        assert_eq!((d.re, d.eps), (v, g));
        assert_eq!(Rev::constant(2.0).map_dual(|x| x.value() * 2.0), 4.0);
        assert!(Rev::constant(1.0) < Rev::constant(2.0));
        assert!(Rev::constant(1.0) < 2.0 && Rev::constant(1.0) == 1.0);
        assert_eq!(format!("{}", Rev::constant(1.5)), "1.5");
        assert_eq!(
            format!("{:?}", Rev::constant(1.5)),
            "Rev { value: 1.5, node: None }"
        );
        with_tape(|| {
            let v = Rev::var(2.0);
            assert_eq!(format!("{v:?}"), "Rev { value: 2.0, node: Some(0) }");
            // Sum and Product over references, values exactly as f64.
            let xs = [v, Rev::var(0.1), Rev::var(0.2)];
            let s: Rev = xs.iter().sum();
            let p: Rev = xs.iter().product();
            assert_eq!(s.value(), [2.0, 0.1, 0.2].iter().sum::<f64>());
            assert_eq!(p.value(), [2.0, 0.1, 0.2].iter().product::<f64>());
            let adj = backward(&[(s, 1.0), (p, 1.0)]);
            assert_close(adj.of(xs[1]), 1.0 + 2.0 * 0.2, 1e-15, "d(s+p)/dx1");
        });
        let empty: [Rev; 0] = [];
        assert_eq!(
            empty.iter().sum::<Rev>().value().to_bits(),
            (-0.0f64).to_bits()
        );
        assert_eq!(empty.iter().product::<Rev>().value(), 1.0);
    }

    fn composite<S: Scalar>(x: &[S; 3]) -> S {
        let [a, b, c] = *x;
        let t = (a * b).exp() / (c * c + 1.0) + (b.powi(3) - c).tanh() * a.ln();
        let lse = log_sum_exp(&[a * 2.0, b - c, (a * c).sin(), t]);
        lse * (a / b + 1.0) - c.sqrt().powf(1.5) + lse.powi(-2) * 2.0 + (a + b + c).ln()
    }

    #[test]
    fn tape_composite_matches_dual_vec_gradient() {
        for x in [[0.7, 1.3, 0.4], [1.5, -0.6, 2.2], [2.0, 0.2, 0.9]] {
            let (v, g) = with_tape(|| {
                let xr = x.map(Rev::var);
                let y = composite(&xr);
                let adj = backward(&[(y, 1.0)]);
                (y.value(), xr.map(|r| adj.of(r)))
            });
            assert_eq!(v, composite(&x));
            let xd: [DualSVec64<3>; 3] =
                std::array::from_fn(|i| DualSVec64::<3>::from_re(x[i]).derivative(i));
            let d = composite(&xd);
            let dg = d.eps.0.expect("nonzero gradient");
            for i in 0..3 {
                assert_close(g[i], dg[i], 1e-12, &format!("∂{i} composite at {x:?}"));
            }
        }
    }

    #[test]
    fn tape_log_sum_exp_gradient_is_softmax() {
        let v = [0.3, -1.2, 2.5, 0.0, 1.1];
        let (l, g) = with_tape(|| {
            let vr: Vec<Rev> = v.iter().map(|&x| Rev::var(x)).collect();
            let l = log_sum_exp(&vr);
            let adj = backward(&[(l, 1.0)]);
            (l.value(), vr.iter().map(|&r| adj.of(r)).collect::<Vec<_>>())
        });
        assert_eq!(l, log_sum_exp(&v));
        for i in 0..v.len() {
            assert_close(g[i], (v[i] - l).exp(), 1e-14, &format!("softmax {i}"));
        }
        assert_close(g.iter().sum::<f64>(), 1.0, 1e-14, "softmax sums to 1");
    }

    /// y_j = Σ_i A_ji x_i with a hand-written backward pass.
    struct MatVec {
        a: Vec<Vec<f64>>,
        x: Vec<Rev>,
    }

    impl CustomOp for MatVec {
        fn backward(&self, out_adj: &[f64], inputs: &mut AdjointsMut<'_>) {
            for (row, &w) in self.a.iter().zip(out_adj) {
                for (&aji, &xi) in row.iter().zip(&self.x) {
                    inputs.add(xi, aji * w);
                }
            }
        }
    }

    fn matvec_custom(a: &[Vec<f64>], x: &[Rev]) -> Vec<Rev> {
        let values: Vec<f64> = a
            .iter()
            .map(|row| row.iter().zip(x).map(|(a, x)| a * x.value()).sum())
            .collect();
        let mut out = vec![Rev::constant(0.0); a.len()];
        custom(
            &values,
            Box::new(MatVec {
                a: a.to_vec(),
                x: x.to_vec(),
            }),
            &mut out,
        );
        out
    }

    fn matvec_nodes(a: &[Vec<f64>], x: &[Rev]) -> Vec<Rev> {
        a.iter()
            .map(|row| row.iter().zip(x).map(|(&a, &x)| x * a).sum())
            .collect()
    }

    /// Ops before, between and after two custom matvecs; constants among the inputs.
    fn pipeline(x0: &[f64], use_custom: bool) -> (f64, Vec<f64>, usize) {
        let a = vec![vec![0.5, -1.0, 2.0, 0.3], vec![1.5, 0.25, -0.7, 1.0]];
        let b = vec![vec![1.0, -2.0], vec![0.3, 0.4], vec![-1.1, 0.9]];
        let mv = |m: &[Vec<f64>], v: &[Rev]| {
            if use_custom {
                matvec_custom(m, v)
            } else {
                matvec_nodes(m, v)
            }
        };
        with_tape(|| {
            let x: Vec<Rev> = x0.iter().map(|&v| Rev::var(v)).collect();
            let mut u: Vec<Rev> = x.iter().map(|v| v.sin() * 1.5).collect();
            u.push(Rev::constant(0.8));
            u[0] *= x[1];
            let y = mv(&a, &u[..4]);
            let w: Vec<Rev> = y.iter().map(|v| v.tanh() + x[2]).collect();
            let z = mv(&b, &w);
            let out = z.iter().map(|v| v.exp()).sum::<Rev>() * y[1] + x[0].powi(2);
            let adj = backward(&[(out, 1.0)]);
            (
                out.value(),
                x.iter().map(|&r| adj.of(r)).collect(),
                tape_len(),
            )
        })
    }

    #[test]
    fn tape_custom_op_matches_node_by_node() {
        let x0 = [0.3, -1.2, 0.8, 2.0];
        let (v1, g1, len1) = pipeline(&x0, true);
        let (v2, g2, len2) = pipeline(&x0, false);
        assert_close(v1, v2, 1e-14, "value");
        for i in 0..x0.len() {
            assert_close(g1[i], g2[i], 1e-12, &format!("∂{i}"));
        }
        assert!(len1 < len2, "custom op tape {len1} nodes vs {len2}");
        // An op whose outputs are unused is skipped; its inputs get nothing.
        with_tape(|| {
            let x = Rev::var(1.0);
            let y = matvec_custom(&[vec![2.0]], &[x]);
            let z = x * 3.0;
            let adj = backward(&[(z, 1.0)]);
            assert_eq!(adj.of(x), 3.0);
            assert_eq!(adj.of(y[0]), 0.0);
            // Seeding the op's output directly.
            let adj = backward(&[(y[0], 1.0), (z, 1.0)]);
            assert_eq!(adj.of(x), 5.0);
        });
        // No values: nothing recorded.
        with_tape(|| {
            custom(
                &[],
                Box::new(MatVec {
                    a: vec![],
                    x: vec![],
                }),
                &mut [],
            );
            assert_eq!(tape_len(), 0);
        });
    }

    #[test]
    fn tape_with_tape_nesting_and_constants() {
        with_tape(|| {
            let x = Rev::var(1.5);
            let y = x * x;
            assert_eq!(tape_len(), 2);
            let inner = with_tape(|| {
                assert_eq!(tape_len(), 0);
                let u = Rev::var(3.0);
                let w = u.exp();
                assert_eq!(tape_len(), 2);
                backward(&[(w, 1.0)]).of(u)
            });
            assert_eq!(inner, 3f64.exp());
            assert_eq!(tape_len(), 2);
            // A panicking inner scope also restores the outer tape.
            let r = std::panic::catch_unwind(|| {
                with_tape(|| {
                    let _ = Rev::var(1.0) * 2.0;
                    panic!("inner scope panics");
                })
            });
            assert!(r.is_err());
            assert_eq!(tape_len(), 2);
            let z = y.sin() * x;
            assert_eq!(tape_len(), 4);
            let adj = backward(&[(z, 1.0)]);
            let want = 2.25f64.cos() * 3.0 * 1.5 + 2.25f64.sin();
            assert_close(adj.of(x), want, 1e-15, "outer gradient after inner scopes");
            // Seeds add up; constant seeds are ignored.
            let adj2 = backward(&[(z, 0.5), (z, 0.5), (Rev::constant(1.0), 7.0)]);
            assert_eq!(adj2.of(x), adj.of(x));
            assert_eq!(adj2.of(Rev::constant(3.0)), 0.0);
            assert_eq!(adj2.as_slice().len(), 4);
        });
        with_tape(|| {
            let a = Rev::constant(2.0);
            let b = a * 3.0 + a.exp() - a / a + 1.0 / a + a.powi(3).sin() + a.mul_add(a, a);
            let s: Rev = [a, b].iter().sum();
            assert_eq!(tape_len(), 0);
            assert_eq!((b.node(), s.node()), (None, None));
            assert_eq!(tape_bytes(), tape_bytes()); // callable on an empty tape
        });
    }

    #[test]
    fn tape_allocation_is_reused() {
        with_tape(|| {
            let x = Rev::var(1.0);
            let mut y = x;
            for _ in 0..1000 {
                y *= 1.0001;
            }
            assert_eq!(tape_len(), 1001);
            assert!(tape_bytes() >= 1001 * 24);
        });
        for _ in 0..100 {
            with_tape(|| {
                assert_eq!(tape_len(), 0);
                assert!(tape_bytes() >= 1001 * 24, "pooled tape reused");
                let _ = Rev::var(1.0).exp();
            });
        }
        assert_eq!(std::mem::size_of::<Node>(), 24);
    }

    #[test]
    fn tape_threads_are_independent() {
        let results: Vec<(f64, usize)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|k| {
                    s.spawn(move || {
                        with_tape(|| {
                            let x = Rev::var(k as f64 + 0.5);
                            let mut y = x;
                            for _ in 0..=k {
                                y *= x; // y = x^(k+2)
                                std::thread::yield_now();
                            }
                            let g = backward(&[(y, 1.0)]).of(x);
                            (g, tape_len())
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (k, &(g, len)) in results.iter().enumerate() {
            let x = k as f64 + 0.5;
            let n = k as i32 + 2;
            assert_close(g, f64::from(n) * x.powi(n - 1), 1e-13, "thread gradient");
            assert_eq!(len, k + 2);
        }
    }

    #[test]
    fn tape_rev_is_a_scalar() {
        fn f<S: Scalar>(x: S) -> S {
            x * S::cst(2.0) + 1.0
        }
        with_tape(|| {
            let x = Rev::var(3.0);
            let y = f(x);
            assert_eq!(y.re(), 7.0);
            assert_eq!(backward(&[(y, 1.0)]).of(x), 2.0);
        });
    }
}
