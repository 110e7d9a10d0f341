//! What a key holds.

/// A key's value. Strings only for now; the other Redis types join this enum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(Vec<u8>),
}

impl Value {
    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
        }
    }

    /// Heap bytes the value holds, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Str(s) => s.capacity(),
        }
    }
}

/// One key's record in the keyspace.
#[derive(Debug, Clone)]
pub struct Entry {
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 means no expiry.
    pub expire_at: u64,
    /// Last access, in seconds of the shard's clock: the approximated-LRU age.
    pub access: u32,
}

impl Entry {
    pub fn new(value: Value, expire_at: u64) -> Self {
        Entry {
            value,
            expire_at,
            access: 0,
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && self.expire_at <= now_ms
    }
}
