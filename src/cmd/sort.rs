//! SORT and SORT_RO, with Redis 7.0's rules.
//!
//! - Numeric by default: every weight is read with C's `strtod` up to its
//!   first NUL byte (leading spaces and an empty string are accepted, a
//!   trailing byte, an overflow or NaN is not: "One or more scores can't be
//!   converted into double"). Equal weights are ordered by the elements'
//!   bytes, so the result never depends on the input's order.
//! - ALPHA compares bytes; as Redis's `strcoll` in the C locale, up to the
//!   first NUL byte unless the result is STOREd (then the whole string).
//! - `BY pattern`: the first `*` is replaced by the element, `key->field`
//!   reads a hash field; a missing key (or one of another type) weighs 0
//!   (numeric) or sorts first (ALPHA). A pattern without `*` means "do not
//!   sort": lists and sorted sets keep their own order (reversed by DESC,
//!   LIMIT taken from that order); a set is sorted ALPHA anyway when the
//!   result is STOREd, so what is stored never depends on a hash order.
//! - `GET pattern` (repeatable; `#` is the element itself) replaces each
//!   element by what the patterns name (nil, or an empty string when
//!   STOREd, for what is missing).
//! - `STORE dst` writes the result as a list (deleting `dst` when it is
//!   empty) and answers its length. SORT_RO has no STORE.
//!
//! Patterns may name keys on any shard: the router runs such a SORT holding
//! every shard (see `Router::run_patterns`): it asks [`pattern_keys`] for
//! every key the patterns can name, copies them beside the sorted key, and
//! runs this same handler over the copy. A STOREd result is recorded as the
//! list written whole, never as the SORT itself.

use std::cmp::Ordering;

use keel_shards::entry_codec::encode_entry;
use keel_shards::journal::Rewrite;
use keel_shards::record::Op;
use keel_shards::{Entry, List, Shard, Value, ValueRef};

use super::error::{CmdError, CmdResult};
use super::numbers::{int_arg, strtod};
use super::{is, Ctx};
use crate::resp::reply::Reply;

/// The parsed options, in Redis's reading order.
struct Opts<'a> {
    desc: bool,
    alpha: bool,
    limit: (i64, i64),
    store: Option<&'a [u8]>,
    by: Option<&'a [u8]>,
    /// BY named a constant (no `*`): keep the input's order.
    dont_sort: bool,
    gets: Vec<&'a [u8]>,
}

/// The bytes C code sees of `b`: up to its first NUL.
fn c_str(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

fn parse<'a>(a: &[&'a [u8]], read_only: bool) -> Result<Opts<'a>, CmdError> {
    let mut o = Opts {
        desc: false,
        alpha: false,
        limit: (0, -1),
        store: None,
        by: None,
        dont_sort: false,
        gets: Vec::new(),
    };
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let w = a[j];
        if is(w, "asc") {
            o.desc = false;
        } else if is(w, "desc") {
            o.desc = true;
        } else if is(w, "alpha") {
            o.alpha = true;
        } else if is(w, "limit") && left >= 2 {
            o.limit = (int_arg(a[j + 1])?, int_arg(a[j + 2])?);
            j += 2;
        } else if !read_only && is(w, "store") && left >= 1 {
            o.store = Some(a[j + 1]);
            j += 1;
        } else if is(w, "by") && left >= 1 {
            o.by = Some(a[j + 1]);
            // Once a constant BY was seen, Redis never sorts.
            if !c_str(a[j + 1]).contains(&b'*') {
                o.dont_sort = true;
            }
            j += 1;
        } else if is(w, "get") && left >= 1 {
            o.gets.push(a[j + 1]);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

/// The key `pattern` names for `element`, and the hash field if it has
/// one; `None` for `#` and for patterns without `*`.
fn pattern_key<'p>(pattern: &'p [u8], element: &[u8]) -> Option<(Vec<u8>, Option<&'p [u8]>)> {
    let c = c_str(pattern);
    let star = c.iter().position(|&b| b == b'*')?;
    // `->` after the star with something after it (as C's strstr reads it)
    // makes the rest a field name.
    let after = &c[star + 1..];
    let arrow = after
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&f| f + 2 < after.len());
    let (key_end, field) = match arrow {
        Some(f) => (star + 1 + f, Some(&pattern[star + 1 + f + 2..])),
        None => (pattern.len(), None),
    };
    let mut key = Vec::with_capacity(key_end + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    Some((key, field))
}

fn is_self(pattern: &[u8]) -> bool {
    pattern.first() == Some(&b'#') && (pattern.len() == 1 || pattern[1] == 0)
}

/// What `pattern` names for `element`: the element itself for `#`, a
/// string key's value, a hash field's value; `None` otherwise.
fn lookup(s: &mut Shard, ctx: &Ctx, pattern: &[u8], element: &[u8]) -> Option<Vec<u8>> {
    if is_self(pattern) {
        return Some(element.to_vec());
    }
    let (key, field) = pattern_key(pattern, element)?;
    let e = s.get(ctx.db, &key, ctx.now_ms)?;
    match (e.value(), field) {
        (ValueRef::Str(v), None) => Some(v.to_vec()),
        (ValueRef::Hash(h), Some(f)) => h.get(f).map(|v| v.value.to_vec()),
        _ => None,
    }
}

