//! Resampler benchmarks: one diffusion resampling at d = 8, K = 4 for N = 2048 and 8192, on
//! `f64` and on `DualSVec64<2>` (two derivative lanes), on the default rayon pool; and the
//! same at N = 2048 on a one-thread pool (`*_1thread`: throughput per core, the figure the
//! score-loop kernels are tuned on, less sensitive to other load on the machine). Kernel
//! evaluations per resampling: K · N². Run with `cargo bench -p diffsmc --bench resample`
//! (about a minute and a half).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use diffsmc::prelude::*;
use diffsmc::rng::Purpose;
use num_dual::DualSVec64;

const D: usize = 8;
const K: usize = 4;

/// `n` particles in `R^8` with non-uniform weights; on duals the particles carry derivative
/// lanes (a shift and a scale parameter).
fn inputs<S: Scalar>(n: usize, theta: [S; 2]) -> (Particles<S>, Vec<S>) {
    let mut rng = StreamKey::new(11, 0, Purpose::Other(1)).rng(0);
    let mut x = Vec::with_capacity(n * D);
    let mut lw = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = S::zero();
        for k in 0..D {
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
    (Particles::from_vec(n, D, x).unwrap(), lw)
}

fn bench_one<S: Scalar>(c: &mut Criterion, group: &str, theta: [S; 2]) {
    bench_sizes(c, group, theta, &[2048, 8192], &|f| f());
}

/// `bench_one` at N = 2048, each resampling run inside a one-thread rayon pool.
#[cfg(feature = "rayon")]
fn bench_one_thread<S: Scalar>(c: &mut Criterion, group: &str, theta: [S; 2]) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    bench_sizes(c, group, theta, &[2048], &|f| pool.install(f));
}

/// Runs a closure (on the default pool, or inside a given one).
type Runner<'a> = &'a dyn Fn(&mut (dyn FnMut() + Send));

fn bench_sizes<S: Scalar>(
    c: &mut Criterion,
    group: &str,
    theta: [S; 2],
    sizes: &[usize],
    runner: Runner<'_>,
) {
    let r = DiffusionResampler::new(DiffusionConfig::new().with_steps(K).unwrap());
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for &n in sizes {
        let (x, lw) = inputs(n, theta);
        let mut out = Particles::zeros(n, D);
        let mut olw = vec![S::zero(); n];
        g.throughput(Throughput::Elements((K * n * n) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                runner(&mut || {
                    r.resample(
                        black_box(&x),
                        black_box(&lw),
                        StreamKey::new(1, 1, Purpose::Resample),
                        &mut out,
                        &mut olw,
                    )
                    .unwrap();
                })
            })
        });
    }
    g.finish();
}

fn dual_theta() -> [DualSVec64<2>; 2] {
    [
        DualSVec64::from_re(0.0).derivative(0),
        DualSVec64::from_re(1.0).derivative(1),
    ]
}

fn diffusion(c: &mut Criterion) {
    bench_one::<f64>(c, "diffusion_d8_k4_f64", [0.0, 1.0]);
    bench_one::<DualSVec64<2>>(c, "diffusion_d8_k4_dualsvec2", dual_theta());
    #[cfg(feature = "rayon")]
    {
        bench_one_thread::<f64>(c, "diffusion_d8_k4_f64_1thread", [0.0, 1.0]);
        bench_one_thread::<DualSVec64<2>>(c, "diffusion_d8_k4_dualsvec2_1thread", dual_theta());
    }
}

criterion_group!(benches, diffusion);
criterion_main!(benches);
