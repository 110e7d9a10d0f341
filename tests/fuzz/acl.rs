//! The ACL rule language (ACL SETUSER arguments, ACL file lines, and the
//! database's stored set, which uses the file's form).
//!
//! Checked: any rules give a user or a clear error, never a panic; a user
//! written back as its `user <name> <rules>` line and read again may run
//! and touch exactly what it could (its line may be shorter: `~a %RW~*`
//! reads back as `~*`, as in Redis), and that line is then a fixed point,
//! so ACL SAVE/LOAD and the replicated set lose nothing; damaged lines are
//! refused or read as a user whose line reads back to itself.

use keel::security::acl::file;
use keel::security::acl::parse::set_user;
use keel::security::acl::user::User;
use proptest::prelude::*;

use crate::{config, mutate, mutations};

/// Rules as clients write them: valid ones most of the time, with names
/// and patterns drawn from a small alphabet so that they combine.
fn rule() -> impl Strategy<Value = Vec<u8>> {
    let word = "[a-z]{1,6}";
    let pattern = "[a-z:*?\\[\\]]{1,6}";
    prop_oneof![
        Just(b"on".to_vec()),
        Just(b"off".to_vec()),
        Just(b"nopass".to_vec()),
        Just(b"resetpass".to_vec()),
        Just(b"reset".to_vec()),
        Just(b"allkeys".to_vec()),
        Just(b"resetkeys".to_vec()),
        Just(b"allchannels".to_vec()),
        Just(b"resetchannels".to_vec()),
        Just(b"allcommands".to_vec()),
        Just(b"nocommands".to_vec()),
        Just(b"clearselectors".to_vec()),
        word.prop_map(|w| format!(">{w}").into_bytes()),
        word.prop_map(|w| format!("<{w}").into_bytes()),
        pattern.prop_map(|p| format!("~{p}").into_bytes()),
        pattern.prop_map(|p| format!("%R~{p}").into_bytes()),
        pattern.prop_map(|p| format!("%W~{p}").into_bytes()),
        pattern.prop_map(|p| format!("%RW~{p}").into_bytes()),
        pattern.prop_map(|p| format!("&{p}").into_bytes()),
        prop::sample::select(vec![
            "get", "set", "hset", "client", "config", "del", "ping"
        ])
        .prop_map(|c| format!("+{c}").into_bytes()),
        prop::sample::select(vec!["get", "set", "flushall", "keys"])
            .prop_map(|c| format!("-{c}").into_bytes()),
        prop::sample::select(vec![
            "read",
            "write",
            "all",
            "dangerous",
            "keyspace",
            "admin"
        ])
        .prop_map(|c| format!("+@{c}").into_bytes()),
        prop::sample::select(vec!["read", "write", "all", "dangerous", "slow"])
            .prop_map(|c| format!("-@{c}").into_bytes()),
        Just(b"+client|list".to_vec()),
        Just(b"-config|set".to_vec()),
        Just(b"+select|0".to_vec()),
        (
            pattern,
            prop::sample::select(vec!["+get", "+@write", "-@all", "+set"])
        )
            .prop_map(|(p, c)| format!("(~{p} {c})").into_bytes()),
        // Anything at all, now and then.
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn line_of(u: &User) -> Vec<u8> {
    u.line()
}

/// Requests a user's permissions are probed with: commands of several
/// categories, subcommands, keys inside and outside the generated patterns,
/// channels.
const PROBES: &[&[&str]] = &[
    &["get", "k"],
    &["get", "a:b"],
    &["get", "["],
    &["set", "w:1", "x"],
    &["set", "zz", "x"],
    &["hset", "h", "f", "v"],
    &["del", "a", "b"],
    &["keys", "*"],
    &["flushall"],
    &["client", "list"],
    &["config", "set", "maxmemory", "0"],
    &["select", "0"],
    &["ping"],
    &["publish", "ch", "m"],
    &["publish", "a:b", "m"],
    &["subscribe", "ab"],
    &["copy", "a", "b"],
];

/// What `u` may do with each probe.
fn permissions(u: &User) -> Vec<bool> {
    PROBES
        .iter()
        .map(|p| {
            let argv: Vec<&[u8]> = p.iter().map(|a| a.as_bytes()).collect();
            keel::exec::command::lookup(argv[0]).is_some_and(|spec| u.check(spec, &argv).is_ok())
        })
        .collect()
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz/acl.txt"))]

    /// Rules give a user or an error; a user's line reads back to itself.
    #[test]
    fn rules_make_a_user_whose_line_reads_back(rules in prop::collection::vec(rule(), 0..10)) {
        let args: Vec<&[u8]> = rules.iter().map(|r| r.as_slice()).collect();
        let Ok(user) = set_user(User::new("fuzz"), &args) else {
            return Ok(());
        };
        let line = line_of(&user);
        let again = file::parse(&line, "fuzz").map_err(|e| {
            TestCaseError::fail(format!("{} does not read back: {e}", String::from_utf8_lossy(&line)))
        })?;
        prop_assert_eq!(again.len(), 1);
        prop_assert_eq!(permissions(&again[0]), permissions(&user));
        prop_assert_eq!(again[0].enabled, user.enabled);
        // Read back once more: a fixed point.
        let second = line_of(&again[0]);
        let third = file::parse(&second, "fuzz").map_err(TestCaseError::fail)?;
        prop_assert_eq!(line_of(&third[0]), second);
    }

    /// Applying rules one call at a time or all at once gives the same user
    /// (ACL SETUSER is cumulative), unless one of them is refused.
    #[test]
    fn rules_apply_the_same_in_pieces(rules in prop::collection::vec(rule(), 1..8), cut in any::<prop::sample::Index>()) {
        let args: Vec<&[u8]> = rules.iter().map(|r| r.as_slice()).collect();
        let at = cut.index(args.len() + 1);
        let whole = set_user(User::new("u"), &args);
        let pieces = set_user(User::new("u"), &args[..at])
            .and_then(|u| set_user(u, &args[at..]));
        if let (Ok(a), Ok(b)) = (&whole, &pieces) {
            prop_assert_eq!(line_of(a), line_of(b));
        }
        prop_assert_eq!(whole.is_ok(), pieces.is_ok());
    }

    /// Damaged file lines: refused, or a user whose line reads back.
    #[test]
    fn damaged_lines_are_refused_or_consistent(rules in prop::collection::vec(rule(), 0..6), damage in mutations(4)) {
        let args: Vec<&[u8]> = rules.iter().map(|r| r.as_slice()).collect();
        let Ok(user) = set_user(User::new("v"), &args) else {
            return Ok(());
        };
        let mut line = line_of(&user);
        mutate(&mut line, &damage);
        if let Ok(users) = file::parse(&line, "fuzz") {
            for u in users {
                let l = line_of(&u);
                let back = file::parse(&l, "fuzz").map_err(TestCaseError::fail)?;
                prop_assert_eq!(permissions(&back[0]), permissions(&u));
            }
        }
    }
}
