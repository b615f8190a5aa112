//! What fnlb counts about its traffic, in memory: totals and histograms since start for `/metrics`, and
//! per-minute counts over the last hour for the console's charts, for each listener, rule and function.
//! Recording is a few relaxed atomic operations; a per-minute count made exactly as its minute's slot is reused may
//! be lost, which a chart can afford. Nothing here survives a restart.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const HISTOGRAM_BOUNDS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// A histogram of seconds with `HISTOGRAM_BOUNDS` (and +Inf), as Prometheus reads it.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; HISTOGRAM_BOUNDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let bucket = HISTOGRAM_BOUNDS.iter().position(|b| seconds <= *b).unwrap_or(HISTOGRAM_BOUNDS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is +Inf, the total), and the sum in seconds.
    pub fn read(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        (cumulative, self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6)
    }
}

/// A layer-7 listener's connections and TLS handshakes.
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub connections_active: AtomicI64,
    pub connections_total: AtomicU64,
    /// Connections closed at once: past the listener's connection limit, or their client address's.
    pub connections_refused: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_errors: AtomicU64,
}

/// Minutes kept.
pub const MINUTES: usize = 60;

/// One minute's counters.
struct Minute<const N: usize> {
    /// The minute (Unix minutes) the counts are of.
    at: AtomicI64,
    counts: [AtomicU64; N],
}

/// `N` counters per minute for the last `MINUTES` minutes, in a ring.
pub struct Series<const N: usize> {
    minutes: [Minute<N>; MINUTES],
}

impl<const N: usize> Default for Series<N> {
    fn default() -> Self {
        Series {
            minutes: std::array::from_fn(|_| Minute {
                at: AtomicI64::new(-1),
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
        }
    }
}

/// The current Unix minute.
pub fn minute_now() -> i64 {
    crate::clock::now_ms().div_euclid(60_000)
}

impl<const N: usize> Series<N> {
    /// The slot of `minute`, emptied first when it still holds an older minute.
    fn slot(&self, minute: i64) -> &Minute<N> {
        let slot = &self.minutes[minute.rem_euclid(MINUTES as i64) as usize];
        let seen = slot.at.load(Ordering::Relaxed);
        if seen != minute && slot.at.compare_exchange(seen, minute, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            for count in &slot.counts {
                count.store(0, Ordering::Relaxed);
            }
        }
        slot
    }

    pub fn add(&self, minute: i64, index: usize, n: u64) {
        self.slot(minute).counts[index].fetch_add(n, Ordering::Relaxed);
    }

    pub fn max(&self, minute: i64, index: usize, value: u64) {
        self.slot(minute).counts[index].fetch_max(value, Ordering::Relaxed);
    }

    /// The last `MINUTES` minutes up to `now`, oldest first: (Unix minute, counts); minutes without data are zero.
    pub fn read(&self, now: i64) -> Vec<(i64, [u64; N])> {
        (now - MINUTES as i64 + 1..=now)
            .map(|minute| {
                let slot = &self.minutes[minute.rem_euclid(MINUTES as i64) as usize];
                let counts = if slot.at.load(Ordering::Relaxed) == minute {
                    std::array::from_fn(|i| slot.counts[i].load(Ordering::Relaxed))
                } else {
                    [0; N]
                };
                (minute, counts)
            })
            .collect()
    }
}

/// Duration buckets: bucket `k` holds durations up to 2^(k/2) ms (half powers of two), the last everything longer.
pub const DURATION_BUCKETS: usize = 48;
/// A function's counters: invocations, errors, the most executions at once, then the duration buckets.
const INVOCATIONS: usize = 0;
const ERRORS: usize = 1;
const CONCURRENT: usize = 2;
const FIRST_BUCKET: usize = 3;
const FUNCTION_COUNTERS: usize = FIRST_BUCKET + DURATION_BUCKETS;

#[derive(Default)]
pub struct FunctionStats {
    series: Series<FUNCTION_COUNTERS>,
    in_flight: AtomicU64,
    /// Invocations since start by SCF status code (200 success, 432 throttled …).
    codes: Mutex<BTreeMap<u16, u64>>,
    pub duration: Histogram,
    /// How long new instances took to be ready.
    pub init_duration: Histogram,
    pub cold_starts: AtomicU64,
}

/// One minute of a function, as charted.
#[derive(Debug, PartialEq)]
pub struct FunctionMinute {
    pub minute: i64,
    pub invocations: u64,
    pub errors: u64,
    /// Milliseconds (the upper bound of the bucket the percentile falls in); 0 without invocations.
    pub duration_p50_ms: f64,
    pub duration_p99_ms: f64,
    pub concurrent: u64,
}

/// Counts an execution as running while it lives.
pub struct Running<'a>(&'a FunctionStats);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FunctionStats {
    /// An execution starts: counted as concurrent until the guard goes.
    pub fn start(&self) -> Running<'_> {
        let running = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.series.max(minute_now(), CONCURRENT, running);
        Running(self)
    }

    /// An invocation ended after `duration_ms` with an SCF status code (200: success).
    pub fn finish(&self, duration_ms: f64, code: u16) {
        let minute = minute_now();
        self.series.add(minute, INVOCATIONS, 1);
        if code != 200 {
            self.series.add(minute, ERRORS, 1);
        }
        self.series.add(minute, FIRST_BUCKET + duration_bucket(duration_ms), 1);
        self.duration.observe(duration_ms / 1000.0);
        *self.codes.lock().unwrap_or_else(|p| p.into_inner()).entry(code).or_default() += 1;
    }

