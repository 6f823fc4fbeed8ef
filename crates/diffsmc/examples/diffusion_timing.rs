//! Times one diffusion resampling (d = 8, K = 4) for f64 and DualSVec64<2>.
//! `cargo run -p diffsmc --release --example diffusion_timing -- [N] [reps] [f64|dual|both] [d] [K]`
use std::time::Instant;

use diffsmc::prelude::*;
use diffsmc::rng::Purpose;
use num_dual::DualSVec64;

/// `n` particles in `R^d` with non-uniform weights; on duals they carry two derivative lanes
/// (a shift and a scale parameter).
fn inputs<S: Scalar>(n: usize, d: usize, theta: [S; 2]) -> (Particles<S>, Vec<S>) {
    let mut rng = StreamKey::new(11, 0, Purpose::Other(1)).rng(0);
    let mut x = Vec::with_capacity(n * d);
    let mut lw = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = S::zero();
        for k in 0..d {
            let v = theta[0] + theta[1] * standard_normal(&mut rng) * (1.0 + 0.1 * k as f64);
            s += v;
            x.push(v);
        }
        let r = s - 1.0;
        lw.push(r * r * -0.125);
    }
    let lse = log_sum_exp(&lw);
    for w in &mut lw {
        *w -= lse;
    }
    (Particles::from_vec(n, d, x).unwrap(), lw)
}

/// CPU time of the whole process (all threads), from /proc (ns).
fn cpu_ns() -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for t in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn time<S: Scalar>(
    label: &str,
    n: usize,
    d: usize,
    reps: usize,
    r: &DiffusionResampler,
    theta: [S; 2],
) {
    let (x, lw) = inputs::<S>(n, d, theta);
    let mut out = Particles::zeros(n, d);
    let mut olw = vec![S::zero(); n];
    let mut best = f64::INFINITY;
    let mut best_cpu = f64::INFINITY;
    for rep in 0..reps {
        let c0 = cpu_ns();
        let t = Instant::now();
        r.resample(
            &x,
            &lw,
            StreamKey::new(rep as u64, 1, Purpose::Resample),
            &mut out,
            &mut olw,
        )
        .unwrap();
        best = best.min(t.elapsed().as_secs_f64());
        best_cpu = best_cpu.min((cpu_ns() - c0) as f64 * 1e-9);
    }
    let k = r.config().steps() as f64;
    let evals = k * (n as f64).powi(2);
    println!(
        "{label:>14} N={n:>6}: wall {best:.4} s ({:.0} M evals/s), cpu {best_cpu:.4} s ({:.0} M evals/s per core)",
        evals / best / 1e6,
        evals / best_cpu / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(2048, |s| s.parse().unwrap());
    let reps: usize = args.get(2).map_or(3, |s| s.parse().unwrap());
    let only: Option<&str> = args.get(3).map(|s| s.as_str());
    let d: usize = args.get(4).map_or(8, |s| s.parse().unwrap());
    let k: usize = args.get(5).map_or(4, |s| s.parse().unwrap());
    let r = DiffusionResampler::new(DiffusionConfig::new().with_steps(k).unwrap());
    if only != Some("dual") {
        time::<f64>("f64", n, d, reps, &r, [0.0, 1.0]);
    }
    if only != Some("f64") {
        let theta = [
            DualSVec64::from_re(0.0).derivative(0),
            DualSVec64::from_re(1.0).derivative(1),
        ];
        time::<DualSVec64<2>>("DualSVec64<2>", n, d, reps, &r, theta);
    }
}
