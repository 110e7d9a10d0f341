//! An ACL user: flags, password hashes, and selectors (what it may run,
//! on which keys and channels). Rules change them ([`super::parse`]);
//! checks read them ([`super::check`]); this file holds the data and how
//! it is described back (ACL LIST, GETUSER, the ACL file).

use sha2::{Digest, Sha256};

use super::ids::{ids, words};

/// Key permission bits of a pattern.
pub const READ: u8 = 1;
pub const WRITE: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern {
    /// `READ`, `WRITE` or both (`~pattern`).
    pub flags: u8,
    pub pattern: Vec<u8>,
}

impl KeyPattern {
    /// `~p`, `%R~p` or `%W~p`. A read-write pattern `*` (made by `%RW~*`)
    /// is written `%RW~*`: as `~*` it would read back as the `allkeys`
    /// flag, which refuses any pattern after it, and a saved file (or the
    /// database's stored set) would no longer load. (Redis writes `~*`
    /// there and its own ACL LOAD then refuses the file.)
    pub fn describe(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.flags {
            f if f == READ | WRITE && self.pattern == b"*" => b"%RW~".as_slice(),
            f if f == READ | WRITE => b"~",
            READ => b"%R~",
            _ => b"%W~",
        });
        out.extend_from_slice(&self.pattern);
    }
}

/// One set of permissions. A user's root selector is always there; the
/// others (`(...)` rules) each grant on their own: a command runs when
/// any selector allows all of it.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Allowed command and subcommand ids (see [`super::ids`]).
    pub bits: Vec<u64>,
    /// Every command, with nothing taken away since `+@all`: the check
    /// skips the bitmap.
    pub all_commands: bool,
    /// The rules started from `+@all` (rather than `-@all`): the
    /// description starts with it.
    pub from_all: bool,
    /// The command rules as given since the last `+@all`/`-@all`, each
    /// command named once (Redis 7.2 keeps them this way).
    pub rules: String,
    /// `+select|0`: first arguments allowed for a command whose bit is
    /// clear, by command id.
    pub first_args: Vec<(usize, Vec<String>)>,
    pub all_keys: bool,
    pub keys: Vec<KeyPattern>,
    pub all_channels: bool,
    pub channels: Vec<Vec<u8>>,
}

impl Selector {
    /// A selector that allows nothing (`-@all resetkeys resetchannels`).
    pub fn empty() -> Selector {
        Selector {
            bits: vec![0; words()],
            all_commands: false,
            from_all: false,
            rules: String::new(),
            first_args: Vec::new(),
            all_keys: false,
            keys: Vec::new(),
            all_channels: false,
            channels: Vec::new(),
        }
    }

    pub fn allows_id(&self, id: usize) -> bool {
        self.bits
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    pub fn set_id(&mut self, id: usize, on: bool) {
        if let Some(w) = self.bits.get_mut(id / 64) {
            if on {
                *w |= 1 << (id % 64);
            } else {
                *w &= !(1 << (id % 64));
                self.all_commands = false;
            }
        }
    }

    /// A command and, for a container, every subcommand.
    pub fn set_command(&mut self, id: usize, on: bool) {
        self.set_id(id, on);
        self.first_args.retain(|(i, _)| *i != id);
        for &sub in &ids().entries[id].subs {
            self.set_id(sub, on);
        }
    }

    /// The command rules, as ACL GETUSER shows them: `+@all` or `-@all`,
    /// then the rules kept.
    pub fn describe_commands(&self) -> String {
        let mut s = String::from(if self.from_all { "+@all" } else { "-@all" });
        if !self.rules.is_empty() {
            s.push(' ');
            s.push_str(&self.rules);
        }
        s
    }

    /// The key patterns, space separated (`~*` for every key).
    pub fn describe_keys(&self) -> Vec<u8> {
        if self.all_keys {
            return b"~*".to_vec();
        }
        let mut out = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            k.describe(&mut out);
        }
        out
    }

