//! Run times in power-of-two buckets: LATENCY HISTOGRAM, and `/metrics`'
//! command, fsync and election histograms. Recording is two additions and
//! a leading-zeros count, on the core that timed the run; the scrape sums
//! the cores' copies.

/// Durations in power-of-two buckets: bucket `k` counts the runs that took
/// at most 2^k units (and more than 2^(k-1)); the unit is the recorder's
/// (microseconds for commands and fsyncs, milliseconds for elections).
#[derive(Debug, Clone, Copy, Default)]
pub struct Histogram {
    pub calls: u64,
    /// The durations summed (Prometheus's `_sum`).
    pub sum: u64,
    pub buckets: [u64; 32],
}

impl Histogram {
    #[inline]
    pub fn record(&mut self, d: u64) {
        let k = (64 - d.max(1).saturating_sub(1).leading_zeros()) as usize;
        self.buckets[k.min(31)] += 1;
        self.calls += 1;
        self.sum = self.sum.saturating_add(d);
    }

    pub fn merge(&mut self, other: &Histogram) {
        self.calls += other.calls;
        self.sum = self.sum.saturating_add(other.sum);
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_upper_bounds() {
        let mut h = Histogram::default();
        for d in [0, 1, 2, 3, 4, 5, 1000] {
            h.record(d);
        }
        // 0 and 1 -> bucket 0 (<=1); 2 -> 1; 3,4 -> 2 (<=4); 5 -> 3; 1000 -> 10 (<=1024)
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[2], 2);
        assert_eq!(h.buckets[3], 1);
        assert_eq!(h.buckets[10], 1);
        assert_eq!(h.calls, 7);
        assert_eq!(h.sum, 1015);
    }
}
