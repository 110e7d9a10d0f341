//! Files on the executor's ring: positioned writes and data syncs complete
//! on the ring while the core keeps serving (the kernel runs what cannot
//! complete at once on its own workers).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use io_uring::{opcode, types};

use super::net::Op;

pub struct File {
    fd: OwnedFd,
}

impl File {
    /// Creates a new file for writing (never an existing one); with
    /// `dsync`, every write is durable when it completes.
    pub fn create_new(path: &Path, dsync: bool) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(if dsync { libc::O_DSYNC } else { 0 })
            .open(path)?;
        Ok(File { fd: f.into() })
    }

    /// Writes all of `bytes` at `pos`.
    pub async fn write_all_at(&self, bytes: &[u8], pos: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < bytes.len() {
            // The kernel reads from a copy the operation owns, so a caller
            // that stops waiting cannot free bytes still being written.
            let chunk = bytes[done..].to_vec().into_boxed_slice();
            let e = opcode::Write::new(
                types::Fd(self.fd.as_raw_fd()),
                chunk.as_ptr(),
                chunk.len() as u32,
            )
            .offset(pos + done as u64)
            .build();
            let (res, _) = Op::start(e, Some(Box::new(chunk))).await;
            if res < 0 {
                return Err(io::Error::from_raw_os_error(-res));
            }
            if res == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0"));
            }
            done += res as usize;
        }
        Ok(())
    }

    /// fdatasync(2) on the ring.
    pub async fn sync_data(&self) -> io::Result<()> {
        let e = opcode::Fsync::new(types::Fd(self.fd.as_raw_fd()))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        let (res, _) = Op::start(e, None).await;
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(())
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        // SAFETY: ftruncate on our fd.
        if unsafe { libc::ftruncate(self.fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // An abandoned write may still be queued, naming this fd: it reaches
        // the kernel before the fd is closed (and its number reused).
        let _ = super::executor::try_with(|e| e.ring.submit_queued());
    }
}
