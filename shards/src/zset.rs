//! The sorted set: member → (score, HLC time of the member's last write) in a
//! [`Dict`] for O(1) lookups, and every
//! (score, member) pair in an order-statistic treap for O(log n) rank, range
//! by score and range by lex.
//!
//! # The treap
//! Nodes live in one arena (`Vec<Node>`, indices instead of pointers, a free
//! list for reuse); each node carries a random priority (heap-ordered) and the
//! size of its subtree, which is what makes rank queries logarithmic. Insert
//! and remove are split/merge, whose recursion depth is the tree's height:
//! O(log n) expected, so the stack stays small even for millions of members.
//!
//! Order is Redis's: by score, ties by member bytes. Scores are never NaN
//! (commands refuse it), and `-0.0` sorts equal to `0.0` as in Redis.

use std::cmp::Ordering;

use crate::dict::{Dict, NodeKey, INLINE_KEY};
use crate::hlc::Hlc;
use crate::packed::{
    add_one, base, base_for, count, first_record, fits_base, get_bytes, get_hlc, get_score, header,
    put_bytes, put_hlc, put_score, remove_one,
};

const NIL: u32 = u32::MAX;

#[derive(Clone)]
struct Node {
    score: f64,
    /// Inline when short: one allocation fewer per member.
    member: NodeKey,
    prio: u32,
    left: u32,
    right: u32,
    size: u32,
}

fn cmp(s1: f64, m1: &[u8], s2: f64, m2: &[u8]) -> Ordering {
    s1.partial_cmp(&s2)
        .unwrap_or(Ordering::Equal)
        .then_with(|| m1.cmp(m2))
}

#[derive(Clone)]
struct Treap {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    rng: u32,
}

impl Default for Treap {
    fn default() -> Self {
        Treap {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            rng: 0x9E37_79B9,
        }
    }
}

