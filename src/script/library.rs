//! Function libraries (FUNCTION LOAD): what a library declares, and the
//! registry of loaded libraries every core reads.
//!
//! # Where libraries live
//! A library's source is stored as a field of one hash in the hidden
//! database `META_DB` (`keel_shards::META_DB`), on the shard that owns
//! [`META_KEY`]. That database is logged, snapshotted, replicated and
//! merged like the clients' own, so libraries survive a restart, reach
//! every backup and survive a failover with no machinery of their own,
//! while no client can SELECT it, and FLUSHALL and eviction leave it alone.
//!
//! The [`Registry`] is the parsed view of that hash, shared by the cores.
//! It remembers the `META_EPOCH` it was read at: any change to `META_DB`
//! (a FUNCTION command, replication, replay, a merge) moves the epoch, and
//! the next reader rebuilds the registry from the hash (see `function.rs`).
//! Each core's Lua state loads the registry's libraries when the
//! registry's generation changes (`engine.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use crate::cmd::error::CmdError;
use crate::script::cache::Flags;

/// The hash in `META_DB` whose fields are library names and whose values
/// are their sources.
pub const META_KEY: &[u8] = b"keel:functions";

/// One function a library registered.
#[derive(Debug, Clone)]
pub struct FunctionInfo {
    pub name: String,
    pub description: Option<String>,
    pub flags: Flags,
}

/// A loaded library.
#[derive(Debug)]
pub struct Library {
    pub name: String,
    /// The source as the client sent it, shebang line included.
    pub code: String,
    /// What Lua runs: the source after the shebang line, starting at its
    /// newline so line numbers stay those of the client's text.
    pub body: String,
    pub functions: Vec<FunctionInfo>,
}

/// The libraries a server knows and the functions they define.
#[derive(Default, Clone)]
pub struct Catalog {
    pub libraries: BTreeMap<String, Arc<Library>>,
    pub functions: HashMap<String, (Arc<Library>, usize)>,
}

impl Catalog {
    pub fn insert(&mut self, lib: Arc<Library>) {
        for (i, f) in lib.functions.iter().enumerate() {
            self.functions.insert(f.name.clone(), (lib.clone(), i));
        }
        self.libraries.insert(lib.name.clone(), lib);
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<Library>> {
        let lib = self.libraries.remove(name)?;
        for f in &lib.functions {
            self.functions.remove(&f.name);
        }
        Some(lib)
    }

    /// Adds `lib`, replacing a library of the same name only if `replace`,
    /// and refusing functions another library already defines (Redis's
    /// texts).
    pub fn add(&mut self, lib: Arc<Library>, replace: bool) -> Result<(), CmdError> {
        let old = self.libraries.get(&lib.name).cloned();
        if old.is_some() && !replace {
            return Err(CmdError::other(format!(
                "Library '{}' already exists",
                lib.name
            )));
        }
        for f in &lib.functions {
            if let Some((owner, _)) = self.functions.get(&f.name) {
                if owner.name != lib.name {
                    return Err(CmdError::other(format!(
                        "Function {} already exists",
                        f.name
                    )));
                }
            }
        }
        if old.is_some() {
            self.remove(&lib.name);
        }
        self.insert(lib);
        Ok(())
    }

    pub fn function(&self, name: &str) -> Option<(Arc<Library>, usize)> {
        self.functions.get(name).cloned()
    }
}

/// The shared view: the catalog, the `META_EPOCH` it reflects and a
/// generation that moves whenever it changes (cores reload then).
pub struct Registry {
    pub epoch: u64,
    pub generation: u64,
    pub catalog: Arc<Catalog>,
}

pub struct Functions {
    inner: RwLock<Registry>,
}

impl Default for Functions {
    fn default() -> Self {
        Functions {
            inner: RwLock::new(Registry {
                // Never equal to the epoch: the first reader loads.
                epoch: u64::MAX,
                generation: 0,
                catalog: Arc::new(Catalog::default()),
            }),
        }
    }
}

impl Functions {
    /// The catalog if it reflects `META_DB` as of `epoch`.
    pub fn fresh(&self, epoch: u64) -> Option<(u64, Arc<Catalog>)> {
        let r = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (r.epoch == epoch).then(|| (r.generation, r.catalog.clone()))
    }

    /// The catalog whatever its epoch, with its generation.
    pub fn current(&self) -> (u64, Arc<Catalog>) {
        let r = self.inner.read().unwrap_or_else(|p| p.into_inner());
        (r.generation, r.catalog.clone())
    }

    /// Installs `catalog` as `META_DB` read at `epoch`.
    pub fn set(&self, epoch: u64, catalog: Catalog) -> (u64, Arc<Catalog>) {
        let mut r = self.inner.write().unwrap_or_else(|p| p.into_inner());
        r.epoch = epoch;
        r.generation += 1;
        r.catalog = Arc::new(catalog);
        (r.generation, r.catalog.clone())
    }
}

/// A library's name and body, read from its shebang line
/// (`#!lua name=mylib`), with Redis's errors.
pub fn parse_metadata(code: &str) -> Result<(String, String), CmdError> {
    let Some(rest) = code.strip_prefix("#!") else {
        return Err(CmdError::other("Missing library metadata"));
    };
    let Some(end) = rest.find('\n') else {
        return Err(CmdError::other("Invalid library metadata"));
    };
    let mut parts = rest[..end].split_ascii_whitespace();
    let engine = parts.next().unwrap_or("");
    let mut name: Option<&str> = None;
    for part in parts {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case("name=") {
            if name.is_some() {
                return Err(CmdError::other(
                    "Invalid metadata value, name argument was given multiple times",
                ));
            }
            name = Some(&part[5..]);
            continue;
        }
        return Err(CmdError::other(format!(
            "Invalid metadata value given: {part}"
        )));
    }
    let Some(name) = name else {
        return Err(CmdError::other("Library name was not given"));
    };
    if !valid_name(name) {
        return Err(CmdError::other("Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"));
    }
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(CmdError::other(format!("Engine '{engine}' not found")));
    }
    Ok((name.to_string(), rest[end..].to_string()))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The flag names FUNCTION LIST shows, in Redis's order.
pub fn flag_names(f: &Flags) -> Vec<&'static str> {
    let mut out = Vec::new();
    for (on, name) in [
        (f.no_writes, "no-writes"),
        (f.allow_oom, "allow-oom"),
        (f.allow_stale, "allow-stale"),
        (f.no_cluster, "no-cluster"),
        (f.allow_cross_slot_keys, "allow-cross-slot-keys"),
    ] {
        if on {
            out.push(name);
        }
    }
    out
}

