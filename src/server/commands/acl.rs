//! ACL and its subcommands (SETUSER GETUSER DELUSER LIST USERS WHOAMI CAT
//! GENPASS LOG DRYRUN SAVE LOAD HELP), over the user table of `crate::security::acl`.

use std::io::Read;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::cmd::numbers::parse_i64;
use crate::exec::command;
use crate::resp::reply::Reply;
use crate::security::acl::check::verbose_message;
use crate::security::acl::gate::disconnect_users;
use crate::security::acl::ids::{self, ids};
use crate::security::acl::parse::{has_spaces, set_user};
use crate::security::acl::user::{Selector, User};
use crate::server::conn::Conn;
use crate::server::state::now_ms;

/// Each subcommand's arity, as COMMAND INFO reports it.
const ARITY: &[(&str, i32)] = &[
    ("cat", -2),
    ("deluser", -3),
    ("dryrun", -4),
    ("genpass", -2),
    ("getuser", 3),
    ("help", 2),
    ("list", 2),
    ("load", 2),
    ("log", -2),
    ("save", 2),
    ("setuser", -3),
    ("users", 2),
    ("whoami", 2),
];

const HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Print this help.",
];

const NO_FILE: &str = "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

pub async fn acl(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    let Some(&(_, arity)) = ARITY.iter().find(|(n, _)| *n == sub) else {
        return Err(CmdError::UnknownSubcommand {
            cmd: "ACL".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        });
    };
    let argc = a.len() as i32;
    if (arity > 0 && argc != arity) || (arity < 0 && argc < -arity) {
        return Err(CmdError::Arity(format!("acl|{sub}")));
    }
    let acl = conn.state.acl.clone();
    if matches!(sub.as_str(), "setuser" | "deluser" | "load") {
        // The set is the database's: changed on the primary only.
        crate::security::acl::shared::refuse_on_backup(conn)?;
    }
    let r = match (sub.as_str(), a.len()) {
        ("setuser", _) => setuser(conn, a).await,
        ("deluser", _) => {
            if a[2..].iter().any(|n| *n == b"default") {
                return Err(CmdError::other("The 'default' user cannot be removed"));
            }
            let names: Vec<String> = a[2..]
                .iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            let existing: Vec<String> = names
                .iter()
                .filter(|n| acl.store.get(n).is_some())
                .cloned()
                .collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let n = acl.store.del_user(&refs);
            // Their connections close (this one after its reply).
            disconnect_users(&conn.router, existing).await?;
            Ok(Reply::Int(n as i64))
        }
        ("getuser", _) => {
            let name = String::from_utf8_lossy(a[2]);
            Ok(acl.store.get(&name).map_or(Reply::Nil, |u| getuser(&u)))
        }
        ("list", _) => Ok(Reply::Array(
            acl.store
                .snapshot()
                .values()
                .map(|u| Reply::Bulk(u.line()))
                .collect(),
        )),
        ("users", _) => Ok(Reply::bulks(acl.store.snapshot().keys().cloned())),
        ("whoami", _) => Ok(Reply::bulk(conn.acl.user.name.clone())),
        ("load", _) => {
            if acl.file.is_none() {
                return Err(CmdError::other(NO_FILE));
            }
            let before: Vec<String> = acl
                .store
                .snapshot()
                .keys()
                .filter(|n| *n != "default")
                .cloned()
                .collect();
            acl.load_file().map_err(CmdError::other)?;
            // As in Redis, connections of the users replaced close.
            disconnect_users(&conn.router, before).await?;
            Ok(Reply::Ok)
        }
        ("save", _) => {
            let Some(path) = &acl.file else {
                return Err(CmdError::other(NO_FILE));
            };
            let users = acl.store.snapshot();
            crate::security::acl::file::save(path, users.values().map(|u| &**u)).map_err(|e| {
                tracing::warn!("ACL SAVE to {}: {e}", path.display());
                CmdError::other("There was an error trying to save the ACLs. Please check the server logs for more information")
            })?;
            Ok(Reply::Ok)
        }
        ("cat", 2) => Ok(Reply::bulks(ids::category_names())),
        ("cat", 3) => {
            let name = String::from_utf8_lossy(a[2]);
            let Some(bit) = ids::category(&name) else {
                return Err(CmdError::other(format!(
                    "Unknown category '{}'",
                    name.chars().take(128).collect::<String>()
                )));
            };
            Ok(Reply::bulks(
                ids()
                    .entries
                    .iter()
                    .filter(|e| e.categories & bit != 0)
                    .map(|e| e.name.clone()),
            ))
        }
        ("genpass", 2 | 3) => genpass(a),
        ("log", 2 | 3) => {
            let mut count = 10usize;
            if a.len() == 3 {
                if is(a[2], "reset") {
                    acl.log.reset();
                    return Ok(Reply::Ok);
                }
                let n = parse_i64(a[2]).ok_or(CmdError::NotInteger)?;
                count = n.max(0) as usize;
            }
            Ok(acl.log.reply(count, now_ms()))
        }
        ("dryrun", _) => {
            let name = String::from_utf8_lossy(a[2]);
            let Some(user) = acl.store.get(&name) else {
                return Err(CmdError::other(format!("User '{name}' not found")));
            };
            let Some(spec) = command::lookup(a[3]) else {
                return Err(CmdError::other(format!(
                    "Command '{}' not found",
                    String::from_utf8_lossy(a[3])
                )));
            };
            let argv = &a[3..];
            if !spec.arity_ok(argv.len()) {
                return Err(CmdError::other(format!(
                    "wrong number of arguments for '{}' command",
                    crate::security::acl::check::command_name(spec, argv)
                )));
            }
            match user.check(spec, argv) {
                Ok(()) => Ok(Reply::Ok),
                Err(d) => Ok(Reply::bulk(verbose_message(d, &user.name, spec, argv))),
            }
        }
        ("help", _) => Ok(Reply::Array(
            HELP.iter().map(|l| Reply::status(l)).collect(),
        )),
        _ => Err(CmdError::other(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
            String::from_utf8_lossy(a[1])
        ))),
    };
    if r.is_ok() && matches!(sub.as_str(), "setuser" | "deluser" | "load") {
        crate::security::acl::shared::publish(conn).await?;
    }
    r
}

