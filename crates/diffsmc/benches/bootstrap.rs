//! Bootstrap particle filter on the paper's linear Gaussian state-space model (d = 1, 129
//! observations): `z_0 ~ N(0, 1)`, `z_t = 0.5 z_{t−1} + N(0, 1)`, `y_t = z_t + N(0, 0.5)`,
//! systematic resampling at every step, N ∈ {32, 1024, 16384}.
//!
//! Run with `cargo bench -p diffsmc --bench bootstrap` (add e.g.
//! `-- --warm-up-time 1 --measurement-time 3` for a short run). Reference: the Python
//! `particles` library takes 13–20 ms (N = 32) and 110–145 ms (N = 16384) on this problem.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use diffsmc::prelude::*;
use diffsmc::rng::Purpose;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// `z_t = θ1 z_{t−1} + N(0, 1)`, `y_t = θ2 z_t + N(0, r)`, written once for any scalar.
#[derive(Debug, Clone)]
struct Lgssm<S> {
    theta1: S,
    theta2: S,
    obs_var: f64,
    /// `−½ ln(2π r)`, computed once.
    log_norm: f64,
    ys: Vec<f64>,
}

impl<S: Scalar> StateSpaceModel<S> for Lgssm<S> {
    fn state_dim(&self) -> usize {
        1
    }
    fn n_observations(&self) -> usize {
        self.ys.len()
    }
    fn sample_initial(&self, rng: &mut StreamRng, x: &mut [S]) {
        x[0] = S::cst(standard_normal(rng));
    }
    fn sample_transition(&self, _t: usize, xp: &[S], rng: &mut StreamRng, x: &mut [S]) {
        x[0] = xp[0] * self.theta1 + standard_normal(rng);
    }
    fn observation_log_density(&self, t: usize, x: &[S]) -> S {
        let e = x[0] * self.theta2 - self.ys[t];
        e * e * (-0.5 / self.obs_var) + self.log_norm
    }
}

/// 129 observations simulated from θ = (0.5, 1.0) with a fixed seed.
fn paper_model() -> Lgssm<f64> {
    let (theta1, theta2, obs_var): (f64, f64, f64) = (0.5, 1.0, 0.5);
    let mut rng = StreamKey::new(2025, 0, Purpose::Simulate).rng(0);
    let mut z = standard_normal(&mut rng);
    let ys = (0..129)
        .map(|t| {
            if t > 0 {
                z = theta1 * z + standard_normal(&mut rng);
            }
            theta2 * z + obs_var.sqrt() * standard_normal(&mut rng)
        })
        .collect();
    Lgssm {
        theta1,
        theta2,
        obs_var,
        log_norm: -0.5 * (LN_2PI + obs_var.ln()),
        ys,
    }
}

fn bootstrap(c: &mut Criterion) {
    let model = Bootstrap(paper_model());
    let mut group = c.benchmark_group("bootstrap_lgssm_129");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for n in [32usize, 1024, 16384] {
        // ~100 ms per run at N = 16384: fewer samples keep the run short.
        group.sample_size(if n > 4096 { 20 } else { 100 });
        group.throughput(Throughput::Elements((n * model.0.ys.len()) as u64));
        let smc = Smc::new(SmcConfig::new(n).unwrap());
        group.bench_with_input(BenchmarkId::new("systematic", n), &n, |b, _| {
            b.iter(|| {
                let out: SmcOutput<f64> = smc.run(&model, &Systematic, black_box(7)).unwrap();
                black_box(out.log_likelihood)
            })
        });
    }
    // The same on one thread, to separate the parallel speed-up from the per-particle cost.
    let n = 16384;
    let serial = Smc::new(
        SmcConfig::new(n)
            .unwrap()
            .with_parallel_min_particles(usize::MAX),
    );
    group.throughput(Throughput::Elements((n * model.0.ys.len()) as u64));
    group.bench_with_input(BenchmarkId::new("systematic-serial", n), &n, |b, _| {
        b.iter(|| {
            let out: SmcOutput<f64> = serial.run(&model, &Systematic, black_box(7)).unwrap();
            black_box(out.log_likelihood)
        })
    });
    group.finish();
}

criterion_group!(benches, bootstrap);
criterion_main!(benches);
