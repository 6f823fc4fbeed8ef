//! The particle filter's checkpointed reverse pass (described in the [`crate::grad`] module
//! documentation), reached through [`crate::grad::ParticleFilterNll`]'s
//! [`crate::grad::Differentiable::reverse`].

use crate::error::{Result, SmcError};
use crate::grad::{BuildResampler, Parametric};
use crate::model::FeynmanKac;
use crate::par::map_chunks;
use crate::particles::Particles;
use crate::rng::StreamKey;
use crate::smc::step::{move_key, resample_key};
use crate::smc::{Smc, SmcConfig, Trace};
use crate::tape::{self, Rev};

/// Particles per tape in the move-and-weighting stage, moved as one block
/// ([`FeynmanKac::move_block`]; fixed, so that results do not depend on the number of
/// threads). Each chunk builds the model on its own tape and costs a rayon task; measured on
/// the neural Lotka–Volterra model (N = 64, 2 cores), 16-particle chunks on two threads made
/// the stage 1.7× slower than one 64-particle chunk (the per-step fork-join and model builds
/// cost more than the second core gave), so chunks are large and only large particle counts
/// run in parallel.
const MOVE_CHUNK: usize = 256;

/// The negative log-likelihood estimate at θ and its gradient, by the checkpointed reverse
/// pass. θ has been checked by [`crate::grad::gradient`].
///
/// Errors additionally: a resampler whose reverse re-run fails (it then failed in the `f64`
/// run too, so this does not happen in practice).
pub(crate) fn value_and_gradient<P: Parametric, B: BuildResampler>(
    p: &P,
    theta: &[f64],
    smc: &SmcConfig,
    resampler: &B,
    seed: u64,
) -> Result<(f64, Vec<f64>)> {
    let model = p.model::<f64>(theta)?;
    let r64 = resampler.build_for::<f64>()?;
    let mut trace = Trace::default();
    let out = Smc::new(smc.clone()).run_traced(&model, &*r64, seed, Some(&mut trace))?;
    let value = -out.log_likelihood;
    drop(out);
    let n = smc.n_particles();
    let d = FeynmanKac::<f64>::dim(&model);
    let steps = trace.states.len();
    let rrev = resampler.build_for::<Rev>()?;

    let mut grad = vec![0.0; theta.len()];
    // Adjoints of the state after step t (particles, normalised log-weights).
    let mut ax = vec![0.0; n * d];
    let mut alw = vec![0.0; n];
    // Adjoints of the move's inputs (x̃, l̃w) and of the unnormalised log-weights.
    let mut axin = vec![0.0; n * d];
    let mut alwp = vec![0.0; n];
    for t in (0..steps).rev() {
        // Normalisation: lw_t = lw' − lse(lw'), increment lse(lw') with adjoint −1 (NLL).
        let lw_t = &trace.states[t].1;
        let total: f64 = alw.iter().sum();
        for ((a, &g), &l) in alwp.iter_mut().zip(&alw).zip(lw_t) {
            let w = if l == f64::NEG_INFINITY { 0.0 } else { l.exp() };
            *a = g - w * (1.0 + total);
        }
        // Move and weighting.
        let xin: Option<&[f64]> = if t == 0 {
            None
        } else {
            Some(match &trace.resampled[t] {
                Some((x, _)) => x,
                None => &trace.states[t - 1].0,
            })
        };
        move_backward(
            p, theta, t, seed, n, d, xin, &ax, &alwp, &mut grad, &mut axin,
        )?;
        if t == 0 {
            break;
        }
        // Resampling (the adjoint of l̃w is that of lw').
        if trace.resampled[t].is_some() {
            let (x_prev, lw_prev) = &trace.states[t - 1];
            resample_backward(
                &*rrev,
                resample_key(seed, t),
                n,
                d,
                x_prev,
                lw_prev,
                &axin,
                &alwp,
                &mut ax,
                &mut alw,
            )?;
        } else {
            ax.copy_from_slice(&axin);
            alw.copy_from_slice(&alwp);
        }
    }
    Ok((value, grad))
}

