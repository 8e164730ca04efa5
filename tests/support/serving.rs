//! `server::serve` in-process for a test: on its own thread and tokio runtime, bound to
//! 127.0.0.1 on a free port, and stopped (and joined) when dropped.
#![allow(dead_code)]

use billhost::Engine;
use billhost::server::{self, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Serving {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Serving {
    /// Serves `engine` with two async workers; `blocking_threads` bounds tokio's blocking pool,
    /// where the slow lanes' calls run.
    pub fn start(engine: Arc<Engine>, config: ServerConfig, blocking_threads: usize) -> Serving {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(blocking_threads)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                bound
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let shutdown = async {
                    let _ = stopped.await;
                };
                server::serve(listener, engine, config, shutdown)
                    .await
                    .expect("serve");
            });
        });
        let addr = addr
            .recv_timeout(Duration::from_secs(10))
            .expect("server up");
        Serving {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
