//! LATENCY: the latency monitor. Events ("command", "fast-command",
//! "expire-cycle"...) that took at least `latency-monitor-threshold`
//! milliseconds leave a sample; each event keeps its last 160 samples (one
//! per second at most: a second's samples keep their maximum) and its
//! all-time maximum, as Redis's monitor does.
//!
//! Like the slow log, samples are kept per core (a thread-local table, no
//! lock) and merged when read: a second sampled on two cores keeps the
//! larger value, LATEST reports the newest sample over all cores.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cmd::error::{CmdError, CmdResult};
use crate::exec::command::COMMANDS;
use crate::resp::reply::Reply;
use crate::server::client::Histogram;
use crate::server::conn::Conn;

/// `latency-monitor-threshold` in milliseconds (0: off).
static THRESHOLD_MS: AtomicU64 = AtomicU64::new(0);

/// Samples kept per event.
const SAMPLES: usize = 160;

pub fn set_threshold_ms(ms: u64) {
    THRESHOLD_MS.store(ms, Ordering::Relaxed);
}

/// The threshold when the monitor is on.
#[inline]
pub fn threshold_ms() -> Option<u64> {
    match THRESHOLD_MS.load(Ordering::Relaxed) {
        0 => None,
        t => Some(t),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    unix_secs: u64,
    ms: u64,
}

#[derive(Clone, Default, Debug)]
struct Event {
    samples: VecDeque<Sample>,
    max: u64,
}

impl Event {
    fn add(&mut self, s: Sample) {
        self.max = self.max.max(s.ms);
        if let Some(last) = self.samples.back_mut() {
            if last.unix_secs == s.unix_secs {
                last.ms = last.ms.max(s.ms);
                return;
            }
        }
        self.samples.push_back(s);
        while self.samples.len() > SAMPLES {
            self.samples.pop_front();
        }
    }

    /// Folds another core's samples of the same event into this one.
    fn merge(&mut self, other: Event) {
        self.max = self.max.max(other.max);
        let mut all: Vec<Sample> = self.samples.drain(..).chain(other.samples).collect();
        all.sort_by_key(|s| s.unix_secs);
        let mut merged = Event {
            max: self.max,
            ..Default::default()
        };
        for s in all {
            merged.add(s);
        }
        *self = merged;
    }
}

type Events = BTreeMap<&'static str, Event>;

thread_local! {
    static EVENTS: RefCell<Events> = const { RefCell::new(BTreeMap::new()) };
}

/// Records `ms` for `event` if the monitor is on and it reaches the
/// threshold.
pub fn add_if_needed(event: &'static str, ms: u64) {
    let Some(t) = threshold_ms() else { return };
    if ms < t {
        return;
    }
    let s = Sample {
        unix_secs: crate::server::state::now_ms() / 1000,
        ms,
    };
    EVENTS.with(|e| e.borrow_mut().entry(event).or_default().add(s));
}

/// Every core's events, merged.
async fn merged(conn: &Conn) -> Result<Events, CmdError> {
    let parts = conn
        .router
        .broadcast(|_| EVENTS.with(|e| e.borrow().clone()))
        .await?;
    let mut all = Events::new();
    for part in parts {
        for (name, ev) in part {
            all.entry(name).or_default().merge(ev);
        }
    }
    Ok(all)
}

const HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

pub async fn latency(conn: &Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    match (sub.as_str(), a.len()) {
        ("help", 2) => Ok(super::help(HELP)),
        ("latest", 2) => {
            let all = merged(conn).await?;
            Ok(Reply::Array(
                all.iter()
                    .filter_map(|(name, ev)| {
                        let last = ev.samples.back()?;
                        Some(Reply::Array(vec![
                            Reply::bulk(*name),
                            Reply::Int(last.unix_secs as i64),
                            Reply::Int(last.ms as i64),
                            Reply::Int(ev.max as i64),
                        ]))
                    })
                    .collect(),
            ))
        }
        ("history", 3) => {
            let all = merged(conn).await?;
            let name = String::from_utf8_lossy(a[2]);
            Ok(Reply::Array(
                all.get(name.as_ref())
                    .map(|ev| {
                        ev.samples
                            .iter()
                            .map(|s| {
                                Reply::Array(vec![
                                    Reply::Int(s.unix_secs as i64),
                                    Reply::Int(s.ms as i64),
                                ])
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            ))
        }
        ("graph", 3) => {
            let all = merged(conn).await?;
            let name = String::from_utf8_lossy(a[2]).into_owned();
            match all.get(name.as_str()) {
                Some(ev) if !ev.samples.is_empty() => Ok(Reply::Verbatim(graph(&name, ev))),
                _ => Err(CmdError::other(format!(
                    "No samples available for event '{name}'"
                ))),
            }
        }
        ("doctor", 2) if threshold_ms().is_none() => Ok(Reply::Verbatim(
            "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n".into(),
        )),
        ("doctor", 2) => Ok(Reply::Verbatim(doctor(&merged(conn).await?))),
        ("reset", _) => {
            let names: Vec<String> = a[2..]
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            let parts = conn
                .router
                .broadcast(move |_| {
                    EVENTS.with(|e| {
                        let mut e = e.borrow_mut();
                        let mut reset = Vec::new();
                        e.retain(|name, _| {
                            let hit = names.is_empty() || names.iter().any(|n| n == name);
                            if hit {
                                reset.push(*name);
                            }
                            !hit
                        });
                        reset
                    })
                })
                .await?;
            let mut reset: Vec<&str> = parts.into_iter().flatten().collect();
            reset.sort_unstable();
            reset.dedup();
            Ok(Reply::Int(reset.len() as i64))
        }
        ("histogram", _) => histogram(conn, &a[2..]).await,
        ("help" | "latest" | "doctor" | "history" | "graph", _) => {
            Err(CmdError::Arity(format!("latency|{sub}")))
        }
        _ => Err(super::unknown_sub("LATENCY", a[1])),
    }
}

/// LATENCY HISTOGRAM [command ...]: per command (or subcommand) run, how
/// many calls and, cumulatively, how many took at most 2^k microseconds
/// (the buckets where the count grows). A container command's name asks
/// for all its subcommands; unknown names are skipped.
async fn histogram(conn: &Conn, names: &[&[u8]]) -> CmdResult {
    let parts = conn
        .router
        .broadcast(|ls| {
            let s = ls.stats.borrow();
            (s.latency.clone(), s.sub_latency.clone())
        })
        .await?;
    let mut top: Vec<Option<Histogram>> = vec![None; COMMANDS.len()];
    let mut subs: BTreeMap<String, Histogram> = BTreeMap::new();
    for (t, s) in parts {
        for (mine, theirs) in top.iter_mut().zip(t) {
            if let Some(h) = theirs {
                mine.get_or_insert_with(Default::default).merge(&h);
            }
        }
        for (name, h) in s {
            subs.entry(name).or_default().merge(&h);
        }
    }
    let mut picked: Vec<(String, Histogram)> = Vec::new();
    let take = |name: &str, h: &Histogram, picked: &mut Vec<(String, Histogram)>| {
        if h.calls > 0 && !picked.iter().any(|(n, _)| n == name) {
            picked.push((name.to_string(), *h));
        }
    };
    if names.is_empty() {
        for (spec, h) in COMMANDS.iter().zip(&top) {
            if let Some(h) = h {
                take(spec.name, h, &mut picked);
            }
        }
        for (name, h) in &subs {
            take(name, h, &mut picked);
        }
    } else {
        for n in names {
            let n = String::from_utf8_lossy(n).to_lowercase();
            if let Some((_, h)) = subs.iter().find(|(s, _)| **s == n) {
                take(&n, h, &mut picked);
                continue;
            }
            let Some(spec) = crate::exec::command::lookup(n.as_bytes()) else {
                continue;
            };
            if super::is_container(spec) {
                let prefix = format!("{}|", spec.name);
                for (name, h) in subs.iter().filter(|(s, _)| s.starts_with(&prefix)) {
                    take(name, h, &mut picked);
                }
            } else if let Some(h) = &top[crate::exec::command::index_of(spec)] {
                take(spec.name, h, &mut picked);
            }
        }
    }
    Ok(Reply::Map(
        picked
            .into_iter()
            .map(|(name, h)| {
                let mut cumulative = 0;
                let mut buckets = Vec::new();
                for (k, n) in h.buckets.iter().enumerate() {
                    if *n > 0 {
                        cumulative += n;
                        buckets.push((Reply::Int(1i64 << k), Reply::Int(cumulative as i64)));
                    }
                }
                (
                    Reply::bulk(name),
                    Reply::Map(vec![
                        (Reply::bulk("calls"), Reply::Int(h.calls as i64)),
                        (Reply::bulk("histogram_usec"), Reply::Map(buckets)),
                    ]),
                )
            })
            .collect(),
    ))
}

/// An ASCII chart of an event's samples, oldest left: a header with the
/// range, then one column per sample (`#` up to its height, scaled to the
/// largest sample), then how long ago each was, in the units Redis's chart
/// uses (s, m, h).
fn graph(name: &str, ev: &Event) -> String {
    const ROWS: u64 = 4;
    let high = ev.samples.iter().map(|s| s.ms).max().unwrap_or(0);
    let low = ev.samples.iter().map(|s| s.ms).min().unwrap_or(0);
    let mut out = format!(
        "{name} - high {high} ms, low {low} ms (all time high {} ms)\n{}\n",
        ev.max,
        "-".repeat(80)
    );
    let samples: Vec<Sample> = ev.samples.iter().rev().take(80).rev().copied().collect();
    for row in (1..=ROWS).rev() {
        let line: String = samples
            .iter()
            .map(|s| {
                let h = if high == 0 {
                    0
                } else {
                    (s.ms * ROWS).div_ceil(high)
                };
                if h >= row {
                    '#'
                } else if row == 1 {
                    '_'
                } else {
                    ' '
                }
            })
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let now = crate::server::state::now_ms() / 1000;
    let ago: Vec<String> = samples
        .iter()
        .map(|s| {
            let d = now.saturating_sub(s.unix_secs);
            match d {
                0..=59 => format!("{d}s"),
                60..=3599 => format!("{}m", d / 60),
                _ => format!("{}h", d / 3600),
            }
        })
        .collect();
    // The ages are printed vertically, one character per row.
    let tallest = ago.iter().map(|a| a.len()).max().unwrap_or(0);
    for i in 0..tallest {
        let line: String = ago
            .iter()
            .map(|a| a.as_bytes().get(i).map_or(' ', |&c| c as char))
            .collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A plain report: no spikes, or per event how many, how large, how often.
fn doctor(all: &Events) -> String {
    let with_samples: Vec<(&&str, &Event)> =
        all.iter().filter(|(_, e)| !e.samples.is_empty()).collect();
    if with_samples.is_empty() {
        return "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and think things over.\n".into();
    }
    let mut out = String::from(
        "Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n",
    );
    for (i, (name, ev)) in with_samples.iter().enumerate() {
        let n = ev.samples.len() as u64;
        let avg = ev.samples.iter().map(|s| s.ms).sum::<u64>() / n;
        let span = ev.samples.back().map_or(0, |l| l.unix_secs)
            - ev.samples.front().map_or(0, |f| f.unix_secs);
        out.push_str(&format!(
            "{}. {name}: {n} latency spikes (average {avg}ms, period {} sec). Worst all time event {}ms.\n",
            i + 1,
            span / n.max(1),
            ev.max
        ));
    }
    out.push_str("\nI have a few advices for you:\n\n");
    if all.contains_key("command") || all.contains_key("fast-command") {
        out.push_str("- Check your Slow Log to understand what are the commands you are running which are too slow to execute. Please check https://redis.io/commands/slowlog for more information.\n");
    }
    if all.contains_key("fast-command") {
        out.push_str("- Commands that are fast (O(1) or O(log N)) took long: the machine may be overloaded, or the server's cores shared with other processes.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_keeps_its_largest_sample_and_merging_keeps_order() {
        let mut a = Event::default();
        a.add(Sample {
            unix_secs: 10,
            ms: 5,
        });
        a.add(Sample {
            unix_secs: 10,
            ms: 3,
        });
        a.add(Sample {
            unix_secs: 12,
            ms: 7,
        });
        assert_eq!(a.samples.len(), 2);
        assert_eq!(a.samples[0].ms, 5);
        let mut b = Event::default();
        b.add(Sample {
            unix_secs: 11,
            ms: 9,
        });
        b.add(Sample {
            unix_secs: 12,
            ms: 8,
        });
        a.merge(b);
        let got: Vec<(u64, u64)> = a.samples.iter().map(|s| (s.unix_secs, s.ms)).collect();
        assert_eq!(got, vec![(10, 5), (11, 9), (12, 8)]);
        assert_eq!(a.max, 9);
    }
}
