//! XINFO STREAM [FULL [COUNT n]], XINFO GROUPS, XINFO CONSUMERS: what a
//! stream and its consumer groups hold, with Redis 7.0's fields (entries-read
//! and lag as it computes them). Idle times are from the wall clock; delivery
//! and seen times are as recorded.

use keel_shards::{Shard, Stream, StreamId};

use super::error::{CmdError, CmdResult};
use super::stream_groups::{help, no_group, sub_arity, sub_syntax, unknown_sub};
use super::streams::{entry_reply, id_reply};
use super::{is, read, Ctx};
use crate::cmd::numbers::int_arg;
use crate::resp::reply::Reply;

fn field(name: &'static str, v: Reply) -> (Reply, Reply) {
    (Reply::Bulk(name.as_bytes().to_vec()), v)
}

fn opt_int(v: Option<i64>) -> Reply {
    v.map_or(Reply::Nil, Reply::Int)
}

pub fn xinfo(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    let sub = a[1];
    let (name, arity): (&str, i32) = match () {
        _ if is(sub, "consumers") => ("consumers", 4),
        _ if is(sub, "groups") => ("groups", 3),
        _ if is(sub, "stream") => ("stream", -3),
        _ if is(sub, "help") => ("help", 2),
        _ => return Err(unknown_sub("XINFO", sub)),
    };
    let n = a.len() as i32;
    if (arity > 0 && n != arity) || (arity < 0 && n < -arity) {
        return Err(sub_arity("xinfo", name));
    }
    if name == "help" {
        return Ok(help(&[
            "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "CONSUMERS <key> <groupname>",
            "    Show consumers of <groupname>.",
            "GROUPS <key>",
            "    Show the stream consumer groups.",
            "STREAM <key> [FULL [COUNT <count>]",
            "    Show information about the stream.",
            "HELP",
            "    Print this help.",
        ]));
    }
    let key = a[2];
    let now = ctx.now_ms;
    let r = read(s, ctx, key, |x: &Stream| -> CmdResult {
        match name {
            "consumers" => {
                let g = x.group(a[3]).ok_or_else(|| no_group(key, a[3]))?;
                Ok(Reply::Array(
                    g.consumers()
                        .iter()
                        .map(|(n, c)| {
                            Reply::Map(vec![
                                field("name", Reply::bulk(&n[..])),
                                field("pending", Reply::Int(c.pending().len() as i64)),
                                field("idle", Reply::Int((now as i64 - c.seen_ms as i64).max(0))),
                            ])
                        })
                        .collect(),
                ))
            }
            "groups" => Ok(Reply::Array(
                x.groups()
                    .iter()
                    .map(|(n, g)| {
                        Reply::Map(vec![
                            field("name", Reply::bulk(&n[..])),
                            field("consumers", Reply::Int(g.consumers().len() as i64)),
                            field("pending", Reply::Int(g.pel().len() as i64)),
                            field("last-delivered-id", id_reply(g.last_id)),
                            field("entries-read", opt_int(g.entries_read.map(|n| n as i64))),
                            field("lag", opt_int(x.lag(g))),
                        ])
                    })
                    .collect(),
            )),
            _ => stream_info(x, sub, &a[3..]),
        }
    })?;
    r.unwrap_or(Err(CmdError::NoSuchKey))
}

fn stream_info(x: &Stream, sub: &[u8], opts: &[&[u8]]) -> CmdResult {
    let mut count: Option<usize> = None;
    if !opts.is_empty() {
        if !is(opts[0], "full") {
            return Err(sub_syntax("XINFO", sub));
        }
        count = Some(10);
        if opts.len() > 1 {
            if opts.len() != 3 || !is(opts[1], "count") {
                return Err(sub_syntax("XINFO", sub));
            }
            let n = int_arg(opts[2])?;
            count = Some(if n < 0 { 10 } else { n as usize });
        }
    }
    let mut m = vec![
        field("length", Reply::Int(x.len() as i64)),
        field("radix-tree-keys", Reply::Int(x.blocks() as i64)),
        // keel keeps its blocks in a B-tree, not a radix tree: this is what
        // Redis's tree would count with no shared prefixes (a root and a
        // leaf per block), exact for small streams.
        field("radix-tree-nodes", Reply::Int(x.blocks() as i64 + 1)),
        field("last-generated-id", id_reply(x.last_id())),
        field("max-deleted-entry-id", id_reply(x.max_deleted())),
        field("entries-added", Reply::Int(x.entries_added() as i64)),
        field("recorded-first-entry-id", id_reply(x.first_id())),
    ];
    let Some(count) = count else {
        m.push(field("groups", Reply::Int(x.groups().len() as i64)));
        m.push(field(
            "first-entry",
            x.first().as_ref().map_or(Reply::Nil, entry_reply),
        ));
        m.push(field(
            "last-entry",
            x.last().as_ref().map_or(Reply::Nil, entry_reply),
        ));
        return Ok(Reply::Map(m));
    };
    let take = |n: usize| if count == 0 { n } else { count.min(n) };
    m.push(field(
        "entries",
        Reply::Array(
            x.range(StreamId::MIN, StreamId::MAX, count)
                .iter()
                .map(entry_reply)
                .collect(),
        ),
    ));
    let groups = x
        .groups()
        .iter()
        .map(|(n, g)| {
            let pel = g.pel();
            Reply::Map(vec![
                field("name", Reply::bulk(&n[..])),
                field("last-delivered-id", id_reply(g.last_id)),
                field("entries-read", opt_int(g.entries_read.map(|n| n as i64))),
                field("lag", opt_int(x.lag(g))),
                field("pel-count", Reply::Int(pel.len() as i64)),
                field(
                    "pending",
                    Reply::Array(
                        pel.iter()
                            .take(take(pel.len()))
                            .map(|(id, p)| {
                                Reply::Array(vec![
                                    id_reply(*id),
                                    Reply::bulk(&p.consumer[..]),
                                    Reply::Int(p.delivery_ms as i64),
                                    Reply::Int(p.deliveries as i64),
                                ])
                            })
                            .collect(),
                    ),
                ),
                field(
                    "consumers",
                    Reply::Array(
                        g.consumers()
                            .iter()
                            .map(|(cn, c)| {
                                Reply::Map(vec![
                                    field("name", Reply::bulk(&cn[..])),
                                    field("seen-time", Reply::Int(c.seen_ms as i64)),
                                    field("pel-count", Reply::Int(c.pending().len() as i64)),
                                    field(
                                        "pending",
                                        Reply::Array(
                                            c.pending()
                                                .iter()
                                                .take(take(c.pending().len()))
                                                .filter_map(|id| {
                                                    let p = pel.get(id)?;
                                                    Some(Reply::Array(vec![
                                                        id_reply(*id),
                                                        Reply::Int(p.delivery_ms as i64),
                                                        Reply::Int(p.deliveries as i64),
                                                    ]))
                                                })
                                                .collect(),
                                        ),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ])
        })
        .collect();
    m.push(field("groups", Reply::Array(groups)));
    Ok(Reply::Map(m))
}
