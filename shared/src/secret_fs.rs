//! Files that hold secrets (master and LKG keys, the sealed last-known-good snapshot, a
//! bootstrap token) and the directories that hold them, created private from the first byte:
//! a key file is opened with mode 0600 (never written and then chmod'ed, which leaves a window
//! where it is world-readable), a data directory is made with mode 0700. On non-unix systems the
//! platform's defaults apply.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Creates `dir` and any missing parents with mode 0700. An existing directory is left as it is.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn private_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Writes a new secret file (mode 0600 from its creation) and syncs it. Fails if `path` exists:
/// a secret is never written over a file someone else may have prepared.
pub fn write_new_secret_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = private_options().open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Replaces `path` atomically with `contents`: written to a private temporary file beside it
/// (mode 0600 from its creation), synced, then renamed into place.
pub fn replace_secret_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    // A temporary file left by a crash is ours to replace.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write_new_secret_file(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

/// Appends `contents` to the secret file `path` (created with mode 0600 when absent) and syncs
/// it; returns the file's length after the append.
pub fn append_secret_file(path: &Path, contents: &[u8]) -> io::Result<u64> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(contents)?;
    f.sync_data()?;
    Ok(f.metadata()?.len())
}

/// Whether `key_file` lies inside `protected_dir` (after resolving both): a key kept beside the
/// data it seals protects nothing from whoever can read that directory.
pub fn is_inside(key_file: &Path, protected_dir: &Path) -> io::Result<bool> {
    let key = std::fs::canonicalize(key_file)?;
    let dir = resolve_maybe_missing(protected_dir)?;
    Ok(key.starts_with(dir))
}

/// The absolute, resolved form of `path`, resolving its longest existing ancestor when `path`
/// itself does not exist yet (a data directory created at start).
fn resolve_maybe_missing(path: &Path) -> io::Result<PathBuf> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        match std::fs::canonicalize(existing) {
            Ok(mut resolved) => {
                for part in rest.iter().rev() {
                    resolved.push(part);
                }
                return Ok(resolved);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else {
                    return Err(e);
                };
                rest.push(name.to_owned());
                existing = parent;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mg-secret-fs-{name}-{}", crate::new_id()));
        create_private_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_are_0600_and_data_dirs_0700_from_creation() {
        use std::os::unix::fs::PermissionsExt;
        let root = temp("modes");
        let nested = root.join("a/b");
        create_private_dir_all(&nested).unwrap();
        for d in [&root.join("a"), &nested] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        let key = nested.join("k");
        write_new_secret_file(&key, b"secret").unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(
            write_new_secret_file(&key, b"other").is_err(),
            "never over an existing file"
        );
        replace_secret_file(&key, b"new").unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"new");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_key_file_inside_the_protected_directory_is_recognised() {
        let root = temp("inside");
        let data = root.join("data");
        create_private_dir_all(&data).unwrap();
        let beside = data.join("key");
        let apart = root.join("key");
        write_new_secret_file(&beside, b"k").unwrap();
        write_new_secret_file(&apart, b"k").unwrap();
        assert!(is_inside(&beside, &data).unwrap());
        assert!(!is_inside(&apart, &data).unwrap());
        // Through `..` and for a data directory not created yet.
        assert!(is_inside(&data.join("../data/key"), &data).unwrap());
        assert!(is_inside(&beside, &root).unwrap());
        assert!(!is_inside(&apart, &root.join("not-yet")).unwrap());
        std::fs::remove_dir_all(root).unwrap();
    }
}
