//! HTTPS for the built-in site (`serve --tls`, `--server LOCAL --tls`): a CA
//! and a certificate for 127.0.0.1 and localhost that it signs, made at
//! start-up with rcgen, or the user's own certificate and key (`serve --tls
//! --cert --key`); and a listener that hands axum only connections whose TLS
//! handshake is done. Handshakes run on tasks of their own, so a slow or
//! broken client never holds up the accept loop.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// Longest a client may take over its handshake before it is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for axum to take them.
const READY_QUEUE: usize = 1024;

/// The site's certificate and key, ready to serve.
pub struct SiteTls {
    /// The CA's certificate (PEM), what a client must trust, when the site
    /// made its own; `None` with the user's certificate, whose CA the user has.
    pub ca_pem: Option<String>,
    config: Arc<ServerConfig>,
}

impl SiteTls {
    /// A new CA, and a certificate for 127.0.0.1, ::1 and localhost signed by
    /// it. Its key exists only in this process.
    pub fn generate() -> Result<SiteTls, String> {
        let why = |e: rcgen::Error| format!("cannot make the site's certificates: {e}");
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(why)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "flagmaster built-in site CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().map_err(why)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(why)?;
        let issuer = Issuer::new(ca, ca_key);

        let names = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
        let mut leaf = CertificateParams::new(names).map_err(why)?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().map_err(why)?;
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(why)?;

        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let config = server_config(vec![leaf_cert.der().clone()], key)
            .map_err(|e| format!("cannot set up the site's TLS: {e}"))?;
        Ok(SiteTls {
            ca_pem: Some(ca_cert.pem()),
            config,
        })
    }

    /// The user's certificate chain (`cert`, PEM, the server's certificate
    /// first) and its private key (`key`, PEM: PKCS#8, PKCS#1 or SEC1). Its
    /// dates and names are not checked: serving an expired certificate, or
    /// one for another host, is a way to test clients.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<SiteTls, Error> {
        let bad = |what: &'static str, path: &Path, why: String| Error::PemFile {
            what,
            path: path.to_path_buf(),
            why,
        };
        let read =
            |what, path: &Path| std::fs::read(path).map_err(|e| bad(what, path, e.to_string()));
        let malformed = |what, path: &Path| bad(what, path, "malformed PEM".into());
        let chain = CertificateDer::pem_slice_iter(&read("--cert", cert)?)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| malformed("--cert", cert))?;
        if chain.is_empty() {
            return Err(bad("--cert", cert, "no PEM certificate in it".into()));
        }
        let private = match PrivateKeyDer::from_pem_slice(&read("--key", key)?) {
            Ok(private) => private,
            Err(pem::Error::NoItemsFound) => {
                return Err(bad("--key", key, "no PEM private key in it".into()))
            }
            Err(_) => return Err(malformed("--key", key)),
        };
        let config = server_config(chain, private).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => bad(
                "--key",
                key,
                format!("not the key of the certificate in {}", cert.display()),
            ),
            rustls::Error::General(why) => bad("--key", key, why),
            _ => bad("--cert", cert, "not a usable certificate".into()),
        })?;
        Ok(SiteTls {
            ca_pem: None,
            config,
        })
    }

    /// Accepts TLS connections with this certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }
}

/// A server's TLS settings for `chain` and `key`: HTTP/1.1 only, as the
/// site speaks nothing else.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A listener whose connections have done their TLS handshake. Created inside
/// the site's runtime; its accept task ends when the listener is dropped.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, tls: &SiteTls) -> io::Result<TlsListener> {
        let addr = listener.local_addr()?;
        let acceptor = tls.acceptor();
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((tcp, peer)) = accepted else {
                    // Out of descriptors, most likely: let some go first.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                    // A client that does not trust us hangs up mid-handshake:
                    // nothing to serve.
                    if let Ok(Ok(stream)) = handshake.await {
                        let _ = tx.send((stream, peer)).await;
                    }
                });
            }
        });
        Ok(TlsListener { ready, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task holds the sender until we are dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}
