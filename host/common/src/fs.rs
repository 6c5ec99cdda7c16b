//! Writing a file so that a reader (a watcher, another process) sees the
//! old content or the new one, never half of it: the bytes go to a hidden
//! temporary beside it, then are renamed into place.

use std::io;
use std::path::Path;

/// Writes `bytes` to `path` through `.<name>.tmp<pid>` in the same
/// directory and a rename; the error names the file that failed.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let named = |what: &str, p: &Path| {
        let what = what.to_owned();
        let p = p.display().to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("{what} {p}: {e}"))
    };
    std::fs::write(&tmp, bytes).map_err(named("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        named("moving into place", path)(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_content_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.toml"]);
        let err = write_atomically(&dir.path().join("no/such/dir/x"), b"").unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }
}
