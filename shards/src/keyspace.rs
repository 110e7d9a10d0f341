//! The keyspace: a [`Table`] of compact entry nodes, one allocation per key.
//!
//! A key's node holds everything about it in one block: the chain link, the
//! HLC time of its last write, its LRU clock, its type, its expiry (only
//! when it has one), the key's bytes and, for a string, the value's bytes.
//! A collection's node holds its [`Value`] (the collection's own small
//! header; its members live behind it). With 16-byte keys and 32-byte
//! values a node is 71 bytes, one 80-byte malloc chunk, where a node plus
//! a separate value buffer cost 96 + 48 (see bench/RESULTS.md, memory).
//!
//! ```text
//! 0      8      16      20    21
//! | next | hlc  | access | kind | key len | [value len] | [expire_at] | key | value
//!                          varints ^^^^^^^^^^^^^^^^^^^^^   8 bytes LE, only with a TTL
//! ```
//! `kind` is the type in its low bits and [`HAS_EXPIRE`]. A string value
//! follows the key; a collection's `Value` starts at the next 8-byte boundary.
//!
//! Callers see an entry through [`EntryRef`] (read) and change it through
//! the shard, which rebuilds a node whose size changes and writes in place
//! otherwise. [`Entry`] is the detached form (building, loading, copying).

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::{self, NonNull};

use crate::hash::Hash;
use crate::hlc::Hlc;
use crate::list::List;
use crate::set::Set;
use crate::stream::Stream;
use crate::table::{Chain, Table};
use crate::value::{Entry, Value};
use crate::zset::ZSet;

const HLC_AT: usize = 8;
const ACCESS_AT: usize = 16;
const KIND_AT: usize = 20;
const VAR_AT: usize = 21;

const STR: u8 = 0;
const HASH: u8 = 1;
const SET: u8 = 2;
const ZSET: u8 = 3;
const LIST: u8 = 4;
/// A string held out of line, in a `Value::Str` with room to grow: what a
/// string becomes once a command changes it in place (SETBIT, SETRANGE,
/// APPEND, BITFIELD, PFADD), so a bitmap that grows a byte at a time is not
/// copied whole on every change. SET makes it an inline string again.
const BSTR: u8 = 5;
const STREAM: u8 = 6;
const TYPE_MASK: u8 = 0x07;
/// The node carries an expiry.
const HAS_EXPIRE: u8 = 0x10;

/// Where things are in a node, from its kind and lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    key_at: usize,
    key_len: usize,
    /// A string's bytes, or a collection's `Value`.
    value_at: usize,
    value_len: usize,
    expire_at: Option<usize>,
    /// The allocation's size (a multiple of 8).
    size: usize,
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

impl Parts {
    fn new(kind: u8, key_len: usize, value_len: usize) -> Parts {
        let is_str = kind & TYPE_MASK == STR;
        let mut at = VAR_AT + varint_len(key_len);
        if is_str {
            at += varint_len(value_len);
        }
        let expire_at = (kind & HAS_EXPIRE != 0).then_some(at);
        if expire_at.is_some() {
            at += 8;
        }
        let key_at = at;
        at += key_len;
        let (value_at, value_len) = if is_str {
            (at, value_len)
        } else {
            ((at + 7) & !7, std::mem::size_of::<Value>())
        };
        let size = (value_at + value_len + 7) & !7;
        Parts {
            key_at,
            key_len,
            value_at,
            value_len,
            expire_at,
            size,
        }
    }

    fn layout(&self) -> Layout {
        // Sizes are bounded by the largest key and string keel accepts
        // (proto-max-bulk-len), far below isize::MAX; a size past it could
        // not be allocated anyway, so it ends as a failed allocation does.
        match Layout::from_size_align(self.size, 8) {
            Ok(l) => l,
            Err(_) => handle_alloc_error(Layout::new::<u64>()),
        }
    }
}

/// What a new node will hold as its value.
enum Payload<'a> {
    Str(&'a [u8]),
    Coll(Value),
}

/// One key's node (see the module docs). Owns its allocation, its
/// collection if any, and the rest of its chain.
#[repr(transparent)]
pub struct EntryNode(NonNull<u8>);

// A node owns its memory outright, as a Box does.
unsafe impl Send for EntryNode {}