/// Flags from the names `redis.register_function` accepted.
pub fn flags_of(names: &[String]) -> Flags {
    let mut f = Flags {
        declared: true,
        ..Flags::default()
    };
    for n in names {
        match n.as_str() {
            "no-writes" => f.no_writes = true,
            "allow-oom" => f.allow_oom = true,
            "allow-stale" => f.allow_stale = true,
            "no-cluster" => f.no_cluster = true,
            "allow-cross-slot-keys" => f.allow_cross_slot_keys = true,
            _ => {}
        }
    }
    f
}

/// FUNCTION DUMP's payload: keel's own, versioned and checksummed:
/// `"KEELFN" | version u8 | count u32 LE | (len u32 LE, code)... | crc32 LE`.
const DUMP_MAGIC: &[u8] = b"KEELFN";
const DUMP_VERSION: u8 = 1;

pub fn dump(catalog: &Catalog) -> Vec<u8> {
    let mut out = DUMP_MAGIC.to_vec();
    out.push(DUMP_VERSION);
    out.extend_from_slice(&(catalog.libraries.len() as u32).to_le_bytes());
    for lib in catalog.libraries.values() {
        out.extend_from_slice(&(lib.code.len() as u32).to_le_bytes());
        out.extend_from_slice(lib.code.as_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The library sources in a FUNCTION DUMP payload; None if it is damaged.
pub fn undump(payload: &[u8]) -> Option<Vec<String>> {
    let body_len = payload.len().checked_sub(4)?;
    let (body, crc) = payload.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return None;
    }
    let rest = body.strip_prefix(DUMP_MAGIC)?;
    let (&version, rest) = rest.split_first()?;
    if version != DUMP_VERSION || rest.len() < 4 {
        return None;
    }
    let count = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
    let mut rest = &rest[4..];
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        if rest.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes(rest[..4].try_into().ok()?) as usize;
        rest = &rest[4..];
        if rest.len() < len {
            return None;
        }
        out.push(String::from_utf8(rest[..len].to_vec()).ok()?);
        rest = &rest[len..];
    }
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_read_as_redis_reads_it() {
        let (name, body) = parse_metadata("#!lua name=mylib\nreturn 1").unwrap();
        assert_eq!((name.as_str(), body.as_str()), ("mylib", "\nreturn 1"));
        let (name, _) = parse_metadata("#!LUA NAME=x\n").unwrap();
        assert_eq!(name, "x");
        let e = |s: &str| parse_metadata(s).unwrap_err().to_string();
        assert_eq!(e("return 1"), "ERR Missing library metadata");
        assert_eq!(e("#!lua name=x"), "ERR Invalid library metadata");
        assert_eq!(e("#!lua\n"), "ERR Library name was not given");
        assert_eq!(
            e("#!lua foo=bar\n"),
            "ERR Invalid metadata value given: foo=bar"
        );
        assert_eq!(e("#!js name=x\n"), "ERR Engine 'js' not found");
        assert!(e("#!lua name=a-b\n").contains("Library names can only contain"));
        assert!(e("#!lua name=a name=b\n").contains("given multiple times"));
    }

    #[test]
    fn dump_round_trips_and_refuses_damage() {
        let mut c = Catalog::default();
        for n in ["a", "b"] {
            c.insert(Arc::new(Library {
                name: n.into(),
                code: format!("#!lua name={n}\n"),
                body: "\n".into(),
                functions: vec![],
            }));
        }
        let p = dump(&c);
        assert_eq!(
            undump(&p).unwrap(),
            vec!["#!lua name=a\n".to_string(), "#!lua name=b\n".to_string()]
        );
        for i in 0..p.len() {
            let mut bad = p.clone();
            bad[i] ^= 0x40;
            assert!(undump(&bad).is_none(), "flipped byte {i} accepted");
        }
        assert!(undump(&p[..p.len() - 1]).is_none());
        assert!(undump(b"").is_none());
    }

    #[test]
    fn catalog_refuses_collisions() {
        let lib = |n: &str, f: &str| {
            Arc::new(Library {
                name: n.into(),
                code: String::new(),
                body: String::new(),
                functions: vec![FunctionInfo {
                    name: f.into(),
                    description: None,
                    flags: Flags::default(),
                }],
            })
        };
        let mut c = Catalog::default();
        c.add(lib("l1", "f1"), false).unwrap();
        assert_eq!(
            c.add(lib("l1", "f2"), false).unwrap_err().to_string(),
            "ERR Library 'l1' already exists"
        );
        assert_eq!(
            c.add(lib("l2", "f1"), false).unwrap_err().to_string(),
            "ERR Function f1 already exists"
        );
        c.add(lib("l1", "f2"), true).unwrap();
        assert!(c.function("f1").is_none());
        assert_eq!(c.function("f2").unwrap().0.name, "l1");
    }
}
