//! Whether a user may run a request: the command (or subcommand), its
//! keys against the key patterns (with read/write permissions), and its
//! channels against the channel patterns.
//!
//! A request passes when any one selector allows all of it. When none
//! does, the reason reported is Redis's: a command no selector allows,
//! else the key or channel found last among the selectors' refusals.
//!
//! Cost: an unrestricted user never gets here (see [`super::gate`]); a
//! restricted one pays a bitmap test, plus the key positions and pattern
//! matches only when a selector restricts keys.

use keel_shards::glob;

use super::ids::ids;
use super::user::{Selector, User, READ, WRITE};
use crate::exec::command::Spec;
use crate::server::commands::command_info::acl_keys;

/// Why a request is refused; the index is the argument at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    Command,
    Key(usize),
    Channel(usize),
}

impl Denied {
    /// Redis's order of reasons: a later one is the more relevant.
    fn rank(self) -> (u8, usize) {
        match self {
            Denied::Command => (1, 0),
            Denied::Key(i) => (2, i),
            Denied::Channel(i) => (4, i),
        }
    }

    /// The argument that caused the refusal (0: the command).
    pub fn position(self) -> usize {
        match self {
            Denied::Command => 0,
            Denied::Key(i) | Denied::Channel(i) => i,
        }
    }
}

/// The channels a command names: their positions and whether they are
/// patterns (PSUBSCRIBE). UNSUBSCRIBE and friends need no permission.
fn channels(spec: &Spec, argc: usize) -> (std::ops::Range<usize>, bool) {
    match spec.name {
        "publish" | "spublish" => (1..2.min(argc), false),
        "subscribe" | "ssubscribe" => (1..argc, false),
        "psubscribe" => (1..argc, true),
        _ => (0..0, false),
    }
}

/// Whether a channel (or, for a pattern subscription, the pattern itself,
/// compared literally) is among the selector's channel patterns.
pub fn channel_allowed(sel: &Selector, channel: &[u8], is_pattern: bool) -> bool {
    sel.all_channels
        || sel.channels.iter().any(|p| {
            if is_pattern {
                p == channel
            } else {
                glob::matches(p, channel)
            }
        })
}

fn key_allowed(sel: &Selector, key: &[u8], read: bool, write: bool) -> bool {
    if sel.all_keys {
        return true;
    }
    let need = if read { READ } else { 0 } | if write { WRITE } else { 0 };
    sel.keys
        .iter()
        .any(|k| k.flags & need == need && glob::matches(&k.pattern, key))
}

/// Commands that only look at whether a key exists, its type, length or
/// expiry, or a member's presence: Redis's key specs do not mark them as
/// reading the value, so a read or a write pattern (any pattern) allows
/// them.
const NOT_ACCESS: &[&str] = &[
    "exists",
    "touch",
    "type",
    "ttl",
    "pttl",
    "expiretime",
    "pexpiretime",
    "memory",
    "strlen",
    "hlen",
    "llen",
    "scard",
    "zcard",
    "xlen",
    "hexists",
    "hstrlen",
    "sismember",
    "smismember",
];

/// The keys of a request and whether each is read and written. As
/// COMMAND GETKEYSANDFLAGS says, except where the arguments decide: SET
/// with GET also reads; BITFIELD with only GET reads, and else reads and
/// writes; and [`NOT_ACCESS`].
fn key_permissions(spec: &'static Spec, argv: &[&[u8]]) -> Vec<(usize, bool, bool)> {
    let first = spec.first_key as usize;
    let mut keys = match ids().entries[crate::exec::command::index_of(spec)].single_key {
        Some((read, write)) if argv.len() > first => vec![(first, read, write)],
        Some(_) => Vec::new(),
        None => acl_keys(spec, argv),
    };
    let has = |word: &str, from: usize| {
        argv.iter()
            .skip(from)
            .any(|a| a.eq_ignore_ascii_case(word.as_bytes()))
    };
    match spec.name {
        "set" if has("get", 3) => keys.iter_mut().for_each(|k| k.1 = true),
        "bitfield" => {
            let writes = has("set", 2) || has("incrby", 2);
            keys.iter_mut().for_each(|k| *k = (k.0, true, writes));
        }
        name if NOT_ACCESS.contains(&name) => keys.iter_mut().for_each(|k| k.1 = false),
        _ => {}
    }
    keys
}

/// The request's keys with their permissions, found once for every
/// selector that needs them.
type Keys = Option<Vec<(usize, bool, bool)>>;