/// The elements of the collection at `key` in its own order; `None` for a
/// missing key. `is_set` tells a set (whose order means nothing).
fn elements(s: &mut Shard, ctx: &Ctx, key: &[u8]) -> Result<(Vec<Vec<u8>>, Kind), CmdError> {
    let Some(e) = s.get(ctx.db, key, ctx.now_ms) else {
        return Ok((Vec::new(), Kind::List));
    };
    Ok(match e.value() {
        ValueRef::List(l) => (l.iter().cloned().collect(), Kind::List),
        ValueRef::Set(set) => (set.iter().map(|(m, _)| m.to_vec()).collect(), Kind::Set),
        ValueRef::ZSet(z) => (z.iter().map(|(m, _)| m.to_vec()).collect(), Kind::ZSet),
        _ => return Err(CmdError::WrongType),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Set,
    ZSet,
}

/// Whether this SORT's patterns read keys other than the sorted one (and
/// so must hold every shard): a BY or GET pattern with a `*`.
pub fn reads_patterns(a: &[&[u8]]) -> bool {
    let mut j = 2;
    while j < a.len() {
        let next = a.get(j + 1).map(|n| c_str(n).contains(&b'*'));
        if is(a[j], "limit") {
            j += 2;
        } else if is(a[j], "by") || is(a[j], "get") {
            if next == Some(true) && !(is(a[j], "get") && is_self(a[j + 1])) {
                return true;
            }
            j += 1;
        } else if is(a[j], "store") {
            j += 1;
        }
        j += 1;
    }
    false
}

/// The keys SORT names by position, as Redis's `sortGetKeys` finds them:
/// the sorted key and the last STORE destination.
pub fn keys<'a>(a: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut out = vec![a[1]];
    let read_only = is(a[0], "sort_ro");
    let mut store = None;
    let mut i = 2;
    while i < a.len() {
        if is(a[i], "limit") {
            i += 2;
        } else if is(a[i], "get") || is(a[i], "by") {
            i += 1;
        } else if is(a[i], "store") && i + 1 < a.len() && !read_only {
            store = Some(a[i + 1]);
        }
        i += 1;
    }
    out.extend(store);
    out
}

/// Every key this SORT may read or write (run on the sorted key's shard,
/// under a lock of every shard): the sorted key, the STORE destination and
/// what the BY and GET patterns name for every element.
pub fn pattern_keys(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> Result<Vec<Vec<u8>>, CmdError> {
    let read_only = is(a[0], "sort_ro");
    let o = parse(a, read_only)?;
    let (items, _) = elements(s, ctx, a[1])?;
    let mut out = vec![a[1].to_vec()];
    out.extend(o.store.map(|k| k.to_vec()));
    let patterns = o.by.iter().chain(o.gets.iter());
    for p in patterns {
        for e in &items {
            if let Some((k, _)) = pattern_key(p, e) {
                out.push(k);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// One element being sorted and its weight.
struct Item {
    element: Vec<u8>,
    score: f64,
    /// ALPHA BY: the weight's bytes (`None`: the key is missing).
    weight: Option<Vec<u8>>,
}

/// Numeric weight as Redis reads it; `None` when it is not a number.
fn score_of(b: &[u8]) -> Option<f64> {
    let r = strtod(b);
    (r.consumed == c_str(b).len() && !r.erange && !r.value.is_nan()).then_some(r.value)
}

/// Byte comparison: of whole strings (`memcmp` then length), or of their C
/// strings as `strcoll` in the C locale.
fn compare(a: &[u8], b: &[u8], whole: bool) -> Ordering {
    if whole {
        a.cmp(b)
    } else {
        c_str(a).cmp(c_str(b))
    }
}

pub fn sort(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    sort_generic(s, ctx, a, false)
}

pub fn sort_ro(s: &mut Shard, ctx: &Ctx, a: &[&[u8]]) -> CmdResult {
    sort_generic(s, ctx, a, true)
}

fn sort_generic(s: &mut Shard, ctx: &Ctx, a: &[&[u8]], read_only: bool) -> CmdResult {
    let mut o = parse(a, read_only)?;
    let (mut items, kind) = elements(s, ctx, a[1])?;
    if o.dont_sort && kind == Kind::Set && o.store.is_some() {
        o.dont_sort = false;
        o.alpha = true;
        o.by = None;
    }
    let n = items.len() as i64;
    // LIMIT as Redis bounds it.
    let mut start = o.limit.0.max(0).min(n);
    let count = o.limit.1.max(-1).min(n);
    let mut end = if count < 0 { n - 1 } else { start + count - 1 };
    if start >= n {
        start = n - 1;
        end = n - 2;
    }
    if end >= n {
        end = n - 1;
    }
    if o.dont_sort && kind != Kind::Set {
        // The collection's own order, reversed by DESC, LIMIT applied to it.
        if o.desc {
            items.reverse();
        }
        let len = (end - start + 1).max(0) as usize;
        items = items
            .into_iter()
            .skip(start.max(0) as usize)
            .take(len)
            .collect();
        end -= start;
        start = 0;
    }
    if !o.dont_sort {
        let mut sorted = Vec::with_capacity(items.len());
        let mut bad_score = false;
        for element in items {
            let mut item = Item {
                element,
                score: 0.0,
                weight: None,
            };
            let weight = match o.by {
                Some(by) => lookup(s, ctx, by, &item.element),
                None => Some(item.element.clone()),
            };
            if let Some(w) = weight {
                if o.alpha {
                    if o.by.is_some() {
                        item.weight = Some(w);
                    }
                } else {
                    match score_of(&w) {
                        Some(v) => item.score = v,
                        None => bad_score = true,
                    }
                }
            }
            sorted.push(item);
        }
        if bad_score {
            return Err(CmdError::other(
                "One or more scores can't be converted into double",
            ));
        }
        let whole = o.store.is_some();
        let by = o.by.is_some();
        sorted.sort_by(|x, y| {
            let c = if !o.alpha {
                x.score
                    .partial_cmp(&y.score)
                    .unwrap_or(Ordering::Equal)
                    .then_with(|| x.element.cmp(&y.element))
            } else if by {
                match (&x.weight, &y.weight) {
                    (Some(p), Some(q)) => compare(p, q, whole),
                    (p, q) => p.is_some().cmp(&q.is_some()),
                }
            } else {
                compare(&x.element, &y.element, whole)
            };
            if o.desc {
                c.reverse()
            } else {
                c
            }
        });
        items = sorted.into_iter().map(|i| i.element).collect();
    }
    let range: Vec<Vec<u8>> = if end >= start {
        items
            .into_iter()
            .skip(start as usize)
            .take((end - start + 1) as usize)
            .collect()
    } else {
        Vec::new()
    };
    match o.store {
        None => {
            let mut out = Vec::with_capacity(range.len() * o.gets.len().max(1));
            for e in &range {
                if o.gets.is_empty() {
                    out.push(Reply::Bulk(e.clone()));
                }
                for g in &o.gets {
                    out.push(match lookup(s, ctx, g, e) {
                        Some(v) => Reply::Bulk(v),
                        None => Reply::Nil,
                    });
                }
            }
            Ok(Reply::Array(out))
        }
        Some(dst) => {
            let mut list = List::default();
            for e in &range {
                if o.gets.is_empty() {
                    list.push_back(e.clone());
                }
                for g in &o.gets {
                    list.push_back(lookup(s, ctx, g, e).unwrap_or_default());
                }
            }
            let len = list.len() as i64;
            store(s, ctx, dst, list);
            Ok(Reply::Int(len))
        }
    }
}

/// Writes the result list at `dst` (deleting `dst` for an empty one),
/// recorded as the list written whole: replay must not sort again, as the
/// keys the patterns read may live on other shards.
fn store(s: &mut Shard, ctx: &Ctx, dst: &[u8], list: List) {
    if list.is_empty() {
        if s.delete(ctx.db, dst, ctx.now_ms) {
            s.rewrite(Rewrite::cmd(&[b"DEL", dst]));
        }
        return;
    }
    s.set(ctx.db, dst, Entry::new(Value::List(list), 0), ctx.now_ms);
    if s.journaling() {
        if let Some(e) = s.peek(ctx.db, dst, ctx.now_ms) {
            let mut bytes = Vec::new();
            encode_entry(&mut bytes, &e);
            s.rewrite(Rewrite {
                op: Op::Put,
                key: dst.to_vec(),
                args: vec![bytes],
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_substitute_the_first_star() {
        assert_eq!(pattern_key(b"w_*", b"a"), Some((b"w_a".to_vec(), None)));
        assert_eq!(
            pattern_key(b"h_*->f", b"a"),
            Some((b"h_a".to_vec(), Some(&b"f"[..])))
        );
        // `->` with nothing after it is part of the key name.
        assert_eq!(pattern_key(b"h_*->", b"a"), Some((b"h_a->".to_vec(), None)));
        assert_eq!(pattern_key(b"nostar", b"a"), None);
        assert_eq!(pattern_key(b"*-*", b"x"), Some((b"x-*".to_vec(), None)));
    }

    #[test]
    fn scores_follow_strtod() {
        assert_eq!(score_of(b" 1.5"), Some(1.5));
        assert_eq!(score_of(b""), Some(0.0));
        assert_eq!(score_of(b"1x"), None);
        assert_eq!(score_of(b"nan"), None);
        assert_eq!(score_of(b"1e400"), None);
    }

    #[test]
    fn store_keys_are_found() {
        let a: Vec<&[u8]> = vec![b"SORT", b"k", b"BY", b"store", b"STORE", b"d", b"GET", b"x"];
        assert_eq!(keys(&a), vec![&b"k"[..], &b"d"[..]]);
        assert!(!reads_patterns(&a));
        let b: Vec<&[u8]> = vec![b"SORT", b"k", b"GET", b"#", b"GET", b"w_*"];
        assert!(reads_patterns(&b));
    }
}