impl Chain for EntryNode {
    fn key(&self) -> &[u8] {
        // Every chain walk compares keys: skip straight to them.
        let base = self.0.as_ptr();
        let kind = self.kind();
        let (key_len, mut at) = get_varint(base, VAR_AT);
        if kind & TYPE_MASK == STR {
            at = get_varint(base, at).1;
        }
        if kind & HAS_EXPIRE != 0 {
            at += 8;
        }
        // SAFETY: the key's bytes are where the layout puts them.
        unsafe { std::slice::from_raw_parts(base.add(at), key_len) }
    }

    fn next(&self) -> Option<&Self> {
        // Offset 0 holds an `Option<EntryNode>`: a nullable pointer.
        unsafe { (*(self.0.as_ptr() as *const Option<EntryNode>)).as_ref() }
    }

    fn next_mut(&mut self) -> &mut Option<Self> {
        unsafe { &mut *(self.0.as_ptr() as *mut Option<EntryNode>) }
    }
}

impl EntryNode {
    fn build(key: &[u8], value: Payload, expire_at: u64, hlc: Hlc, access: u32) -> EntryNode {
        let (mut kind, value_len) = match &value {
            Payload::Str(s) => (STR, s.len()),
            Payload::Coll(v) => (type_code(v), 0),
        };
        if expire_at != 0 {
            kind |= HAS_EXPIRE;
        }
        let p = Parts::new(kind, key.len(), value_len);
        let layout = p.layout();
        // SAFETY: the layout has a non-zero size (at least the header).
        let raw = unsafe { alloc(layout) };
        let Some(base) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        // SAFETY: every write below is inside the `p.size` bytes just
        // allocated, at the offsets `Parts` laid out; the pointer-sized and
        // u64/u32 fields sit at 8/4-aligned offsets of an 8-aligned block.
        unsafe {
            ptr::write(raw as *mut Option<EntryNode>, None);
            ptr::write(raw.add(HLC_AT) as *mut u64, hlc.raw());
            ptr::write(raw.add(ACCESS_AT) as *mut u32, access);
            ptr::write(raw.add(KIND_AT), kind);
            let at = put_varint(raw, VAR_AT, key.len());
            if kind & TYPE_MASK == STR {
                put_varint(raw, at, value_len);
            }
            if let Some(e) = p.expire_at {
                ptr::copy_nonoverlapping(expire_at.to_le_bytes().as_ptr(), raw.add(e), 8);
            }
            ptr::copy_nonoverlapping(key.as_ptr(), raw.add(p.key_at), key.len());
            match value {
                Payload::Str(s) => {
                    ptr::copy_nonoverlapping(s.as_ptr(), raw.add(p.value_at), s.len())
                }
                Payload::Coll(v) => ptr::write(raw.add(p.value_at) as *mut Value, v),
            }
        }
        EntryNode(base)
    }

    /// A node for a detached entry (its string is copied, its collection moved).
    pub fn from_entry(key: &[u8], e: Entry) -> EntryNode {
        match e.value {
            Value::Str(s) => EntryNode::build(key, Payload::Str(&s), e.expire_at, e.hlc, e.access),
            v => EntryNode::build(key, Payload::Coll(v), e.expire_at, e.hlc, e.access),
        }
    }

    /// A node for a detached entry whose string, if it holds one, stays in
    /// its `Vec` (see [`BSTR`]): changed in place from now on.
    pub fn growable(key: &[u8], e: Entry) -> EntryNode {
        EntryNode::build(key, Payload::Coll(e.value), e.expire_at, e.hlc, e.access)
    }

    /// A string node.
    pub fn string(key: &[u8], value: &[u8], expire_at: u64, hlc: Hlc, access: u32) -> EntryNode {
        EntryNode::build(key, Payload::Str(value), expire_at, hlc, access)
    }

    /// Detaches the entry (the node must be out of its chain).
    pub fn into_entry(self) -> Entry {
        let p = self.parts();
        let e = self.view();
        let (expire_at, hlc, access) = (e.expire_at(), e.hlc(), e.access());
        let value = match (self.kind() & TYPE_MASK, e.value()) {
            (STR, ValueRef::Str(s)) => Value::Str(s.to_vec()),
            // SAFETY: the value is moved out once; the node is then freed
            // without dropping it.
            _ => unsafe { ptr::read(self.at(p.value_at) as *const Value) },
        };
        let node = std::mem::ManuallyDrop::new(self);
        // SAFETY: allocated with this layout; the value was moved out above
        // (or was plain bytes).
        unsafe {
            drop(ptr::read(node.0.as_ptr() as *const Option<EntryNode>));
            dealloc(node.0.as_ptr(), p.layout());
        }
        Entry {
            value,
            expire_at,
            access,
            hlc,
        }
    }