impl Treap {
    fn size(&self, t: u32) -> usize {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].size as usize
        }
    }

    fn fix(&mut self, t: u32) {
        let n = &self.nodes[t as usize];
        let s = 1 + self.size(n.left) + self.size(n.right);
        self.nodes[t as usize].size = s as u32;
    }

    fn next_prio(&mut self) -> u32 {
        // xorshift32
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// Splits `t` into (nodes before the key, nodes at or after it).
    fn split(&mut self, t: u32, score: f64, member: &[u8]) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        let n = &self.nodes[t as usize];
        if cmp(n.score, n.member.as_bytes(), score, member) == Ordering::Less {
            let (l, r) = self.split(n.right, score, member);
            self.nodes[t as usize].right = l;
            self.fix(t);
            (t, r)
        } else {
            let (l, r) = self.split(n.left, score, member);
            self.nodes[t as usize].left = r;
            self.fix(t);
            (l, t)
        }
    }

    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio >= self.nodes[b as usize].prio {
            let r = self.nodes[a as usize].right;
            let m = self.merge(r, b);
            self.nodes[a as usize].right = m;
            self.fix(a);
            a
        } else {
            let l = self.nodes[b as usize].left;
            let m = self.merge(a, l);
            self.nodes[b as usize].left = m;
            self.fix(b);
            b
        }
    }

    /// Inserts by descending to where the new node's priority puts it and
    /// splitting only the subtree below: one walk down the tree, not the
    /// two full-depth merges of split-then-merge.
    fn insert(&mut self, score: f64, member: NodeKey) {
        let prio = self.next_prio();
        let node = Node {
            score,
            member,
            prio,
            left: NIL,
            right: NIL,
            size: 1,
        };
        let idx = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.root = self.insert_at(self.root, idx);
    }

    fn insert_at(&mut self, t: u32, idx: u32) -> u32 {
        if t == NIL {
            return idx;
        }
        let (i, n) = (idx as usize, t as usize);
        if self.nodes[i].prio > self.nodes[n].prio {
            // The new node roots this subtree: split it around the key.
            let member = std::mem::take(&mut self.nodes[i].member);
            let (l, r) = self.split(t, self.nodes[i].score, member.as_bytes());
            let node = &mut self.nodes[i];
            node.member = member;
            node.left = l;
            node.right = r;
            self.fix(idx);
            return idx;
        }
        let (new, old) = (&self.nodes[i], &self.nodes[n]);
        if cmp(
            new.score,
            new.member.as_bytes(),
            old.score,
            old.member.as_bytes(),
        ) == Ordering::Less
        {
            let l = self.insert_at(old.left, idx);
            self.nodes[n].left = l;
        } else {
            let r = self.insert_at(old.right, idx);
            self.nodes[n].right = r;
        }
        self.nodes[n].size += 1;
        t
    }

    /// Removes the node of (`score`, `member`), if present, by joining its
    /// two subtrees in its place.
    fn remove(&mut self, score: f64, member: &[u8]) {
        self.root = self.remove_at(self.root, score, member);
        if self.root == NIL {
            self.nodes.clear();
            self.free.clear();
        }
    }

    fn remove_at(&mut self, t: u32, score: f64, member: &[u8]) -> u32 {
        if t == NIL {
            return NIL;
        }
        let n = &self.nodes[t as usize];
        match cmp(score, member, n.score, n.member.as_bytes()) {
            Ordering::Equal => {
                let (l, r) = (n.left, n.right);
                let joined = self.merge(l, r);
                let n = &mut self.nodes[t as usize];
                n.member = NodeKey::default();
                n.left = NIL;
                n.right = NIL;
                self.free.push(t);
                joined
            }
            Ordering::Less => {
                let l = self.remove_at(n.left, score, member);
                self.nodes[t as usize].left = l;
                self.fix(t);
                t
            }
            Ordering::Greater => {
                let r = self.remove_at(n.right, score, member);
                self.nodes[t as usize].right = r;
                self.fix(t);
                t
            }
        }
    }

    /// How many nodes come before the first one for which `before` is false
    /// (`before` must be true on a prefix of the order).
    fn count_before(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        let mut t = self.root;
        let mut n = 0;
        while t != NIL {
            let node = &self.nodes[t as usize];
            if before(node.score, node.member.as_bytes()) {
                n += self.size(node.left) + 1;
                t = node.right;
            } else {
                t = node.left;
            }
        }
        n
    }

    fn nth(&self, mut k: usize) -> Option<(f64, &[u8])> {
        let mut t = self.root;
        while t != NIL {
            let node = &self.nodes[t as usize];
            let ls = self.size(node.left);
            match k.cmp(&ls) {
                Ordering::Less => t = node.left,
                Ordering::Equal => return Some((node.score, node.member.as_bytes())),
                Ordering::Greater => {
                    k -= ls + 1;
                    t = node.right;
                }
            }
        }
        None
    }

    /// Calls `f` on ranks `start..end` in order, in O(log n + m).
    fn walk(&self, start: usize, end: usize, f: &mut impl FnMut(f64, &[u8])) {
        // In-order traversal with an explicit stack, entering at `start`.
        let mut stack = Vec::new();
        let mut t = self.root;
        let mut k = start;
        while t != NIL {
            let node = &self.nodes[t as usize];
            let ls = self.size(node.left);
            if k < ls {
                stack.push(t);
                t = node.left;
            } else if k == ls {
                stack.push(t);
                break;
            } else {
                k -= ls + 1;
                t = node.right;
            }
        }
        let mut i = start;
        while i < end {
            let Some(t) = stack.pop() else { break };
            let node = &self.nodes[t as usize];
            f(node.score, node.member.as_bytes());
            i += 1;
            let mut c = node.right;
            while c != NIL {
                stack.push(c);
                c = self.nodes[c as usize].left;
            }
        }
    }
}

/// A score bound: `(5` is exclusive, `5` inclusive, `-inf`/`+inf` open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

/// A lex bound: `-`, `+`, `[a` inclusive, `(a` exclusive.
#[derive(Debug, Clone, PartialEq)]
pub enum LexBound {
    Min,
    Max,
    Inclusive(Vec<u8>),
    Exclusive(Vec<u8>),
}

impl LexBound {
    /// Whether `m` lies below this bound used as a range's minimum.
    fn below_min(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Inclusive(b) => m < b.as_slice(),
            LexBound::Exclusive(b) => m <= b.as_slice(),
        }
    }

    /// Whether `m` lies within this bound used as a range's maximum.
    fn within_max(&self, m: &[u8]) -> bool {
        match self {
            LexBound::Min => false,
            LexBound::Max => true,
            LexBound::Inclusive(b) => m <= b.as_slice(),
            LexBound::Exclusive(b) => m < b.as_slice(),
        }
    }
}

