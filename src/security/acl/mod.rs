//! ACL users, as Redis 7 has them.
//!
//! - [`user`]: a user (flags, SHA-256 password hashes, selectors) and how
//!   it is described back (ACL LIST, GETUSER, the ACL file).
//! - [`parse`]: the rule language of ACL SETUSER and the ACL file.
//! - [`ids`]: command and subcommand ids for the permission bitmaps, with
//!   the categories COMMAND INFO reports.
//! - [`check`]: may this user run this request (command, keys, channels)?
//! - [`store`]: the user table every core reads (an `Arc` replaced on
//!   change, an epoch counter that connections compare).
//! - [`file`]: the `aclfile` (ACL LOAD / ACL SAVE).
//! - [`shared`]: the set as the database's: kept with the data, so it
//!   reaches every backup and survives a failover.
//! - [`log`]: ACL LOG.
//! - [`gate`]: where a client connection meets all this: login, the check
//!   before every command, the log entries.
//! - [`paths`]: the other ways a command runs, checked as Redis does:
//!   EXEC, scripts, blocked commands, REST.
//!
//! The `default` user mirrors `requirepass`: setting one sets the other's
//! password, as in Redis. Its cost on the data path, when it may run
//! everything (the usual case), is one atomic load and one flag test per
//! command.

pub mod check;
pub mod file;
pub mod gate;
pub mod ids;
pub mod log;
pub mod parse;
pub mod paths;
pub mod shared;
pub mod store;
pub mod user;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use store::Store;
use user::User;

/// The ACL state of a server: users, the log, the file.
pub struct Acl {
    pub store: Store,
    pub log: log::Log,
    /// `aclfile`: where ACL SAVE writes and ACL LOAD reads.
    pub file: Option<PathBuf>,
    /// `acllog-max-len`.
    log_max: AtomicUsize,
}

impl Acl {
    /// The `default` user, with `requirepass` as its password if set.
    pub fn new(requirepass: Option<&str>, file: Option<PathBuf>) -> Acl {
        let acl = Acl {
            store: Store::new(User::default_user()),
            log: Default::default(),
            file,
            log_max: AtomicUsize::new(128),
        };
        acl.set_default_password(requirepass);
        acl
    }

    /// Loads the ACL file, if there is one (at start, and ACL LOAD).
    pub fn load_file(&self) -> Result<(), String> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let users = file::load(path)?;
        self.store.load_all(users);
        Ok(())
    }

    /// New connections are logged in as `default` without AUTH when it
    /// is on and needs no password.
    pub fn auto_login(&self) -> bool {
        self.store
            .get("default")
            .is_some_and(|d| d.enabled && d.nopass)
    }

    /// `requirepass`: the default user's only password (none: nopass).
    pub fn set_default_password(&self, pass: Option<&str>) {
        let _ = self.store.modify("default", |old| -> Result<User, ()> {
            let mut d = old.cloned().unwrap_or_else(User::default_user);
            d.passwords.clear();
            match pass {
                Some(p) => {
                    d.nopass = false;
                    d.passwords.push(user::hash_password(p.as_bytes()));
                }
                None => d.nopass = true,
            }
            Ok(d)
        });
    }

    /// The user `name` logs in as with `pass`, if the pair is valid and
    /// the user is on.
    pub fn authenticate(&self, name: &[u8], pass: &[u8]) -> Option<Arc<User>> {
        let name = std::str::from_utf8(name).ok()?;
        self.store.get(name).filter(|u| u.password_ok(pass))
    }

    pub fn log_max(&self) -> usize {
        self.log_max.load(Ordering::Relaxed)
    }

    pub fn set_log_max(&self, n: usize) {
        self.log_max.store(n, Ordering::Relaxed);
    }
}

/// A connection's user, and the table epoch it was read at.
pub struct ConnAcl {
    pub user: Arc<User>,
    pub epoch: u64,
}

impl ConnAcl {
    /// A new connection runs as `default`.
    pub fn new(acl: &Acl) -> ConnAcl {
        let epoch = acl.store.epoch();
        ConnAcl {
            user: acl
                .store
                .get("default")
                .unwrap_or_else(|| Arc::new(User::default_user())),
            epoch,
        }
    }

    /// Its user may run anything and the table did not change since it
    /// was read: checks can be skipped (pipelines batched, etc.).
    #[inline]
    pub fn unrestricted(&self, acl: &Acl) -> bool {
        self.user.unrestricted && self.epoch == acl.store.epoch()
    }
}