    fn kind(&self) -> u8 {
        unsafe { *self.at(KIND_AT) }
    }

    fn at(&self, offset: usize) -> *mut u8 {
        unsafe { self.0.as_ptr().add(offset) }
    }

    fn parts(&self) -> Parts {
        let (key_len, at) = get_varint(self.0.as_ptr(), VAR_AT);
        let kind = self.kind();
        let value_len = if kind & TYPE_MASK == STR {
            get_varint(self.0.as_ptr(), at).0
        } else {
            0
        };
        Parts::new(kind, key_len, value_len)
    }

    /// A read-only view.
    pub fn view(&self) -> EntryRef<'_> {
        EntryRef { node: self }
    }

    pub fn set_hlc(&mut self, hlc: Hlc) {
        unsafe { ptr::write(self.at(HLC_AT) as *mut u64, hlc.raw()) }
    }

    pub fn set_access(&mut self, access: u32) {
        unsafe { ptr::write(self.at(ACCESS_AT) as *mut u32, access) }
    }

    /// The collection this node holds, or its out-of-line string (`None`
    /// for an inline string).
    pub fn collection_mut(&mut self) -> Option<&mut Value> {
        if self.kind() & TYPE_MASK == STR {
            return None;
        }
        let p = self.parts();
        // SAFETY: a collection node holds an initialised, aligned Value there.
        Some(unsafe { &mut *(self.at(p.value_at) as *mut Value) })
    }

    /// Overwrites a string node's value and expiry where the node's size
    /// and layout stay the same; false (nothing changed) otherwise.
    pub fn overwrite_str(&mut self, value: &[u8], expire_at: u64) -> bool {
        let kind = self.kind();
        if kind & TYPE_MASK != STR || (kind & HAS_EXPIRE != 0) != (expire_at != 0) {
            return false;
        }
        let old = self.parts();
        let new = Parts::new(kind, old.key_len, value.len());
        if new.size != old.size || new.value_at != old.value_at {
            return false;
        }
        // SAFETY: same layout, so every offset is inside the allocation;
        // the value-length varint has the same width (same value_at).
        unsafe {
            let at = VAR_AT + varint_len(old.key_len);
            put_varint(self.0.as_ptr(), at, value.len());
            if let Some(e) = new.expire_at {
                ptr::copy_nonoverlapping(expire_at.to_le_bytes().as_ptr(), self.at(e), 8);
            }
            ptr::copy_nonoverlapping(value.as_ptr(), self.at(new.value_at), value.len());
        }
        true
    }

    /// Sets the expiry in place when the node already has room for one (or
    /// has none and none is wanted); false otherwise.
    pub fn overwrite_expire(&mut self, expire_at: u64) -> bool {
        let p = self.parts();
        match (p.expire_at, expire_at) {
            (None, 0) => true,
            (Some(e), at) if at != 0 => {
                unsafe { ptr::copy_nonoverlapping(at.to_le_bytes().as_ptr(), self.at(e), 8) }
                true
            }
            _ => false,
        }
    }
}

impl Drop for EntryNode {
    fn drop(&mut self) {
        let p = self.parts();
        // SAFETY: the node owns its chain link, its collection and its
        // allocation; each is released once here.
        unsafe {
            drop(ptr::read(self.0.as_ptr() as *const Option<EntryNode>));
            if self.kind() & TYPE_MASK != STR {
                ptr::drop_in_place(self.at(p.value_at) as *mut Value);
            }
            dealloc(self.0.as_ptr(), p.layout());
        }
    }
}

fn type_code(v: &Value) -> u8 {
    match v {
        // Only a held-out-of-line string comes here (`Payload::Coll`).
        Value::Str(_) => BSTR,
        Value::Hash(_) => HASH,
        Value::Set(_) => SET,
        Value::ZSet(_) => ZSET,
        Value::List(_) => LIST,
        Value::Stream(_) => STREAM,
    }
}

/// Writes `n` as a LEB128 varint at `base + at`; returns the offset after it.
unsafe fn put_varint(base: *mut u8, mut at: usize, mut n: usize) -> usize {
    while n >= 0x80 {
        *base.add(at) = (n as u8) | 0x80;
        n >>= 7;
        at += 1;
    }
    *base.add(at) = n as u8;
    at + 1
}

