//! `keel demo watch`: one line per node, refreshed every second, in plain
//! text (it works over ssh and in a pipe). On a terminal each table
//! replaces the last; `--once` / `--count N` print that many and exit.
//!
//! ops/s is measured, not asked: keel's INFO counts commands processed, and
//! the difference between two samples a second apart, less the watch's own
//! INFO, is the rate.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use super::layout::State;
use super::{probe, require_state, DemoError};

/// One node's line.
struct Row {
    id: String,
    zone: String,
    port: u16,
    view: Option<probe::NodeView>,
    /// As the primary measures it (the backup's own estimate otherwise).
    lag: Option<probe::Lag>,
    ops: Option<u64>,
}

fn sample(state: &State) -> Vec<Option<probe::NodeView>> {
    state.nodes.iter().map(|n| probe::view(n.port)).collect()
}

/// The table for one refresh.
fn render(rows: &[Row]) -> String {
    let mut out =
        String::from("node  zone  port   role     term  lag_ms  behind  ready  ops/s  last_sync\n");
    for r in rows {
        let line = match &r.view {
            None => format!("{:<4}  {:<4}  {:<5}  down", r.id, r.zone, r.port),
            Some(v) => {
                let backup = v.role == "backup";
                format!(
                    "{:<4}  {:<4}  {:<5}  {:<7}  {:<4}  {:<6}  {:<6}  {:<5}  {:<5}  {}",
                    r.id,
                    r.zone,
                    r.port,
                    if v.role.is_empty() { "?" } else { &v.role },
                    v.term,
                    match (backup, r.lag) {
                        (true, Some(l)) => l.ms.to_string(),
                        (true, None) => v.lag_ms.to_string(),
                        (false, _) => "-".into(),
                    },
                    match (backup, r.lag) {
                        (true, Some(l)) => l.records.to_string(),
                        _ => "-".into(),
                    },
                    if v.ready { "yes" } else { "no" },
                    r.ops.map_or("-".into(), |o| o.to_string()),
                    if backup && !v.last_sync.is_empty() {
                        &v.last_sync
                    } else {
                        "-"
                    },
                )
            }
        };
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Runs the watch: `count` tables (forever when `None`).
pub fn run(dir: &Path, count: Option<u64>) -> Result<(), DemoError> {
    let state = require_state(dir)?;
    let tty = std::io::stdout().is_terminal() && count.is_none();
    let mut before = sample(&state);
    let mut at = Instant::now();
    let mut shown = 0u64;
    while count.is_none_or(|c| shown < c) {
        let next = at + Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = sample(&state);
        let secs = at.elapsed().as_secs_f64().max(0.001);
        at = Instant::now();
        // The primary: the answering node that says so in the highest term.
        let primary = now
            .iter()
            .flatten()
            .filter(|v| v.role == "primary")
            .max_by_key(|v| v.term);
        let rows: Vec<Row> = state
            .nodes
            .iter()
            .zip(now.iter().zip(&before))
            .map(|(n, (v, b))| Row {
                id: n.id.clone(),
                zone: n.zone.clone(),
                port: n.port,
                view: v.clone(),
                lag: primary.and_then(|p| p.links.get(&n.id).copied()),
                // Our own INFO between the samples counts once.
                ops: match (v, b) {
                    (Some(v), Some(b)) if v.commands >= b.commands => Some(
                        ((v.commands - b.commands).saturating_sub(1) as f64 / secs).round() as u64,
                    ),
                    _ => None,
                },
            })
            .collect();
        let mut text = render(&rows);
        if tty {
            // Home the cursor and clear the screen: the table stays in place.
            text.insert_str(0, "\x1b[H\x1b[2J");
            text.push_str("\n(refreshed every second; Ctrl-C to stop)\n");
        }
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return Ok(()); // the reader went away (a closed pipe)
        }
        if !tty && count.is_none_or(|c| shown + 1 < c) {
            let _ = out.write_all(b"\n");
        }
        before = now;
        shown += 1;
    }
    Ok(())
}