fn check_selector(
    sel: &Selector,
    id: usize,
    spec: &'static Spec,
    argv: &[&[u8]],
    keys: &mut Keys,
) -> Result<(), Denied> {
    let entry = &ids().entries[id];
    if !sel.all_commands && !entry.no_auth && !sel.allows_id(id) {
        // The command is refused unless its first argument is allowed.
        let first_ok = argv.len() >= 2
            && sel.first_args.iter().any(|(i, args)| {
                *i == id
                    && args
                        .iter()
                        .any(|a| a.as_bytes().eq_ignore_ascii_case(argv[1]))
            });
        if !first_ok {
            return Err(Denied::Command);
        }
    }
    if !sel.all_keys {
        let keys = keys.get_or_insert_with(|| key_permissions(spec, argv));
        for &(pos, read, write) in keys.iter() {
            if !key_allowed(sel, argv[pos], read, write) {
                return Err(Denied::Key(pos));
            }
        }
    }
    if !sel.all_channels {
        let (range, is_pattern) = channels(spec, argv.len());
        for pos in range {
            if !channel_allowed(sel, argv[pos], is_pattern) {
                return Err(Denied::Channel(pos));
            }
        }
    }
    Ok(())
}

impl User {
    /// Whether this user may run `argv` (`spec` is its command).
    pub fn check(&self, spec: &'static Spec, argv: &[&[u8]]) -> Result<(), Denied> {
        if self.unrestricted {
            return Ok(());
        }
        let id = ids().of_request(spec, argv);
        let mut keys: Keys = None;
        let mut worst = Denied::Command;
        for sel in self.all_selectors() {
            match check_selector(sel, id, spec, argv, &mut keys) {
                Ok(()) => return Ok(()),
                Err(d) if d.rank() > worst.rank() => worst = d,
                Err(_) => {}
            }
        }
        Err(worst)
    }

    /// Whether some selector reads every key (`~*`, `%R~*`, allkeys):
    /// SORT's BY and GET patterns may read any key.
    pub fn reads_every_key(&self) -> bool {
        self.all_selectors().any(|s| {
            s.all_keys
                || s.keys
                    .iter()
                    .any(|k| k.flags & READ != 0 && k.pattern == b"*")
        })
    }
}

/// The full name of what a request runs (`get`, `config|get`), for
/// messages and the ACL log.
pub fn command_name(spec: &'static Spec, argv: &[&[u8]]) -> String {
    ids().entries[ids().of_request(spec, argv)].name.clone()
}

/// The text after `-NOPERM ` for a refusal, as Redis 7.2 words it.
pub fn message(d: Denied, user: &str, spec: &'static Spec, argv: &[&[u8]]) -> String {
    match d {
        Denied::Command => format!(
            "User {user} has no permissions to run the '{}' command",
            command_name(spec, argv)
        ),
        Denied::Key(_) => "No permissions to access a key".into(),
        Denied::Channel(_) => "No permissions to access a channel".into(),
    }
}

