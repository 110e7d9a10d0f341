//! Stream consumer groups: XGROUP XREADGROUP XACK XPENDING XCLAIM
//! XAUTOCLAIM (XINFO is in `stream_info`).
//!
//! # Time and records
//! Delivery times and consumers' seen times are the physical part of the
//! write's HLC time, not the wall clock: replay forces each record's HLC, so
//! XREADGROUP, XCLAIM and XAUTOCLAIM recorded as sent (their other inputs,
//! the stream and its groups, are already replayed) rebuild exactly the same
//! pending lists and times. Reads (XPENDING, XINFO) compute idle times from
//! the wall clock, as Redis does.

use keel_shards::stream::{Group, StreamView};
use keel_shards::{Shard, Stream, StreamId};

use super::error::{CmdError, CmdResult};
use super::streams::{entry_reply, id_reply, parse_id, parse_strict_id, read_args, ReadArgs};
use super::{is, read, write, Ctx};
use crate::cmd::numbers::int_arg;
use crate::resp::reply::Reply;

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub(crate) fn no_group(key: &[u8], group: &[u8]) -> CmdError {
    CmdError::Raw(format!(
        "NOGROUP No such consumer group '{}' for key name '{}'",
        lossy(group),
        lossy(key)
    ))
}

fn no_key_or_group(key: &[u8], group: &[u8], tail: &str) -> CmdError {
    CmdError::Raw(format!(
        "NOGROUP No such key '{}' or consumer group '{}'{tail}",
        lossy(key),
        lossy(group)
    ))
}

pub(crate) fn sub_syntax(cmd: &str, sub: &[u8]) -> CmdError {
    CmdError::other(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try {cmd} HELP.",
        lossy(sub)
    ))
}

pub(crate) fn sub_arity(cmd: &str, sub: &str) -> CmdError {
    CmdError::Arity(format!("{cmd}|{sub}"))
}

pub(crate) fn unknown_sub(cmd: &str, sub: &[u8]) -> CmdError {
    CmdError::UnknownSubcommand {
        cmd: cmd.into(),
        sub: lossy(sub),
    }
}

pub(crate) fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::Status((*l).into())).collect())
}

/// Whether `key` holds a stream with `group`: `None` when the key is
/// missing; WRONGTYPE for another type.
fn has_group(s: &mut Shard, ctx: &Ctx, key: &[u8], group: &[u8]) -> Result<Option<bool>, CmdError> {
    read(s, ctx, key, |x: &Stream| x.group(group).is_some())
}

// ------------------------------------------------------------------ XGROUP

