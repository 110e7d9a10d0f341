//! The REST API: JSON bodies → commands (what a 400 answers otherwise), and
//! the reader of RESP2 replies it turns into JSON.

use std::borrow::Cow;

use keel::http::rest::{command_of, commands_of, read_reply, Resp};
use keel::resp::encode::format_double;
use keel::resp::reply::Reply;
use keel::resp::{encode, Protocol};
use proptest::prelude::*;

use crate::{bytes, config, largest_allocation, mutate, mutations};

/// A JSON document as written, numbers as their literal text.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// A string literal, plainly escaped or with every non-ASCII character
/// (surrogate pairs included) as `\u` escapes.
fn string_literal(s: &str, escape_all: bool) -> String {
    if !escape_all {
        return serde_json::to_string(s).unwrap_or_default();
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

impl J {
    fn text(&self, escape_all: bool, space: &str) -> String {
        match self {
            J::Null => "null".into(),
            J::Bool(b) => b.to_string(),
            J::Num(n) => n.clone(),
            J::Str(s) => string_literal(s, escape_all),
            J::Arr(items) => {
                let inner: Vec<String> = items.iter().map(|i| i.text(escape_all, space)).collect();
                format!(
                    "[{space}{}{space}]",
                    inner.join(&format!("{space},{space}"))
                )
            }
            J::Obj(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}{space}:{space}{}",
                            string_literal(k, escape_all),
                            v.text(escape_all, space)
                        )
                    })
                    .collect();
                format!("{{{space}{}{space}}}", inner.join(","))
            }
        }
    }

    /// The argument a scalar is, if it is one.
    fn arg(&self) -> Option<Vec<u8>> {
        match self {
            J::Bool(b) => Some(b.to_string().into_bytes()),
            J::Num(n) => Some(n.clone().into_bytes()),
            J::Str(s) => Some(s.clone().into_bytes()),
            _ => None,
        }
    }

    /// The command an array of scalars is, if it is one.
    fn command(&self) -> Option<Vec<Vec<u8>>> {
        match self {
            J::Arr(items) if !items.is_empty() => items.iter().map(J::arg).collect(),
            _ => None,
        }
    }
}

/// Number literals as JSON allows them: signs, fractions, exponents, and
/// integers far beyond 64 bits.
fn number() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?"
}

fn scalar() -> impl Strategy<Value = J> {
    prop_oneof![
        any::<bool>().prop_map(J::Bool),
        number().prop_map(J::Num),
        any::<String>().prop_map(J::Str),
        "[a-zA-Z]{1,8}".prop_map(J::Str),
    ]
}

fn json() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![Just(J::Null), scalar()];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
            prop::collection::vec(("[a-z]{0,4}", inner), 0..3).prop_map(J::Obj),
        ]
    })
}

fn space() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", " ", "\n\t ", "\r\n"])
}

/// What must hold of any body: a command whose arguments, sent back as
/// JSON strings, give it again; or an error a client can read.
fn check_body(body: &[u8]) -> Result<(), TestCaseError> {
    let most = 1024 + 32 * body.len();
    let (command, big) = largest_allocation(|| command_of(body));
    prop_assert!(
        big <= most,
        "{} bytes allocated at once for {} bytes",
        big,
        body.len()
    );
    let (_, big) = largest_allocation(|| commands_of(body));
    prop_assert!(
        big <= most,
        "{} bytes allocated at once for {} bytes",
        big,
        body.len()
    );
    match command {
        Ok(args) => {
            prop_assert!(!args.is_empty());
            let strings: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8(a.clone()))
                .collect::<Result<_, _>>()
                .map_err(|_| TestCaseError::fail("an argument that is not UTF-8"))?;
            let again = serde_json::to_vec(&strings).unwrap_or_default();
            prop_assert_eq!(command_of(&again), Ok(args));
        }
        Err(e) => prop_assert!(e.starts_with("ERR "), "{}", e),
    }
    match commands_of(body) {
        Ok(cmds) => {
            prop_assert!(!cmds.is_empty() && cmds.iter().all(|c| !c.is_empty()));
        }
        Err(e) => prop_assert!(e.starts_with("ERR "), "{}", e),
    }
    Ok(())
}

/// A reply as the REST reader must see it: its RESP2 shape.
fn resp2(r: &Reply) -> Resp {
    let line = |b: &[u8]| {
        b.iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
            .collect::<Vec<u8>>()
    };
    let items = |v: &[Reply]| Resp::Array(Some(v.iter().map(resp2).collect()));
    let flat = |v: &[(Reply, Reply)]| {
        Resp::Array(Some(
            v.iter().flat_map(|(k, x)| [resp2(k), resp2(x)]).collect(),
        ))
    };
    match r {
        Reply::Ok => Resp::Status(b"OK".to_vec()),
        Reply::Status(s) => Resp::Status(s.as_bytes().to_vec()),
        Reply::StatusBytes(s) => Resp::Status(s.clone()),
        Reply::Error(e) => Resp::Error(String::from_utf8_lossy(&line(e.as_bytes())).into_owned()),
        Reply::ErrorBytes(e) => Resp::Error(String::from_utf8_lossy(&line(e)).into_owned()),
        Reply::Int(n) => Resp::Int(*n),
        Reply::Bool(b) => Resp::Int(*b as i64),
        Reply::Bulk(b) | Reply::DoubleText(b) => Resp::Bulk(Some(b.clone())),
        Reply::Verbatim(s) => Resp::Bulk(Some(s.as_bytes().to_vec())),
        Reply::Double(d) => Resp::Bulk(Some(format_double(*d).into_bytes())),
        Reply::Nil => Resp::Bulk(None),
        Reply::NilArray => Resp::Array(None),
        Reply::Array(v) | Reply::Push(v) | Reply::Set(v) => items(v),
        Reply::Map(p) | Reply::Pairs(p) => flat(p),
        Reply::KeyedArrays(p) => Resp::Array(Some(
            p.iter()
                .map(|(k, x)| Resp::Array(Some(vec![resp2(k), resp2(x)])))
                .collect(),
        )),
    }
}

