//! The load generator of the HTTP bench, built as wrk is: one thread per CPU, each driving its
//! share of the keep-alive connections from a single-threaded event loop (a tokio
//! current-thread runtime), one request at a time per connection, answers read by
//! `Content-Length`. A connection waiting for its answer costs no thread, so the generator does
//! not add a thread switch of its own to every request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// What one connection did: requests answered and each one's latency in µs.
pub type Done = (u64, Vec<u32>);

/// `connections` keep-alive connections on `threads` threads, connection `c` (to
/// `addrs[c % addrs.len()]`: several servers share the load) sending `target(c, i)` as its
/// `i`-th request and waiting for the answer, until `budget` is spent or its `target` answers
/// `None`. Every answer must be a 200 without an error document. Answers each connection's
/// outcome and the time it all took.
pub fn run(
    addrs: &[SocketAddr],
    connections: usize,
    threads: usize,
    budget: Duration,
    target: &(dyn Fn(usize, u64) -> Option<String> + Sync),
) -> (Vec<Done>, Duration) {
    let start = Instant::now();
    let deadline = start + budget;
    let threads = threads.clamp(1, connections.max(1));
    let done: Vec<Done> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    super::cpu::as_generator(|| {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_io()
                            .build()
                            .expect("client runtime");
                        let mine = (t..connections).step_by(threads);
                        runtime.block_on(join_all(
                            mine.map(|c| connection(addrs[c % addrs.len()], c, deadline, target))
                                .collect(),
                        ))
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("load thread"))
            .collect()
    });
    (done, start.elapsed())
}

/// Drives every future to its end on this thread, polling each one whenever the thread is
/// woken (a handful of connections per thread: cheap).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|o| o.expect("every connection finished"))
        .collect()
}

async fn connection(
    addr: SocketAddr,
    c: usize,
    deadline: Instant,
    target: &(dyn Fn(usize, u64) -> Option<String> + Sync),
) -> Done {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let Some(path) = target(c, n) else { break };
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let sent = Instant::now();
        write_all(&stream, request.as_bytes()).await;
        let (status, body) = answer(&stream, &mut buffer).await;
        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        assert!(
            status == 200 && !body.contains("<error"),
            "{path}: {status} {body}"
        );
        n += 1;
    }
    (n, latencies)
}

async fn write_all(stream: &TcpStream, mut data: &[u8]) {
    while !data.is_empty() {
        match stream.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stream.writable().await.expect("writable");
            }
            Err(e) => panic!("write: {e}"),
        }
    }
}

/// Reads one answer: its status and body (`buffer` keeps what arrived beyond it).
async fn answer(stream: &TcpStream, buffer: &mut Vec<u8>) -> (u16, String) {
    loop {
        if let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..head_end]).expect("ASCII head");
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status");
            let length: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .expect("content-length");
            let end = head_end + 4 + length;
            if buffer.len() >= end {
                let body = String::from_utf8(buffer[head_end + 4..end].to_vec()).expect("UTF-8");
                buffer.drain(..end);
                return (status, body);
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        match stream.try_read(&mut chunk) {
            Ok(0) => panic!("the server closed the connection"),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stream.readable().await.expect("readable");
            }
            Err(e) => panic!("read: {e}"),
        }
    }
}