pub fn xgroup(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    let (name, arity): (&str, i32) = match () {
        _ if is(sub, "create") => ("create", -5),
        _ if is(sub, "setid") => ("setid", -5),
        _ if is(sub, "destroy") => ("destroy", 4),
        _ if is(sub, "createconsumer") => ("createconsumer", 5),
        _ if is(sub, "delconsumer") => ("delconsumer", 5),
        _ if is(sub, "help") => ("help", 2),
        _ => return Err(unknown_sub("XGROUP", sub)),
    };
    let n = a.len() as i32;
    if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
        return Err(sub_arity("xgroup", name));
    }
    if name == "help" {
        return Ok(help(&[
            "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CREATE <key> <groupname> <id|$> [option]",
            "    Create a new consumer group. Options are:",
            "    * MKSTREAM",
            "      Create the empty stream if it does not exist.",
            "    * ENTRIESREAD entries_read",
            "      Set the group's entries_read counter (internal use).",
            "CREATECONSUMER <key> <groupname> <consumer>",
            "    Create a new consumer in the specified group.",
            "DELCONSUMER <key> <groupname> <consumer>",
            "    Remove the specified consumer.",
            "DESTROY <key> <groupname>",
            "    Remove the specified group.",
            "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
            "    Set the current group ID and entries_read counter.",
            "HELP",
            "    Print this help.",
        ]));
    }
    let (key, group) = (a[2], a[3]);
    let (mut mkstream, mut entries_read) = (false, None);
    if name == "create" || name == "setid" {
        let mut i = 5;
        while i < a.len() {
            if name == "create" && is(a[i], "mkstream") {
                mkstream = true;
                i += 1;
            } else if is(a[i], "entriesread") && i + 1 < a.len() {
                let n = int_arg(a[i + 1])?;
                if n < -1 {
                    return Err(CmdError::other(
                        "value for ENTRIESREAD must be positive or -1",
                    ));
                }
                entries_read = (n >= 0).then_some(n as u64);
                i += 2;
            } else {
                return Err(sub_syntax("XGROUP", sub));
            }
        }
    }
    let exists = has_group(s, ctx, key, group)?;
    if !mkstream {
        let Some(exists) = exists else {
            return Err(CmdError::other(
                "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
            ));
        };
        if !exists && matches!(name, "setid" | "createconsumer" | "delconsumer") {
            return Err(no_group(key, group));
        }
    }
    let now_of = |hlc: keel_shards::Hlc| hlc.physical_ms();
    match name {
        "create" if a.len() <= 8 => {
            let id_arg = a[4];
            let id = if id_arg == b"$" {
                None
            } else {
                Some(parse_strict_id(id_arg)?)
            };
            let r = write(s, ctx, key, true, |x: &mut Stream, _| {
                let id = id.unwrap_or(x.last_id());
                if x.create_group(group, Group::new(id, entries_read)) {
                    Ok((Ok(()), true))
                } else {
                    Ok((Err(()), false))
                }
            })?;
            match r {
                Some(Ok(())) => Ok(Reply::Ok),
                _ => Err(CmdError::Raw(
                    "BUSYGROUP Consumer Group name already exists".into(),
                )),
            }
        }
        "setid" if a.len() == 5 || a.len() == 7 => {
            let id_arg = a[4];
            let id = if id_arg == b"$" {
                None
            } else {
                Some(parse_id(id_arg, 0)?)
            };
            write(s, ctx, key, false, |x: &mut Stream, _| {
                let last = x.last_id();
                let g = x.group_mut(group).ok_or_else(|| no_group(key, group))?;
                g.last_id = id.unwrap_or(last);
                g.entries_read = entries_read;
                Ok(((), true))
            })?;
            Ok(Reply::Ok)
        }
        "destroy" => {
            let r = write(s, ctx, key, false, |x: &mut Stream, _| {
                let gone = x.destroy_group(group);
                Ok((gone, gone))
            })?;
            Ok(Reply::Int(r.unwrap_or(false) as i64))
        }
        "createconsumer" => {
            let r = write(s, ctx, key, false, |x: &mut Stream, hlc| {
                let g = x.group_mut(group).ok_or_else(|| no_group(key, group))?;
                let made = g.create_consumer(a[4], now_of(hlc));
                Ok((made, made))
            })?;
            Ok(Reply::Int(r.unwrap_or(false) as i64))
        }
        "delconsumer" => {
            let r = write(s, ctx, key, false, |x: &mut Stream, _| {
                let g = x.group_mut(group).ok_or_else(|| no_group(key, group))?;
                let n = g.delete_consumer(a[4]);
                Ok((n.unwrap_or(0), n.is_some()))
            })?;
            Ok(Reply::Int(r.unwrap_or(0) as i64))
        }
        _ => Err(sub_syntax("XGROUP", sub)),
    }
}

// ------------------------------------------------------------------ XREADGROUP

/// What XREADGROUP asks of one key.
#[derive(Clone, Copy)]
pub(crate) enum Want {
    /// `>`: entries never delivered to the group.
    New,
    /// An id: the consumer's own pending entries after it.
    History(StreamId),
}

/// Updates the group's read position past `id` as Redis does.
fn advance(g: &mut Group, view: &StreamView<'_>, id: StreamId) {
    if id <= g.last_id {
        return;
    }
    if g.entries_read.is_some() && !view.has_tombstones_from(id) {
        g.entries_read = g.entries_read.map(|n| n + 1);
    } else if view.entries_added > 0 {
        g.entries_read = view.entries_read_estimate(id);
    }
    g.last_id = id;
}

/// XREADGROUP's checks of each key in order (its type and group, then its
/// id): what it asks of each.
pub(crate) fn xreadgroup_prelude(
    s: &mut Shard,
    ctx: &Ctx,
    r: &ReadArgs<'_>,
) -> Result<Vec<Want>, CmdError> {
    let Some((group, _)) = r.group else {
        return Err(CmdError::other("Missing GROUP option for XREADGROUP"));
    };
    let mut wants = Vec::with_capacity(r.keys.len());
    for (key, id) in r.keys.iter().zip(&r.ids) {
        if has_group(s, ctx, key, group)? != Some(true) {
            return Err(no_key_or_group(
                key,
                group,
                " in XREADGROUP with GROUP option",
            ));
        }
        wants.push(if *id == b"$" {
            return Err(CmdError::other(
                "The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.",
            ));
        } else if *id == b">" {
            Want::New
        } else {
            Want::History(parse_strict_id(id)?)
        });
    }
    Ok(wants)
}

