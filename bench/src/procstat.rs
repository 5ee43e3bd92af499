//! CPU time and RSS of a process (and its descendants) from Linux `/proc`.

use std::collections::HashMap;

use anyhow::{bail, Context};

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat`.
///
/// The real value is `sysconf(_SC_CLK_TCK)`, which needs libc (not a dependency here, and the
/// workspace forbids unsafe code). `USER_HZ` is 100 on every mainstream Linux architecture and
/// distribution kernel, so we assume it; a 10 ms tick is also why CPU per request is only
/// meaningful over runs of a few seconds or more.
pub const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// (ppid, utime + stime in ticks) of one process, from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces or ')': split after
    // the last ')'. What follows starts at field 3 (state), so field N is at index N - 3.
    let close = text.rfind(')')?;
    let rest = text.get(close + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ppid: u32 = fields.get(1)?.parse().ok()?; // field 4
    let utime: u64 = fields.get(11)?.parse().ok()?; // field 14
    let stime: u64 = fields.get(12)?.parse().ok()?; // field 15
    Some((ppid, utime + stime))
}

/// `pid` and all its descendants that are alive now.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some((ppid, _)) = stat(p) {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        if let Some(kids) = children.get(&p) {
            out.extend(kids.iter().copied().filter(|k| *k != p));
        }
        i += 1;
    }
    out
}

/// Total utime + stime (ticks) of `pid` and its descendants (threads are included in a
/// process's own figures).
pub fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    if stat(pid).is_none() {
        bail!("cannot read /proc/{pid}/stat: no such process (or not Linux)");
    }
    Ok(tree(pid).into_iter().filter_map(stat).map(|(_, t)| t).sum())
}

/// Total utime + stime (ticks) of every process whose command name is `comm` (e.g. all of a
/// Postgres server's backends and background workers, `postgres`), alive now.
pub fn cpu_ticks_named(comm: &str) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .filter_map(stat)
        .map(|(_, t)| t)
        .sum()
}

/// (busy, total) ticks of the whole machine since boot, from `/proc/stat`'s `cpu` line (busy:
/// everything but idle and iowait).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// Total resident set size (MiB) of `pid` and its descendants.
pub fn rss_mb(pid: u32) -> anyhow::Result<f64> {
    let mut kb_total: u64 = 0;
    for p in tree(pid) {
        let Ok(status) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        if let Some(line) = status.lines().find(|l| l.starts_with("VmRSS:")) {
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .context("malformed VmRSS line")?
                .parse()
                .context("malformed VmRSS value")?;
            kb_total += kb;
        }
    }
    Ok(kb_total as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process() {
        let me = std::process::id();
        assert!(stat(me).is_some());
        assert!(cpu_ticks(me).is_ok());
        assert!(rss_mb(me).map(|m| m > 0.0).unwrap_or(false));
        assert!(cpu_ticks(u32::MAX).is_err());
        let (busy, total) = machine_ticks().unwrap();
        assert!(busy <= total && total > 0);
        assert_eq!(cpu_ticks_named("no-such-command-name"), 0);
    }
}
