use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// A connection that fails every read and write once its node shuts down, so that peers see a
/// closed connection and reconnect, instead of talking to a stopped node's leftover handlers.
pub struct Killable<T> {
    inner: T,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<T> Killable<T> {
    pub fn new(inner: T, token: &CancellationToken) -> Killable<T> {
        Killable {
            inner,
            killed: Box::pin(token.clone().cancelled_owned()),
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.killed.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the node is shutting down",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

use std::future::Future;

impl<T: AsyncRead + Unpin> AsyncRead for Killable<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Killable<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts plain TCP connections as [`Killable`] ones, for axum's server; the listener closes
/// when the token is cancelled.
pub struct KillableListener {
    listener: tokio::net::TcpListener,
    token: CancellationToken,
}

impl KillableListener {
    pub fn new(listener: tokio::net::TcpListener, token: CancellationToken) -> KillableListener {
        KillableListener { listener, token }
    }

    /// Waits for the next connection; `None` once the node shuts down.
    pub async fn accept(&mut self) -> Option<(Killable<tokio::net::TcpStream>, std::net::SocketAddr)> {
        loop {
            tokio::select! {
                _ = self.token.cancelled() => return None,
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        let _ = tcp.set_nodelay(true);
                        return Some((Killable::new(tcp, &self.token), addr));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

impl axum::serve::Listener for KillableListener {
    type Io = Killable<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match KillableListener::accept(self).await {
            Some(conn) => conn,
            // The node is stopping and its server task is about to be dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