async fn setuser(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    if has_spaces(a[2]) {
        return Err(CmdError::other(
            "Usernames can't contain spaces or null characters",
        ));
    }
    let name = String::from_utf8_lossy(a[2]).into_owned();
    let (old, new) = conn
        .state
        .acl
        .store
        .modify(&name, |old| {
            let base = old.cloned().unwrap_or_else(|| User::new(&name));
            set_user(base, &a[3..])
        })
        .map_err(CmdError::other)?;
    if old.is_some() {
        // Subscribers whose channels are no longer allowed close, as in
        // Redis.
        crate::security::acl::gate::disconnect_revoked_subscribers(conn, new).await?;
    }
    Ok(Reply::Ok)
}

fn selector_fields(s: &Selector) -> Vec<(Reply, Reply)> {
    vec![
        (Reply::bulk("commands"), Reply::bulk(s.describe_commands())),
        (Reply::bulk("keys"), Reply::Bulk(s.describe_keys())),
        (Reply::bulk("channels"), Reply::Bulk(s.describe_channels())),
    ]
}

/// ACL GETUSER's reply: flags, passwords, the root selector's commands,
/// keys and channels, then the other selectors.
fn getuser(u: &User) -> Reply {
    let mut fields = vec![
        (
            Reply::bulk("flags"),
            Reply::Set(u.flags().into_iter().map(Reply::bulk).collect()),
        ),
        (
            Reply::bulk("passwords"),
            Reply::bulks(u.passwords.iter().cloned()),
        ),
    ];
    fields.extend(selector_fields(&u.root));
    fields.push((
        Reply::bulk("selectors"),
        Reply::Array(
            u.selectors
                .iter()
                .map(|s| Reply::Map(selector_fields(s)))
                .collect(),
        ),
    ));
    Reply::Map(fields)
}

/// ACL GENPASS [bits]: random hex from the kernel's generator.
fn genpass(a: &[&[u8]]) -> CmdResult {
    const MAX_BITS: i64 = 4096;
    let bits = match a.get(2) {
        Some(b) => parse_i64(b).ok_or(CmdError::NotInteger)?,
        None => 256,
    };
    if bits <= 0 || bits > MAX_BITS {
        return Err(CmdError::other(format!(
            "ACL GENPASS argument must be the number of bits for the output password, a positive number up to {MAX_BITS}"
        )));
    }
    let chars = (bits as usize).div_ceil(4);
    let mut raw = vec![0u8; chars.div_ceil(2)];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .map_err(|e| CmdError::other(format!("no random source: {e}")))?;
    let mut hex = String::with_capacity(raw.len() * 2);
    for b in raw {
        hex.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
        hex.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
    }
    hex.truncate(chars);
    Ok(Reply::bulk(hex))
}
