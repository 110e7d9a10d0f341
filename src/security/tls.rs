//! TLS with rustls: the client port (`tls-port`), the HTTP port
//! (`http-tls`), and, with `tls-replication yes`, every link between nodes
//! (replication streams and the cluster bus) in mutual TLS.
//!
//! The settings carry Redis's names (`tls-cert-file`, `tls-auth-clients`,
//! ...). The rustls configurations built from them sit behind a lock that
//! is taken once per handshake, never per request: `CONFIG SET
//! tls-cert-file` builds new ones and swaps them in, so connections made
//! from then on present the new certificate while open ones keep theirs.
//!
//! The handshake and every record's encryption run on the core that owns
//! the connection, as the rest of its work does.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use futures_rustls::pki_types::pem::PemObject;
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use futures_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use futures_rustls::rustls::crypto::{ring, CryptoProvider};
use futures_rustls::rustls::server::WebPkiClientVerifier;
use futures_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use futures_rustls::{TlsAcceptor, TlsConnector};
use thiserror::Error;

/// How long a client or a peer has to finish a TLS handshake it started.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether clients of the TLS port must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthClients {
    /// Required, signed by the CA (Redis's default).
    #[default]
    Yes,
    No,
    /// Checked if presented.
    Optional,
}

impl AuthClients {
    pub fn parse(s: &str) -> Option<AuthClients> {
        match s.to_ascii_lowercase().as_str() {
            "yes" => Some(AuthClients::Yes),
            "no" => Some(AuthClients::No),
            "optional" => Some(AuthClients::Optional),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthClients::Yes => "yes",
            AuthClients::No => "no",
            AuthClients::Optional => "optional",
        }
    }
}

/// The TLS settings, as the config file, the flags and CONFIG SET name them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The TLS client port; 0: none.
    pub port: u16,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// What this node presents when it connects to another (default the
    /// server certificate).
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub ca_cert_file: Option<PathBuf>,
    pub ca_cert_dir: Option<PathBuf>,
    pub auth_clients: AuthClients,
    /// Links between nodes in mutual TLS.
    pub replication: bool,
    /// The HTTP port speaks HTTPS.
    pub http: bool,
    /// "TLSv1.2 TLSv1.3" (Redis's default when empty).
    pub protocols: String,
    /// Cipher suites allowed, by IANA or OpenSSL name, space or colon
    /// separated; empty: rustls's defaults. (Redis splits these between
    /// `tls-ciphers` for TLS 1.2 and `tls-ciphersuites` for 1.3; both
    /// feed this list.)
    pub ciphersuites: String,
    /// The server's order of suites wins over the client's.
    pub prefer_server_ciphers: bool,
    /// Clients may resume sessions (one handshake's keys reused by the next
    /// connection), from a cache of `session_cache_size` entries.
    pub session_caching: bool,
    pub session_cache_size: usize,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            port: 0,
            cert_file: None,
            key_file: None,
            client_cert_file: None,
            client_key_file: None,
            ca_cert_file: None,
            ca_cert_dir: None,
            auth_clients: AuthClients::Yes,
            replication: false,
            http: false,
            protocols: String::new(),
            ciphersuites: String::new(),
            prefer_server_ciphers: false,
            session_caching: true,
            session_cache_size: 20480,
        }
    }
}

impl TlsSettings {
    /// Whether anything asks for TLS at all.
    pub fn wanted(&self) -> bool {
        self.port != 0 || self.replication || self.http
    }
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("{0}")]
    Setting(String),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The live TLS configurations of this node.
pub struct Tls {
    settings: RwLock<TlsSettings>,
    built: RwLock<Built>,
}

#[derive(Clone)]
struct Built {
    /// The client port.
    clients: Arc<ServerConfig>,
    /// The HTTP port: no client certificate asked (REST clients prove who
    /// they are with their token).
    http: Arc<ServerConfig>,
    /// Other nodes connecting to this one: a certificate is required.
    peers_in: Arc<ServerConfig>,
    /// This node connecting to another.
    peers_out: Arc<ClientConfig>,
}

impl Tls {
    /// The configurations for `s`, or why they cannot be built (a missing
    /// file, a key that does not match, an unknown protocol...).
    pub fn new(s: &TlsSettings) -> Result<Tls, TlsError> {
        Ok(Tls {
            built: RwLock::new(build(s)?),
            settings: RwLock::new(s.clone()),
        })
    }

