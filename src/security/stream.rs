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

/// A link between nodes (a replication stream, a forwarded client): plain
/// TCP, or mutual TLS with `tls-replication yes`. Its flush, as
/// [`Queued`]'s, ends once the bytes are queued for the ring; writers
/// flush after each message so a TLS session never keeps one back.
pub enum PeerStream {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<Queued>>),
}

impl PeerStream {
    /// This node's end of a link it opened to `addr`: in TLS when the
    /// configuration says so (the other node must show a certificate the
    /// CA signed; see `tls::CaOnly`).
    pub async fn connect(
        state: &crate::server::state::ServerState,
        addr: std::net::SocketAddr,
        timeout: std::time::Duration,
    ) -> io::Result<PeerStream> {
        let s = TcpStream::connect_timeout(addr, timeout).await?;
        let _ = s.set_nodelay(true);
        let Some(connector) = peer_tls(state).and_then(|t| t.connector()) else {
            return Ok(PeerStream::Plain(s));
        };
        let name = super::tls::server_name(addr.ip());
        match crate::runtime::timeout(timeout, connector.connect(name, Queued(s))).await {
            Some(Ok(t)) => Ok(PeerStream::Tls(Box::new(
                futures_rustls::TlsStream::Client(t),
            ))),
            Some(Err(e)) => Err(io::Error::new(e.kind(), format!("TLS with {addr}: {e}"))),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("TLS handshake with {addr} timed out"),
            )),
        }
    }

    /// The other end: a link another node opened to this one's listener.
    pub async fn accept(
        state: &crate::server::state::ServerState,
        s: TcpStream,
    ) -> io::Result<PeerStream> {
        let Some(acceptor) = peer_tls(state).and_then(|t| t.peer_acceptor()) else {
            return Ok(PeerStream::Plain(s));
        };
        let handshake = acceptor.accept(Queued(s));
        match crate::runtime::timeout(super::tls::HANDSHAKE_TIMEOUT, handshake).await {
            Some(Ok(t)) => Ok(PeerStream::Tls(Box::new(
                futures_rustls::TlsStream::Server(t),
            ))),
            Some(Err(e)) => Err(e),
            None => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            )),
        }
    }
}

/// The TLS configuration links use, if `tls-replication` is on.
fn peer_tls(state: &crate::server::state::ServerState) -> Option<&super::tls::Tls> {
    state.tls.as_ref().filter(|t| t.settings().replication)
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(_) => Poll::Ready(Ok(())),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Plain(s) => Pin::new(s).poll_close(cx),
            PeerStream::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// The blocking form of [`PeerStream`], for the cluster bus (a thread per
/// link, std sockets, off the data cores).
pub enum BlockingPeer {
    Plain(std::net::TcpStream),
    Out(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
    In(Box<rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>>),
}

/// What a bus link needs to speak TLS: the configurations for both ends.
#[derive(Clone)]
pub struct BusTls {
    pub server: std::sync::Arc<rustls::ServerConfig>,
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

/// Where bus links get their TLS configurations, asked at each new link
/// (so reloaded certificates apply); None: plain TCP.
pub type BusTlsSource = std::sync::Arc<dyn Fn() -> Option<BusTls> + Send + Sync>;

/// The bus's source for `state`: TLS links when `tls-replication` is on.
pub fn bus_tls(state: std::sync::Arc<crate::server::state::ServerState>) -> BusTlsSource {
    std::sync::Arc::new(move || {
        let t = peer_tls(&state)?;
        Some(BusTls {
            server: t.peer_server_config()?,
            client: t.peer_client_config()?,
        })
    })
}

use futures_rustls::rustls;

impl BlockingPeer {
    /// This node's end of a link it opened; the handshake completes here.
    pub fn connect(
        s: std::net::TcpStream,
        tls: Option<&BusTls>,
        addr: std::net::SocketAddr,
    ) -> io::Result<BlockingPeer> {
        let Some(t) = tls else {
            return Ok(BlockingPeer::Plain(s));
        };
        let conn =
            rustls::ClientConnection::new(t.client.clone(), super::tls::server_name(addr.ip()))
                .map_err(io::Error::other)?;
        let mut owned = rustls::StreamOwned::new(conn, s);
        while owned.conn.is_handshaking() {
            owned.conn.complete_io(&mut owned.sock)?;
        }
        Ok(BlockingPeer::Out(Box::new(owned)))
    }

    /// A link another node opened; the handshake completes here (a peer
    /// without a certificate the CA signed fails it).
    pub fn accept(s: std::net::TcpStream, tls: Option<&BusTls>) -> io::Result<BlockingPeer> {
        let Some(t) = tls else {
            return Ok(BlockingPeer::Plain(s));
        };
        let conn = rustls::ServerConnection::new(t.server.clone()).map_err(io::Error::other)?;
        let mut owned = rustls::StreamOwned::new(conn, s);
        while owned.conn.is_handshaking() {
            owned.conn.complete_io(&mut owned.sock)?;
        }
        Ok(BlockingPeer::In(Box::new(owned)))
    }

    /// The socket under the session (for timeouts).
    pub fn tcp(&self) -> &std::net::TcpStream {
        match self {
            BlockingPeer::Plain(s) => s,
            BlockingPeer::Out(t) => &t.sock,
            BlockingPeer::In(t) => &t.sock,
        }
    }
}

impl std::io::Read for BlockingPeer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingPeer::Plain(s) => s.read(buf),
            BlockingPeer::Out(t) => t.read(buf),
            BlockingPeer::In(t) => t.read(buf),
        }
    }
}

impl std::io::Write for BlockingPeer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingPeer::Plain(s) => s.write(buf),
            BlockingPeer::Out(t) => t.write(buf),
            BlockingPeer::In(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingPeer::Plain(s) => s.flush(),
            BlockingPeer::Out(t) => t.flush(),
            BlockingPeer::In(t) => t.flush(),
        }
    }
}
