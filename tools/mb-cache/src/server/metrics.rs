//! The server's counters and latency histogram, rendered in the Prometheus text format at
//! `GET /metrics`. Plain atomics: no registry crate is needed for a dozen series.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Everything counted since startup.
#[derive(Default)]
pub struct Metrics {
    /// Reads that found the entry, by namespace (ac, cas).
    pub hits: [AtomicU64; 2],
    /// Reads that did not.
    pub misses: [AtomicU64; 2],
    /// Bytes received in upload bodies.
    pub bytes_in: AtomicU64,
    /// Bytes sent in download bodies.
    pub bytes_out: AtomicU64,
    /// Uploads refused because their content did not match their digest.
    pub digest_mismatches: AtomicU64,
    /// Requests refused because the server was at its concurrency limit.
    pub overloaded: AtomicU64,
    bucket_counts: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    /// Records one request's latency.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(&self.bucket_counts) {
            if seconds <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// The text exposition, with the storage totals as gauges.
    pub fn render(&self, stored_bytes: u64, n_entries: u64, n_evicted: u64) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut text = String::new();
        let mut series = |name: &str, kind: &str, help: &str, lines: Vec<(String, u64)>| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(text, "{name}{labels} {value}");
            }
        };
        let by_namespace = |counters: &[AtomicU64; 2]| {
            vec![
                ("{namespace=\"ac\"}".to_string(), load(&counters[0])),
                ("{namespace=\"cas\"}".to_string(), load(&counters[1])),
            ]
        };
        series(
            "memobuild_cache_hits_total",
            "counter",
            "Reads that found the entry.",
            by_namespace(&self.hits),
        );
        series(
            "memobuild_cache_misses_total",
            "counter",
            "Reads that did not find the entry.",
            by_namespace(&self.misses),
        );
        series(
            "memobuild_cache_bytes_in_total",
            "counter",
            "Bytes received in uploads.",
            vec![(String::new(), load(&self.bytes_in))],
        );
        series(
            "memobuild_cache_bytes_out_total",
            "counter",
            "Bytes sent in downloads.",
            vec![(String::new(), load(&self.bytes_out))],
        );
        series(
            "memobuild_cache_digest_mismatches_total",
            "counter",
            "CAS uploads refused because their content did not match their digest.",
            vec![(String::new(), load(&self.digest_mismatches))],
        );
        series(
            "memobuild_cache_overloaded_total",
            "counter",
            "Requests refused with 503 at the concurrency limit.",
            vec![(String::new(), load(&self.overloaded))],
        );
        series(
            "memobuild_cache_evictions_total",
            "counter",
            "Entries evicted to stay under --max-total-size.",
            vec![(String::new(), n_evicted)],
        );
        series(
            "memobuild_cache_stored_bytes",
            "gauge",
            "Bytes stored (CAS blobs and action-cache entries).",
            vec![(String::new(), stored_bytes)],
        );
        series(
            "memobuild_cache_entries",
            "gauge",
            "Entries stored.",
            vec![(String::new(), n_entries)],
        );
        let name = "memobuild_cache_request_duration_seconds";
        let _ = writeln!(
            text,
            "# HELP {name} Request latency.\n# TYPE {name} histogram"
        );
        for (bound, count) in BUCKETS.iter().zip(&self.bucket_counts) {
            let _ = writeln!(text, "{name}_bucket{{le=\"{bound}\"}} {}", load(count));
        }
        let count = load(&self.latency_count);
        let _ = writeln!(text, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            text,
            "{name}_sum {}",
            load(&self.latency_sum_micros) as f64 / 1e6
        );
        let _ = writeln!(text, "{name}_count {count}");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.observe(Duration::from_millis(3));
        metrics.observe(Duration::from_millis(300));
        let text = metrics.render(10, 2, 0);
        assert!(
            text.contains("memobuild_cache_request_duration_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("memobuild_cache_request_duration_seconds_bucket{le=\"0.5\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("memobuild_cache_request_duration_seconds_count 2"),
            "{text}"
        );
        assert!(text.contains("memobuild_cache_stored_bytes 10"), "{text}");
    }
}
