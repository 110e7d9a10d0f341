//! What keel knows about a client connection, as CLIENT LIST and INFO show it,
//! and the per-command counters of INFO commandstats.

use std::sync::atomic::Ordering;

use crate::resp::Protocol;
use crate::runtime::TcpStream;
use crate::server::state::{now_ms, ServerState};

#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub name: String,
    pub db: usize,
    pub created_ms: u64,
    pub last_ms: u64,
    pub last_cmd: String,
    pub proto: Protocol,
    pub lib_name: String,
    pub lib_ver: String,
    pub no_evict: bool,
    /// Bytes buffered from the client and not yet parsed.
    pub qbuf: usize,
    /// Subscribed to a channel or pattern (CLIENT KILL TYPE pubsub).
    pub pubsub: bool,
    /// In MONITOR mode.
    pub monitor: bool,
    /// The ACL user the client runs as.
    pub user: String,
    /// Its subscriptions (name, is a pattern), kept only while its user's
    /// channels are restricted (see `acl::gate::note_subscriptions`).
    pub subscribed: Option<Vec<(Vec<u8>, bool)>>,
    /// How CLIENT KILL and CLIENT UNBLOCK reach the connection.
    pub signal: std::rc::Rc<crate::server::introspect::clients::Signal>,
}

impl ClientInfo {
    /// A new client's info for a socket just accepted.
    pub fn accepted(state: &ServerState, stream: &TcpStream) -> ClientInfo {
        let text =
            |a: std::io::Result<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        ClientInfo::new(
            state.next_client_id.fetch_add(1, Ordering::Relaxed),
            text(stream.peer_addr()),
            text(stream.local_addr()),
            now_ms(),
        )
    }

    pub fn new(id: u64, addr: String, laddr: String, now_ms: u64) -> ClientInfo {
        ClientInfo {
            id,
            addr,
            laddr,
            name: String::new(),
            db: 0,
            created_ms: now_ms,
            last_ms: now_ms,
            last_cmd: String::new(),
            proto: Protocol::Resp2,
            lib_name: String::new(),
            lib_ver: String::new(),
            no_evict: false,
            qbuf: 0,
            pubsub: false,
            monitor: false,
            user: "default".into(),
            subscribed: None,
            signal: Default::default(),
        }
    }

    /// CLIENT LIST's flags, in Redis's order: O monitor, P subscribed,
    /// b blocked, e no-evict; N for none.
    fn flags(&self) -> String {
        let mut f = String::new();
        for (on, c) in [
            (self.monitor, 'O'),
            (self.pubsub, 'P'),
            (self.signal.is_blocked(), 'b'),
            (self.no_evict, 'e'),
        ] {
            if on {
                f.push(c);
            }
        }
        if f.is_empty() {
            f.push('N');
        }
        f
    }

    /// One line of CLIENT LIST / CLIENT INFO, in Redis's field order.
    pub fn line(&self, now_ms: u64) -> String {
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi=-1 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=16384 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            self.name,
            now_ms.saturating_sub(self.created_ms) / 1000,
            now_ms.saturating_sub(self.last_ms) / 1000,
            self.flags(),
            self.db,
            self.qbuf,
            if self.last_cmd.is_empty() { "NULL" } else { &self.last_cmd },
            self.user,
            if self.proto == Protocol::Resp3 { 3 } else { 2 },
            self.lib_name,
            self.lib_ver,
        )
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct CommandStat {
    pub calls: u64,
    pub usec: u64,
    pub failed: u64,
    pub rejected: u64,
}

#[derive(Debug, Clone)]
pub struct CommandStats {
    /// Indexed like the command table.
    pub by_command: Vec<CommandStat>,
    pub total_commands: u64,
    pub error_replies: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    /// Pipelines across shards: messages sent to other cores carrying
    /// commands, and the commands they carried.
    pub batches: u64,
    pub batched_commands: u64,
    /// Error replies by their code (the first word: ERR, WRONGTYPE...), for
    /// INFO errorstats.
    pub errors: std::collections::BTreeMap<String, u64>,
    /// LATENCY HISTOGRAM: per command (indexed like the table, made on its
    /// first call), and per subcommand of the container commands
    /// (`client|list`), which the table does not list.
    pub latency: Vec<Option<Box<Histogram>>>,
    pub sub_latency: std::collections::BTreeMap<String, Histogram>,
    /// This core's recent command and byte counts (INFO's instantaneous
    /// figures; see `server::rates`).
    pub rates: super::rates::Rates,
    /// The rates of the cores merged into this total ([`CommandStats::merge`]).
    pub instant: super::rates::PerSecond,
}

pub use super::histogram::Histogram;

impl Default for CommandStats {
    fn default() -> Self {
        CommandStats {
            by_command: vec![CommandStat::default(); crate::exec::command::COMMANDS.len()],
            total_commands: 0,
            error_replies: 0,
            net_input_bytes: 0,
            net_output_bytes: 0,
            batches: 0,
            batched_commands: 0,
            errors: Default::default(),
            latency: vec![None; crate::exec::command::COMMANDS.len()],
            sub_latency: Default::default(),
            rates: Default::default(),
            instant: Default::default(),
        }
    }
}

impl CommandStats {
    pub fn merge(&mut self, other: &CommandStats) {
        self.instant = self.instant + other.instant + other.rates.per_second();
        for (e, s) in self.by_command.iter_mut().zip(&other.by_command) {
            e.calls += s.calls;
            e.usec += s.usec;
            e.failed += s.failed;
            e.rejected += s.rejected;
        }
        self.total_commands += other.total_commands;
        self.error_replies += other.error_replies;
        self.net_input_bytes += other.net_input_bytes;
        self.net_output_bytes += other.net_output_bytes;
        self.batches += other.batches;
        self.batched_commands += other.batched_commands;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        for (mine, theirs) in self.latency.iter_mut().zip(&other.latency) {
            if let Some(h) = theirs {
                mine.get_or_insert_with(Default::default).merge(h);
            }
        }
        for (name, h) in &other.sub_latency {
            self.sub_latency.entry(name.clone()).or_default().merge(h);
        }
    }

    /// A run of command `spec` (at `index` in the table) for LATENCY
    /// HISTOGRAM; container commands are recorded per subcommand instead
    /// ([`CommandStats::record_sub_latency`]).
    #[inline]
    pub fn record_latency(
        &mut self,
        spec: &'static crate::exec::command::Spec,
        index: usize,
        us: u64,
    ) {
        if crate::server::introspect::is_container(spec) {
            return;
        }
        self.latency[index]
            .get_or_insert_with(Default::default)
            .record(us);
    }

    pub fn record_sub_latency(&mut self, name: &str, us: u64) {
        match self.sub_latency.get_mut(name) {
            Some(h) => h.record(us),
            None => {
                let mut h = Histogram::default();
                h.record(us);
                self.sub_latency.insert(name.to_string(), h);
            }
        }
    }

    /// Counts an encoded error reply (`-CODE message\r\n`) under its code.
    /// As Redis, at most 128 distinct codes are kept (a client could make up
    /// any number).
    pub fn note_error(&mut self, reply: &[u8]) {
        let Some(body) = reply.strip_prefix(b"-") else {
            return;
        };
        let end = body
            .iter()
            .position(|&c| c == b' ' || c == b'\r')
            .unwrap_or(body.len());
        let code = String::from_utf8_lossy(&body[..end]);
        if let Some(n) = self.errors.get_mut(code.as_ref()) {
            *n += 1;
        } else if self.errors.len() < 128 {
            self.errors.insert(code.into_owned(), 1);
        }
    }
}
