//! The CRI benchmark (run by bench/cri.sh): one private containerd 1.6
//! with its CRI plugin (keel_conformance::cri) and the suite's handlers,
//! measured in the same run:
//!   - pod start latency: RunPodSandbox + CreateContainer + StartContainer
//!     until the container is running, N rounds with the handlers
//!     interleaved; median and mean per handler, and keel/runc ratios;
//!   - pod density: shim processes, threads and their summed RSS, PSS and
//!     anonymous (private) memory with 50 one-container pods of one
//!     handler (then removed), and the same per pod;
//!   - issue #18's two pod targets, PASS or MISS: keel's pod start at most
//!     0.60 x runc's (medians), and keel's shim RSS per pod at most 2.5 MB
//!     (10^6 bytes) with 50 pods;
//!   - the load average before and after (the machine is shared: read the
//!     ratios, not the times).
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
/// Issue #18: keel's pod start latency over runc's, at most.
const LATENCY_GOAL: f64 = 0.60;
/// Issue #18: the keel shim's RSS per pod with PODS pods, at most (bytes).
const RSS_PER_POD_GOAL: f64 = 2.5e6;

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
    println!("load average before: {}", load_average());
    let result = run(&f, n);
    if let Ok(mut d) = f.daemon.lock() {
        d.stop();
    }
    println!("load average after: {}", load_average());
    result
}

fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn verdict(met: bool) -> &'static str {
    if met {
        "PASS"
    } else {
        "MISS"
    }
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
    let mut mem = Vec::new();
    for h in &f.handlers {
        let pods = (0..PODS)
            .map(|_| start_pod(&cri, f, h.name))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let m = shim_memory(f, h.name);
        let per_pod = |kib: u64| kib as f64 * 1024.0 / PODS as f64 / 1e6;
        println!(
            "  {:<9} {} shim processes, {} threads, RSS {} MiB, PSS {} MiB, anonymous {} MiB \
             ({:.2} x runc RSS); per pod: RSS {:.2} MB, PSS {:.2} MB, anonymous {:.2} MB",
            h.name,
            m.procs,
            m.threads,
            m.rss / 1024,
            m.pss / 1024,
            m.anon / 1024,
            m.rss as f64 / mem.first().map_or(m.rss, |r: &ShimMemory| r.rss) as f64,
            per_pod(m.rss),
            per_pod(m.pss),
            per_pod(m.anon),
        );
        mem.push(m);
        for pod in pods {
            pod.remove().map_err(fail)?;
        }
    }
    let keel = f.handlers.iter().position(|h| h.name == "keel");
    if let Some(k) = keel {
        let ratio = stats[k].0 / stats[0].0;
        let rss = mem[k].rss as f64 * 1024.0 / PODS as f64;
        println!("issue #18's pod targets:");
        println!(
            "  pod start, keel shim vs runc shim: {ratio:.2} x runc (goal <= {LATENCY_GOAL:.2}): {}",
            verdict(ratio <= LATENCY_GOAL)
        );
        println!(
            "  keel shim memory per pod, {PODS} pods: RSS {:.2} MB (goal <= {:.1} MB): {}",
            rss / 1e6,
            RSS_PER_POD_GOAL / 1e6,
            verdict(rss <= RSS_PER_POD_GOAL)
        );
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

/// What the shim servers of one handler hold (memory in KiB).
struct ShimMemory {
    procs: usize,
    threads: usize,
    rss: u64,
    pss: u64,
    /// Anonymous memory: what each shim has of its own (heap, stacks).
    anon: u64,
}

/// The shim servers of this containerd for `handler`'s shim binary.
fn shim_memory(f: &Fixture, handler: &str) -> ShimMemory {
    let bin = match handler {
        "keel" => "containerd-shim-keel-v2",
        _ => "containerd-shim-runc-v2",
    };
    let socket = f.socket.to_string_lossy().into_owned();
    let mut m = ShimMemory {
        procs: 0,
        threads: 0,
        rss: 0,
        pss: 0,
        anon: 0,
    };
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
        m.procs += 1;
        m.threads += std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        m.rss += field("Rss:");
        m.pss += field("Pss:");
        m.anon += field("Anonymous:");
    }
    m
}
