//! Value and value-and-gradient of the particle-filter negative log-likelihood on the paper's
//! linear Gaussian model (d = 1, 129 observations, 2 parameters), with diffusion resampling at
//! every step (`diffusion:T=2,K=8,integrator=euler,ode`), N ∈ {32, 256}: the `bench grad` row
//! of issue #15. One group per N, with the value alone and the gradient in forward, reverse
//! and `Auto` mode. `Auto` must track forward mode here (2 parameters, below
//! `REVERSE_MIN_PARAMS`): the N = 32 "regression" of an earlier build, 4.0 → 16.5 ms, was the
//! reverse pass being used for two parameters, and this bench shows it as `auto ≈ reverse`.
//!
//! Run with `cargo bench -p diffsmc --bench grad` (add e.g.
//! `-- --warm-up-time 1 --measurement-time 3` for a short run). Reference: the JAX
//! implementation (zgbkdlm/diffres) takes about 60 ms (N = 32) and 3.0 s (N = 256) on this
//! machine class.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use diffsmc::grad::{GradMode, GradOptions, ParticleFilterNll, gradient, value};
use diffsmc::{ResamplerSpec, SmcConfig};
use diffsmc_lgssm::{Lgssm, PaperParams};

fn bench_grad(c: &mut Criterion) {
    let (_, ys) = Lgssm::paper(0.5, 1.0, 1).unwrap().simulate(129, 1);
    let params = PaperParams::new(1, ys).unwrap();
    let spec: ResamplerSpec = "diffusion:T=2,K=8,integrator=euler,ode".parse().unwrap();
    let theta = [0.5, 1.0];
    for n in [32usize, 256] {
        let smc = SmcConfig::new(n).unwrap();
        let nll = ParticleFilterNll::new(&params, &smc, &spec, 7);
        let mut group = c.benchmark_group(format!("grad_lgssm_diffusion_N{n}"));
        group.sample_size(if n > 100 { 10 } else { 30 });
        group.warm_up_time(Duration::from_secs(1));
        group.bench_function("value", |b| {
            b.iter(|| value(black_box(&nll), black_box(&theta)).unwrap())
        });
        for (name, mode) in [
            ("auto", GradMode::Auto),
            ("forward", GradMode::Forward),
            ("reverse", GradMode::Reverse),
        ] {
            let opts = GradOptions::default().with_mode(mode);
            group.bench_with_input(
                BenchmarkId::new("value_and_gradient", name),
                &opts,
                |b, o| b.iter(|| gradient(black_box(&nll), black_box(&theta), o).unwrap()),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, bench_grad);
criterion_main!(benches);