    /// The channel patterns, space separated (`&*` for every channel).
    pub fn describe_channels(&self) -> Vec<u8> {
        if self.all_channels {
            return b"&*".to_vec();
        }
        let mut out = Vec::new();
        for (i, c) in self.channels.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            out.push(b'&');
            out.extend_from_slice(c);
        }
        out
    }

    /// Keys, channels and command rules, as ACL LIST and the ACL file
    /// spell a selector.
    pub fn describe(&self, out: &mut Vec<u8>) {
        if self.all_keys {
            out.extend_from_slice(b"~* ");
        } else {
            for k in &self.keys {
                k.describe(out);
                out.push(b' ');
            }
        }
        if self.all_channels {
            out.extend_from_slice(b"&* ");
        } else {
            out.extend_from_slice(b"resetchannels ");
            for c in &self.channels {
                out.push(b'&');
                out.extend_from_slice(c);
                out.push(b' ');
            }
        }
        out.extend_from_slice(self.describe_commands().as_bytes());
    }

    /// Allows everything: the default user's selector.
    pub fn everything() -> Selector {
        let mut s = Selector::empty();
        s.bits.iter_mut().for_each(|w| *w = u64::MAX);
        s.all_commands = true;
        s.from_all = true;
        s.all_keys = true;
        s.all_channels = true;
        s
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// `sanitize-payload` (Some(true)) or `skip-sanitize-payload`
    /// (Some(false)); keel always checks RESTORE payloads, the flag is
    /// kept for ACL LIST.
    pub sanitize: Option<bool>,
    /// Hex SHA-256 of each password, in the order added.
    pub passwords: Vec<String>,
    pub root: Selector,
    pub selectors: Vec<Selector>,
    /// Everything allowed on every key and channel: checks cost one test.
    /// Kept up to date by [`User::settle`].
    pub unrestricted: bool,
}

/// The hex SHA-256 of a password, as users keep it.
pub fn hash_password(pass: &[u8]) -> String {
    let digest = Sha256::digest(pass);
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        hex.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        hex.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
    }
    hex
}

/// Compares without stopping at the first difference, so the time taken
/// says nothing about how much of a hash matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

impl User {
    /// A new user as ACL SETUSER creates it: off, no password, nothing
    /// allowed (and `sanitize-payload`, as Redis 7.2 shows new users).
    pub fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            sanitize: Some(true),
            passwords: Vec::new(),
            root: Selector::empty(),
            selectors: Vec::new(),
            unrestricted: false,
        }
    }

    /// The `default` user: on, no password, everything allowed.
    pub fn default_user() -> User {
        let mut u = User::new("default");
        u.enabled = true;
        u.nopass = true;
        u.root = Selector::everything();
        u.settle();
        u
    }

    /// Recomputes what is derived from the rules.
    pub fn settle(&mut self) {
        let r = &self.root;
        self.unrestricted = r.all_commands && r.all_keys && r.all_channels;
    }

    /// Whether `pass` logs this user in.
    pub fn password_ok(&self, pass: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let hashed = hash_password(pass);
        self.passwords
            .iter()
            .fold(false, |ok, p| same(p.as_bytes(), hashed.as_bytes()) | ok)
    }

    /// The flags as GETUSER lists them.
    pub fn flags(&self) -> Vec<&'static str> {
        let mut f = vec![if self.enabled { "on" } else { "off" }];
        if self.nopass {
            f.push("nopass");
        }
        match self.sanitize {
            Some(false) => f.push("skip-sanitize-payload"),
            Some(true) => f.push("sanitize-payload"),
            None => {}
        }
        f
    }

    /// The rules that rebuild this user, as ACL LIST and the ACL file
    /// write them (without the leading `user <name>`).
    pub fn describe(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in self.flags() {
            out.extend_from_slice(f.as_bytes());
            out.push(b' ');
        }
        for p in &self.passwords {
            out.push(b'#');
            out.extend_from_slice(p.as_bytes());
            out.push(b' ');
        }
        self.root.describe(&mut out);
        for s in &self.selectors {
            out.extend_from_slice(b" (");
            s.describe(&mut out);
            out.push(b')');
        }
        out
    }

    /// `user <name> <rules>`: one line of ACL LIST and of the ACL file.
    pub fn line(&self) -> Vec<u8> {
        let mut out = b"user ".to_vec();
        out.extend_from_slice(self.name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(&self.describe());
        out
    }

    /// Every selector, the root first.
    pub fn all_selectors(&self) -> impl Iterator<Item = &Selector> {
        std::iter::once(&self.root).chain(self.selectors.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_sha256_hex() {
        assert_eq!(
            hash_password(b"foo"),
            "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
        );
        let mut u = User::new("u");
        u.passwords.push(hash_password(b"pw"));
        assert!(!u.password_ok(b"pw"), "a user that is off never logs in");
        u.enabled = true;
        assert!(u.password_ok(b"pw"));
        assert!(!u.password_ok(b"pW"));
        u.nopass = true;
        assert!(u.password_ok(b"anything"));
    }

    #[test]
    fn the_default_user_is_unrestricted() {
        let d = User::default_user();
        assert!(d.unrestricted);
        assert_eq!(
            String::from_utf8(d.line()).unwrap(),
            "user default on nopass sanitize-payload ~* &* +@all"
        );
    }
}