/// A member's score and the time it was last written.
#[derive(Debug, Clone, Copy)]
pub struct Scored {
    pub score: f64,
    pub hlc: Hlc,
}

/// The large form: member table plus treap.
/// Whether `min > max`, or they are equal and one excludes: Redis answers
/// such a range empty before it looks at any member.
fn lex_bounds_empty(min: &LexBound, max: &LexBound) -> bool {
    use LexBound::*;
    match (min, max) {
        (Max, _) | (_, Min) => true,
        (Min, _) | (_, Max) => false,
        (Inclusive(a) | Exclusive(a), Inclusive(b) | Exclusive(b)) => {
            a > b || (a == b && (matches!(min, Exclusive(_)) || matches!(max, Exclusive(_))))
        }
    }
}

#[derive(Default, Clone)]
struct Big {
    scores: Dict<Scored>,
    tree: Treap,
    bytes: usize,
}

/// Small sorted sets (up to [`MAX_ENTRIES`](crate::packed::MAX_ENTRIES) members of up to [`MAX_VALUE`](crate::packed::MAX_VALUE)
/// bytes) are one packed buffer of `member | score | hlc` records kept in
/// order, walked linearly as Redis walks a listpack; larger ones move, once,
/// to the table-plus-treap form.
#[derive(Clone)]
enum Repr {
    Packed(Vec<u8>),
    Big(Box<Big>),
}

#[derive(Clone)]
pub struct ZSet(Repr);

impl Default for ZSet {
    fn default() -> Self {
        ZSet(Repr::Packed(Vec::new()))
    }
}

impl std::fmt::Debug for ZSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZSet({} members)", self.len())
    }
}

fn cost(member: &[u8]) -> usize {
    let tree_heap = if member.len() > INLINE_KEY {
        member.len()
    } else {
        0
    };
    tree_heap + Dict::<Scored>::entry_overhead(member.len()) + std::mem::size_of::<Node>()
}

/// A packed record: (member, score, hlc, start, end).
type Record<'a> = (&'a [u8], f64, Hlc, usize, usize);

fn records(buf: &[u8]) -> impl Iterator<Item = Record<'_>> {
    let mut pos = first_record(buf);
    let b = base(buf);
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let start = pos;
        let m = get_bytes(buf, &mut pos);
        let score = get_score(buf, &mut pos);
        let hlc = get_hlc(buf, &mut pos, b);
        Some((m, score, hlc, start, pos))
    })
}

/// Re-encodes a packed buffer on an older base (a record older than every
/// time it holds arrives: merge input, never a local write).
fn rebase(buf: &mut Vec<u8>, new_base: Hlc) {
    let mut out = header(count(buf), new_base);
    for (m, score, h, ..) in records(buf) {
        put_bytes(&mut out, m);
        put_score(&mut out, score);
        put_hlc(&mut out, new_base, h);
    }
    *buf = out;
}

impl Big {
    fn insert(&mut self, member: &[u8], score: f64, hlc: Hlc) -> Option<f64> {
        let old = self
            .scores
            .insert(member, Scored { score, hlc })
            .map(|s| s.score);
        match old {
            Some(o) if o == score && o.is_sign_negative() == score.is_sign_negative() => {
                return old;
            }
            Some(o) => self.tree.remove(o, member),
            None => self.bytes += cost(member),
        }
        self.tree.insert(score, NodeKey::new(member));
        old
    }
}

impl ZSet {
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Packed(buf) => count(buf),
            Repr::Big(b) => b.scores.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the set is in its packed small form.
    pub fn is_packed(&self) -> bool {
        matches!(self.0, Repr::Packed(_))
    }

    pub fn heap_bytes(&self) -> usize {
        match &self.0 {
            Repr::Packed(buf) => buf.capacity(),
            Repr::Big(b) => {
                b.bytes
                    + b.scores.table_bytes()
                    + b.tree.nodes.capacity().saturating_sub(b.tree.nodes.len())
                        * std::mem::size_of::<Node>()
                    + std::mem::size_of::<Big>()
            }
        }
    }

