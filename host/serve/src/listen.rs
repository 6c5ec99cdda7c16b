//! Accepting connections: each one served by hyper (HTTP/1.1 and HTTP/2)
//! with the head caps of [`ServeLimits`] — a header timeout (with a timer,
//! which `axum::serve` does not give hyper, so a client that never finishes
//! its headers would hold its connection for good), the largest head and
//! the most headers — and the peer's address put where axum's
//! `ConnectInfo` extractor reads it. On shutdown every connection finishes
//! its request in flight and closes (graceful shutdown).

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::limits::ServeLimits;

/// Serves `router` on `listener` until `stop` resolves, then waits for the
/// open connections to finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &ServeLimits,
    stop: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.header_bytes.max(8 << 10))
        .max_headers(limits.max_headers);
    builder.http2().timer(TokioTimer::new());
    // Dropped at shutdown: each connection's task sees it and closes
    // gracefully; the receiver count says how many are still open.
    let (closing, _) = tokio::sync::watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service =
            router
                .clone()
                .map_request(move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let service = TowerToHyperService::new(service);
        let builder = builder.clone();
        let mut closed = closing.subscribe();
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => log_end(peer, result),
                _ = closed.changed() => {
                    connection.as_mut().graceful_shutdown();
                    log_end(peer, connection.await);
                }
            }
        });
    }
    let _ = closing.send(());
    // Each connection drops its receiver when it is done; one that does not
    // finish within the grace period is left to the runtime's shutdown.
    if tokio::time::timeout(limits.grace, closing.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = closing.receiver_count(),
            "connections still open after the grace period"
        );
    }
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