pub fn xreadgroup(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let r = read_args(a, true)?;
    let wants = xreadgroup_prelude(s, ctx, &r)?;
    let Some((group, consumer)) = r.group else {
        return Err(CmdError::other("Missing GROUP option for XREADGROUP"));
    };
    let mut out = Vec::new();
    let mut time: Option<u64> = None;
    for (key, want) in r.keys.iter().zip(wants) {
        if let Want::New = want {
            let ready = read(s, ctx, key, |x: &Stream| {
                x.group(group)
                    .is_some_and(|g| !x.is_empty() && x.last_valid_id() > g.last_id)
            })?;
            if ready != Some(true) {
                continue;
            }
        }
        let part = write(s, ctx, key, false, |x: &mut Stream, hlc| {
            let now = *time.get_or_insert(hlc.physical_ms());
            let (g, view) = x
                .group_and_entries(group)
                .ok_or_else(|| no_key_or_group(key, group, ""))?;
            g.touch_consumer(consumer, now);
            let mut items = Vec::new();
            match want {
                Want::New => {
                    let Some(start) = g.last_id.next() else {
                        return Ok((Reply::Array(items), true));
                    };
                    for e in view.range(start, StreamId::MAX, r.count) {
                        advance(g, &view, e.0);
                        if !r.noack {
                            g.assign(e.0, consumer, now, 1);
                        }
                        items.push(entry_reply(&e));
                    }
                }
                Want::History(after) => {
                    let Some(start) = after.next() else {
                        return Ok((Reply::Array(items), true));
                    };
                    let ids: Vec<StreamId> = g
                        .consumer(consumer)
                        .map(|c| {
                            let it = c.pending().range(start..).copied();
                            if r.count == 0 {
                                it.collect()
                            } else {
                                it.take(r.count).collect()
                            }
                        })
                        .unwrap_or_default();
                    for id in ids {
                        match view.get(id) {
                            Some(e) => {
                                let times = g.pel().get(&id).map_or(0, |p| p.deliveries);
                                g.redeliver(id, now, times + 1);
                                items.push(entry_reply(&e));
                            }
                            None => items.push(Reply::Array(vec![id_reply(id), Reply::NilArray])),
                        }
                    }
                }
            }
            Ok((Reply::Array(items), true))
        })?;
        if let Some(entries) = part {
            out.push((Reply::bulk(*key), entries));
        }
    }
    Ok(if out.is_empty() {
        Reply::NilArray
    } else {
        Reply::KeyedArrays(out)
    })
}

// ------------------------------------------------------------------ XACK

pub fn xack(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    if has_group(s, ctx, a[1], a[2])? != Some(true) {
        return Ok(Reply::Int(0));
    }
    let ids = a[3..]
        .iter()
        .map(|x| parse_strict_id(x))
        .collect::<Result<Vec<_>, _>>()?;
    let n = write(s, ctx, a[1], false, |x: &mut Stream, _| {
        let g = x.group_mut(a[2]).ok_or_else(|| no_group(a[1], a[2]))?;
        let n = ids.iter().filter(|id| g.ack(**id)).count();
        Ok((n as i64, n > 0))
    })?;
    Ok(Reply::Int(n.unwrap_or(0)))
}

// ------------------------------------------------------------------ XPENDING

