//! The ACL file (`aclfile`): one `user <name> <rules...>` line per user,
//! as ACL LIST prints them. ACL LOAD reads it whole and applies it only if
//! every line is valid; ACL SAVE writes a temporary file, syncs it and
//! renames it over the old one.

use std::io::Write;
use std::path::Path;

use super::parse::{apply, has_spaces, merge_selectors};
use super::user::User;

/// Every user the file defines, or the errors found (Redis's wording).
pub fn load(path: &Path) -> Result<Vec<User>, String> {
    let name = path.display().to_string();
    let text = std::fs::read(path)
        .map_err(|e| format!("Error loading ACLs, opening file '{name}': {e}"))?;
    parse(&text, &name)
}

/// Every user `text` defines (`user <name> <rules>` lines), or the errors
/// found, each prefixed with `name` and the line number: the ACL file's
/// format, also the form the database-wide set is kept in (`shared`).
pub fn parse(text: &[u8], name: &str) -> Result<Vec<User>, String> {
    let mut users: Vec<User> = Vec::new();
    let mut errors = String::new();
    for (i, line) in text.split(|&c| c == b'\n').enumerate() {
        let n = i + 1;
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let words: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
        if words[0] != b"user" || words.len() < 2 {
            errors.push_str(&format!(
                "{name}:{n} should start with user keyword followed by the username. "
            ));
            continue;
        }
        let uname = String::from_utf8_lossy(words[1]).into_owned();
        if has_spaces(words[1]) {
            errors.push_str(&format!(
                "'{name}:{n}: username '{uname}' contains invalid characters. "
            ));
            continue;
        }
        if users.iter().any(|u| u.name == uname) {
            errors.push_str(&format!(
                "WARNING: Duplicate user '{uname}' found on line {n}. "
            ));
            continue;
        }
        let Ok(rules) = merge_selectors(&words[2..]) else {
            errors.push_str(&format!(
                "{name}:{n}: Unmatched parenthesis in selector definition."
            ));
            continue;
        };
        let mut user = User::new(&uname);
        for rule in &rules {
            if let Err(e) = apply(&mut user, rule.trim_ascii()) {
                errors.push_str(&format!(
                    "{name}:{n}: Error in applying operation '{}': {e}. ",
                    String::from_utf8_lossy(rule)
                ));
                break;
            }
        }
        user.settle();
        users.push(user);
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        errors.push_str(
            "WARNING: ACL errors detected, no change to the previously active ACL rules was performed",
        );
        Err(errors)
    }
}

/// Writes every user to `path`, replacing it only once the new text is
/// durable.
pub fn save<'a>(path: &Path, users: impl Iterator<Item = &'a User>) -> std::io::Result<()> {
    let mut text = Vec::new();
    for u in users {
        text.extend_from_slice(&u.line());
        text.push(b'\n');
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::parse::set_user;

    #[test]
    fn saved_users_load_back_the_same() {
        let dir = std::env::temp_dir().join(format!("keel-aclfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.acl");
        let args: Vec<&[u8]> = vec![
            b"on", b">pw", b"~k*", b"%R~r*", b"&c", b"+@read", b"-get", b"(+set", b"~w*)",
        ];
        let u = set_user(User::new("alice"), &args).unwrap();
        let users = [User::default_user(), u];
        save(&path, users.iter()).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in users.iter().zip(&back) {
            assert_eq!(a.line(), b.line());
        }
        assert!(back[1].password_ok(b"pw"));
        std::fs::write(&path, "user bob on +nosuch\nnot a user line\n").unwrap();
        let e = load(&path).unwrap_err();
        assert!(
            e.contains(":1: Error in applying operation '+nosuch'"),
            "{e}"
        );
        assert!(e.contains(":2 should start with user keyword"), "{e}");
        assert!(e.ends_with("no change to the previously active ACL rules was performed"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