    fn find(&self, member: &[u8]) -> Option<Scored> {
        match &self.0 {
            Repr::Packed(buf) => records(buf).find(|r| r.0 == member).map(|r| Scored {
                score: r.1,
                hlc: r.2,
            }),
            Repr::Big(b) => b.scores.get(member).copied(),
        }
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.find(member).map(|s| s.score)
    }

    /// When `member` was last written.
    pub fn hlc(&self, member: &[u8]) -> Option<Hlc> {
        self.find(member).map(|s| s.hlc)
    }

    /// Sets `member`'s score, written at `hlc`; returns the previous score.
    /// A score of `-0` is stored as `0`, as Redis stores it.
    pub fn insert(&mut self, member: &[u8], score: f64, hlc: Hlc) -> Option<f64> {
        let score = score + 0.0;
        if let Repr::Packed(buf) = &mut self.0 {
            if !fits_base(buf, hlc) {
                rebase(buf, hlc);
            }
            let found = records(buf)
                .find(|r| r.0 == member)
                .map(|r| (r.1, r.3, r.4));
            let (max_entries, max_value) = crate::packed::limits::zset();
            if member.len() <= max_value && (found.is_some() || count(buf) < max_entries) {
                let old = found.map(|(old, start, end)| {
                    buf.drain(start..end);
                    old
                });
                let b = base_for(buf, hlc);
                if old.is_none() {
                    add_one(buf, b);
                }
                let at = records(buf)
                    .find(|r| cmp(r.1, r.0, score, member) == Ordering::Greater)
                    .map_or(buf.len(), |r| r.3);
                let mut rec = Vec::with_capacity(member.len() + 18);
                put_bytes(&mut rec, member);
                put_score(&mut rec, score);
                put_hlc(&mut rec, b, hlc);
                // Exact growth: a packed buffer lives long and doubling
                // would waste up to half of it.
                buf.reserve_exact(rec.len());
                buf.splice(at..at, rec);
                return old;
            }
            self.grow();
        }
        match &mut self.0 {
            Repr::Big(b) => b.insert(member, score, hlc),
            Repr::Packed(_) => None,
        }
    }

