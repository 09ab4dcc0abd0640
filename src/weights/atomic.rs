//! Writing a file so that a reader sees the old contents or the new, never
//! a mix: a temporary sibling, fsync, rename. What it replaces must be a
//! regular file (or nothing): renaming over `/dev/null` would turn the
//! device into a file, so that is refused, and a symbolic link is followed
//! so that the file it points to is replaced, not the link.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// How many links deep a path may point before we give up (as the kernel's
/// ELOOP limit does).
const MAX_LINKS: usize = 40;

/// The file that writing to `path` should replace: `path` itself, or the
/// end of its chain of symbolic links.
fn destination(path: &Path) -> std::io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(e),
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p)?;
            p = match p.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => target,
            };
            continue;
        }
        if meta.is_file() {
            return Ok(p);
        }
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a device, a pipe or a socket)"
        };
        return Err(std::io::Error::other(format!(
            "`{}` is {what}; nnc replaces output files whole and will not write over it",
            p.display()
        )));
    }
    Err(std::io::Error::other(format!(
        "`{}`: too many levels of symbolic links",
        path.display()
    )))
}

/// Writes `bytes` to `path` atomically. On failure nothing is left behind:
/// the old file is untouched and the temporary file is removed.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let path = destination(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nnc-atomic-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_a_file_whole() {
        let d = scratch("replace");
        let p = d.join("y.npy");
        write(&p, b"old").unwrap();
        write(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(leftovers(&d).is_empty());
    }

    #[test]
    fn refuses_a_device_and_a_directory() {
        let e = write(Path::new("/dev/null"), b"x").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(Path::new("/dev/null").exists());
        let d = scratch("dir");
        let e = write(&d, b"x").unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn follows_a_symbolic_link() {
        let d = scratch("link");
        let target = d.join("real.npy");
        std::fs::write(&target, b"old").unwrap();
        let link = d.join("link.npy");
        std::os::unix::fs::symlink("real.npy", &link).unwrap();
        write(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let d = scratch("missing");
        let e = write(&d.join("no/such/dir/y.npy"), b"x");
        assert!(e.is_err());
        assert!(leftovers(&d).is_empty());
    }
}