fn reply() -> impl Strategy<Value = Reply> {
    let leaf = prop_oneof![
        Just(Reply::Ok),
        "[ -~]{0,12}".prop_map(|s| Reply::Status(Cow::Owned(s))),
        ".{0,12}".prop_map(|s| Reply::Error(Cow::Owned(s))),
        any::<i64>().prop_map(Reply::Int),
        bytes(40).prop_map(Reply::Bulk),
        Just(Reply::Nil),
        Just(Reply::NilArray),
        any::<f64>().prop_map(Reply::Double),
        any::<bool>().prop_map(Reply::Bool),
        ".{0,12}".prop_map(Reply::Verbatim),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let pairs = || prop::collection::vec((inner.clone(), inner.clone()), 0..4);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Array),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Reply::Set),
            pairs().prop_map(Reply::Map),
            pairs().prop_map(Reply::KeyedArrays),
        ]
    })
}

proptest! {
    #![proptest_config(config("proptest-regressions/fuzz/rest_json.txt"))]

    /// Any JSON document: a command exactly when it is a non-empty array
    /// of strings, numbers and booleans, whose arguments are the strings'
    /// bytes and the other values' literal text; else a 400's error.
    #[test]
    fn any_json_is_a_command_or_an_error(
        doc in json(),
        escape_all in any::<bool>(),
        space in space(),
    ) {
        let body = doc.text(escape_all, space);
        match doc.command() {
            Some(want) => prop_assert_eq!(command_of(body.as_bytes()), Ok(want)),
            None => {
                let got = command_of(body.as_bytes());
                prop_assert!(matches!(&got, Err(e) if e.starts_with("ERR ")), "{:?}", got);
            }
        }
        check_body(body.as_bytes())?;
    }

    /// Pipelines and transactions: their commands, exactly when every one
    /// is a command and there is one at least.
    #[test]
    fn pipelines_are_their_commands_or_an_error(
        cmds in prop::collection::vec(prop::collection::vec(scalar(), 0..4), 0..4),
        space in space(),
    ) {
        let doc = J::Arr(cmds.into_iter().map(J::Arr).collect());
        let body = doc.text(false, space);
        let want: Option<Vec<Vec<Vec<u8>>>> = match &doc {
            J::Arr(items) if !items.is_empty() => items.iter().map(J::command).collect(),
            _ => None,
        };
        match want {
            Some(w) => prop_assert_eq!(commands_of(body.as_bytes()), Ok(w)),
            None => prop_assert!(commands_of(body.as_bytes()).is_err()),
        }
    }

    /// Arbitrary bytes, and valid bodies damaged: a command or an error,
    /// never a panic.
    #[test]
    fn any_bytes_are_a_command_or_an_error(
        b in prop_oneof![
            bytes(120),
            (json(), mutations(3)).prop_map(|(d, m)| {
                let mut b = d.text(false, "").into_bytes();
                mutate(&mut b, &m);
                b
            }),
        ],
    ) {
        check_body(&b)?;
    }

    /// Nesting deeper than the parser recurses is an error, not a crash.
    #[test]
    fn deep_nesting_is_an_error(depth in 1usize..20_000, obj in any::<bool>()) {
        let (open, close) = if obj { ("{\"a\":", "}") } else { ("[", "]") };
        let body = format!("[\"SET\",{}1{}]", open.repeat(depth), close.repeat(depth));
        prop_assert!(command_of(body.as_bytes()).is_err());
        prop_assert!(commands_of(body.as_bytes()).is_err());
    }

    /// Replies the server encodes read back in their RESP2 shape, one
    /// after another, each using exactly its bytes.
    #[test]
    fn replies_read_back_as_encoded(replies in prop::collection::vec(reply(), 1..4)) {
        let mut wire = Vec::new();
        for r in &replies {
            encode(r, Protocol::Resp2, &mut wire);
        }
        let mut at = 0;
        for r in &replies {
            prop_assert_eq!(read_reply(&wire, &mut at), Some(resp2(r)));
        }
        prop_assert_eq!(at, wire.len());
    }

    /// Arbitrary bytes: a reply or nothing, never a panic, never a
    /// position far past the input.
    #[test]
    fn any_bytes_read_as_a_reply_or_nothing(b in bytes(200)) {
        let mut at = 0;
        if read_reply(&b, &mut at).is_some() {
            prop_assert!(at > 0 && at <= b.len() + 2);
        }
    }
}
