//! Connections that go quiet are closed: a listener whose streams fail a pending read once no
//! byte has moved in either direction for `idle`. Without it, a client that connects and sends
//! nothing (or half a request line) would hold its socket for ever, and idle keep-alive
//! connections would never be reclaimed: hyper, as `axum::serve` runs it, has no timer.
//!
//! Requests in progress are not affected as long as `idle` is longer than the request
//! deadline: a handler always answers within that deadline, and writing the answer counts as
//! activity.
//!
//! The stream also puts a document into the answers hyper makes on its own, before any
//! handler runs, for a request line or header section over its limits (hyper's request
//! URI is limited to 64 KiB, and it answers a bare `414`/`431`): clients read `doc.error` in
//! every answer. Only answers without a content type are replaced (every handler's has one):
//! hyper's bare `400`, `414` and `431`.

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

pub struct IdleListener {
    inner: TcpListener,
    idle: Duration,
}

impl IdleListener {
    pub fn new(inner: TcpListener, idle: Duration) -> Self {
        IdleListener { inner, idle }
    }
}

impl Listener for IdleListener {
    type Io = IdleStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (IdleStream, SocketAddr) {
        let (stream, addr) = Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        (IdleStream::new(stream, self.idle), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// The client's address, as the handler extracts it (`ConnectInfo<Peer>`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, IdleListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, IdleListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

pub struct IdleStream {
    inner: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// An answer of ours standing in for hyper's bare one, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

/// Our answer for a response head that hyper wrote without a handler, if `head` is one.
fn replace_bare_answer(head: &[u8]) -> Option<Vec<u8>> {
    // Only these statuses can be hyper's own: every other answer (each 200 among them) passes
    // without a look at its headers.
    if !(head.starts_with(b"HTTP/1.1 400 ")
        || head.starts_with(b"HTTP/1.1 414 ")
        || head.starts_with(b"HTTP/1.1 431 "))
    {
        return None;
    }
    // Every answer of a handler has a content type; hyper's own have none.
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    if head[..end]
        .to_ascii_lowercase()
        .windows(14)
        .any(|w| w == b"\ncontent-type:")
    {
        return None;
    }
    let (status, object, msg) = if head.starts_with(b"HTTP/1.1 400 ") {
        (
            "400 Bad Request",
            "request",
            "The request is not HTTP/1.1 as it should be (control characters in the request \
             line? percent-encode them)",
        )
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        (
            "414 URI Too Long",
            "uri",
            "The request line is longer than 64 KiB: send the parameters in a POST body",
        )
    } else if head.starts_with(b"HTTP/1.1 431 ") {
        (
            "431 Request Header Fields Too Large",
            "headers",
            "The request's header section is too large",
        )
    } else {
        return None;
    };
    let doc = crate::Doc::Error(crate::error::FuncError::new(
        crate::error::ErrorType::Value,
        object,
        "",
        msg,
    ));
    let body = crate::wire::render(
        &doc,
        crate::wire::Format::Xml,
        crate::wire::Meta {
            func: "",
            lang: "en",
        },
    );
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {}\r\ncontent-length: {}\r\n\
         x-content-type-options: nosniff\r\nconnection: close\r\n\r\n",
        crate::wire::Format::Xml.content_type(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl IdleStream {
    fn new(inner: TcpStream, idle: Duration) -> Self {
        IdleStream {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            replacement: None,
        }
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Writes what is left of a replacement answer; ready once it is all out.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.replacement {
            if *done == bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes hyper's bare answer (all of `len` bytes starting with `head`) as written and
    /// queues ours instead.
    fn swallow(&mut self, head: &[u8], len: usize) -> Option<usize> {
        let ours = replace_bare_answer(head)?;
        self.replacement = Some((ours, 0));
        Some(len)
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if result.is_ok() && buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        if let Some(n) = self.swallow(buf, buf.len()) {
            self.touch();
            return Poll::Ready(Ok(n));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            let total = bufs.iter().map(|b| b.len()).sum();
            if let Some(n) = self.swallow(first, total) {
                self.touch();
                return Poll::Ready(Ok(n));
            }
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled
            && n > 0
        {
            self.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.drain(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
