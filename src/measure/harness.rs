//! The harness's own footprint over the measured window, read from /proc: CPU seconds
//! (user + system, all threads) and peak resident memory. A harness that used most of
//! the machine's cores, or whose scheduler started operations late, limited the run
//! itself; the report says so and the gate reads it.

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks on every
/// architecture the kernel exposes to user space (`getconf CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;
/// CPU share of all cores above which the generator is called saturated.
pub const CPU_SHARE_SATURATED: f64 = 0.9;

/// A reading at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    cpu_s: Option<f64>,
}

impl CpuMark {
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            cpu_s: process_cpu_seconds(),
        }
    }
}

/// What the harness used between two marks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HarnessUsage {
    /// CPU seconds (user + system) of the whole process over the window; `None` when
    /// /proc could not be read.
    pub cpu_s: Option<f64>,
    pub wall_s: f64,
    /// Cores available to the process.
    pub cores: usize,
    /// cpu_s / (wall_s × cores), in [0, 1].
    pub cpu_share: Option<f64>,
    /// Peak resident set size of the process so far (VmHWM), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Resident set size (VmRSS) every [`RSS_EVERY`] over the window, its start and end
    /// included, so a long run shows whether the harness's memory stays flat.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rss_samples: Vec<RssSample>,
}

/// How often [`RssSampler`] reads the harness's resident memory.
pub const RSS_EVERY: Duration = Duration::from_secs(10);

/// The harness's resident memory at `t_s` seconds into the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RssSample {
    pub t_s: f64,
    pub rss_bytes: u64,
}

/// Reads VmRSS every [`RSS_EVERY`] on its own task until [`RssSampler::finish`].
pub struct RssSampler {
    start: tokio::time::Instant,
    samples: std::sync::Arc<std::sync::Mutex<Vec<RssSample>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    /// Takes the first sample now, then one every [`RSS_EVERY`].
    pub fn start() -> Self {
        let start = tokio::time::Instant::now();
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        push_rss(&samples, start);
        let shared = samples.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(start + RSS_EVERY, RSS_EVERY);
            loop {
                tick.tick().await;
                push_rss(&shared, start);
            }
        });
        Self {
            start,
            samples,
            task,
        }
    }

    /// Stops sampling, takes a last sample and returns them all.
    pub fn finish(self) -> Vec<RssSample> {
        self.task.abort();
        push_rss(&self.samples, self.start);
        std::mem::take(&mut *self.samples.lock().expect("rss samples lock"))
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn push_rss(samples: &std::sync::Mutex<Vec<RssSample>>, start: tokio::time::Instant) {
    if let Some(rss_bytes) = rss_bytes() {
        let t_s = start.elapsed().as_secs_f64();
        (samples.lock().expect("rss samples lock")).push(RssSample { t_s, rss_bytes });
    }
}

/// The least-squares slope of `samples` after `after_s` seconds, in bytes per hour;
/// `None` with fewer than three samples there or no spread in time.
pub fn rss_growth_per_hour(samples: &[RssSample], after_s: f64) -> Option<f64> {
    let pts: Vec<(f64, f64)> = (samples.iter())
        .filter(|s| s.t_s >= after_s)
        .map(|s| (s.t_s, s.rss_bytes as f64))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = pts
        .iter()
        .fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx * 3600.0)
}

impl HarnessUsage {
    pub fn between(start: CpuMark, end: CpuMark) -> Self {
        let wall = end.at.saturating_duration_since(start.at);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_s = match (start.cpu_s, end.cpu_s) {
            (Some(a), Some(b)) => Some((b - a).max(0.0)),
            _ => None,
        };
        let cpu_share = cpu_s
            .filter(|_| wall > Duration::ZERO)
            .map(|c| (c / (wall.as_secs_f64() * cores as f64)).min(1.0));
        Self {
            cpu_s,
            wall_s: wall.as_secs_f64(),
            cores,
            cpu_share,
            peak_rss_bytes: peak_rss_bytes(),
            rss_samples: Vec::new(),
        }
    }

    /// Whether the harness used nearly all of the machine's CPU.
    pub fn cpu_saturated(&self) -> bool {
        self.cpu_share.is_some_and(|s| s > CPU_SHARE_SATURATED)
    }
}

/// utime + stime of this process from /proc/self/stat, in seconds.
fn process_cpu_seconds() -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

fn parse_stat_cpu(stat: &str) -> Option<f64> {
    // The command name (field 2) is parenthesised and may hold spaces: count fields
    // after its closing parenthesis. utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// VmHWM of this process from /proc/self/status, in bytes.
fn peak_rss_bytes() -> Option<u64> {
    parse_status_kib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmHWM:",
    )
}

/// VmRSS of this process from /proc/self/status, in bytes.
fn rss_bytes() -> Option<u64> {
    parse_status_kib(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_fields_are_found_after_a_command_name_with_spaces() {
        let stat =
            "1234 (tokio (runtime) w) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_stat_cpu(stat), Some(3.0));
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn peak_rss_comes_from_vmhwm_in_kib() {
        let status =
            "Name:\tshadowbench\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(2 * 1024 * 1024));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(1000 * 1024));
    }

    #[test]
    fn rss_growth_is_the_least_squares_slope_after_warmup() {
        let at = |t_s: f64, mib: f64| RssSample {
            t_s,
            rss_bytes: (mib * 1024.0 * 1024.0) as u64,
        };
        // Warmup from 50 to 100 MiB, then 1 MiB per 10 s: 360 MiB an hour.
        let s = [
            at(0.0, 50.0),
            at(10.0, 100.0),
            at(20.0, 100.0),
            at(30.0, 101.0),
            at(40.0, 102.0),
        ];
        let per_hour = rss_growth_per_hour(&s, 20.0).unwrap() / (1024.0 * 1024.0);
        assert!((per_hour - 360.0).abs() < 1e-6, "{per_hour}");
        assert_eq!(
            rss_growth_per_hour(&s, 35.0),
            None,
            "two samples are not a trend"
        );
    }

    #[tokio::test]
    async fn the_sampler_reads_at_the_start_and_at_the_end() {
        let samples = RssSampler::start().finish();
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert!(samples.iter().all(|s| s.rss_bytes > 0));
    }

    #[test]
    fn this_process_can_be_read() {
        let start = CpuMark::now();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let u = HarnessUsage::between(start, CpuMark::now());
        assert!(
            u.cpu_s.is_some() && u.peak_rss_bytes.is_some_and(|b| b > 0),
            "{u:?}"
        );
        assert!(u.cpu_share.is_none_or(|s| (0.0..=1.0).contains(&s)));
    }
}
