//! A minimal SMTP server on 127.0.0.1 for the tests that deliver email (`invoices.rs`,
//! `postgres_cluster.rs`): it accepts every message and keeps its DATA as received.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// An SMTP server on 127.0.0.1 that accepts every message and keeps it (the DATA as received).
pub struct SmtpServer {
    pub addr: SocketAddr,
    messages: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        Self::on("127.0.0.1:0".parse().expect("addr"))
    }

    pub fn on(addr: SocketAddr) -> SmtpServer {
        let listener = TcpListener::bind(addr).expect("bind smtp");
        let addr = listener.local_addr().expect("smtp addr");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (messages, stop) = (messages.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let messages = messages.clone();
                    std::thread::spawn(move || {
                        let _ = session(stream, &messages);
                    });
                }
            })
        };
        SmtpServer {
            addr,
            messages,
            stop,
            thread: Some(thread),
        }
    }

    pub fn received(&self) -> Vec<String> {
        self.messages.lock().expect("messages").clone()
    }

    /// Waits until `n` messages arrived (or 20 s passed).
    pub fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.received().len() < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.received()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag and closes the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One SMTP conversation: EHLO/HELO, MAIL, RCPT, DATA (dot-unstuffed), RSET, NOOP, QUIT.
fn session(stream: TcpStream, messages: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::new(stream);
    out.write_all(b"220 test SMTP ready\r\n")?;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let verb = line.trim_end().to_ascii_uppercase();
        if verb.starts_with("EHLO") {
            out.write_all(b"250-test\r\n250-8BITMIME\r\n250 SIZE 10000000\r\n")?;
        } else if verb.starts_with("HELO") || verb.starts_with("MAIL") || verb.starts_with("RCPT") {
            out.write_all(b"250 OK\r\n")?;
        } else if verb == "DATA" {
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = String::new();
            loop {
                line.clear();
                if input.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            messages.lock().expect("messages").push(data);
            out.write_all(b"250 queued\r\n")?;
        } else if verb == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            out.write_all(b"250 OK\r\n")?;
        }
    }
}
