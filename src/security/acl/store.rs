//! The user table every core reads.
//!
//! The table is an immutable map behind an `Arc`, replaced whole on every
//! change (SETUSER, DELUSER, LOAD, `requirepass`), with a counter bumped
//! after each replacement. A connection holds its user's `Arc` and the
//! counter it saw; before a command it compares the counter (one relaxed
//! atomic load) and only when it moved looks its user up again. Nothing on
//! the data path takes a lock: the lock here is taken by the changes and
//! by those look-ups after a change.
//!
//! The API is small on purpose — [`Store::set_user`], [`Store::del_user`],
//! [`Store::load_all`] — so that replicating the ACL set to the other
//! nodes later has one place to hook.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::user::User;

/// Users by name, in name order (ACL LIST's order).
pub type Users = BTreeMap<String, Arc<User>>;

pub struct Store {
    users: RwLock<Arc<Users>>,
    epoch: AtomicU64,
    /// Serialises read-modify-write changes (SETUSER from two cores).
    writer: Mutex<()>,
}

impl Store {
    pub fn new(default: User) -> Store {
        let mut users = Users::new();
        users.insert(default.name.clone(), Arc::new(default));
        Store {
            users: RwLock::new(Arc::new(users)),
            epoch: AtomicU64::new(0),
            writer: Mutex::new(()),
        }
    }

    /// Bumped after every change.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The current table.
    pub fn snapshot(&self) -> Arc<Users> {
        match self.users.read() {
            Ok(u) => u.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.snapshot().get(name).cloned()
    }

    fn replace(&self, users: Users) {
        match self.users.write() {
            Ok(mut u) => *u = Arc::new(users),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(users),
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        match self.writer.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Adds or replaces a user.
    pub fn set_user(&self, user: User) {
        let _w = self.lock();
        let mut users = (*self.snapshot()).clone();
        users.insert(user.name.clone(), Arc::new(user));
        self.replace(users);
    }

    /// Changes (or creates) `name` with `f`, atomically with respect to
    /// other changes; `f`'s error leaves the table as it was.
    pub fn modify<E>(
        &self,
        name: &str,
        f: impl FnOnce(Option<&User>) -> Result<User, E>,
    ) -> Result<(Option<Arc<User>>, Arc<User>), E> {
        let _w = self.lock();
        let mut users = (*self.snapshot()).clone();
        let old = users.get(name).cloned();
        let new = Arc::new(f(old.as_deref())?);
        users.insert(name.to_string(), new.clone());
        self.replace(users);
        Ok((old, new))
    }

    /// Removes users; how many existed. (`default` is never removed: the
    /// caller refuses it first.)
    pub fn del_user(&self, names: &[&str]) -> usize {
        let _w = self.lock();
        let mut users = (*self.snapshot()).clone();
        let n = names
            .iter()
            .filter(|n| **n != "default" && users.remove(**n).is_some())
            .count();
        if n > 0 {
            self.replace(users);
        }
        n
    }

    /// Replaces the whole table (ACL LOAD, start). A table without a
    /// `default` user keeps the current one (Redis would make a fresh one
    /// with no password: keel does not open a server that way).
    pub fn load_all(&self, list: Vec<User>) {
        let _w = self.lock();
        let current = self.snapshot().get("default").cloned();
        let mut users = Users::new();
        for u in list {
            users.insert(u.name.clone(), Arc::new(u));
        }
        users
            .entry("default".into())
            .or_insert_with(|| current.unwrap_or_else(|| Arc::new(User::default_user())));
        self.replace(users);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_bump_the_epoch_and_keep_default() {
        let s = Store::new(User::default_user());
        let e = s.epoch();
        s.set_user(User::new("a"));
        assert!(s.epoch() > e);
        assert!(s.get("a").is_some());
        assert_eq!(s.del_user(&["a", "default", "nobody"]), 1);
        assert!(s.get("default").is_some());
        let mut locked = User::default_user();
        locked.nopass = false;
        s.set_user(locked);
        s.load_all(vec![User::new("b")]);
        assert!(
            !s.get("default").unwrap().nopass,
            "the default user is kept"
        );
        assert_eq!(
            s.snapshot().keys().cloned().collect::<Vec<_>>(),
            vec!["b", "default"]
        );
        let r: Result<_, ()> = s.modify("c", |old| {
            assert!(old.is_none());
            Ok(User::new("c"))
        });
        assert!(r.is_ok());
        let r: Result<(Option<Arc<User>>, Arc<User>), &str> = s.modify("c", |_| Err("no"));
        assert!(r.is_err());
        assert!(s.get("c").is_some());
    }
}
