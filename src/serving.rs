//! The listener's own defences, before any request reaches the router: a cap on open
//! connections, a deadline for request headers (which also ends idle keep-alive
//! connections) and HTTP/2 keep-alive pings. Without them one client can hold the
//! process's sockets and memory by opening connections and sending nothing, or a byte
//! at a time (slowloris).

use std::future::{ready, Ready};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::HttpSettings;

/// How often an HTTP/2 connection is pinged, and how long a ping may go unanswered.
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may have open at once (hyper's default is 200).
const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Sets the timers of a connection builder. hyper arms the header-read deadline as soon
/// as a connection waits for a request, so it bounds both a request's slow headers and
/// a keep-alive connection left idle.
pub fn configure<E>(builder: &mut Builder<E>, settings: &HttpSettings) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS);
}

/// Accepts a connection only while fewer than HTTP_MAX_CONNECTIONS are open; one more
/// is closed at once (before any TLS handshake), so a flood of connections costs a
/// socket each for a moment, not a task and buffers each for as long as the client likes.
#[derive(Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
}

impl ConnectionLimit {
    pub fn new(max_connections: usize) -> Self {
        metrics::gauge!("http_connections_open").set(0.0);
        metrics::counter!("http_connections_refused_total").absolute(0);
        Self {
            permits: Arc::new(Semaphore::new(max_connections)),
        }
    }
}

impl<I, S> Accept<I, S> for ConnectionLimit {
    type Stream = Counted<I>;
    type Service = S;
    type Future = Ready<io::Result<(Counted<I>, S)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        ready(match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::gauge!("http_connections_open").increment(1.0);
                Ok((
                    Counted {
                        inner: stream,
                        _permit: permit,
                    },
                    service,
                ))
            }
            Err(_) => {
                metrics::counter!("http_connections_refused_total").increment(1);
                Err(io::Error::other("HTTP_MAX_CONNECTIONS reached"))
            }
        })
    }
}

/// A connection holding one of the limit's permits until it is dropped.
pub struct Counted<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
}

impl<I> Drop for Counted<I> {
    fn drop(&mut self) {
        metrics::gauge!("http_connections_open").decrement(1.0);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
