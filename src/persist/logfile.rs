//! An append-only file written through the core's io_uring ring.
//!
//! Appends are positioned writes of exactly the bytes given (buffered, not
//! direct I/O: nothing to pad or rewrite); durability comes from
//! `sync` (fdatasync on the ring) or, with `dsync`, from every write itself.
//! A failed append leaves the position unchanged, so the caller can retry
//! the same bytes. Records are self-delimiting (length + crc32), so a log
//! cut short by a crash is read up to its last whole record.

use std::io;
use std::path::{Path, PathBuf};

use crate::runtime::file::File;

pub struct LogFile {
    file: File,
    pub path: PathBuf,
    /// Bytes appended so far (the file's length).
    pos: u64,
    /// Opened with O_DSYNC: every append is durable when it returns, so no
    /// separate fsync is needed (one device round trip per batch, not two).
    pub dsync: bool,
}

impl LogFile {
    /// Creates a new, empty file (never reuses one); with `dsync`, every
    /// append is durable on return.
    pub async fn create(path: &Path, dsync: bool) -> io::Result<LogFile> {
        let file = File::create_new(path, dsync)?;
        Ok(LogFile {
            file,
            path: path.to_path_buf(),
            pos: 0,
            dsync,
        })
    }

    pub fn len(&self) -> u64 {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Appends `bytes`; on error nothing counts as written.
    pub async fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        // A partial write may leave bytes past `pos`: the next append
        // overwrites them, and a crash before it leaves a torn record that
        // recovery stops at.
        self.file.write_all_at(bytes, self.pos).await?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub async fn sync(&self) -> io::Result<()> {
        self.file.sync_data().await
    }

    /// Syncs, cuts anything past the last append off and closes.
    pub async fn close(self) -> io::Result<()> {
        self.file.set_len(self.pos)?;
        self.file.sync_data().await?;
        Ok(())
    }
}
