//! One particle-filter run of the neural Lotka–Volterra model (N = 64, 256 steps, systematic
//! resampling) on one scalar type, single-threaded: a unit for profiling a gradient chunk,
//! e.g. `valgrind --tool=callgrind target/release/examples/lv_profile_chunk 16`.
//! Argument: `0` (f64), `1` (Dual64), `8`, `16` or `32` (`DualSVec64<N>` seeded on θ₀..θ_N).

use std::time::Instant;

use diffsmc::grad::Parametric;
use diffsmc::prelude::*;
use diffsmc_lotka_volterra::{LvParams, NeuralLv, SimConfig, simulate};
use num_dual::{Dual64, DualSVec64};

fn run<S: Scalar>(fam: &NeuralLv, theta: &[S], label: &str) -> Result<()> {
    let model = fam.model(theta)?;
    let t = Instant::now();
    let out: SmcOutput<S> = Smc::new(SmcConfig::new(64)?).run(&model, &Systematic, 3)?;
    println!(
        "{label}: log-likelihood {} in {:.4} s",
        out.log_likelihood.re(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn seeded<const N: usize>(theta: &[f64]) -> Vec<DualSVec64<N>> {
    theta
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let d = DualSVec64::<N>::from_re(v);
            if i < N { d.derivative(i) } else { d }
        })
        .collect()
}

fn main() -> Result<()> {
    let which: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let sim = simulate(&LvParams::paper(), &SimConfig::paper(), 0)?;
    let fam = NeuralLv::new(sim.observations, 1)?;
    let theta = fam.initial_theta();
    match which {
        0 => run(&fam, &theta, "f64"),
        1 => {
            let th: Vec<Dual64> = theta
                .iter()
                .enumerate()
                .map(|(i, &v)| Dual64::new(v, if i == 0 { 1.0 } else { 0.0 }))
                .collect();
            run(&fam, &th, "Dual64")
        }
        16 => run(&fam, &seeded::<16>(&theta), "DualSVec64<16>"),
        32 => run(&fam, &seeded::<32>(&theta), "DualSVec64<32>"),
        _ => run(&fam, &seeded::<8>(&theta), "DualSVec64<8>"),
    }
}