pub fn xpending(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (key, group) = (a[1], a[2]);
    if a.len() != 3 && !(6..=9).contains(&a.len()) {
        return Err(CmdError::Syntax);
    }
    let mut range = None;
    if a.len() >= 6 {
        let mut at = 3;
        let mut min_idle = 0;
        if is(a[3], "idle") {
            min_idle = int_arg(a[4])?;
            if a.len() < 8 {
                return Err(CmdError::Syntax);
            }
            at += 2;
        }
        let count = int_arg(a[at + 2])?.max(0) as usize;
        let (start, start_ex) = bound(a[at], 0)?;
        let start = if start_ex {
            start
                .next()
                .ok_or_else(|| CmdError::other("invalid start ID for the interval"))?
        } else {
            start
        };
        let (end, end_ex) = bound(a[at + 1], u64::MAX)?;
        let end = if end_ex {
            end.prev()
                .ok_or_else(|| CmdError::other("invalid end ID for the interval"))?
        } else {
            end
        };
        range = Some((min_idle, start, end, count, a.get(at + 3).copied()));
    }
    let now = ctx.now_ms;
    let r = read(s, ctx, key, |x: &Stream| {
        let g = x.group(group)?;
        Some(match range {
            None => {
                let pel = g.pel();
                match (pel.keys().next(), pel.keys().next_back()) {
                    (Some(first), Some(last)) => Reply::Array(vec![
                        Reply::Int(pel.len() as i64),
                        id_reply(*first),
                        id_reply(*last),
                        Reply::Array(
                            g.consumers()
                                .iter()
                                .filter(|(_, c)| !c.pending().is_empty())
                                .map(|(n, c)| {
                                    Reply::Array(vec![
                                        Reply::bulk(&n[..]),
                                        Reply::Bulk(c.pending().len().to_string().into_bytes()),
                                    ])
                                })
                                .collect(),
                        ),
                    ]),
                    _ => Reply::Array(vec![Reply::Int(0), Reply::Nil, Reply::Nil, Reply::NilArray]),
                }
            }
            Some((min_idle, start, end, count, consumer)) => {
                let ids: Box<dyn Iterator<Item = StreamId>> = match consumer {
                    Some(c) => match g.consumer(c) {
                        Some(c) => Box::new(c.pending().range(start..).copied()),
                        None => return Some(Reply::Array(vec![])),
                    },
                    None => Box::new(g.pel().range(start..).map(|(id, _)| *id)),
                };
                let mut items = Vec::new();
                if start <= end {
                    for id in ids {
                        if items.len() >= count || id > end {
                            break;
                        }
                        let Some(p) = g.pel().get(&id) else { continue };
                        let idle = now as i64 - p.delivery_ms as i64;
                        if min_idle != 0 && idle < min_idle {
                            continue;
                        }
                        items.push(Reply::Array(vec![
                            id_reply(id),
                            Reply::bulk(&p.consumer[..]),
                            Reply::Int(idle.max(0)),
                            Reply::Int(p.deliveries as i64),
                        ]));
                    }
                }
                Reply::Array(items)
            }
        })
    })?;
    r.flatten().ok_or_else(|| no_key_or_group(key, group, ""))
}

fn bound(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), CmdError> {
    if arg.len() > 1 && arg[0] == b'(' {
        return Ok((parse_strict_id(&arg[1..])?, true));
    }
    Ok((parse_id(arg, missing_seq)?, false))
}

// ------------------------------------------------------------------ XCLAIM

pub fn xclaim(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (key, group, consumer) = (a[1], a[2], a[3]);
    if has_group(s, ctx, key, group)? != Some(true) {
        return Err(no_key_or_group(key, group, ""));
    }
    let min_idle = int_arg(a[4])
        .map_err(|_| CmdError::other("Invalid min-idle-time argument for XCLAIM"))?
        .max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < a.len() {
        match parse_strict_id(a[j]) {
            Ok(id) => ids.push(id),
            Err(_) => break,
        }
        j += 1;
    }
    enum When {
        Now,
        Idle(i64),
        At(i64),
    }
    let (mut force, mut justid, mut when, mut retry, mut last_id) =
        (false, false, When::Now, None, StreamId::MIN);
    while j < a.len() {
        let more = j + 1 < a.len();
        let opt = a[j];
        if is(opt, "force") {
            force = true;
        } else if is(opt, "justid") {
            justid = true;
        } else if is(opt, "idle") && more {
            j += 1;
            when = When::Idle(
                int_arg(a[j])
                    .map_err(|_| CmdError::other("Invalid IDLE option argument for XCLAIM"))?,
            );
        } else if is(opt, "time") && more {
            j += 1;
            when = When::At(
                int_arg(a[j])
                    .map_err(|_| CmdError::other("Invalid TIME option argument for XCLAIM"))?,
            );
        } else if is(opt, "retrycount") && more {
            j += 1;
            retry =
                Some(int_arg(a[j]).map_err(|_| {
                    CmdError::other("Invalid RETRYCOUNT option argument for XCLAIM")
                })?);
        } else if is(opt, "lastid") && more {
            j += 1;
            last_id = parse_strict_id(a[j])?;
        } else {
            return Err(CmdError::other(format!(
                "Unrecognized XCLAIM option '{}'",
                lossy(opt)
            )));
        }
        j += 1;
    }
    let r = write(s, ctx, key, false, |x: &mut Stream, hlc| {
        let now = hlc.physical_ms() as i64;
        let delivery = match when {
            When::Now => now,
            When::Idle(ms) => now.saturating_sub(ms),
            When::At(t) => t,
        };
        let delivery = if delivery < 0 || delivery > now {
            now
        } else {
            delivery
        } as u64;
        let (g, view) = x
            .group_and_entries(group)
            .ok_or_else(|| no_key_or_group(key, group, ""))?;
        let mut wrote = false;
        if last_id > g.last_id {
            g.last_id = last_id;
            wrote = true;
        }
        let mut items = Vec::new();
        for id in &ids {
            let pending = g.pel().get(id).map(|p| (p.delivery_ms, p.deliveries));
            let Some(entry) = view.get(*id) else {
                if pending.is_some() {
                    g.ack(*id);
                    wrote = true;
                }
                continue;
            };
            // A pending entry must have idled long enough; FORCE makes one
            // (delivered once) with no idle check.
            let times = match pending {
                Some((at, n)) => {
                    if min_idle != 0 && (now - at as i64) < min_idle {
                        continue;
                    }
                    n
                }
                None if force => 1,
                None => continue,
            };
            let times = match retry {
                Some(n) if n >= 0 => n as u64,
                _ if justid => times,
                _ => times + 1,
            };
            g.touch_consumer(consumer, now as u64);
            g.assign(*id, consumer, delivery, times);
            wrote = true;
            items.push(if justid {
                id_reply(*id)
            } else {
                entry_reply(&entry)
            });
        }
        Ok((Reply::Array(items), wrote))
    })?;
    r.ok_or_else(|| no_key_or_group(key, group, ""))
}

