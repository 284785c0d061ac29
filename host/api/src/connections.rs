//! The API's door: at most its share of connections at once (the rest closed as soon as they
//! are accepted), silent and slow clients closed, accept errors (out of file descriptors)
//! backed off instead of retried in a spin.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::Limits;

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends or `stop`.
async fn serve_one<I>(
    io: I,
    service: TowerToHyperService<axum::Router>,
    limits: Limits,
    stop: &CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "API connection ended");
    }
}

/// How long the API waits for its open connections to finish after shutdown before it drops
/// them.
const DRAIN: Duration = Duration::from_secs(5);
/// The first pause after a failed accept; it doubles while accepting keeps failing.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause after a failed accept.
const LONGEST_PAUSE: Duration = Duration::from_secs(1);
/// A refused connection is logged at most this often (the metrics count every one).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The API's connection counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections being served now.
    pub open: AtomicU64,
    /// Connections closed at once because the API held its share already.
    pub refused: AtomicU64,
    /// Accepts that failed (out of file descriptors and the like).
    pub accept_errors: AtomicU64,
    /// Connections to the HTTPS port that did not complete a TLS handshake (plain HTTP among
    /// them).
    pub tls_refused: AtomicU64,
}

/// How many connections the API serves at once: `api.max_connections`, and never more than a
/// quarter of the file descriptor limit, so the decision path, the peer link and the plugins
/// keep the rest whatever the API's clients do.
pub fn share(limits: &Limits, fd_limit: Option<u64>) -> usize {
    let quarter = fd_limit.map_or(usize::MAX, |l| usize::try_from(l / 4).unwrap_or(usize::MAX));
    limits.max_connections.min(quarter).max(1)
}

/// Accepts and serves connections on `listener` until `shutdown`, then lets the open ones
/// finish for a while.
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stats: Arc<ConnectionStats>,
    shutdown: CancellationToken,
) {
    let most = share(&limits, duet_base::fds::limit());
    tracing::info!(
        connections = most,
        header_timeout = %humantime::format_duration(limits.header_timeout),
        "API: at most {most} connections at once"
    );
    let permits = Arc::new(Semaphore::new(most));
    let mut connections = tokio::task::JoinSet::new();
    let mut pause = FIRST_PAUSE;
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                pause = FIRST_PAUSE;
                stream
            }
            Err(error) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if pause == FIRST_PAUSE {
                    tracing::warn!(%error, "API: accept failed; backing off");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(LONGEST_PAUSE);
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed at once: the client learns now, and no descriptor is held for it.
            drop(stream);
            let refused = stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
            let now = tokio::time::Instant::now();
            if last_refusal_log.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY) {
                last_refusal_log = Some(now);
                tracing::warn!(refused, "API: {most} connections open; closing new ones");
            }
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let (stats, stop, tls) = (stats.clone(), shutdown.clone(), tls.clone());
        stats.open.fetch_add(1, Ordering::Relaxed);
        connections.spawn(async move {
            match tls {
                None => serve_one(stream, service, limits, &stop).await,
                // The handshake is part of the header's time: a silent client is closed.
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => serve_one(stream, service, limits, &stop).await,
                        Ok(Err(e)) => {
                            stats.tls_refused.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(error = %e, "API: TLS handshake failed");
                        }
                        Err(_) => {
                            stats.tls_refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            stats.open.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    let _ = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_the_setting_but_never_more_than_a_quarter_of_the_fds() {
        let limits = Limits::default();
        assert_eq!(share(&limits, Some(1_048_576)), limits.max_connections);
        assert_eq!(share(&limits, Some(512)), 128);
        assert_eq!(share(&limits, None), limits.max_connections);
        assert_eq!(share(&limits, Some(2)), 1, "always at least one");
    }
}