/// One chunk of the move-and-weighting stage: `(∂/∂θ, ∂/∂x̃)` of
/// `Σ_i ⟨ax_i, x_i⟩ + alw'_i · log G_t` over the chunk's particles `range`.
#[allow(clippy::too_many_arguments)]
fn move_chunk<P: Parametric>(
    p: &P,
    theta: &[f64],
    t: usize,
    key: StreamKey,
    d: usize,
    range: std::ops::Range<usize>,
    xin: Option<&[f64]>,
    ax: &[f64],
    alwp: &[f64],
) -> Result<(Vec<f64>, Vec<f64>)> {
    tape::with_tape(|| {
        let th: Vec<Rev> = theta.iter().map(|&v| Rev::var(v)).collect();
        let model = p.model::<Rev>(&th)?;
        let m = range.len();
        // The chunk's input particles as tape variables, moved as one block.
        let xp: Vec<Rev> = match xin {
            None => Vec::new(),
            Some(xin) => xin[range.start * d..range.end * d]
                .iter()
                .map(|&r| Rev::var(r))
                .collect(),
        };
        let mut x = vec![Rev::constant(0.0); m * d];
        let mut g = vec![Rev::constant(0.0); m];
        let xp_block = xin.map(|_| xp.as_slice());
        model.move_block(t, key, range.start, xp_block, &mut x, &mut g);
        let mut seeds = Vec::with_capacity(m * (d + 1));
        for (j, i) in range.clone().enumerate() {
            seeds.extend(
                x[j * d..(j + 1) * d]
                    .iter()
                    .zip(&ax[i * d..(i + 1) * d])
                    .map(|(&v, &a)| (v, a)),
            );
            seeds.push((g[j], alwp[i]));
        }
        let adj = tape::backward(&seeds);
        let gth = th.iter().map(|&v| adj.of(v)).collect();
        let gx = if xin.is_some() {
            xp.iter().map(|&v| adj.of(v)).collect()
        } else {
            Vec::new()
        };
        Ok((gth, gx))
    })
}

/// The move-and-weighting stage of step `t` backwards: adds `∂/∂θ` to `grad` and writes the
/// adjoint of the move's input particles to `axin` (untouched at `t = 0`).
#[allow(clippy::too_many_arguments)]
fn move_backward<P: Parametric>(
    p: &P,
    theta: &[f64],
    t: usize,
    seed: u64,
    n: usize,
    d: usize,
    xin: Option<&[f64]>,
    ax: &[f64],
    alwp: &[f64],
    grad: &mut [f64],
    axin: &mut [f64],
) -> Result<()> {
    let key = move_key(seed, t);
    let chunks = n.div_ceil(MOVE_CHUNK);
    let one = |c: usize| {
        let range = c * MOVE_CHUNK..((c + 1) * MOVE_CHUNK).min(n);
        move_chunk(p, theta, t, key, d, range, xin, ax, alwp)
    };
    for (c, r) in map_chunks::<f64, _>(chunks, one).into_iter().enumerate() {
        let (gth, gx) = r?;
        for (g, v) in grad.iter_mut().zip(&gth) {
            *g += v;
        }
        if xin.is_some() {
            let start = c * MOVE_CHUNK * d;
            axin[start..start + gx.len()].copy_from_slice(&gx);
        }
    }
    Ok(())
}

/// The resampling stage of step `t` backwards: re-runs the resampler on the tape from the
/// recorded `(x_prev, lw_prev)` and writes the adjoints of its inputs to `ax`, `alw`.
#[allow(clippy::too_many_arguments)]
fn resample_backward(
    r: &dyn crate::resample::Resampler<Rev>,
    key: StreamKey,
    n: usize,
    d: usize,
    x_prev: &[f64],
    lw_prev: &[f64],
    axin: &[f64],
    alwin: &[f64],
    ax: &mut [f64],
    alw: &mut [f64],
) -> Result<()> {
    tape::with_tape(|| {
        let xs: Vec<Rev> = x_prev.iter().map(|&v| Rev::var(v)).collect();
        let lws: Vec<Rev> = lw_prev.iter().map(|&v| Rev::var(v)).collect();
        let parts = Particles::from_vec(n, d, xs)?;
        let mut out = Particles::<Rev>::zeros(n, d);
        let mut out_lw = vec![Rev::constant(0.0); n];
        let info = r.resample(&parts, &lws, key, &mut out, &mut out_lw)?;
        if !info.resampled {
            return Err(SmcError::invalid(
                "resampler",
                r.name(),
                "a resampler that resamples in the reverse pass as it did in the forward run",
            ));
        }
        let seeds: Vec<(Rev, f64)> = out
            .as_slice()
            .iter()
            .zip(axin)
            .chain(out_lw.iter().zip(alwin))
            .map(|(&v, &a)| (v, a))
            .collect();
        let adj = tape::backward(&seeds);
        for (a, &v) in ax.iter_mut().zip(parts.as_slice()) {
            *a = adj.of(v);
        }
        for (a, &v) in alw.iter_mut().zip(&lws) {
            *a = adj.of(v);
        }
        Ok(())
    })
}
