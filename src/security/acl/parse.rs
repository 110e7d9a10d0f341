//! ACL rules: how `ACL SETUSER` arguments (and ACL file lines) change a
//! user, with Redis 7's rule language and error texts.
//!
//! A user's rules apply in order; SETUSER stages them on a copy and
//! applies all or none. Command rules are kept in the order given, each
//! command named once (a later `+get` replaces an earlier `-get`), as
//! Redis 7.2 keeps them: that text is what GETUSER and ACL LIST show.

use super::ids::{self, ids};
use super::user::{hash_password, KeyPattern, Selector, User, READ, WRITE};

/// Why a rule was refused (Redis's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("Unknown command or category name in ACL")]
    Unknown,
    #[error("Syntax error")]
    Syntax,
    #[error("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns")]
    AfterAllKeys,
    #[error("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels")]
    AfterAllChannels,
    #[error("The password you are trying to remove from the user does not exist")]
    NoSuchPassword,
    #[error("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")]
    BadHash,
    #[error("Allowing first-arg of a subcommand is not supported")]
    SubcommandFirstArg,
}

fn is(op: &[u8], word: &str) -> bool {
    op.eq_ignore_ascii_case(word.as_bytes())
}

/// Spaces and NULs are not allowed in names and patterns.
pub fn has_spaces(s: &[u8]) -> bool {
    s.iter().any(|c| c.is_ascii_whitespace() || *c == 0)
}

