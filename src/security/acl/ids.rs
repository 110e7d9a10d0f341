//! Command ids for ACL bitmaps, and the categories of each id.
//!
//! An id is a command's index in the command table
//! ([`crate::exec::command::COMMANDS`]) or, past the table, a subcommand
//! that `COMMAND INFO` describes (`config|get`, `acl|setuser`...). The
//! categories are the ones `COMMAND INFO` reports
//! ([`crate::server::commands::command_info`]): one source of truth for
//! what `+@read` or `-@dangerous` mean.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::exec::command::{flags, Spec, COMMANDS};
use crate::server::commands::command_info::{
    acl_keys, categories, container, movable, subcommand_categories, CATEGORY_ORDER,
};

/// One command or subcommand as ACL rules see it.
pub struct Entry {
    /// `get`, or `config|get` for a subcommand.
    pub name: String,
    /// Bit `i` set: the command is in `CATEGORY_ORDER[i]`.
    pub categories: u32,
    /// A container command's subcommands (their ids).
    pub subs: Vec<usize>,
    /// A subcommand's container.
    pub parent: Option<usize>,
    /// AUTH, HELLO, QUIT, RESET: every user may run them.
    pub no_auth: bool,
    /// A command with one key at a fixed place: whether it reads and
    /// whether it writes it, worked out once (see `check::key_permissions`).
    pub single_key: Option<(bool, bool)>,
}

/// The read/write permissions of a one-key command's key.
fn single_key(s: &Spec) -> Option<(bool, bool)> {
    if s.first_key <= 0 || s.first_key != s.last_key || movable(s) {
        return None;
    }
    let argv: Vec<&[u8]> = vec![b"k"; s.first_key as usize + 1];
    match acl_keys(s, &argv).as_slice() {
        [(_, read, write)] => Some((*read, *write)),
        _ => None,
    }
}

pub struct Ids {
    pub entries: Vec<Entry>,
    by_name: HashMap<String, usize, ahash::RandomState>,
}

/// How many 64-bit words a bitmap over every id takes.
pub fn words() -> usize {
    ids().entries.len().div_ceil(64)
}

pub fn ids() -> &'static Ids {
    static IDS: OnceLock<Ids> = OnceLock::new();
    IDS.get_or_init(build)
}

fn category_bits(names: &[&str]) -> u32 {
    names
        .iter()
        .filter_map(|c| CATEGORY_ORDER.iter().position(|o| o == c))
        .fold(0, |bits, i| bits | 1 << i)
}

fn build() -> Ids {
    let mut entries: Vec<Entry> = COMMANDS
        .iter()
        .map(|s| Entry {
            name: s.name.to_string(),
            categories: category_bits(&categories(s)),
            subs: Vec::new(),
            parent: None,
            no_auth: s.has(flags::NOAUTH),
            single_key: single_key(s),
        })
        .collect();
    let mut by_name: HashMap<String, usize, ahash::RandomState> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    for (name, cats) in subcommand_categories() {
        let parent = name.split('|').next().and_then(|p| by_name.get(p).copied());
        let id = entries.len();
        if let Some(p) = parent {
            entries[p].subs.push(id);
        }
        entries.push(Entry {
            name: name.to_string(),
            categories: category_bits(cats),
            subs: Vec::new(),
            parent,
            no_auth: false,
            single_key: None,
        });
        by_name.insert(name.to_string(), id);
    }
    Ids { entries, by_name }
}

impl Ids {
    /// A command or `command|subcommand` by name, any case.
    pub fn lookup(&self, name: &[u8]) -> Option<usize> {
        let lower = String::from_utf8_lossy(name).to_lowercase();
        self.by_name.get(&lower).copied()
    }

    /// The id a request runs as: its subcommand's when the command is a
    /// container and the subcommand is known, else the command's.
    pub fn of_request(&self, spec: &'static Spec, argv: &[&[u8]]) -> usize {
        let i = crate::exec::command::index_of(spec);
        if container(spec) && argv.len() >= 2 && !self.entries[i].subs.is_empty() {
            let full = format!(
                "{}|{}",
                spec.name,
                String::from_utf8_lossy(argv[1]).to_lowercase()
            );
            if let Some(&id) = self.by_name.get(&full) {
                return id;
            }
        }
        i
    }
}

/// A category's bit, from its name without the `@` (`read`, any case).
pub fn category(name: &str) -> Option<u32> {
    let lower = name.to_lowercase();
    CATEGORY_ORDER
        .iter()
        .position(|c| c[1..] == lower)
        .map(|i| 1 << i)
}

/// Every category's name without the `@`, in Redis's order.
pub fn category_names() -> impl Iterator<Item = &'static str> {
    CATEGORY_ORDER.iter().map(|c| &c[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_have_ids_and_parents() {
        let ids = ids();
        let get = ids.lookup(b"CONFIG|GET").expect("config|get");
        let config = ids.lookup(b"config").expect("config");
        assert_eq!(ids.entries[get].parent, Some(config));
        assert!(ids.entries[config].subs.contains(&get));
        assert!(ids.entries[get].categories & category("admin").unwrap() != 0);
        let set = ids.lookup(b"set").unwrap();
        assert!(ids.entries[set].categories & category("write").unwrap() != 0);
        assert!(ids.entries[set].categories & category("read").unwrap() == 0);
        assert!(category("nosuch").is_none());
        assert_eq!(category_names().count(), 21);
    }
}
