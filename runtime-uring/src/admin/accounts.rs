//! Accounts in the configured `password_file` (Mosquitto's format, `$7$` hashes), for
//! the admin API: listed, added, changed and removed by rewriting the file atomically
//! (temporary file and rename, as `petrel passwd` does), then reloaded into every shard
//! at once: no restart.

use crate::auth::passwd::{split_line, HashKind, Line, PasswordHash, DEFAULT_ITERATIONS};
use crate::cli::passwd::{
    check_password, check_username, delete_user, read_existing, set_user, write_file,
};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Re-reads the password file into the broker's authenticators.
pub type ReloadAuth = Arc<dyn Fn() -> anyhow::Result<()> + Send + Sync>;

/// Why an account change failed.
#[derive(Debug)]
pub enum AccountError {
    /// Bad user name or password (HTTP 400).
    Invalid(String),
    /// No such user (404).
    NotFound,
    /// The user exists already (409).
    Exists,
    /// The file could not be read, written or reloaded (500).
    Io(String),
}

/// The password file, as the admin API edits it.
pub struct Accounts {
    path: PathBuf,
    reload: ReloadAuth,
    /// One edit at a time: two requests must not both read, then both write.
    lock: Mutex<()>,
}

impl Accounts {
    pub fn new(path: PathBuf, reload: ReloadAuth) -> Self {
        Self {
            path,
            reload,
            lock: Mutex::new(()),
        }
    }

    /// User names, in file order.
    pub fn list(&self) -> Result<Vec<String>, AccountError> {
        let text = read_existing(&self.path).map_err(AccountError::Io)?;
        Ok(text
            .lines()
            .filter_map(|l| match split_line(l) {
                Ok(Line::Entry { username, .. }) => Some(username.to_string()),
                _ => None,
            })
            .collect())
    }

    pub fn exists(&self, user: &str) -> Result<bool, AccountError> {
        Ok(self.list()?.iter().any(|u| u == user))
    }

    /// Sets `user`'s password. `must_exist`: `Some(true)` only changes an existing user
    /// (else `NotFound`), `Some(false)` only adds a new one (else `Exists`), `None` does
    /// either. The check and the write happen under one lock.
    pub fn set(
        &self,
        user: &str,
        password: &str,
        must_exist: Option<bool>,
    ) -> Result<(), AccountError> {
        check_username(user).map_err(AccountError::Invalid)?;
        check_password(password.as_bytes()).map_err(AccountError::Invalid)?;
        let hash = PasswordHash::generate(
            HashKind::Sha512Pbkdf2,
            password.as_bytes(),
            DEFAULT_ITERATIONS,
        )
        .map_err(AccountError::Io)?;
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        match (must_exist, self.exists(user)?) {
            (Some(true), false) => return Err(AccountError::NotFound),
            (Some(false), true) => return Err(AccountError::Exists),
            _ => {}
        }
        let text = read_existing(&self.path).map_err(AccountError::Io)?;
        let new = set_user(&text, user, &format!("{user}:{hash}\n")).map_err(AccountError::Io)?;
        self.commit(&new)
    }

    /// Removes `user`.
    pub fn delete(&self, user: &str) -> Result<(), AccountError> {
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if !self.exists(user)? {
            return Err(AccountError::NotFound);
        }
        let text = read_existing(&self.path).map_err(AccountError::Io)?;
        let new = delete_user(&text, user).map_err(AccountError::Io)?;
        self.commit(&new)
    }

    fn commit(&self, text: &str) -> Result<(), AccountError> {
        write_file(&self.path, text).map_err(AccountError::Io)?;
        (self.reload)().map_err(|e| AccountError::Io(format!("{e:#}")))
    }
}
