//! A CA generated in the test and a server certificate it signed for 127.0.0.1, and a
//! loopback endpoint that terminates TLS with it in front of a real server, for the TLS
//! tests (the CA is trusted by nothing else on the machine).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

/// A CA, and a server certificate it signed for 127.0.0.1: (CA PEM, acceptor).
pub fn certificates() -> (String, TlsAcceptor) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (ca_cert.pem(), TlsAcceptor::from(Arc::new(config)))
}

/// Writes the CA's PEM into `dir` and gives the file's path, as the flags take it.
pub fn ca_file(dir: &std::path::Path, pem: &str) -> String {
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    ca.to_str().unwrap().to_string()
}

/// What a client sends before its TLS handshake.
#[derive(Clone, Copy)]
pub enum Preamble {
    /// Nothing: TLS from the first byte (HTTPS).
    None,
    /// PostgreSQL's SSLRequest, answered `S`; a client that does not send it is closed,
    /// as a TLS-only server does.
    Postgres,
}

/// The SSLRequest message: length 8, then the code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Terminates TLS on a loopback port and relays each connection to `upstream`.
pub async fn tls_endpoint(
    acceptor: TlsAcceptor,
    upstream: SocketAddr,
    preamble: Preamble,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Preamble::Postgres = preamble {
                    let mut first = [0u8; 8];
                    if socket.read_exact(&mut first).await.is_err()
                        || first != SSL_REQUEST
                        || socket.write_all(b"S").await.is_err()
                    {
                        return;
                    }
                }
                // A refused handshake (the client rejecting the certificate) ends here.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut up) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    addr
}