fn valid_hash(h: &[u8]) -> bool {
    h.len() == 64 && h.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Keeps `rule` (`get`, `@read`, `config|get`) as the selector's latest
/// word on it: an earlier rule on the same command (or on one of its
/// subcommands, when the whole command is named) goes.
fn note_rule(sel: &mut Selector, rule: &str, allow: bool) {
    let rule = rule.to_lowercase();
    let kept: Vec<&str> = sel
        .rules
        .split(' ')
        .filter(|r| !r.is_empty())
        .filter(|r| {
            let name = &r[1..];
            !(name == rule
                || (name.len() > rule.len()
                    && name.starts_with(rule.as_str())
                    && name.as_bytes()[rule.len()] == b'|'))
        })
        .collect();
    let mut rules = kept.join(" ");
    if !rules.is_empty() {
        rules.push(' ');
    }
    rules.push(if allow { '+' } else { '-' });
    rules.push_str(&rule);
    sel.rules = rules;
}

/// Allows or denies every command and subcommand of a category.
fn set_category(sel: &mut Selector, bit: u32, allow: bool) {
    for (id, e) in ids().entries.iter().enumerate() {
        if e.categories & bit != 0 {
            sel.set_command(id, allow);
        }
    }
}

/// Applies one selector rule: commands, keys, channels.
pub fn apply_selector(sel: &mut Selector, op: &[u8]) -> Result<(), RuleError> {
    if is(op, "allkeys") || op == b"~*" {
        sel.all_keys = true;
        sel.keys.clear();
    } else if is(op, "resetkeys") {
        sel.all_keys = false;
        sel.keys.clear();
    } else if is(op, "allchannels") || op == b"&*" {
        sel.all_channels = true;
        sel.channels.clear();
    } else if is(op, "resetchannels") {
        sel.all_channels = false;
        sel.channels.clear();
    } else if is(op, "allcommands") || is(op, "+@all") {
        sel.bits.iter_mut().for_each(|w| *w = u64::MAX);
        sel.all_commands = true;
        sel.from_all = true;
        sel.rules.clear();
        sel.first_args.clear();
    } else if is(op, "nocommands") || is(op, "-@all") {
        sel.bits.iter_mut().for_each(|w| *w = 0);
        sel.all_commands = false;
        sel.from_all = false;
        sel.rules.clear();
        sel.first_args.clear();
    } else if op[0] == b'~' || op[0] == b'%' {
        key_pattern(sel, op)?;
    } else if op[0] == b'&' {
        if sel.all_channels {
            return Err(RuleError::AfterAllChannels);
        }
        let pattern = &op[1..];
        if has_spaces(pattern) {
            return Err(RuleError::Syntax);
        }
        if !sel.channels.iter().any(|c| c == pattern) {
            sel.channels.push(pattern.to_vec());
        }
    } else if op.len() > 1 && (op[0] == b'+' || op[0] == b'-') && op[1] == b'@' {
        let allow = op[0] == b'+';
        let name = String::from_utf8_lossy(&op[2..]);
        let bit = ids::category(&name).ok_or(RuleError::Unknown)?;
        note_rule(sel, &format!("@{name}"), allow);
        set_category(sel, bit, allow);
    } else if op[0] == b'+' {
        allow_command(sel, &op[1..])?;
    } else if op[0] == b'-' {
        let id = ids().lookup(&op[1..]).ok_or(RuleError::Unknown)?;
        sel.set_command(id, false);
        let name = ids().entries[id].name.clone();
        note_rule(sel, &name, false);
    } else {
        return Err(RuleError::Syntax);
    }
    Ok(())
}

/// `+cmd`, `+container|sub`, or `+cmd|first-arg`.
fn allow_command(sel: &mut Selector, what: &[u8]) -> Result<(), RuleError> {
    let ids = ids();
    let Some(bar) = what.iter().rposition(|&c| c == b'|') else {
        let id = ids.lookup(what).ok_or(RuleError::Unknown)?;
        sel.set_command(id, true);
        let name = ids.entries[id].name.clone();
        note_rule(sel, &name, true);
        return Ok(());
    };
    let (cmd, sub) = (&what[..bar], &what[bar + 1..]);
    let id = ids.lookup(cmd).ok_or(RuleError::Unknown)?;
    if ids.entries[id].parent.is_some() {
        return Err(RuleError::SubcommandFirstArg);
    }
    if sub.is_empty() {
        return Err(RuleError::Syntax);
    }
    if !ids.entries[id].subs.is_empty() {
        let sub_id = ids.lookup(what).ok_or(RuleError::Unknown)?;
        sel.set_command(sub_id, true);
    } else {
        // A first argument of a command without subcommands (SELECT 0).
        let arg = String::from_utf8_lossy(sub).into_owned();
        match sel.first_args.iter_mut().find(|(i, _)| *i == id) {
            Some((_, args)) => {
                if !args.iter().any(|a| a.eq_ignore_ascii_case(&arg)) {
                    args.push(arg);
                }
            }
            None => sel.first_args.push((id, vec![arg])),
        }
    }
    note_rule(sel, &String::from_utf8_lossy(what), true);
    Ok(())
}

/// `~pattern`, `%R~pattern`, `%W~pattern`, `%RW~pattern`.
fn key_pattern(sel: &mut Selector, op: &[u8]) -> Result<(), RuleError> {
    if sel.all_keys {
        return Err(RuleError::AfterAllKeys);
    }
    let (flags, pattern) = if op[0] == b'%' {
        let tilde = op
            .iter()
            .position(|&c| c == b'~')
            .ok_or(RuleError::Syntax)?;
        let mut flags = 0;
        for &c in &op[1..tilde] {
            match c.to_ascii_uppercase() {
                b'R' if flags & READ == 0 => flags |= READ,
                b'W' if flags & WRITE == 0 => flags |= WRITE,
                _ => return Err(RuleError::Syntax),
            }
        }
        if flags == 0 {
            return Err(RuleError::Syntax);
        }
        (flags, &op[tilde + 1..])
    } else {
        (READ | WRITE, &op[1..])
    };
    if has_spaces(pattern) {
        return Err(RuleError::Syntax);
    }
    match sel.keys.iter_mut().find(|k| k.pattern == pattern) {
        Some(k) => k.flags |= flags,
        None => sel.keys.push(KeyPattern {
            flags,
            pattern: pattern.to_vec(),
        }),
    }
    Ok(())
}

/// Applies one user rule: flags, passwords, selectors, or a rule of the
/// root selector.
pub fn apply(user: &mut User, op: &[u8]) -> Result<(), RuleError> {
    if op.is_empty() {
        return Ok(());
    }
    if is(op, "on") {
        user.enabled = true;
    } else if is(op, "off") {
        user.enabled = false;
    } else if is(op, "skip-sanitize-payload") {
        user.sanitize = Some(false);
    } else if is(op, "sanitize-payload") {
        user.sanitize = Some(true);
    } else if is(op, "nopass") {
        user.nopass = true;
        user.passwords.clear();
    } else if is(op, "resetpass") {
        user.nopass = false;
        user.passwords.clear();
    } else if op[0] == b'>' || op[0] == b'#' {
        let hash = if op[0] == b'>' {
            hash_password(&op[1..])
        } else if valid_hash(&op[1..]) {
            String::from_utf8_lossy(&op[1..]).into_owned()
        } else {
            return Err(RuleError::BadHash);
        };
        if !user.passwords.contains(&hash) {
            user.passwords.push(hash);
        }
        user.nopass = false;
    } else if op[0] == b'<' || op[0] == b'!' {
        let hash = if op[0] == b'<' {
            hash_password(&op[1..])
        } else if valid_hash(&op[1..]) {
            String::from_utf8_lossy(&op[1..]).into_owned()
        } else {
            return Err(RuleError::BadHash);
        };
        let at = user
            .passwords
            .iter()
            .position(|p| *p == hash)
            .ok_or(RuleError::NoSuchPassword)?;
        user.passwords.remove(at);
    } else if op[0] == b'(' && op[op.len() - 1] == b')' && op.len() >= 2 {
        let mut sel = Selector::empty();
        for word in op[1..op.len() - 1]
            .split(|c| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
        {
            apply_selector(&mut sel, word)?;
        }
        user.selectors.push(sel);
    } else if is(op, "clearselectors") {
        user.selectors.clear();
    } else if is(op, "reset") {
        for rule in [
            "resetpass",
            "resetkeys",
            "resetchannels",
            "off",
            "sanitize-payload",
            "clearselectors",
            "-@all",
        ] {
            apply(user, rule.as_bytes())?;
        }
    } else {
        apply_selector(&mut user.root, op)?;
    }
    Ok(())
}

/// Joins the words of a selector spread over several arguments
/// (`(+get` `~k*)`) into one; `Err(i)`: the selector starting at argument
/// `i` is never closed.
pub fn merge_selectors(args: &[&[u8]]) -> Result<Vec<Vec<u8>>, usize> {
    let mut out = Vec::with_capacity(args.len());
    let mut open: Option<(usize, Vec<u8>)> = None;
    for (i, op) in args.iter().enumerate() {
        if let Some((_, sel)) = open.as_mut() {
            sel.push(b' ');
            sel.extend_from_slice(op);
            if op.last() == Some(&b')') {
                if let Some((_, sel)) = open.take() {
                    out.push(sel);
                }
            }
            continue;
        }
        if op.first() == Some(&b'(') && op.last() != Some(&b')') {
            open = Some((i, op.to_vec()));
            continue;
        }
        out.push(op.to_vec());
    }
    match open {
        Some((i, _)) => Err(i),
        None => Ok(out),
    }
}

/// `user` changed by `args` (all of them, or none: the error names the
/// first rule refused, as ACL SETUSER reports it).
pub fn set_user(mut user: User, args: &[&[u8]]) -> Result<User, String> {
    let merged = merge_selectors(args).map_err(|i| {
        format!(
            "Unmatched parenthesis in acl selector starting at '{}'.",
            String::from_utf8_lossy(args[i])
        )
    })?;
    for op in &merged {
        apply(&mut user, op).map_err(|e| {
            format!(
                "Error in ACL SETUSER modifier '{}': {e}",
                String::from_utf8_lossy(op)
            )
        })?;
    }
    user.settle();
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &str) -> User {
        let args: Vec<&[u8]> = rules.split(' ').map(str::as_bytes).collect();
        set_user(User::new("u"), &args).unwrap()
    }

    fn err(rules: &str) -> String {
        let args: Vec<&[u8]> = rules.split(' ').map(str::as_bytes).collect();
        set_user(User::new("u"), &args).unwrap_err()
    }

    #[test]
    fn rules_describe_back_as_given() {
        let u = user("on >pw ~foo* %R~r* %W~w* &ch* -@all +get +set (+del ~x*)");
        let hash = hash_password(b"pw");
        assert_eq!(
            String::from_utf8(u.line()).unwrap(),
            format!("user u on sanitize-payload #{hash} ~foo* %R~r* %W~w* resetchannels &ch* -@all +get +set (~x* resetchannels -@all +del)")
        );
        // A later rule on the same command replaces the earlier one; a
        // whole command replaces its subcommand rules.
        let u = user("+@all -get +config|get -config +get");
        assert_eq!(u.root.describe_commands(), "+@all -config +get");
        assert!(!u.unrestricted);
    }

    #[test]
    fn key_patterns_merge_their_permissions() {
        let u = user("%R~k* %W~k*");
        assert_eq!(u.root.describe_keys(), b"~k*");
        let u = user("allkeys");
        assert!(u.root.all_keys);
        assert!(err("allkeys ~x").contains("Try 'resetkeys'"));
        assert!(err("allchannels &x").contains("Try 'resetchannels'"));
        assert!(err("%X~k").contains("Syntax error"));
        assert!(err("%R").contains("Syntax error"));
    }

    #[test]
    fn errors_name_the_rule() {
        assert_eq!(
            err("+nosuchcommand"),
            "Error in ACL SETUSER modifier '+nosuchcommand': Unknown command or category name in ACL"
        );
        assert_eq!(
            err("+@nosuch"),
            "Error in ACL SETUSER modifier '+@nosuch': Unknown command or category name in ACL"
        );
        assert!(err("#abc").contains("exactly 64 characters"));
        assert!(err("<nope").contains("does not exist"));
        assert!(err("+config|get|x").contains("first-arg of a subcommand"));
        assert!(err("+select|").contains("Syntax error"));
        assert!(err("bogus").contains("Syntax error"));
        assert_eq!(
            err("(+get ~x"),
            "Unmatched parenthesis in acl selector starting at '(+get'."
        );
    }

    #[test]
    fn passwords_and_flags() {
        let u = user(">a >b <a nopass");
        assert!(u.nopass && u.passwords.is_empty());
        let u = user(">a >b <a");
        assert_eq!(u.passwords, vec![hash_password(b"b")]);
        let h = hash_password(b"z");
        let u = user(&format!("#{h} on"));
        assert!(u.password_ok(b"z"));
        let u = user("on allkeys allchannels +@all reset");
        assert_eq!(u.flags(), vec!["off", "sanitize-payload"]);
        assert!(!u.root.all_keys && !u.root.allows_id(ids().lookup(b"get").unwrap()));
    }

    #[test]
    fn categories_and_subcommands_set_bits() {
        let ids = ids();
        let u = user("+@read");
        assert!(u.root.allows_id(ids.lookup(b"get").unwrap()));
        assert!(!u.root.allows_id(ids.lookup(b"set").unwrap()));
        let u = user("+config|get");
        assert!(u.root.allows_id(ids.lookup(b"config|get").unwrap()));
        assert!(!u.root.allows_id(ids.lookup(b"config|set").unwrap()));
        let u = user("+config");
        assert!(u.root.allows_id(ids.lookup(b"config|set").unwrap()));
        let u = user("+select|0");
        assert_eq!(u.root.first_args.len(), 1);
    }

    #[test]
    fn selectors_are_merged_from_several_arguments() {
        let args: Vec<&[u8]> = vec![b"on", b"(+get", b"~a*)", b"(+set", b"~b*)"];
        let merged = merge_selectors(&args).unwrap();
        assert_eq!(merged[1], b"(+get ~a*)");
        let u = set_user(User::new("u"), &args).unwrap();
        assert_eq!(u.selectors.len(), 2);
        let u = set_user(u, &[b"clearselectors"]).unwrap();
        assert!(u.selectors.is_empty());
    }
}
