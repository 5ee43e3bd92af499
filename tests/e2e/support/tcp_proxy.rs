//! A TCP proxy in front of a real server that can simulate that server restarting: every open
//! connection is cut and new ones are refused until the outage ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct TcpProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (d, c) = (down.clone(), connections.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client); // refused: the server is "restarting"
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut open = c.lock().unwrap();
                open.retain(|h| !h.is_finished());
                open.push(task.abort_handle());
            }
        });
        TcpProxy {
            addr,
            down,
            connections,
        }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        for h in self.connections.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub fn come_back(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
