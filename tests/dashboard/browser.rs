//! Headless Chromium driven over WebDriver: a `chromedriver` process started for the test on a
//! loopback port, and a `fantoccini` client. Missing Chromium or chromedriver fails the test
//! with the command that installs them (never a skip): `.ci/run` installs both.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A chromedriver process; killed (by its own pid) when dropped.
pub struct Driver {
    child: Child,
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The Chromium binary, or a failure that says how to install it.
fn chromium() -> PathBuf {
    find_program(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
        panic!(
            "headless Chromium is required for the dashboard's browser tests and was not found \
             on PATH: install it with `apt-get install -y chromium chromium-driver` (.ci/run does)"
        )
    })
}

/// Starts chromedriver on a free loopback port and waits until it answers.
pub async fn start_driver() -> Driver {
    let driver = find_program(&["chromedriver"]).unwrap_or_else(|| {
        panic!(
            "chromedriver is required for the dashboard's browser tests and was not found on \
             PATH: install it with `apt-get install -y chromium chromium-driver` (.ci/run does)"
        )
    });
    // chromedriver takes a port number, not a listener: ask the kernel for a free one.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{url}/status")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not answer on {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver { child, url }
}

/// A new headless browser session at 1280×900.
pub async fn open(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium(),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions"],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session through chromedriver");
    client.set_window_size(1280, 900).await.unwrap();
    client
}

/// Where screenshots go: `target/dashboard-screenshots/` (under `CARGO_TARGET_DIR` if set).
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Saves the page as `name.png` (a test artefact).
pub async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element matching `css`.
pub async fn text(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element `{css}`: {e}"))
        .text()
        .await
        .unwrap()
}

/// How many elements match `css`.
pub async fn count(client: &Client, css: &str) -> usize {
    client.find_all(Locator::Css(css)).await.unwrap().len()
}

/// Types `value` into the field `css`.
pub async fn fill(client: &Client, css: &str, value: &str) {
    let field = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no field `{css}`: {e}"));
    field.clear().await.unwrap();
    field.send_keys(value).await.unwrap();
}

/// Clicks `css` and waits until the browser has loaded a new page.
pub async fn click_and_wait(client: &Client, css: &str) {
    let before = client.find(Locator::Css("html")).await.unwrap();
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("nothing to click at `{css}`: {e}"))
        .click()
        .await
        .unwrap();
    wait_stale(client, before).await;
}

/// Waits until `old` (an element of the previous page) is gone.
pub async fn wait_stale(client: &Client, old: fantoccini::elements::Element) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // A stale element answers an error: the page it belonged to was replaced.
        if old.tag_name().await.is_err() {
            let _ = client.find(Locator::Css("body")).await;
            return;
        }
        assert!(Instant::now() < deadline, "the page did not change");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