pub fn xautoclaim(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let (key, group, consumer) = (a[1], a[2], a[3]);
    let min_idle = int_arg(a[4])
        .map_err(|_| CmdError::other("Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0);
    let (mut start, start_ex) = bound(a[5], 0)?;
    if start_ex {
        start = start
            .next()
            .ok_or_else(|| CmdError::other("invalid start ID for the interval"))?;
    }
    let (mut count, mut justid) = (100i64, false);
    let mut j = 6;
    while j < a.len() {
        if is(a[j], "count") && j + 1 < a.len() {
            count = int_arg(a[j + 1])
                .ok()
                .filter(|n| *n >= 1 && *n <= i64::MAX / 16)
                .ok_or_else(|| CmdError::other("COUNT must be > 0"))?;
            j += 1;
        } else if is(a[j], "justid") {
            justid = true;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if has_group(s, ctx, key, group)? != Some(true) {
        return Err(no_key_or_group(key, group, ""));
    }
    let r = write(s, ctx, key, false, |x: &mut Stream, hlc| {
        let now = hlc.physical_ms();
        let (g, view) = x
            .group_and_entries(group)
            .ok_or_else(|| no_key_or_group(key, group, ""))?;
        let mut attempts = count.saturating_mul(10);
        let mut left = count;
        let candidates: Vec<(StreamId, u64, u64)> = g
            .pel()
            .range(start..)
            .take(attempts as usize + 1)
            .map(|(id, p)| (*id, p.delivery_ms, p.deliveries))
            .collect();
        let (mut items, mut deleted, mut wrote) = (Vec::new(), Vec::new(), false);
        let mut next = 0;
        while attempts > 0 && left > 0 && next < candidates.len() {
            attempts -= 1;
            let (id, at, times) = candidates[next];
            next += 1;
            let Some(entry) = view.get(id) else {
                g.ack(id);
                deleted.push(id_reply(id));
                left -= 1;
                wrote = true;
                continue;
            };
            if min_idle != 0 && (now as i64 - at as i64) < min_idle {
                continue;
            }
            g.touch_consumer(consumer, now);
            g.assign(id, consumer, now, if justid { times } else { times + 1 });
            wrote = true;
            items.push(if justid {
                id_reply(id)
            } else {
                entry_reply(&entry)
            });
            left -= 1;
        }
        let cursor = candidates.get(next).map_or(StreamId::MIN, |c| c.0);
        Ok((
            Reply::Array(vec![
                id_reply(cursor),
                Reply::Array(items),
                Reply::Array(deleted),
            ]),
            wrote,
        ))
    })?;
    r.ok_or_else(|| no_key_or_group(key, group, ""))
}
