//! `cargo install --path .` from the repository root: the installed `modelgate` runs.
//!
//! Its own test binary, not part of `tests/e2e`: cargo runs test binaries one after another, so
//! the install's build (on a target directory that only `cargo test` has used, dependencies are
//! rebuilt without the dev-dependencies' features, which takes minutes) never competes with the
//! e2e tests for the CPU, and the install's re-link of `target/<profile>/modelgate` never
//! happens while an e2e test starts that binary. Cargo holds its target-directory lock only
//! while it builds, not while the tests run, so the nested cargo does not wait on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

#[test]
fn cargo_install_from_the_repository_root_gives_a_modelgate_that_runs() {
    let exe = Path::new(env!("CARGO_BIN_EXE_modelgate"));
    // This build's own target directory and profile, so the install reuses what is already
    // built. Cargo keeps `.rustc_info.json` at the root of every target directory it uses
    // (CACHEDIR.TAG only when cargo itself created the directory: CI makes `target/` first).
    let target_dir = exe
        .ancestors()
        .find(|d| d.join(".rustc_info.json").is_file())
        .expect("the target directory above the modelgate binary");
    let profile_dir = exe.parent().unwrap();
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("install-{}", uuid::Uuid::now_v7().simple()));
    let mut install = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    install
        .args(["install", "--locked", "--offline", "--path"])
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--root")
        .arg(&root)
        .env("CARGO_TARGET_DIR", target_dir);
    // What cargo sets for this test process describes this package, not the environment the
    // suite was built in. Left in place, it reaches build scripts that track it (ring's reads
    // CARGO_MANIFEST_DIR) and their dependents are all rebuilt.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&name)
        {
            install.env_remove(name);
        }
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => install.arg("--debug"),
        Some(profile) => install.args(["--profile", profile]),
        None => panic!("no profile directory above {}", exe.display()),
    };
    // Built for an explicit target: `target/<triple>/<profile>`.
    if let Some(triple) = profile_dir.parent().filter(|d| *d != target_dir) {
        install.arg("--target").arg(triple.file_name().unwrap());
    }
    let out = install.output().unwrap();
    assert!(
        out.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(root.join("bin/modelgate"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("modelgate {}\n", env!("CARGO_PKG_VERSION"))
    );
    let _ = std::fs::remove_dir_all(root);
}
