//! INFO's `instantaneous_*` figures: each core samples its own counters
//! ten times a second (on its expiry tick) into a ring of the last 16
//! samples; INFO adds the cores' rates over that window (about 1.6 s), as
//! Redis averages its own samples. Nothing is recorded on the data path.

/// Samples kept per core.
const SAMPLES: usize = 16;

#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    ms: u64,
    commands: u64,
    input: u64,
    output: u64,
}

/// One core's recent samples.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    ring: [Sample; SAMPLES],
    next: usize,
    taken: usize,
}

/// Per-second rates over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PerSecond {
    pub ops: f64,
    pub input_bytes: f64,
    pub output_bytes: f64,
}

impl Rates {
    pub fn sample(&mut self, ms: u64, commands: u64, input: u64, output: u64) {
        self.ring[self.next] = Sample {
            ms,
            commands,
            input,
            output,
        };
        self.next = (self.next + 1) % SAMPLES;
        self.taken = (self.taken + 1).min(SAMPLES);
    }

    /// The rates between the oldest and newest sample kept.
    pub fn per_second(&self) -> PerSecond {
        if self.taken < 2 {
            return PerSecond::default();
        }
        let newest = self.ring[(self.next + SAMPLES - 1) % SAMPLES];
        let oldest = self.ring[(self.next + SAMPLES - self.taken) % SAMPLES];
        let secs = newest.ms.saturating_sub(oldest.ms) as f64 / 1000.0;
        if secs <= 0.0 {
            return PerSecond::default();
        }
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        PerSecond {
            ops: rate(newest.commands, oldest.commands),
            input_bytes: rate(newest.input, oldest.input),
            output_bytes: rate(newest.output, oldest.output),
        }
    }
}

impl std::ops::Add for PerSecond {
    type Output = PerSecond;
    fn add(self, o: PerSecond) -> PerSecond {
        PerSecond {
            ops: self.ops + o.ops,
            input_bytes: self.input_bytes + o.input_bytes,
            output_bytes: self.output_bytes + o.output_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_cover_the_kept_window() {
        let mut r = Rates::default();
        assert_eq!(r.per_second(), PerSecond::default());
        for i in 0..40u64 {
            // 1000 commands and 2000 input bytes a second, 100 ms apart.
            r.sample(i * 100, i * 100, i * 200, 0);
        }
        let p = r.per_second();
        assert!((p.ops - 1000.0).abs() < 1e-6, "{p:?}");
        assert!((p.input_bytes - 2000.0).abs() < 1e-6, "{p:?}");
        assert_eq!(p.output_bytes, 0.0);
    }
}
