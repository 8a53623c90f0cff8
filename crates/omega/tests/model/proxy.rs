//! A TCP proxy between the agent and the broker whose connections the test can cut at any
//! moment: the agent sees its broker connection drop mid-flight (a PUBLISH sent, its PUBACK
//! lost), as on a flaky link.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The running proxy.
pub struct Proxy {
    addr: SocketAddr,
    cuts: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (cuts, _) = watch::channel(0u64);
        let watch = cuts.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut cut = watch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return; // dropping `inbound` closes it: the client retries
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                    // Both sockets drop here: the client and the broker see the link fail.
                });
            }
        });
        Ok(Proxy { addr, cuts, task })
    }

    /// The `mqtt://` URL clients connect to.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }

    /// Drops every connection open now (new ones are accepted as before).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
