//! A load generator: concurrent clients sending chat requests until stopped, remembering the
//! request id of every response that arrived (whatever its status).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

pub struct Load {
    stop: Arc<AtomicBool>,
    answered: Arc<Mutex<Vec<String>>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// `clients` loops, each pausing `pause` between requests, against `base_url`.
    pub fn start(base_url: &str, key: &str, alias: &str, clients: usize, pause: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered: Arc<Mutex<Vec<String>>> = Arc::default();
        let http = reqwest::Client::new();
        let url = format!("{base_url}/chat/completions");
        let body = json!({"model": alias, "messages": [{"role": "user", "content": "hi"}]});
        let clients = (0..clients)
            .map(|_| {
                let (http, url, key, body) =
                    (http.clone(), url.clone(), key.to_owned(), body.clone());
                let (stop, answered) = (stop.clone(), answered.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let resp = http.post(&url).bearer_auth(&key).json(&body).send().await;
                        if let Ok(resp) = resp {
                            let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
                            if resp.bytes().await.is_ok() {
                                answered.lock().unwrap().push(id);
                            }
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            answered,
            clients,
        }
    }

    pub fn answered_so_far(&self) -> usize {
        self.answered.lock().unwrap().len()
    }

    /// Stops every client and returns the request ids of every answered request.
    pub async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.await.unwrap();
        }
        let ids = self.answered.lock().unwrap().clone();
        ids
    }
}
