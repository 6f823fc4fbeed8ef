//! Timings of the Lotka–Volterra loss and gradient (report, not a test):
//! `cargo run --release -p diffsmc-lotka-volterra --example lv_timing [reps]`.

use std::time::Instant;

use diffsmc::grad::{ChunkSize, GradMode, GradOptions, ParticleFilterNll, gradient, value};
use diffsmc::prelude::*;
use diffsmc_lotka_volterra::{KnownLv, LvParams, NeuralLv, SimConfig, simulate};

fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut times = Vec::with_capacity(reps);
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        last = Some(f());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times[0], times[reps / 2], last.expect("reps ≥ 1"))
}

fn main() -> Result<()> {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let sim = simulate(&LvParams::paper(), &SimConfig::paper(), 0)?;
    let fam = NeuralLv::new(sim.observations.clone(), 1)?;
    let theta = fam.initial_theta();
    let smc = SmcConfig::new(64)?;
    let spec = ResamplerSpec::Systematic;
    println!(
        "threads: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let known = KnownLv::new(sim.observations.clone());
    let (min, med, v) = time(reps * 4, || {
        value(
            &ParticleFilterNll::new(&known, &smc, &spec, 3),
            &KnownLv::theta(&LvParams::paper()),
        )
    });
    println!(
        "target loss (known dynamics, f64, N=64): {:.4} | min {:.5} s median {:.5} s",
        v?, min, med
    );

    let (min, med, v) = time(reps * 4, || {
        value(&ParticleFilterNll::new(&fam, &smc, &spec, 3), &theta)
    });
    println!(
        "neural loss (f64, N=64, 256 steps): {:.4} | min {:.5} s median {:.5} s",
        v?, min, med
    );

    for (name, chunk) in [("Eight", ChunkSize::Eight), ("Sixteen", ChunkSize::Sixteen)] {
        let (min, med, v) = time(reps, || {
            gradient(
                &ParticleFilterNll::new(&fam, &smc, &spec, 3),
                &theta,
                &GradOptions::default()
                    .with_chunk(chunk)
                    .with_mode(GradMode::Forward),
            )
        });
        let (l, g) = v?;
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        println!(
            "value_and_gradient ChunkSize::{name}: loss {l:.4} |grad| {norm:.4} | min {min:.4} s median {med:.4} s"
        );
    }
    Ok(())
}
