//! The files `nnc fmt` works on, and writing them back safely.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The `.nn` files named by `paths`: a file as given (whatever its
/// extension), a directory as every `.nn` file under it, sorted, skipping
/// hidden directories and `target`. Symbolic links to directories are not
/// followed, so a link cycle cannot loop.
pub fn nn_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        if meta.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let read = |e: std::io::Error| format!("cannot read `{}`: {e}", dir.display());
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(read)?
        .collect::<Result<_, _>>()
        .map_err(read)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type().map_err(read)?;
        let path = entry.path();
        if kind.is_dir() {
            if !name.starts_with('.') && name != "target" {
                walk(&path, out)?;
            }
        } else if name.ends_with(".nn") && !name.starts_with('.') {
            out.push(path);
        }
    }
    Ok(())
}

/// Replaces `path`'s contents with `text` through a temporary file and a
/// rename, so that a crash leaves either the old file or the new one; the
/// file keeps its permissions.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.nnc-fmt.{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&tmp, meta.permissions())?;
        }
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_give_their_nn_files_in_order() {
        let dir = std::env::temp_dir().join(format!("nnc-fmt-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for f in [
            "b.nn",
            "a.nn",
            "c.txt",
            "sub/d.nn",
            ".hidden/e.nn",
            "target/f.nn",
        ] {
            let p = dir.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let got = nn_files(&[dir.clone(), dir.join("c.txt")]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.nn", "b.nn", "sub/d.nn", "c.txt"]);
        assert!(nn_files(&[dir.join("missing.nn")])
            .unwrap_err()
            .contains("missing.nn"));
        write_atomically(&dir.join("a.nn"), "x\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a.nn")).unwrap(), "x\n");
        let leftovers = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("nnc-fmt")
            })
            .count();
        assert_eq!(leftovers, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
