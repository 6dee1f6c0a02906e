//! Beacon cadence: malware asks for its C2 name on a timer, a person browsing does not. Given the times a
//! client asked for one name, find the typical interval and how regular it is.
//!
//! Queries closer together than the burst window ([`BURST`] by default) count as one beacon (A and AAAA together,
//! a client retrying a name that got 0.0.0.0): a quick run of lookups is one beacon, never a timer of its own.
//! A timer faster than the window (a replay of a log, a test) is read with a smaller window. Regularity is
//! the median absolute deviation of the intervals over their median (a robust coefficient of variation:
//! one missed beacon or a laptop waking from sleep does not hide a timer): 0 for a perfect timer, about 0.7
//! for random (Poisson) queries. Below [`PERIODIC`] with at least [`MIN_INTERVALS`] intervals, it is flagged.

use serde::Serialize;

/// Default burst window: queries within this many seconds of the previous one belong to the same beacon.
pub const BURST: f64 = 2.0;
/// Most relative spread (MAD / median) still called periodic; ±30 % uniform jitter gives about 0.15.
pub const PERIODIC: f64 = 0.2;
/// Fewest intervals before anything is called periodic.
pub const MIN_INTERVALS: usize = 4;

/// How regularly one client asked for one name.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cadence {
    /// Beacons (queries after merging bursts).
    pub beacons: usize,
    /// Median interval between beacons, seconds.
    pub median_interval_s: f64,
    /// Median absolute deviation of the intervals, seconds.
    pub mad_s: f64,
    /// `mad_s / median_interval_s`.
    pub regularity: f64,
    /// Plain coefficient of variation (standard deviation / mean), for reference.
    pub cv: f64,
    /// True when it looks like a timer.
    pub periodic: bool,
}

/// The cadence of sorted or unsorted times (seconds), merging queries within `burst` seconds; `None` with
/// fewer than two beacons.
pub fn estimate(times: &[f64], burst: f64) -> Option<Cadence> {
    let mut t: Vec<f64> = times.iter().copied().filter(|x| x.is_finite()).collect();
    t.sort_by(f64::total_cmp);
    // A beacon is a run of queries each within `burst` of the one before; it is timed by its first query.
    let mut beacons: Vec<f64> = Vec::with_capacity(t.len());
    let mut prev: Option<f64> = None;
    for x in t {
        if prev.is_none_or(|p| x - p > burst) {
            beacons.push(x);
        }
        prev = Some(x);
    }
    if beacons.len() < 2 {
        return None;
    }
    let intervals: Vec<f64> = beacons.windows(2).map(|w| w[1] - w[0]).collect();
    let med = median(&intervals);
    let dev: Vec<f64> = intervals.iter().map(|i| (i - med).abs()).collect();
    let mad = median(&dev);
    let mean = intervals.iter().sum::<f64>() / intervals.len() as f64;
    let var = intervals.iter().map(|i| (i - mean).powi(2)).sum::<f64>() / intervals.len() as f64;
    let regularity = if med > 0.0 { mad / med } else { f64::INFINITY };
    Some(Cadence {
        beacons: beacons.len(),
        median_interval_s: med,
        mad_s: mad,
        regularity,
        cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
        periodic: intervals.len() >= MIN_INTERVALS && regularity <= PERIODIC,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator so the tests need no extra crate and never flake.
    struct Lcg(u64);
    impl Lcg {
        fn unit(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn a_perfect_timer_is_periodic() {
        let t: Vec<f64> = (0..48).map(|i| 1_000.0 + f64::from(i) * 1800.0).collect();
        let c = estimate(&t, BURST).unwrap();
        assert_eq!(c.beacons, 48);
        assert_eq!(c.median_interval_s, 1800.0);
        assert_eq!(c.regularity, 0.0);
        assert!(c.periodic);
    }

    #[test]
    fn jittered_timer_with_bursts_and_a_gap_is_still_periodic() {
        let mut r = Lcg(7);
        let mut t = Vec::new();
        for i in 0..60 {
            if i == 30 {
                continue; // the laptop slept through one beacon
            }
            let at = f64::from(i) * 600.0 + (r.unit() - 0.5) * 2.0 * 0.2 * 600.0;
            t.push(at);
            t.push(at + 0.05); // AAAA right after A
        }
        let c = estimate(&t, BURST).unwrap();
        assert_eq!(c.beacons, 59);
        assert!((c.median_interval_s - 600.0).abs() < 60.0, "{c:?}");
        assert!(c.periodic, "{c:?}");
    }

    #[test]
    fn a_fast_replay_is_read_with_a_smaller_window() {
        // A and AAAA 1 ms apart every 100 ms: with a 50 ms window pairs merge and beacons do not.
        let t: Vec<f64> = (0..40)
            .flat_map(|i| [f64::from(i) * 0.1, f64::from(i) * 0.1 + 0.001])
            .collect();
        let c = estimate(&t, 0.05).unwrap();
        assert_eq!(c.beacons, 40);
        assert!((c.median_interval_s - 0.1).abs() < 1e-9, "{c:?}");
        assert!(c.periodic);
    }

    #[test]
    fn a_quick_run_of_lookups_is_one_beacon_not_a_timer() {
        // Ten lookups 100 ms apart (a client retrying a name that got 0.0.0.0): one beacon, no cadence.
        let t: Vec<f64> = (0..10).map(|i| 500.0 + f64::from(i) * 0.1).collect();
        assert_eq!(estimate(&t, BURST), None);
        // A retry loop that goes on for 10 s is still one run, not a 2-second timer.
        let t: Vec<f64> = (0..100).map(|i| f64::from(i) * 0.1).collect();
        assert_eq!(estimate(&t, BURST), None);
        // Such runs every 10 minutes are one beacon each: the timer is the 10 minutes.
        let t: Vec<f64> = (0..6)
            .flat_map(|k| (0..10).map(move |i| f64::from(k) * 600.0 + f64::from(i) * 0.1))
            .collect();
        let c = estimate(&t, BURST).unwrap();
        assert_eq!(c.beacons, 6);
        assert!((c.median_interval_s - 600.0).abs() < 1e-6, "{c:?}");
        assert!(c.periodic);
    }

    #[test]
    fn random_browsing_is_not_periodic() {
        let mut r = Lcg(42);
        let mut at = 0.0;
        let mut t = Vec::new();
        for _ in 0..200 {
            at += -(1.0 - r.unit()).ln() * 900.0 + BURST;
            t.push(at);
        }
        let c = estimate(&t, BURST).unwrap();
        assert!(!c.periodic, "{c:?}");
        assert!(c.regularity > 0.4, "{c:?}");
    }

    #[test]
    fn too_few_beacons_are_not_called_periodic() {
        assert_eq!(estimate(&[], BURST), None);
        assert_eq!(estimate(&[5.0, 5.0], BURST), None);
        let c = estimate(&[0.0, 60.0, 120.0], BURST).unwrap();
        assert_eq!(c.median_interval_s, 60.0);
        assert!(!c.periodic);
    }
}