    pub fn settings(&self) -> TlsSettings {
        self.settings.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Builds configurations from `s` and, only if that works, makes them
    /// the ones new connections get (CONFIG SET tls-*: certificates are
    /// reloaded without a restart).
    pub fn reload(&self, s: &TlsSettings) -> Result<(), TlsError> {
        let b = build(s)?;
        if let Ok(mut built) = self.built.write() {
            *built = b;
        }
        if let Ok(mut settings) = self.settings.write() {
            *settings = s.clone();
        }
        Ok(())
    }

    fn built(&self) -> Option<Built> {
        self.built.read().ok().map(|b| b.clone())
    }

    /// For the client port.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.built().map(|b| TlsAcceptor::from(b.clients))
    }

    /// For the HTTP port.
    pub fn http_acceptor(&self) -> Option<TlsAcceptor> {
        self.built().map(|b| TlsAcceptor::from(b.http))
    }

    /// For connections from other nodes (replication, bus).
    pub fn peer_acceptor(&self) -> Option<TlsAcceptor> {
        self.built().map(|b| TlsAcceptor::from(b.peers_in))
    }

    /// For this node's connections to others.
    pub fn connector(&self) -> Option<TlsConnector> {
        self.built().map(|b| TlsConnector::from(b.peers_out))
    }

    /// The blocking-socket forms, for the cluster bus (it runs on its own
    /// thread with std sockets).
    pub fn peer_server_config(&self) -> Option<Arc<ServerConfig>> {
        self.built().map(|b| b.peers_in)
    }

    pub fn peer_client_config(&self) -> Option<Arc<ClientConfig>> {
        self.built().map(|b| b.peers_out)
    }
}

/// The name a node's certificate is checked against: its address (nodes
/// are listed by address, and only the CA's signature is required: see
/// [`CaOnly`]).
pub fn server_name(addr: std::net::IpAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.into())
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |source| TlsError::File {
        what,
        path: path.display().to_string(),
        source,
    };
    let iter = CertificateDer::pem_file_iter(path)
        .map_err(|e| file(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
    let certs: Vec<_> = iter
        .collect::<Result<_, _>>()
        .map_err(|e| file(io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
    if certs.is_empty() {
        return Err(file(io::Error::new(
            io::ErrorKind::InvalidData,
            "no certificate in the file",
        )));
    }
    Ok(certs)
}

fn read_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what,
        path: path.display().to_string(),
        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    })
}

fn roots(s: &TlsSettings) -> Result<Option<Arc<RootCertStore>>, TlsError> {
    let mut store = RootCertStore::empty();
    if let Some(p) = &s.ca_cert_file {
        for c in read_certs("tls-ca-cert-file", p)? {
            store.add(c)?;
        }
    }
    if let Some(dir) = &s.ca_cert_dir {
        let entries = std::fs::read_dir(dir).map_err(|source| TlsError::File {
            what: "tls-ca-cert-dir",
            path: dir.display().to_string(),
            source,
        })?;
        for e in entries.flatten() {
            let p = e.path();
            let pem = p
                .extension()
                .is_some_and(|x| x == "pem" || x == "crt" || x == "cer");
            if pem {
                for c in read_certs("tls-ca-cert-dir", &p)? {
                    store.add(c)?;
                }
            }
        }
    }
    Ok((!store.is_empty()).then(|| Arc::new(store)))
}

