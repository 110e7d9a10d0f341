//! What a key holds.

use crate::hash::Hash;
use crate::hlc::Hlc;
use crate::keyspace::ValueRef;
use crate::list::List;
use crate::set::Set;
use crate::stream::Stream;
use crate::zset::ZSet;

/// A key's value: one of Redis's data types.
#[derive(Debug, Clone)]
pub enum Value {
    Str(Vec<u8>),
    Hash(Hash),
    Set(Set),
    ZSet(ZSet),
    List(List),
    Stream(Stream),
}

impl Value {
    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
            Value::List(_) => "list",
            Value::Stream(_) => "stream",
        }
    }

    /// Heap bytes the value holds, for memory accounting. O(1): collections
    /// keep a running count, because the shard asks before and after every
    /// in-place change.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Str(s) => s.capacity(),
            Value::Hash(h) => h.heap_bytes(),
            Value::Set(s) => s.heap_bytes(),
            Value::ZSet(z) => z.heap_bytes(),
            Value::List(l) => l.heap_bytes(),
            Value::Stream(x) => x.heap_bytes(),
        }
    }

    /// A borrowed view, as stored entries give.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Str(s) => ValueRef::Str(s),
            Value::Hash(h) => ValueRef::Hash(h),
            Value::Set(s) => ValueRef::Set(s),
            Value::ZSet(z) => ValueRef::ZSet(z),
            Value::List(l) => ValueRef::List(l),
            Value::Stream(x) => ValueRef::Stream(x),
        }
    }

    /// An empty collection: Redis deletes a key whose collection empties.
    pub fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            Value::List(l) => l.is_empty(),
            // An emptied stream stays a key, as in Redis.
            Value::Stream(_) => false,
        }
    }
}

/// A collection type a command expects at a key: how to find it inside a
/// [`Value`] (anything else is WRONGTYPE) and how to make an empty one.
pub trait Typed: Sized {
    fn of(v: ValueRef<'_>) -> Option<&Self>;
    fn of_mut(v: &mut Value) -> Option<&mut Self>;
    fn empty() -> Value;
}

macro_rules! typed {
    ($t:ty, $variant:ident) => {
        impl Typed for $t {
            fn of(v: ValueRef<'_>) -> Option<&Self> {
                match v {
                    ValueRef::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn of_mut(v: &mut Value) -> Option<&mut Self> {
                match v {
                    Value::$variant(x) => Some(x),
                    _ => None,
                }
            }
            fn empty() -> Value {
                Value::$variant(Default::default())
            }
        }
    };
}

typed!(Hash, Hash);
typed!(Set, Set);
typed!(ZSet, ZSet);
typed!(List, List);
typed!(Stream, Stream);

/// One key's entry, detached from the keyspace (which stores it as a
/// compact node, see [`crate::keyspace`]): what is built, loaded and copied.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 means no expiry.
    pub expire_at: u64,
    /// Last access, in seconds of the shard's clock: the approximated-LRU age.
    pub access: u32,
    /// Hybrid-logical-clock time of the key's last write (merge uses it).
    pub hlc: Hlc,
}

impl Entry {
    pub fn new(value: Value, expire_at: u64) -> Self {
        Entry {
            value,
            expire_at,
            access: 0,
            hlc: Hlc::ZERO,
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_entries_stay_small() {
        // A collection's node holds its Value: keep it compact (large
        // collections live behind a box).
        let v = std::mem::size_of::<Value>();
        assert!(v <= 32, "Value is {v} bytes");
    }
}
