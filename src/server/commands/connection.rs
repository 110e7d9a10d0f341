//! Connection commands: PING ECHO HELLO AUTH SELECT QUIT RESET CLIENT.

use std::borrow::Cow;

use crate::cmd::error::{CmdError, CmdResult};
use crate::cmd::is;
use crate::cmd::numbers::{int_arg, parse_i64};
use crate::resp::reply::Reply;
use crate::resp::Protocol;
use crate::server::conn::{After, Conn};
use crate::server::state::now_ms;

pub fn ping(a: &[&[u8]]) -> CmdResult {
    match a.len() {
        1 => Ok(Reply::status("PONG")),
        2 => Ok(Reply::bulk(a[1])),
        _ => Err(CmdError::Arity("ping".into())),
    }
}

/// AUTH [user] password, against the ACL users (`crate::security::acl::gate`).
pub fn auth(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    crate::security::acl::gate::auth(conn, a)
}

fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

pub fn hello(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let mut proto = conn.proto;
    let mut i = 1;
    if a.len() > 1 {
        let v = parse_i64(a[1])
            .ok_or_else(|| CmdError::other("Protocol version is not an integer or out of range"))?;
        proto = match v {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => return Err(CmdError::Raw("NOPROTO unsupported protocol version".into())),
        };
        i = 2;
    }
    let mut name = None;
    let mut auth = None;
    while i < a.len() {
        if is(a[i], "auth") && i + 2 < a.len() {
            // The last AUTH given is the one tried, as in Redis.
            auth = Some((a[i + 1], a[i + 2]));
            i += 3;
        } else if is(a[i], "setname") && i + 1 < a.len() {
            if !valid_name(a[i + 1]) {
                return Err(CmdError::other(
                    "Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            name = Some(a[i + 1]);
            i += 2;
        } else {
            return Err(CmdError::other(format!(
                "Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(a[i])
            )));
        }
    }
    if let Some((user, pass)) = auth {
        let user = crate::security::acl::gate::authenticate(conn, a[0], user, pass)?;
        crate::security::acl::gate::login(conn, user);
    }
    if !conn.authenticated {
        return Err(CmdError::Raw(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
        ));
    }
    if let Some(n) = name {
        conn.info.borrow_mut().name = String::from_utf8_lossy(n).into_owned();
    }
    if proto == Protocol::Resp3 && conn.proto != Protocol::Resp3 {
        // A RESP3 connection may be a tracking client's REDIRECT target
        // without subscribing: invalidations reach it as pushes.
        let out = conn.subs.outbox();
        conn.state.tracking.register(conn.id(), out);
        conn.subs.listening = true;
    } else if proto != Protocol::Resp3 {
        conn.subs.listening = conn.subs.tracking.is_some();
    }
    conn.proto = proto;
    let s = |t: &'static str| Reply::bulk(t);
    Ok(Reply::Map(vec![
        (s("server"), s("redis")),
        (s("version"), s(crate::REDIS_VERSION)),
        (
            s("proto"),
            Reply::Int(if proto == Protocol::Resp3 { 3 } else { 2 }),
        ),
        (s("id"), Reply::Int(conn.id() as i64)),
        (s("mode"), s("standalone")),
        (s("role"), s("master")),
        (s("modules"), Reply::Array(vec![])),
    ]))
}

pub fn select(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let n = int_arg(a[1])?;
    if !(0..keel_shards::DATABASES as i64).contains(&n) {
        return Err(CmdError::DbIndex);
    }
    conn.db = n as usize;
    Ok(Reply::Ok)
}

pub async fn reset(conn: &mut Conn) -> CmdResult {
    conn.multi = None;
    crate::exec::pubsub::unsubscribe_all(conn);
    crate::exec::multi::unwatch_all(conn).await;
    conn.db = 0;
    conn.proto = Protocol::Resp2;
    crate::security::acl::gate::reset(conn);
    crate::server::introspect::leave(conn);
    conn.intro.reply = Default::default();
    conn.intro.no_touch = false;
    let mut info = conn.info.borrow_mut();
    info.name.clear();
    info.no_evict = false;
    Ok(Reply::status("RESET"))
}

pub fn quit() -> (CmdResult, After) {
    (Ok(Reply::Ok), After::Close)
}

fn client_arity(sub: &str) -> CmdError {
    CmdError::Arity(format!("client|{sub}"))
}

pub async fn client(conn: &mut Conn, a: &[&[u8]]) -> CmdResult {
    let sub = String::from_utf8_lossy(a[1]).to_lowercase();
    if let Some(r) = crate::server::introspect::clients::client(conn, &sub, a).await {
        return r;
    }
    match (sub.as_str(), a.len()) {
        ("id", 2) => Ok(Reply::Int(conn.id() as i64)),
        ("getname", 2) => {
            let name = conn.info.borrow().name.clone();
            Ok(if name.is_empty() {
                Reply::Nil
            } else {
                Reply::bulk(name)
            })
        }
        ("setname", 3) => {
            if !valid_name(a[2]) {
                return Err(CmdError::other(
                    "Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            conn.info.borrow_mut().name = String::from_utf8_lossy(a[2]).into_owned();
            Ok(Reply::Ok)
        }
        ("setinfo", 4) => {
            let value = String::from_utf8_lossy(a[3]).into_owned();
            if !valid_name(a[3]) {
                return Err(CmdError::other(format!(
                    "{} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(a[2]).to_lowercase()
                )));
            }
            let mut info = conn.info.borrow_mut();
            if is(a[2], "lib-name") {
                info.lib_name = value;
            } else if is(a[2], "lib-ver") {
                info.lib_ver = value;
            } else {
                return Err(CmdError::other(format!(
                    "Unrecognized option '{}'",
                    String::from_utf8_lossy(a[2])
                )));
            }
            Ok(Reply::Ok)
        }
        ("no-evict", 3) => {
            let on = if is(a[2], "on") {
                true
            } else if is(a[2], "off") {
                false
            } else {
                return Err(CmdError::Syntax);
            };
            conn.info.borrow_mut().no_evict = on;
            Ok(Reply::Ok)
        }
        ("info", 2) => Ok(Reply::Verbatim(format!(
            "{}\n",
            conn.info.borrow().line(now_ms())
        ))),
        ("list", _) => {
            let lines = conn
                .router
                .broadcast(|ls| {
                    let now = now_ms();
                    ls.clients
                        .borrow()
                        .iter()
                        .map(|c| c.borrow().line(now))
                        .collect::<Vec<_>>()
                })
                .await?;
            let mut text = String::new();
            for l in lines.into_iter().flatten() {
                text.push_str(&l);
                text.push('\n');
            }
            Ok(Reply::Verbatim(text))
        }
        ("help", 2) => Ok(Reply::Array(
            [
                "CLIENT <subcommand> [<arg> ...]. Subcommands are:",
                "ID",
                "GETNAME",
                "SETNAME <name>",
                "SETINFO <LIB-NAME|LIB-VER> <value>",
                "NO-EVICT (ON|OFF)",
                "INFO",
                "LIST",
                "KILL <ip:port>",
                "KILL <option> <value> [<option> <value> [...]]",
                "    Options: ID, ADDR, LADDR, TYPE (NORMAL|MASTER|REPLICA|PUBSUB), USER, SKIPME (YES|NO), MAXAGE",
                "PAUSE <timeout> [WRITE|ALL]",
                "UNPAUSE",
                "REPLY (ON|OFF|SKIP)",
                "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                "NO-TOUCH (ON|OFF)",
            ]
            .iter()
            .map(|s| Reply::Status(Cow::Borrowed(s)))
            .collect(),
        )),
        ("tracking" | "caching" | "getredir" | "trackinginfo", _) => {
            crate::server::tracking::client(conn, &sub, a).await
        }
        ("id" | "getname" | "setname" | "setinfo" | "no-evict" | "info" | "help", _) => {
            Err(client_arity(&sub))
        }
        _ => Err(CmdError::UnknownSubcommand {
            cmd: "CLIENT".into(),
            sub: String::from_utf8_lossy(a[1]).into_owned(),
        }),
    }
}
