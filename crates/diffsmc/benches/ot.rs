//! Entropic-OT resampling timings at d = 8, N ∈ {512, 2048, 8192}, ε ∈ {0.8, 0.1}.
//!
//! Particles: standard normal in R^8; log-weights of a Gaussian likelihood centred at 0.5 in
//! every coordinate (ESS ≈ a quarter of N). Default knobs otherwise (tol 1e-3 on the L1
//! column-marginal error, cap 1000 iterations, `anneal=0.7`, `relax=1.5`), with the cost
//! scaled by its mean and unscaled (`scale=none`, the default: ε absolute as in OTT-JAX's
//! `PointCloud`; skipped at N = 8192 for ε = 0.1, the slowest case). The iteration count of
//! each selected configuration is printed before it is timed.
//!
//! Run: `cargo bench -p diffsmc --bench ot` (add `-- 'N=2048'` to filter).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use diffsmc::prelude::*;
use diffsmc::resample::CostScale;
use diffsmc::rng::Purpose;

fn cloud(n: usize, d: usize) -> (Particles<f64>, Vec<f64>) {
    let key = StreamKey::new(2024, 0, Purpose::Other(0));
    let mut rng = key.rng(0);
    let x: Vec<f64> = (0..n * d).map(|_| standard_normal(&mut rng)).collect();
    let mut lw: Vec<f64> = x
        .chunks_exact(d)
        .map(|p| -0.5 * p.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f64>() / 2.0)
        .collect();
    diffsmc::normalise_log_weights(&mut lw, 0).unwrap();
    (Particles::from_vec(n, d, x).unwrap(), lw)
}

fn bench_ot(c: &mut Criterion) {
    let d = 8;
    let mut group = c.benchmark_group("ot");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    for &n in &[512usize, 2048, 8192] {
        group.measurement_time(Duration::from_secs(if n >= 8192 { 20 } else { 5 }));
        let (x, lw) = cloud(n, d);
        let mut out = Particles::zeros(n, d);
        let mut out_lw = vec![0.0; n];
        for scale in [CostScale::Mean, CostScale::None] {
            for &eps in &[0.8, 0.1] {
                if scale == CostScale::None && eps == 0.1 && n > 2048 {
                    // Hundreds of iterations at N = 8192: too long for a criterion sample.
                    continue;
                }
                let r = OtResampler::new(OtConfig::new(eps).unwrap().with_scale(scale));
                let key = StreamKey::new(1, 1, Purpose::Resample);
                let mut reported = false;
                group.bench_function(format!("N={n}/eps={eps}/scale={scale}"), |b| {
                    if !reported {
                        // Once per selected benchmark: how many Sinkhorn iterations it times.
                        let info = r.resample(&x, &lw, key, &mut out, &mut out_lw).unwrap();
                        eprintln!(
                            "ot d={d} N={n} eps={eps} scale={scale}: {} iterations, converged {}",
                            info.iterations, info.converged
                        );
                        reported = true;
                    }
                    b.iter(|| {
                        r.resample(black_box(&x), black_box(&lw), key, &mut out, &mut out_lw)
                            .unwrap()
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_ot);
criterion_main!(benches);
