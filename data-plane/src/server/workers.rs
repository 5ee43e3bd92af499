//! The proxy's worker threads. Each runs a single-threaded tokio runtime that accepts from its
//! own part of the proxy listener (`modelgate_listener::Listener::split`: a duplicate of the one
//! socket; a worker serving well above the least busy one hands what it accepts to that
//! one) and serves its connections to their end. A request, its upstream call
//! (the upstream client pools its connections per thread, `crate::providers::upstream`) and its
//! stream pump all run on the thread that accepted the connection: nothing on the request path
//! hands work to another thread, so no request pays a cross-thread wake-up or a work-stealing
//! search. Under a multi-threaded runtime those were about a quarter of a JSON request's CPU on
//! two cores shared with the load (see ARCHITECTURE.md, "The hot path").
//!
//! What is not per request stays on the main runtime: the config stream, the usage shipper, the
//! control-plane channel the limits and budgets lease through, the metrics listener.

use std::time::Duration;

use super::Proxy;
use modelgate_listener::Listener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// How long a stopping worker waits for blocking work it started (a large body's parse).
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

/// The running worker threads.
pub struct Workers {
    /// One per worker: sent once its listener has drained (every connection finished).
    drained: Vec<oneshot::Receiver<()>>,
    /// One per worker: sent once its runtime is gone.
    exited: Vec<oneshot::Receiver<()>>,
    /// Ends the workers' runtimes, dropping whatever still runs on them; cancelled on drop.
    stop: StopOnDrop,
}

/// Cancels its token when dropped, so that a data plane dropped without a shutdown does not
/// leave its worker threads serving.
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The number of workers when none is set: one per CPU this process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl Workers {
    /// Splits `listener` in `count` parts (at least one) and serves the proxy on each from a
    /// thread of its own, until `shutdown` is cancelled.
    pub fn start(
        listener: Listener,
        count: usize,
        proxy: Proxy,
        shutdown: &CancellationToken,
    ) -> std::io::Result<Workers> {
        // Stops the threads already started if a later one cannot be.
        let stop = StopOnDrop(CancellationToken::new());
        let mut drained = Vec::new();
        let mut exited = Vec::new();
        for (n, part) in listener.split(count.max(1))?.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("mg-proxy-blocking")
                .build()?;
            // Registered with the runtime that will serve it.
            let listener = {
                let _entered = runtime.enter();
                part.attach()?
            };
            let (drained_tx, drained_rx) = oneshot::channel();
            let (exited_tx, exited_rx) = oneshot::channel();
            let (proxy, shutdown, stop) = (proxy.clone(), shutdown.clone(), stop.0.clone());
            std::thread::Builder::new()
                .name(format!("mg-proxy-{n}"))
                .spawn(move || {
                    runtime.block_on(async {
                        tokio::select! {
                            () = listener.serve(proxy, shutdown) => {}
                            () = stop.cancelled() => return,
                        }
                        let _ = drained_tx.send(());
                        // Streams and lease calls begun here finish here: the runtime lives
                        // until the data plane has flushed its usage and stops the workers.
                        stop.cancelled().await;
                    });
                    runtime.shutdown_timeout(BLOCKING_GRACE);
                    let _ = exited_tx.send(());
                })?;
            drained.push(drained_rx);
            exited.push(exited_rx);
        }
        Ok(Workers {
            drained,
            exited,
            stop,
        })
    }

    /// Waits until every worker's listener has drained (after `shutdown` was cancelled).
    pub async fn drained(&mut self) {
        for rx in self.drained.drain(..) {
            let _ = rx.await;
        }
    }

    /// Ends the workers' runtimes and waits (bounded) for their threads to finish.
    pub async fn stop(self) {
        let Workers { exited, stop, .. } = self;
        drop(stop);
        let all = async {
            for rx in exited {
                let _ = rx.await;
            }
        };
        if tokio::time::timeout(BLOCKING_GRACE * 2, all).await.is_err() {
            tracing::warn!("a proxy worker thread did not stop in time");
        }
    }
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("count", &self.exited.len())
            .finish_non_exhaustive()
    }
}
