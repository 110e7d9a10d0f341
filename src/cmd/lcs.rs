//! LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]: the longest
//! common subsequence of two strings, by the textbook table of prefix
//! lengths, walked back from the end as Redis walks it, so the string and
//! the match ranges are the ones Redis gives (the table has ties; the walk
//! decides which subsequence comes out).

use keel_shards::{Shard, ValueRef};

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::numbers::parse_i64;
use crate::cmd::{is, Ctx};
use crate::resp::reply::Reply;

fn string_of(s: &mut Shard, ctx: &Ctx, key: &[u8]) -> Result<Vec<u8>, CmdError> {
    match s.get(ctx.db, key, ctx.now_ms).map(|e| e.value()) {
        None => Ok(Vec::new()),
        Some(ValueRef::Str(v)) => Ok(v.to_vec()),
        Some(_) => Err(CmdError::Raw(
            "ERR The specified keys must contain string values".into(),
        )),
    }
}

pub fn lcs(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    // Both keys are read (and type-checked) before the options, as Redis.
    let x = string_of(s, ctx, a[1])?;
    let y = string_of(s, ctx, a[2])?;
    let (mut len_only, mut idx, mut with_len, mut min_len) = (false, false, false, 0usize);
    let mut i = 3;
    while i < a.len() {
        if is(a[i], "len") {
            len_only = true;
        } else if is(a[i], "idx") {
            idx = true;
        } else if is(a[i], "withmatchlen") {
            with_len = true;
        } else if is(a[i], "minmatchlen") && i + 1 < a.len() {
            let n = parse_i64(a[i + 1]).ok_or(CmdError::NotInteger)?;
            min_len = n.max(0) as usize;
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if len_only && idx {
        return Err(CmdError::Raw(
            "ERR If you want both the length and indexes, please just use IDX.".into(),
        ));
    }
    let (n, m) = (x.len(), y.len());
    let cells = (n as u128 + 1) * (m as u128 + 1);
    if cells * 4 > ctx.max_string as u128 {
        return Err(CmdError::Raw(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len".into(),
        ));
    }
    // t[i][j]: the LCS length of x[..i] and y[..j].
    let w = m + 1;
    let mut t = vec![0u32; (n + 1) * w];
    for i in 1..=n {
        for j in 1..=m {
            t[i * w + j] = if x[i - 1] == y[j - 1] {
                t[(i - 1) * w + j - 1] + 1
            } else {
                t[(i - 1) * w + j].max(t[i * w + j - 1])
            };
        }
    }
    let total = t[n * w + m] as usize;
    if len_only {
        return Ok(Reply::Int(total as i64));
    }
    // Walk back from the end; contiguous matches form one range, emitted
    // when the walk leaves it (or reaches the start of either string).
    let mut out = vec![0u8; total];
    let mut at = total;
    let mut ranges = Vec::new();
    let (mut i, mut j) = (n, m);
    let mut range: Option<(usize, usize, usize, usize)> = None; // a_start, a_end, b_start, b_end
    while i > 0 && j > 0 {
        let mut emit = false;
        if x[i - 1] == y[j - 1] {
            out[at - 1] = x[i - 1];
            at -= 1;
            range = Some(match range {
                None => (i - 1, i - 1, j - 1, j - 1),
                Some((as_, ae, bs, be)) => (as_ - 1, ae, bs - 1, be),
            });
            if matches!(range, Some((0, _, _, _)) | Some((_, _, 0, _))) {
                emit = true;
            }
            i -= 1;
            j -= 1;
        } else {
            if t[(i - 1) * w + j] > t[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = range.is_some();
        }
        if emit {
            if let Some((as_, ae, bs, be)) = range.take() {
                let len = ae - as_ + 1;
                if min_len == 0 || len >= min_len {
                    let mut item = vec![
                        Reply::Array(vec![Reply::Int(as_ as i64), Reply::Int(ae as i64)]),
                        Reply::Array(vec![Reply::Int(bs as i64), Reply::Int(be as i64)]),
                    ];
                    if with_len {
                        item.push(Reply::Int(len as i64));
                    }
                    ranges.push(Reply::Array(item));
                }
            }
        }
    }
    if idx {
        return Ok(Reply::Map(vec![
            (Reply::bulk("matches"), Reply::Array(ranges)),
            (Reply::bulk("len"), Reply::Int(total as i64)),
        ]));
    }
    Ok(Reply::Bulk(out))
}