fn protocols(s: &TlsSettings) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let text = if s.protocols.trim().is_empty() {
        "TLSv1.2 TLSv1.3"
    } else {
        s.protocols.as_str()
    };
    let mut out = Vec::new();
    for p in text.split([' ', ',']).filter(|p| !p.is_empty()) {
        let v = match p.to_ascii_lowercase().as_str() {
            "tlsv1.2" => &rustls::version::TLS12,
            "tlsv1.3" => &rustls::version::TLS13,
            _ => {
                return Err(TlsError::Setting(format!(
                    "tls-protocols: {p} is not supported (TLSv1.2, TLSv1.3)"
                )))
            }
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

/// The ring provider with only the suites asked for. Names are compared
/// without their `TLS_`/`TLS13_` prefix, so `TLS_AES_256_GCM_SHA384`
/// (OpenSSL's spelling) and `TLS13_AES_256_GCM_SHA384` (rustls's) agree.
fn provider(s: &TlsSettings) -> Result<Arc<CryptoProvider>, TlsError> {
    let mut p = ring::default_provider();
    let wanted: Vec<String> = s
        .ciphersuites
        .split([' ', ':', ','])
        .filter(|w| !w.is_empty())
        .map(|w| bare(w).to_string())
        .collect();
    if !wanted.is_empty() {
        for w in &wanted {
            if !p
                .cipher_suites
                .iter()
                .any(|c| bare(&format!("{:?}", c.suite())) == w)
            {
                return Err(TlsError::Setting(format!(
                    "tls-ciphersuites: {w} is not a supported suite"
                )));
            }
        }
        p.cipher_suites
            .retain(|c| wanted.contains(&bare(&format!("{:?}", c.suite())).to_string()));
    }
    Ok(Arc::new(p))
}

fn bare(name: &str) -> &str {
    let n = name.trim();
    n.strip_prefix("TLS13_")
        .or_else(|| n.strip_prefix("TLS_"))
        .unwrap_or(n)
}

fn build(s: &TlsSettings) -> Result<Built, TlsError> {
    let (Some(cert), Some(key)) = (&s.cert_file, &s.key_file) else {
        return Err(TlsError::Setting(
            "TLS needs tls-cert-file and tls-key-file".into(),
        ));
    };
    let certs = read_certs("tls-cert-file", cert)?;
    let key_der = read_key("tls-key-file", key)?;
    let provider = provider(s)?;
    let versions = protocols(s)?;
    let roots = roots(s)?;

    let clients_builder =
        ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions)?;
    let clients_builder = match (s.auth_clients, &roots) {
        (AuthClients::No, _) => clients_builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Setting(format!(
                "tls-auth-clients {} needs tls-ca-cert-file or tls-ca-cert-dir",
                s.auth_clients.name()
            )))
        }
        (auth, Some(r)) => {
            let b = WebPkiClientVerifier::builder_with_provider(r.clone(), provider.clone());
            let b = if auth == AuthClients::Optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            let v = b
                .build()
                .map_err(|e| TlsError::Setting(format!("tls-ca-cert-file: {e}")))?;
            clients_builder.with_client_cert_verifier(v)
        }
    };
    let mut clients = clients_builder.with_single_cert(certs.clone(), key_der.clone_key())?;
    let mut http = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key_der.clone_key())?;
    for c in [&mut clients, &mut http] {
        c.ignore_client_order = s.prefer_server_ciphers;
        c.session_storage = if s.session_caching && s.session_cache_size > 0 {
            rustls::server::ServerSessionMemoryCache::new(s.session_cache_size)
        } else {
            Arc::new(rustls::server::NoServerSessionStorage {})
        };
    }

    // Between nodes: always mutual, whatever tls-auth-clients says.
    let (peers_in, peers_out) = match &roots {
        Some(r) => {
            let v = WebPkiClientVerifier::builder_with_provider(r.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Setting(format!("tls-ca-cert-file: {e}")))?;
            let peers_in = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .with_client_cert_verifier(v)
                .with_single_cert(certs.clone(), key_der.clone_key())?;
            let (out_certs, out_key) = match (&s.client_cert_file, &s.client_key_file) {
                (Some(c), Some(k)) => (
                    read_certs("tls-client-cert-file", c)?,
                    read_key("tls-client-key-file", k)?,
                ),
                _ => (certs, key_der),
            };
            let verifier = CaOnly::new(r.clone(), provider.clone())?;
            let peers_out = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_client_auth_cert(out_certs, out_key)?;
            (peers_in, peers_out)
        }
        None if s.replication => {
            return Err(TlsError::Setting(
                "tls-replication needs tls-ca-cert-file or tls-ca-cert-dir".into(),
            ))
        }
        None => {
            // No CA: no links between nodes in TLS; configurations that
            // refuse everyone stand in so the types stay simple.
            let deny = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .with_no_client_auth()
                .with_single_cert(certs, key_der)?;
            let out = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth();
            (deny, out)
        }
    };
    Ok(Built {
        clients: Arc::new(clients),
        http: Arc::new(http),
        peers_in: Arc::new(peers_in),
        peers_out: Arc::new(peers_out),
    })
}

/// Checks a node's certificate chain against the CA and nothing else:
/// nodes reach each other by whatever address the topology lists (often
/// an IP a certificate does not name), and what proves a peer is one of
/// the database's nodes is the CA's signature, as with Redis's
/// replication over TLS.
#[derive(Debug)]
struct CaOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl CaOnly {
    fn new(roots: Arc<RootCertStore>, provider: Arc<CryptoProvider>) -> Result<CaOnly, TlsError> {
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| TlsError::Setting(format!("tls-ca-cert-file: {e}")))?;
        Ok(CaOnly { inner })
    }
}

impl ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