/// Reads a varint written by [`put_varint`]: (value, offset after it).
fn get_varint(base: *const u8, mut at: usize) -> (usize, usize) {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        // SAFETY: only called on a node's own varints, which end.
        let b = unsafe { *base.add(at) };
        at += 1;
        n |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return (n, at);
        }
        shift += 7;
    }
}

/// Bytes the system allocator takes for a block of `size` bytes: an 8-byte
/// header, rounded up to 16, at least 32 (glibc's malloc).
pub const fn malloc_bytes(size: usize) -> usize {
    let chunk = (size + 8 + 15) & !15;
    if chunk < 32 {
        32
    } else {
        chunk
    }
}

/// A stored entry, read-only.
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    node: &'a EntryNode,
}

impl<'a> EntryRef<'a> {
    pub fn key(&self) -> &'a [u8] {
        self.node.key()
    }

    pub fn value(&self) -> ValueRef<'a> {
        let p = self.node.parts();
        let at = self.node.at(p.value_at);
        // SAFETY: `Parts` says where the value is; a collection node holds
        // an initialised Value of the kind's type.
        unsafe {
            match self.node.kind() & TYPE_MASK {
                STR => ValueRef::Str(std::slice::from_raw_parts(at, p.value_len)),
                _ => (*(at as *const Value)).as_ref(),
            }
        }
    }

    /// A string held out of line with room to grow (changed in place by
    /// APPEND, SETRANGE, SETBIT...): what Redis reports as a `raw` string.
    pub fn is_growable_string(&self) -> bool {
        self.node.kind() & TYPE_MASK == BSTR
    }

    /// Absolute expiry in Unix milliseconds; 0 means none.
    pub fn expire_at(&self) -> u64 {
        match self.node.parts().expire_at {
            None => 0,
            Some(e) => {
                let mut b = [0u8; 8];
                unsafe { ptr::copy_nonoverlapping(self.node.at(e), b.as_mut_ptr(), 8) };
                u64::from_le_bytes(b)
            }
        }
    }

    pub fn has_expire(&self) -> bool {
        self.node.kind() & HAS_EXPIRE != 0
    }

    pub fn hlc(&self) -> Hlc {
        Hlc::from_raw(unsafe { ptr::read(self.node.at(HLC_AT) as *const u64) })
    }

    /// Last access, in seconds of the shard's clock (the LRU age).
    pub fn access(&self) -> u32 {
        unsafe { ptr::read(self.node.at(ACCESS_AT) as *const u32) }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.has_expire() && self.expire_at() <= now_ms
    }

    /// A detached copy.
    pub fn to_entry(&self) -> Entry {
        Entry {
            value: self.value().to_value(),
            expire_at: self.expire_at(),
            access: self.access(),
            hlc: self.hlc(),
        }
    }

    /// Heap bytes this entry costs: its node's malloc chunk and what its
    /// collection holds.
    pub fn mem_bytes(&self) -> usize {
        let p = self.node.parts();
        let node = malloc_bytes(p.size);
        if self.node.kind() & TYPE_MASK == STR {
            return node;
        }
        // SAFETY: a non-inline node holds an initialised Value there. Read
        // as a Value, an out-of-line string counts its capacity.
        node + unsafe { (*(self.node.at(p.value_at) as *const Value)).heap_bytes() }
    }
}

impl std::fmt::Debug for EntryRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("value", &self.value())
            .field("expire_at", &self.expire_at())
            .field("hlc", &self.hlc())
            .finish()
    }
}

/// What encoders and digests read of an entry, stored or detached.
pub trait EntryView {
    fn value(&self) -> ValueRef<'_>;
    fn expire_at(&self) -> u64;
    fn hlc(&self) -> Hlc;
}

impl EntryView for EntryRef<'_> {
    fn value(&self) -> ValueRef<'_> {
        EntryRef::value(self)
    }
    fn expire_at(&self) -> u64 {
        EntryRef::expire_at(self)
    }
    fn hlc(&self) -> Hlc {
        EntryRef::hlc(self)
    }
}

impl EntryView for Entry {
    fn value(&self) -> ValueRef<'_> {
        self.value.as_ref()
    }
    fn expire_at(&self) -> u64 {
        self.expire_at
    }
    fn hlc(&self) -> Hlc {
        self.hlc
    }
}

