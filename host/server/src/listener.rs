//! The connection layer under the router: accepts TCP connections (TLS-terminated when
//! configured), caps them in total and per client network, bounds the time a client has
//! to send a request's headers (which also closes idle keep-alive connections), serves
//! HTTP/1.1 and HTTP/2 with hyper, and drains gracefully on shutdown.
//!
//! axum's own `serve` has no connection caps and no timeouts; this is the same hyper-util
//! connection builder with those added.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::rate_limit::network_of;

/// How the listener treats connections.
#[derive(Clone)]
pub struct ListenOptions {
    /// TLS termination, when the service serves HTTPS itself.
    pub tls: Option<TlsAcceptor>,
    /// Open connections at most, all clients together.
    pub max_connections: usize,
    /// Open connections at most per client network (IPv4 address, IPv6 /64); trusted
    /// proxies count only against the total.
    pub max_connections_per_client: usize,
    /// Time a client has to complete a TLS handshake and each request's headers, counted
    /// from when the connection opens or the previous answer was sent.
    pub header_read_timeout: Duration,
    /// Reverse proxies, exempt from the per-client cap.
    pub trusted_proxies: Vec<IpAddr>,
}

impl ListenOptions {
    /// The options `config` sets, with its certificate loaded when it names one.
    pub fn from_config(config: &crate::config::Config) -> Result<ListenOptions> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
            _ => None,
        };
        Ok(ListenOptions {
            tls,
            max_connections: config.max_connections,
            max_connections_per_client: config.max_connections_per_client,
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            trusted_proxies: config.trusted_proxies.clone(),
        })
    }
}

/// Loads a PEM certificate chain and private key into a TLS acceptor (HTTP/2 and
/// HTTP/1.1 offered by ALPN).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("tls_cert: cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "tls_cert: {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!("tls_cert: {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls_key: {} is not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("tls_cert/tls_key: the key does not match the certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Open connections per client network.
#[derive(Default)]
struct Counts {
    total: usize,
    by_network: HashMap<IpAddr, usize>,
}

/// A connection's place in the counts, given back when it closes.
struct Slot {
    counts: Arc<Mutex<Counts>>,
    network: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(network) = self.network
            && let Some(n) = counts.by_network.get_mut(&network)
        {
            *n -= 1;
            if *n == 0 {
                counts.by_network.remove(&network);
            }
        }
    }
}

/// Takes a slot for a connection from `peer`, or says which cap it would pass.
fn admit(
    counts: &Arc<Mutex<Counts>>,
    options: &ListenOptions,
    peer: IpAddr,
) -> Result<Slot, &'static str> {
    let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
    if c.total >= options.max_connections {
        return Err("max_connections");
    }
    let network = (!options.trusted_proxies.contains(&peer)).then(|| network_of(peer));
    if let Some(network) = network {
        let n = c.by_network.entry(network).or_default();
        if *n >= options.max_connections_per_client {
            return Err("max_connections_per_client");
        }
        *n += 1;
    }
    c.total += 1;
    Ok(Slot {
        counts: counts.clone(),
        network,
    })
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// the connections finish their requests in flight for at most `grace`, and answers
/// whether all of them did.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ListenOptions,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let graceful = GracefulShutdown::new();
    let mut last_complaint: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors and the like: say so (once a second), back off.
                    if last_complaint.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        tracing::warn!("accepting a connection failed: {e}");
                        last_complaint = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match admit(&counts, &options, peer.ip()) {
            Ok(slot) => slot,
            Err(cap) => {
                if last_complaint.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                    tracing::warn!(peer = %peer.ip(), cap, "connection refused: over the cap");
                    last_complaint = Some(Instant::now());
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let options = options.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            connection(stream, peer, router, &options, watcher).await;
        });
    }
    drop(listener);
    tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_ok()
}

/// Serves `state`'s router on `listener` with the connection options of its configuration
/// until `shutdown` resolves, then drains for `shutdown_grace_s`. What tests, benchmarks
/// and the demo run; `gigaspot serve` adds the signals and the store's close.
pub async fn serve_state(
    listener: TcpListener,
    state: crate::app::AppState,
    shutdown: impl Future<Output = ()>,
) -> Result<bool> {
    let options = ListenOptions::from_config(&state.config)?;
    let grace = Duration::from_secs(u64::from(state.config.shutdown_grace_s));
    let router = crate::app::router(state);
    Ok(serve(listener, router, options, shutdown, grace).await)
}

/// Serves one connection: the TLS handshake (bounded by the header-read timeout), then
/// HTTP with the peer address in every request's extensions.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    options: &ListenOptions,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(options.header_read_timeout)
        .keep_alive_timeout(options.header_read_timeout);
    let result = match &options.tls {
        None => {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            watcher.watch(conn.into_owned()).await
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(options.header_read_timeout, acceptor.accept(stream)).await;
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            watcher.watch(conn.into_owned()).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, "connection ended: {e}");
    }
}

/// Raises the soft limit of open files to the hard limit, so that the connection caps,
/// not the descriptor table, bound the connections; answers the limit in force.
pub fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!("cannot raise the open-files limit: {e}");
            None
        }
    }
}