    /// A new instance was started, taking `seconds` to be ready.
    pub fn cold_start(&self, seconds: f64) {
        self.cold_starts.fetch_add(1, Ordering::Relaxed);
        self.init_duration.observe(seconds);
    }

    /// Invocations since start by SCF status code.
    pub fn codes(&self) -> BTreeMap<u16, u64> {
        self.codes.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn read(&self) -> Vec<FunctionMinute> {
        self.series
            .read(minute_now())
            .into_iter()
            .map(|(minute, c)| {
                let buckets = &c[FIRST_BUCKET..];
                FunctionMinute {
                    minute,
                    invocations: c[INVOCATIONS],
                    errors: c[ERRORS],
                    duration_p50_ms: percentile(buckets, 0.50),
                    duration_p99_ms: percentile(buckets, 0.99),
                    concurrent: c[CONCURRENT],
                }
            })
            .collect()
    }
}

/// The bucket of a duration: the first `k` with `ms` ≤ 2^(k/2).
fn duration_bucket(ms: f64) -> usize {
    if ms <= 1.0 {
        return 0;
    }
    ((2.0 * ms.log2()).ceil() as usize).min(DURATION_BUCKETS - 1)
}

fn bucket_bound(k: usize) -> f64 {
    2f64.powf(k as f64 / 2.0)
}

/// The upper bound of the bucket holding the `q` quantile.
fn percentile(buckets: &[u64], q: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (k, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return bucket_bound(k);
        }
    }
    bucket_bound(buckets.len() - 1)
}

/// A rule's counters: requests, then answers by status class (2xx, 3xx, 4xx, 5xx).
#[derive(Default)]
pub struct RuleStats {
    series: Series<5>,
    /// Answers since start by status class, 1xx to 5xx.
    pub by_class: [AtomicU64; 5],
    /// Time from a request's head to its answer's head.
    pub duration: Histogram,
    /// Bytes of answers whose length was known when their head was sent.
    pub response_bytes: AtomicU64,
}

/// One minute of a rule, as charted.
#[derive(Debug, PartialEq)]
pub struct RuleMinute {
    pub minute: i64,
    pub requests: u64,
    /// Answers with 2xx, 3xx, 4xx and 5xx statuses.
    pub by_class: [u64; 4],
}

impl std::fmt::Debug for RuleStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RuleStats")
    }
}

impl RuleStats {
    /// An answer: its status, how long it took, and its declared length.
    pub fn record(&self, status: u16, seconds: f64, bytes: Option<u64>) {
        let minute = minute_now();
        self.series.add(minute, 0, 1);
        if (200..600).contains(&status) {
            self.series.add(minute, (status / 100 - 1) as usize, 1);
        }
        if (100..600).contains(&status) {
            self.by_class[(status / 100 - 1) as usize].fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe(seconds);
        if let Some(bytes) = bytes {
            self.response_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    pub fn read(&self) -> Vec<RuleMinute> {
        let read = self.series.read(minute_now());
        read.into_iter()
            .map(|(minute, c)| RuleMinute { minute, requests: c[0], by_class: [c[1], c[2], c[3], c[4]] })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_roll_over_and_old_counts_go() {
        let series = Series::<2>::default();
        series.add(100, 0, 3);
        series.add(101, 1, 1);
        let read = series.read(101);
        assert_eq!(read.len(), MINUTES);
        assert_eq!(read[MINUTES - 2], (100, [3, 0]));
        assert_eq!(read[MINUTES - 1], (101, [0, 1]));
        // An hour later the same slot is reused, and what it held is gone.
        series.add(160, 0, 1);
        let read = series.read(160);
        assert_eq!(read[MINUTES - 1], (160, [1, 0]));
        assert!(read.iter().all(|(m, c)| *m == 160 || *c == [0, 0] || *m == 101));
    }

    #[test]
    fn percentiles_come_from_the_duration_buckets() {
        let stats = FunctionStats::default();
        for _ in 0..98 {
            stats.finish(3.0, 200);
        }
        stats.finish(100.0, 430);
        stats.finish(100.0, 200);
        assert_eq!(stats.codes(), BTreeMap::from([(200, 99), (430, 1)]));
        let now = stats.read().pop().unwrap();
        assert_eq!((now.invocations, now.errors), (100, 1));
        assert!((2.8..=4.0).contains(&now.duration_p50_ms), "{now:?}");
        assert!((100.0..=142.0).contains(&now.duration_p99_ms), "{now:?}");
        {
            let _a = stats.start();
            let _b = stats.start();
        }
        assert_eq!(stats.read().pop().unwrap().concurrent, 2);
    }

    #[test]
    fn rules_count_answers_by_status_class() {
        let stats = RuleStats::default();
        for status in [200, 204, 301, 404, 503, 101] {
            stats.record(status, 0.002, Some(10));
        }
        assert_eq!(stats.response_bytes.load(Ordering::Relaxed), 60);
        let (cumulative, sum) = stats.duration.read();
        assert_eq!((cumulative[0], cumulative[1], *cumulative.last().unwrap()), (0, 6, 6));
        assert!((sum - 0.012).abs() < 1e-9);
        let now = stats.read().pop().unwrap();
        assert_eq!((now.requests, now.by_class), (6, [2, 1, 1, 1]));
    }
}