/// A stored value, read-only.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Str(&'a [u8]),
    Hash(&'a Hash),
    Set(&'a Set),
    ZSet(&'a ZSet),
    List(&'a List),
    Stream(&'a Stream),
}

impl ValueRef<'_> {
    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            ValueRef::Str(_) => "string",
            ValueRef::Hash(_) => "hash",
            ValueRef::Set(_) => "set",
            ValueRef::ZSet(_) => "zset",
            ValueRef::List(_) => "list",
            ValueRef::Stream(_) => "stream",
        }
    }

    /// An owned copy.
    pub fn to_value(&self) -> Value {
        match *self {
            ValueRef::Str(s) => Value::Str(s.to_vec()),
            ValueRef::Hash(h) => Value::Hash(h.clone()),
            ValueRef::Set(s) => Value::Set(s.clone()),
            ValueRef::ZSet(z) => Value::ZSet(z.clone()),
            ValueRef::List(l) => Value::List(l.clone()),
            ValueRef::Stream(x) => Value::Stream(x.clone()),
        }
    }

    /// See [`Value::heap_bytes`].
    pub fn heap_bytes(&self) -> usize {
        match *self {
            ValueRef::Str(s) => s.len(),
            ValueRef::Hash(h) => h.heap_bytes(),
            ValueRef::Set(s) => s.heap_bytes(),
            ValueRef::ZSet(z) => z.heap_bytes(),
            ValueRef::List(l) => l.heap_bytes(),
            ValueRef::Stream(x) => x.heap_bytes(),
        }
    }
}

/// The table of one database's keys.
#[derive(Default)]
pub struct Keyspace {
    table: Table<EntryNode>,
}

impl Keyspace {
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes of the bucket array.
    pub fn table_bytes(&self) -> usize {
        self.table.table_bytes()
    }

    pub fn hash(&self, key: &[u8]) -> u64 {
        self.table.hash(key)
    }

    pub fn get(&self, key: &[u8]) -> Option<EntryRef<'_>> {
        self.get_hashed(self.table.hash(key), key)
    }

    pub fn get_hashed(&self, hash: u64, key: &[u8]) -> Option<EntryRef<'_>> {
        self.table.find(hash, key).map(EntryNode::view)
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    pub fn node_mut(&mut self, hash: u64, key: &[u8]) -> Option<&mut EntryNode> {
        self.table.find_mut(hash, key)
    }

    /// The link holding `key`'s node (see [`Table::link`]).
    pub fn link(&mut self, hash: u64, key: &[u8]) -> &mut Option<EntryNode> {
        self.table.link(hash, key)
    }

    /// Puts `node` in place of `key`'s node, or adds it; returns the node
    /// it replaced (out of the chain).
    pub fn put(&mut self, key: &[u8], mut node: EntryNode) -> Option<EntryNode> {
        let h = self.table.hash(key);
        let link = self.table.link(h, key);
        match link.take() {
            Some(mut old) => {
                *node.next_mut() = old.next_mut().take();
                *link = Some(node);
                Some(old)
            }
            None => {
                self.table.insert_new(node);
                None
            }
        }
    }

    /// Adds a node whose key is absent.
    pub fn insert_new(&mut self, node: EntryNode) {
        self.table.insert_new(node)
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<EntryNode> {
        self.table.remove(key)
    }

    /// See [`Table::scan`].
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], EntryRef<'_>)) -> u64 {
        self.table.scan(cursor, count, |n| f(n.key(), n.view()))
    }

    /// See [`Table::position`].
    pub fn position(&self, key: &[u8]) -> u64 {
        self.table.position(key)
    }

    /// See [`Table::visit_bucket`].
    pub fn visit_bucket(
        &self,
        from: u64,
        mut f: impl FnMut(&[u8], EntryRef<'_>, u64),
    ) -> Option<u64> {
        self.table
            .visit_bucket(from, |n, p| f(n.key(), n.view(), p))
    }

    /// A random entry (see [`Table::sample`]).
    pub fn sample(&self, random: u64) -> Option<(&[u8], EntryRef<'_>)> {
        self.table.sample(random).map(|n| (n.key(), n.view()))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], EntryRef<'_>)> {
        self.table.iter().map(|n| (n.key(), n.view()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: Value, expire_at: u64, hlc: u64) -> Entry {
        Entry {
            value,
            expire_at,
            access: 7,
            hlc: Hlc::from_raw(hlc),
        }
    }

    #[test]
    fn a_small_string_key_is_one_80_byte_chunk() {
        let n = EntryNode::string(&[b'k'; 16], &[b'v'; 32], 0, Hlc::ZERO, 0);
        assert_eq!(n.parts().size, 72);
        assert_eq!(n.view().mem_bytes(), 80);
    }

    #[test]
    fn nodes_round_trip_every_shape() {
        let long = vec![b'x'; 300];
        let mut h = Hash::default();
        h.insert(b"f", b"v".to_vec(), Hlc::from_raw(3));
        let cases = [
            (b"".to_vec(), entry(Value::Str(Vec::new()), 0, 1)),
            (b"k".to_vec(), entry(Value::Str(b"v".to_vec()), 5, 2)),
            (long.clone(), entry(Value::Str(long.clone()), u64::MAX, 9)),
            (b"h".to_vec(), entry(Value::Hash(h), 0, 4)),
            (long.clone(), entry(Value::Set(Set::default()), 1234, 5)),
            (b"z".to_vec(), entry(Value::ZSet(ZSet::default()), 0, 6)),
            (b"l".to_vec(), entry(Value::List(List::default()), 77, 8)),
        ];
        for (key, e) in cases {
            let n = EntryNode::from_entry(&key, e.clone());
            let v = n.view();
            assert_eq!(n.key(), &key[..]);
            assert_eq!(
                (v.expire_at(), v.hlc(), v.access()),
                (e.expire_at, e.hlc, 7)
            );
            assert_eq!(v.value().type_name(), e.value.type_name());
            assert_eq!(format!("{:?}", v.to_entry()), format!("{e:?}"));
            assert_eq!(format!("{:?}", n.into_entry()), format!("{e:?}"));
        }
    }

    #[test]
    fn in_place_writes_keep_the_layout_or_refuse() {
        let mut n = EntryNode::string(b"key", b"abc", 0, Hlc::ZERO, 0);
        assert!(n.overwrite_str(b"xyz", 0));
        assert!(matches!(n.view().value(), ValueRef::Str(b"xyz")));
        // A different size class or a new expiry needs a new node.
        assert!(!n.overwrite_str(&[b'a'; 40], 0));
        assert!(!n.overwrite_str(b"abc", 10));
        assert!(!n.overwrite_expire(10));
        assert!(n.overwrite_expire(0));
        let mut t = EntryNode::string(b"key", b"abc", 50, Hlc::ZERO, 0);
        assert!(t.overwrite_expire(60));
        assert_eq!(t.view().expire_at(), 60);
        assert!(t.overwrite_str(b"abcd", 70));
        assert_eq!(t.view().expire_at(), 70);
        assert!(matches!(t.view().value(), ValueRef::Str(b"abcd")));
        t.set_hlc(Hlc::from_raw(99));
        t.set_access(5);
        assert_eq!((t.view().hlc(), t.view().access()), (Hlc::from_raw(99), 5));
    }

    #[test]
    fn the_keyspace_replaces_and_removes_nodes_in_chains() {
        let mut ks = Keyspace::default();
        for i in 0..2000u32 {
            let k = format!("key:{i}");
            ks.put(
                k.as_bytes(),
                EntryNode::string(k.as_bytes(), &i.to_le_bytes(), 0, Hlc::ZERO, 0),
            );
        }
        for i in (0..2000u32).step_by(3) {
            let k = format!("key:{i}");
            let old = ks.put(
                k.as_bytes(),
                EntryNode::string(k.as_bytes(), b"new value", 9, Hlc::ZERO, 0),
            );
            assert!(old.is_some());
        }
        for i in (0..2000u32).step_by(5) {
            assert!(ks.remove(format!("key:{i}").as_bytes()).is_some());
        }
        assert_eq!(ks.len(), 2000 - 400);
        for i in 0..2000u32 {
            let k = format!("key:{i}");
            match ks.get(k.as_bytes()) {
                None => assert_eq!(i % 5, 0),
                Some(e) if i % 3 == 0 => {
                    assert!(matches!(e.value(), ValueRef::Str(b"new value")));
                    assert_eq!(e.expire_at(), 9);
                }
                Some(e) => assert!(matches!(e.value(), ValueRef::Str(v) if v == i.to_le_bytes())),
            }
        }
        assert_eq!(ks.iter().count(), 1600);
    }
}
