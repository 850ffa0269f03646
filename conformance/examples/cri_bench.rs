//! The CRI benchmark (run by bench/cri.sh): one private containerd 1.6
//! with its CRI plugin (keel_conformance::cri) and the suite's handlers,
//! measured in the same run:
//!   - pod start latency: RunPodSandbox + CreateContainer + StartContainer
//!     until the container is running, N rounds with the handlers
//!     interleaved; median and mean per handler, and keel/runc ratios;
//!   - pod density: shim processes, threads and their summed RSS and PSS
//!     with 50 one-container pods of one handler (then removed).
//!
//! Usage: cri_bench [N]   (as root, in a private mount namespace)

// The client module serves the tests too: not all of it is used here.
#[allow(dead_code)]
#[path = "../tests/cri_client/mod.rs"]
mod cri_client;

use cri_client::{pod_config, Cri, Fixture, Pod};
use keel_conformance::cri::{handlers, unavailable, CriDaemon};
use keel_conformance::engines::Outcome;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const PODS: usize = 50;

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10);
    if let Some(why) = unavailable() {
        anyhow::bail!("cannot run: {why}");
    }
    let handlers = handlers()?;
    let daemon = CriDaemon::start(&handlers, "bench")?;
    let f = Arc::new(Fixture {
        socket: daemon.socket.clone(),
        daemon: Mutex::new(daemon),
        handlers,
    });
    let result = run(&f, n);
    if let Ok(mut d) = f.daemon.lock() {
        d.stop();
    }
    result
}

fn fail(o: Outcome) -> anyhow::Error {
    match o {
        Outcome::Fail(s) | Outcome::Skip(s) | Outcome::Uncompared(s) => anyhow::anyhow!(s),
    }
}

fn run(f: &Arc<Fixture>, n: usize) -> anyhow::Result<()> {
    let cri = Cri::connect(f);
    // One pod each first: images unpacked, shims' binaries in the cache.
    for h in &f.handlers {
        start_pod(&cri, f, h.name)?.remove().map_err(fail)?;
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); f.handlers.len()];
    for _ in 0..n {
        for (i, h) in f.handlers.iter().enumerate() {
            let t = Instant::now();
            let pod = start_pod(&cri, f, h.name)?;
            times[i].push(t.elapsed().as_secs_f64() * 1000.0);
            pod.remove().map_err(fail)?;
        }
    }
    println!("pod start latency (RunPodSandbox + CreateContainer + StartContainer), {n} runs:");
    let stats: Vec<(f64, f64)> = times.iter_mut().map(|t| median_mean(t)).collect();
    for (h, (median, mean)) in f.handlers.iter().zip(&stats) {
        let ratio = median / stats[0].0;
        println!(
            "  {:<9} median {median:7.1} ms  mean {mean:7.1} ms  ({ratio:.2} x runc)",
            h.name
        );
    }
    println!("pod density: {PODS} one-container pods of one handler:");
    let mut rss = Vec::new();
    for h in &f.handlers {
        let pods = (0..PODS)
            .map(|_| start_pod(&cri, f, h.name))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (procs, threads, r, p) = shim_memory(f, h.name);
        rss.push(r);
        println!(
            "  {:<9} {procs} shim processes, {threads} threads, RSS {} MiB, PSS {} MiB ({:.2} x runc RSS)",
            h.name,
            r / 1024,
            p / 1024,
            r as f64 / rss[0] as f64
        );
        for pod in pods {
            pod.remove().map_err(fail)?;
        }
    }
    Ok(())
}

/// A pod with one running container.
fn start_pod<'a>(cri: &'a Cri, f: &Fixture, handler: &str) -> anyhow::Result<Pod<'a>> {
    let pod = Pod::run(cri, handler, pod_config(f, "bench")).map_err(fail)?;
    pod.spawn("c", &["sleep", "1000"]).map_err(fail)?;
    Ok(pod)
}

fn median_mean(t: &mut [f64]) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    let mean = t.iter().sum::<f64>() / t.len().max(1) as f64;
    (t.get(t.len() / 2).copied().unwrap_or(0.0), mean)
}

/// (processes, threads, RSS KiB, PSS KiB) of the shim servers of this
/// containerd for `handler`'s shim binary.
fn shim_memory(f: &Fixture, handler: &str) -> (usize, usize, u64, u64) {
    let bin = match handler {
        "keel" => "containerd-shim-keel-v2",
        _ => "containerd-shim-runc-v2",
    };
    let socket = f.socket.to_string_lossy().into_owned();
    let (mut procs, mut threads, mut rss, mut pss) = (0, 0, 0, 0);
    for pid in CriDaemon::pids_with_arg(&socket) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_bin = args
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).ends_with(bin));
        let action = args.iter().any(|a| *a == b"start" || *a == b"delete");
        if !is_bin || action {
            continue;
        }
        let rollup =
            std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let field = |name: &str| {
            rollup
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        procs += 1;
        threads += std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        rss += field("Rss:");
        pss += field("Pss:");
    }
    (procs, threads, rss, pss)
}