/// ACL DRYRUN's wording, which names the key or channel.
pub fn verbose_message(d: Denied, user: &str, spec: &'static Spec, argv: &[&[u8]]) -> String {
    let arg = |i: usize| String::from_utf8_lossy(argv[i]).into_owned();
    match d {
        Denied::Command => message(d, user, spec, argv),
        Denied::Key(i) => format!(
            "User {user} has no permissions to access the '{}' key",
            arg(i)
        ),
        Denied::Channel(i) => format!(
            "User {user} has no permissions to access the '{}' channel",
            arg(i)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::command::lookup;
    use crate::security::acl::parse::set_user;

    fn user(rules: &str) -> User {
        let args: Vec<&[u8]> = rules.split(' ').map(str::as_bytes).collect();
        set_user(User::new("u"), &args).unwrap()
    }

    fn check(u: &User, req: &str) -> Result<(), Denied> {
        let argv: Vec<&[u8]> = req.split(' ').map(str::as_bytes).collect();
        u.check(lookup(argv[0]).unwrap(), &argv)
    }

    #[test]
    fn commands_and_categories() {
        let u = user("on nopass +@read allkeys");
        assert_eq!(check(&u, "get k"), Ok(()));
        assert_eq!(check(&u, "set k v"), Err(Denied::Command));
        // AUTH and friends are always allowed.
        assert_eq!(check(&u, "auth a b"), Ok(()));
        let u = user("+select|0");
        assert_eq!(check(&u, "select 0"), Ok(()));
        assert_eq!(check(&u, "select 1"), Err(Denied::Command));
    }

    #[test]
    fn subcommands() {
        let u = user("+config|get");
        assert_eq!(check(&u, "config get maxmemory"), Ok(()));
        assert_eq!(check(&u, "config set maxmemory 1"), Err(Denied::Command));
        let d = check(&u, "config set maxmemory 1").unwrap_err();
        let spec = lookup(b"config").unwrap();
        let argv: Vec<&[u8]> = vec![b"config", b"set", b"maxmemory", b"1"];
        assert_eq!(
            message(d, "u", spec, &argv),
            "User u has no permissions to run the 'config|set' command"
        );
    }

    #[test]
    fn key_patterns_with_read_and_write() {
        let u = user("+@all ~app:* %R~ro:* %W~wo:*");
        assert_eq!(check(&u, "get app:1"), Ok(()));
        assert_eq!(check(&u, "get other"), Err(Denied::Key(1)));
        assert_eq!(check(&u, "get ro:1"), Ok(()));
        assert_eq!(check(&u, "set ro:1 v"), Err(Denied::Key(1)));
        assert_eq!(check(&u, "set wo:1 v"), Ok(()));
        assert_eq!(check(&u, "get wo:1"), Err(Denied::Key(1)));
        // SET ... GET also reads; BITFIELD GET only reads.
        assert_eq!(check(&u, "set wo:1 v get"), Err(Denied::Key(1)));
        assert_eq!(check(&u, "set wo:1 get"), Ok(()));
        assert_eq!(check(&u, "bitfield ro:1 get u4 0"), Ok(()));
        assert_eq!(
            check(&u, "bitfield ro:1 get u4 0 set u4 0 1"),
            Err(Denied::Key(1))
        );
        assert_eq!(check(&u, "bitfield wo:1 set u4 0 1"), Err(Denied::Key(1)));
        // INCR reads and writes: needs both.
        assert_eq!(check(&u, "incr wo:1"), Err(Denied::Key(1)));
        // The failing key is the one named.
        assert_eq!(check(&u, "mset app:1 v other v"), Err(Denied::Key(3)));
        // Source read, destination written.
        assert_eq!(check(&u, "copy ro:1 wo:1"), Ok(()));
        assert_eq!(check(&u, "copy wo:1 ro:1"), Err(Denied::Key(1)));
    }

    #[test]
    fn channels_match_patterns_but_subscribed_patterns_literally() {
        let u = user("+@all allkeys resetchannels &news.* &exact");
        assert_eq!(check(&u, "publish news.a m"), Ok(()));
        assert_eq!(check(&u, "publish other m"), Err(Denied::Channel(1)));
        assert_eq!(check(&u, "subscribe news.x exact"), Ok(()));
        assert_eq!(check(&u, "psubscribe news.*"), Ok(()));
        assert_eq!(check(&u, "psubscribe news.a*"), Err(Denied::Channel(1)));
        assert_eq!(check(&u, "unsubscribe anything"), Ok(()));
    }

    #[test]
    fn one_key_commands_match_the_general_rule() {
        // The precomputed permissions of one-key commands are what the
        // general key finder says.
        for spec in crate::exec::command::COMMANDS {
            if ids().entries[crate::exec::command::index_of(spec)]
                .single_key
                .is_none()
            {
                continue;
            }
            let argv: Vec<&[u8]> = vec![b"k"; spec.first_key as usize + 3];
            let fast = key_permissions(spec, &argv);
            let mut slow = acl_keys(spec, &argv);
            if NOT_ACCESS.contains(&spec.name) {
                slow.iter_mut().for_each(|k| k.1 = false);
            }
            if spec.name == "bitfield" {
                slow.iter_mut().for_each(|k| *k = (k.0, true, false));
            }
            assert_eq!(fast, slow, "{}", spec.name);
        }
    }

    #[test]
    fn any_selector_may_allow() {
        let u = user("+get ~a* (+set ~b*)");
        assert_eq!(check(&u, "get a1"), Ok(()));
        assert_eq!(check(&u, "set b1 v"), Ok(()));
        // Neither selector allows SET on a1: the key is the reason.
        assert_eq!(check(&u, "set a1 v"), Err(Denied::Key(1)));
        assert_eq!(check(&u, "del a1"), Err(Denied::Command));
        assert!(!u.reads_every_key());
        assert!(user("%R~*").reads_every_key());
    }
}
