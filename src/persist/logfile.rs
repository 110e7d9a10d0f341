//! An append-only file on io_uring with direct I/O (glommio DMA files).
//!
//! Direct I/O writes whole aligned blocks, so the last, partly filled block
//! is kept in memory and written again, with what follows it, by the next
//! append. Until then the file ends in zero padding: readers stop at the
//! first zero frame length (see `keel_shards::record`). A failed append
//! leaves the position unchanged, so the caller can retry the same bytes.

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};

pub struct LogFile {
    file: DmaFile,
    pub path: PathBuf,
    /// Bytes appended so far (the file's logical length).
    pos: u64,
    /// The bytes of the last, partial block.
    tail: Vec<u8>,
    align: u64,
    /// Opened with O_DSYNC: every append is durable when it returns, so no
    /// separate fsync is needed (one device round trip per batch, not two).
    pub dsync: bool,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl LogFile {
    /// Creates a new, empty file (never reuses one); with `dsync`, every
    /// append is durable on return.
    pub async fn create(path: &Path, dsync: bool) -> io::Result<LogFile> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(if dsync { libc::O_DSYNC } else { 0 })
            .dma_open(path)
            .await?;
        let align = file.alignment().max(512);
        Ok(LogFile {
            file,
            path: path.to_path_buf(),
            pos: 0,
            tail: Vec::new(),
            align,
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
        let start = self.pos - self.tail.len() as u64;
        let data_len = self.tail.len() + bytes.len();
        let len = align_up(data_len as u64, self.align) as usize;
        let mut buf = self.file.alloc_dma_buffer(len);
        let b = buf.as_bytes_mut();
        b[..self.tail.len()].copy_from_slice(&self.tail);
        b[self.tail.len()..data_len].copy_from_slice(bytes);
        b[data_len..].fill(0);
        let written = self.file.write_at(buf, start).await?;
        if written < len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {written} of {len} bytes"),
            ));
        }
        self.pos += bytes.len() as u64;
        let partial = (data_len as u64 % self.align) as usize;
        let mut tail = Vec::with_capacity(self.align as usize);
        if partial > bytes.len() {
            tail.extend_from_slice(&self.tail[self.tail.len() - (partial - bytes.len())..]);
            tail.extend_from_slice(bytes);
        } else {
            tail.extend_from_slice(&bytes[bytes.len() - partial..]);
        }
        self.tail = tail;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub async fn sync(&self) -> io::Result<()> {
        self.file.fdatasync().await?;
        Ok(())
    }

    /// Syncs, cuts the zero padding off and closes.
    pub async fn close(self) -> io::Result<()> {
        self.file.fdatasync().await?;
        self.file.truncate(self.pos).await?;
        self.file.close().await?;
        Ok(())
    }
}
