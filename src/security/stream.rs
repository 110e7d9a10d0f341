//! The byte streams a TLS session runs over.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

use crate::runtime::TcpStream;

/// A socket under a TLS session. Its flush is done once the bytes are
/// queued for the ring (which sends them on its own), not once the kernel
/// took them: the session flushes after every reply, and waiting for the
/// send's completion there would cost a wakeup per reply for nothing.
pub struct Queued(pub TcpStream);

impl AsyncRead for Queued {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Queued {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A send error shows on the next write.
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

/// A client's connection over TLS.
pub type TlsClient = futures_rustls::server::TlsStream<Queued>;