    /// Moves a packed set to the table-plus-treap form.
    fn grow(&mut self) {
        let Repr::Packed(buf) = &self.0 else {
            return;
        };
        let mut big = Big::default();
        for (m, score, hlc, ..) in records(buf) {
            big.insert(m, score, hlc);
        }
        self.0 = Repr::Big(Box::new(big));
    }

    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        match &mut self.0 {
            Repr::Packed(buf) => {
                let (old, start, end) = records(buf)
                    .find(|r| r.0 == member)
                    .map(|r| (r.1, r.3, r.4))?;
                buf.drain(start..end);
                remove_one(buf);
                Some(old)
            }
            Repr::Big(b) => {
                let old = b.scores.remove(member)?.score;
                b.tree.remove(old, member);
                b.bytes -= cost(member);
                Some(old)
            }
        }
    }

    /// How many members come before the first for which `before` is false
    /// (`before` must hold on a prefix of the order).
    fn count_before(&self, before: impl Fn(f64, &[u8]) -> bool) -> usize {
        match &self.0 {
            Repr::Packed(buf) => records(buf).take_while(|r| before(r.1, r.0)).count(),
            Repr::Big(b) => b.tree.count_before(before),
        }
    }

    /// 0-based rank of `member` in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let s = self.score(member)?;
        Some(self.count_before(|sc, m| cmp(sc, m, s, member) == Ordering::Less))
    }

    /// The pair at ascending rank `k`.
    pub fn nth(&self, k: usize) -> Option<(f64, &[u8])> {
        match &self.0 {
            Repr::Packed(buf) => records(buf).nth(k).map(|r| (r.1, r.0)),
            Repr::Big(b) => b.tree.nth(k),
        }
    }

    /// Calls `f` on ascending ranks `start..end`.
    pub fn range(&self, start: usize, end: usize, mut f: impl FnMut(f64, &[u8])) {
        let end = end.min(self.len());
        match &self.0 {
            Repr::Packed(buf) => {
                for r in records(buf).skip(start).take(end.saturating_sub(start)) {
                    f(r.1, r.0);
                }
            }
            Repr::Big(b) => b.tree.walk(start, end, &mut f),
        }
    }

    /// Ranks `[first, end)` of the members with `min <= score <= max`
    /// (bounds as given).
    pub fn score_ranks(&self, min: ScoreBound, max: ScoreBound) -> (usize, usize) {
        let first = self.count_before(|s, _| {
            if min.exclusive {
                s <= min.value
            } else {
                s < min.value
            }
        });
        let end = self.count_before(|s, _| {
            if max.exclusive {
                s < max.value
            } else {
                s <= max.value
            }
        });
        (first, end.max(first))
    }

    /// Ranks `[first, end)` of the members within the lex range, walked
    /// forward (`rev` false) or backward. Lex ranges are meant for sets whose
    /// scores are all equal; for others keel answers as Redis answers for a
    /// small (listpack) set: the range is empty unless the first member is
    /// at most `max` and the last at least `min`, and it runs from the first
    /// member at least `min` (backward: the last at most `max`) for as long
    /// as members stay within the other bound.
    pub fn lex_ranks(&self, min: &LexBound, max: &LexBound, rev: bool) -> (usize, usize) {
        let len = self.len();
        if len == 0 || lex_bounds_empty(min, max) {
            return (0, 0);
        }
        let (Some((_, head)), Some((_, tail))) = (self.nth(0), self.nth(len - 1)) else {
            return (0, 0);
        };
        if min.below_min(tail) || !max.within_max(head) {
            return (0, 0);
        }
        match &self.0 {
            Repr::Packed(buf) => {
                let ms: Vec<&[u8]> = records(buf).map(|r| r.0).collect();
                if rev {
                    let Some(last) = ms.iter().rposition(|m| max.within_max(m)) else {
                        return (0, 0);
                    };
                    let n = ms[..=last]
                        .iter()
                        .rev()
                        .take_while(|m| !min.below_min(m))
                        .count();
                    (last + 1 - n, last + 1)
                } else {
                    let Some(first) = ms.iter().position(|m| !min.below_min(m)) else {
                        return (0, 0);
                    };
                    let n = ms[first..].iter().take_while(|m| max.within_max(m)).count();
                    (first, first + n)
                }
            }
            Repr::Big(_) => {
                let first = self.count_before(|_, m| min.below_min(m));
                let end = self.count_before(|_, m| max.within_max(m));
                (first, end.max(first))
            }
        }
    }

    /// Every member and score (in score order when packed, else any order).
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], f64)> + '_> {
        match &self.0 {
            Repr::Packed(buf) => Box::new(records(buf).map(|r| (r.0, r.1))),
            Repr::Big(b) => Box::new(b.scores.iter().map(|(m, s)| (m, s.score))),
        }
    }

    /// Every member with its score and time (in score order when packed,
    /// else any order): what a snapshot saves.
    pub fn iter_scored(&self) -> Box<dyn Iterator<Item = (&[u8], Scored)> + '_> {
        match &self.0 {
            Repr::Packed(buf) => Box::new(records(buf).map(|r| {
                (
                    r.0,
                    Scored {
                        score: r.1,
                        hlc: r.2,
                    },
                )
            })),
            Repr::Big(b) => Box::new(b.scores.iter().map(|(m, s)| (m, *s))),
        }
    }

    /// One ZSCAN step. A packed set answers whole, with cursor 0, as Redis
    /// answers for a listpack.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], f64)) -> u64 {
        match &self.0 {
            Repr::Packed(_) => {
                for (m, s) in self.iter() {
                    f(m, s);
                }
                0
            }
            Repr::Big(b) => b.scores.scan(cursor, count, |m, s| f(m, s.score)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference model: a sorted vector of (score, member).
    fn model(ops: &[(bool, u8, i8)], big: bool) -> (ZSet, Vec<(f64, Vec<u8>)>) {
        let mut z = ZSet::default();
        if big {
            z.grow();
        }
        let mut m: Vec<(f64, Vec<u8>)> = Vec::new();
        for &(add, member, score) in ops {
            // 200 names: enough to cross the packed form's limit.
            let member = format!("m{}", member % 200).into_bytes();
            let score = f64::from(score % 8);
            m.retain(|(_, mm)| *mm != member);
            if add {
                // Times wander backwards too, which re-encodes packed buffers.
                z.insert(&member, score, Hlc::new(u64::from(member[1]) * 7 % 11, 0));
                m.push((score, member));
            } else {
                z.remove(&member);
            }
        }
        m.sort_by(|a, b| cmp(a.0, &a.1, b.0, &b.1));
        (z, m)
    }

    fn all(z: &ZSet) -> Vec<(f64, Vec<u8>)> {
        let mut out = Vec::new();
        z.range(0, z.len(), |s, m| out.push((s, m.to_vec())));
        out
    }

    proptest! {
        #[test]
        fn matches_sorted_vector(ops in proptest::collection::vec((any::<bool>(), any::<u8>(), any::<i8>()), 0..300),
                                 lo in -9i8..9, hi in -9i8..9, lx in any::<bool>(), hx in any::<bool>(),
                                 start in 0usize..30, len in 0usize..30, big in any::<bool>()) {
            let (z, m) = model(&ops, big);
            prop_assert_eq!(z.len(), m.len());
            prop_assert_eq!(all(&z), m.clone());
            for (i, (s, mem)) in m.iter().enumerate() {
                prop_assert_eq!(z.rank(mem), Some(i));
                prop_assert_eq!(z.score(mem), Some(*s));
                prop_assert_eq!(z.nth(i).map(|(s, m)| (s, m.to_vec())), Some((*s, mem.clone())));
            }
            let mut part = Vec::new();
            z.range(start, start + len, |s, mm| part.push((s, mm.to_vec())));
            let expect: Vec<_> = m.iter().skip(start).take(len).cloned().collect();
            prop_assert_eq!(part, expect);
            // By score.
            let (min, max) = (ScoreBound { value: f64::from(lo), exclusive: lx }, ScoreBound { value: f64::from(hi), exclusive: hx });
            let (a, b) = z.score_ranks(min, max);
            let want: Vec<usize> = (0..m.len()).filter(|&i| {
                let s = m[i].0;
                (if lx { s > min.value } else { s >= min.value }) && (if hx { s < max.value } else { s <= max.value })
            }).collect();
            prop_assert_eq!((a..b).collect::<Vec<_>>(), want);
        }

        #[test]
        fn lex_ranges(members in proptest::collection::btree_set(proptest::collection::vec(b'a'..b'e', 0..3), 0..40),
                      lo in proptest::collection::vec(b'a'..b'e', 0..3), hi in proptest::collection::vec(b'a'..b'e', 0..3),
                      lx in any::<bool>(), hx in any::<bool>(), big in any::<bool>()) {
            let mut z = ZSet::default();
            if big {
                z.grow();
            }
            for m in &members { z.insert(m, 0.0, Hlc::ZERO); }
            let min = if lx { LexBound::Exclusive(lo.clone()) } else { LexBound::Inclusive(lo.clone()) };
            let max = if hx { LexBound::Exclusive(hi.clone()) } else { LexBound::Inclusive(hi.clone()) };
            let (a, b) = z.lex_ranks(&min, &max, false);
            prop_assert_eq!(z.lex_ranks(&min, &max, true), (a, b));
            let mut got = Vec::new();
            z.range(a, b, |_, m| got.push(m.to_vec()));
            let want: Vec<Vec<u8>> = members.iter().filter(|m| {
                (if lx { **m > lo } else { **m >= lo }) && (if hx { **m < hi } else { **m <= hi })
            }).cloned().collect();
            prop_assert_eq!(got, want);
            let (a, b) = z.lex_ranks(&LexBound::Min, &LexBound::Max, false);
            prop_assert_eq!((a, b), (0, members.len()));
        }
    }

    #[test]
    fn memory_returns_to_zero() {
        let mut z = ZSet::default();
        for i in 0..1000 {
            z.insert(format!("m{i}").as_bytes(), f64::from(i % 7), Hlc::ZERO);
        }
        for i in 0..1000 {
            z.insert(format!("m{i}").as_bytes(), f64::from(i % 5), Hlc::new(5, 0));
        }
        for i in 0..1000 {
            assert!(z.remove(format!("m{i}").as_bytes()).is_some());
        }
        assert!(z.is_empty());
        assert!(!z.is_packed());
        match &z.0 {
            Repr::Big(b) => assert_eq!(b.bytes, 0),
            Repr::Packed(_) => unreachable!(),
        }
    }
}
