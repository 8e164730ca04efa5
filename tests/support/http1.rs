//! A minimal HTTP/1.1 keep-alive client over std `TcpStream`, for the kill test
//! (`tests/kill.rs`) and the benches (`benches/http_load.rs`, `benches/panel.rs`): one connection, one request
//! at a time, answers read by `Content-Length`. Every read and write has a timeout, so that a
//! dead server ends a caller's loop instead of hanging it.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One kept-alive connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
    /// The server said `Connection: close`: the next request needs a new connection.
    closed: bool,
}

/// An answer: the status and the body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// The text of the first `<name>` element of an XML document.
    pub fn xml_field(&self, name: &str) -> Option<&str> {
        let open = format!("<{name}>");
        let start = self.body.find(&open)? + open.len();
        let end = start + self.body[start..].find(&format!("</{name}>"))?;
        Some(&self.body[start..end])
    }

    /// An XML success document (`<ok/>`).
    pub fn is_ok(&self) -> bool {
        self.status == 200 && self.body.contains("<ok/>")
    }
}

impl Conn {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::with_capacity(16 * 1024, stream.try_clone()?),
            writer: stream,
            request: Vec::with_capacity(1024),
            closed: false,
        })
    }

    /// `GET target` (a path with its query string).
    pub fn get(&mut self, target: &str) -> io::Result<Answer> {
        self.request.clear();
        write!(
            self.request,
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )?;
        self.exchange()
    }

    /// `GET target` with a `Cookie` header (the panel's session).
    pub fn get_with_cookie(&mut self, target: &str, cookie: &str) -> io::Result<Answer> {
        self.request.clear();
        write!(
            self.request,
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n"
        )?;
        self.exchange()
    }

    /// `POST path` with a form body.
    pub fn post(&mut self, path: &str, body: &str) -> io::Result<Answer> {
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        self.exchange()
    }

    fn exchange(&mut self) -> io::Result<Answer> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the server closed the connection",
            ));
        }
        self.writer.write_all(&self.request)?;
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before an answer",
            ));
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("status line {line:?}")))?;
        let mut length = None;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed in the head",
                ));
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("connection")
                    && value.eq_ignore_ascii_case("close")
                {
                    self.closed = true;
                }
            }
        }
        let length = length.ok_or_else(|| bad("no content-length".into()))?;
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        let body = String::from_utf8(body).map_err(|e| bad(e.to_string()))?;
        Ok(Answer { status, body })
    }
}

/// Percent-encodes a parameter value.
pub fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
