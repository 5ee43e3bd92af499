//! The web dashboard driven in a real headless Chromium (through chromedriver), against a real
//! control plane, data plane and mock upstream (the e2e suite's `support`). A test target of
//! its own, so the browser client is linked here and not into the e2e binary.
//!
//! Screenshots of every screen are written to `target/dashboard-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../e2e/support/mod.rs"]
#[allow(dead_code)]
mod support;

mod browser;
mod flows;
