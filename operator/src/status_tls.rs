//! TLS for the status server: an axum listener whose handshakes run beside each other (a slow
//! client holds up no one), serving a certificate that can be swapped while it runs, and the
//! loop that keeps the certificate fresh ([`crate::status_certificate`]).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::status_certificate::{self, Material};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the Secret is read again (a renewal is due 30 days before the end).
const RENEW_CHECK: Duration = Duration::from_secs(3600);

/// The certificate the server presents; [`Certificates::replace`] swaps it for new handshakes.
#[derive(Debug)]
pub struct Certificates(RwLock<Arc<CertifiedKey>>);

impl Certificates {
    pub fn new(material: &Material) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self(RwLock::new(Arc::new(certified_key(material)?)))))
    }

    pub fn replace(&self, material: &Material) -> anyhow::Result<()> {
        let key = Arc::new(certified_key(material)?);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

fn certified_key(material: &Material) -> anyhow::Result<CertifiedKey> {
    let cert = CertificateDer::from_pem_slice(material.cert.as_bytes())?;
    let key = PrivateKeyDer::from_pem_slice(material.key.as_bytes())?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)?;
    Ok(CertifiedKey::new(vec![cert], signing))
}

/// Accepted connections after their TLS handshake, for `axum::serve`.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, certificates: Arc<Certificates>) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(certificates);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let local = tcp.local_addr()?;
        let (sender, handshaken) = mpsc::channel(64);
        tokio::spawn(async move {
            while !sender.is_closed() {
                let (stream, peer) = match tcp.accept().await {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::warn!(%error, "status server: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "status server: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "status server: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { handshaken, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Makes or reads the certificate in the Secret, and keeps renewing it while the operator runs.
/// Returns what to serve and the CA's PEM for the trainer pods.
pub async fn start(
    api: Api<Secret>,
    secret: String,
    names: Vec<String>,
) -> anyhow::Result<(Arc<Certificates>, String)> {
    let material = status_certificate::ensure(&api, &secret, &names, None).await?;
    let certificates = Certificates::new(&material)?;
    let ca = material.ca_cert.clone();
    let serving = certificates.clone();
    tokio::spawn(async move {
        let mut current = material;
        loop {
            tokio::time::sleep(RENEW_CHECK).await;
            match status_certificate::ensure(&api, &secret, &names, Some(&current)).await {
                Ok(material) if material.ca_cert != current.ca_cert => {
                    // Someone replaced the CA: running pods trust the old one, so keep serving it.
                    tracing::warn!(secret, "the Secret holds another CA; restart the operator to serve it");
                }
                Ok(material) if material != current => match serving.replace(&material) {
                    Ok(()) => current = material,
                    Err(error) => tracing::warn!(%error, "the renewed certificate could not be loaded"),
                },
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, "checking the status server's certificate failed; retrying")
                }
            }
        }
    });
    Ok((certificates, ca))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status_certificate::serving_names;

    const HOST: &str = "ocellus-operator.ocellus-system.svc";

    async fn serve(material: &Material) -> (SocketAddr, Arc<Certificates>) {
        let certificates = Certificates::new(material).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = TlsListener::new(tcp, certificates.clone()).unwrap();
        let address = axum::serve::Listener::local_addr(&listener).unwrap();
        let app = axum::Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (address, certificates)
    }

    fn client(ca: Option<&str>, address: SocketAddr) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().resolve(HOST, address).timeout(Duration::from_secs(10));
        if let Some(ca) = ca {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    #[tokio::test]
    async fn pods_with_the_ca_get_through_and_a_stalled_handshake_holds_up_no_one() {
        let names = serving_names(&format!("https://{HOST}:8081"), "ocellus-operator", "ocellus-system");
        let material = Material::new(&names, time::OffsetDateTime::now_utc()).unwrap();
        let (address, certificates) = serve(&material).await;
        let url = format!("https://{HOST}:{}/ping", address.port());
        // A client that connects and never speaks.
        let _silent = TcpStream::connect(address).await.unwrap();
        let answer = client(Some(&material.ca_cert), address).get(&url).send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "pong");
        let refused = client(None, address).get(&url).send().await.unwrap_err();
        assert!(refused.is_connect(), "{refused:?}");
        // Renewed under the same CA while serving: new connections get the new certificate.
        let renewed = material.renewed(&names, time::OffsetDateTime::now_utc()).unwrap();
        certificates.replace(&renewed).unwrap();
        let answer = client(Some(&material.ca_cert), address).get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        // Another CA's pods are refused.
        let other = Material::new(&names, time::OffsetDateTime::now_utc()).unwrap();
        assert!(client(Some(&other.ca_cert), address).get(&url).send().await.is_err());
    }
}
