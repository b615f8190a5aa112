//! Code packages: checked when uploaded, unpacked once per SHA-256 into a read-only directory.

use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("the code package is not a valid zip archive: {0}")]
    NotZip(String),
    #[error("the code package unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the code package holds an unsafe path: {0}")]
    UnsafePath(String),
    #[error("code package {0} is not in the store")]
    Missing(String),
    #[error("cannot unpack code into {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Checks that a package is a zip whose entries are safe to unpack and fit `max_unpacked` bytes.
pub fn check_zip(data: &[u8], max_unpacked: u64) -> Result<Vec<String>, CodeError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(|e| CodeError::NotZip(e.to_string()))?;
    let mut total = 0u64;
    let mut names = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).map_err(|e| CodeError::NotZip(e.to_string()))?;
        if entry.enclosed_name().is_none() {
            return Err(CodeError::UnsafePath(String::from_utf8_lossy(entry.name_raw()).into_owned()));
        }
        total = total.saturating_add(entry.size());
        if total > max_unpacked {
            return Err(CodeError::TooLarge { limit: max_unpacked });
        }
        names.push(String::from_utf8_lossy(entry.name_raw()).into_owned());
    }
    Ok(names)
}

/// Unpacks a package into `root/<sha256>` unless it is already there; returns that directory.
///
/// Unpacking goes to a temporary sibling that is renamed into place, so a directory that exists is whole.
pub fn unpack(root: &Path, sha256: &str, data: &[u8], max_unpacked: u64) -> Result<PathBuf, CodeError> {
    let dest = root.join(sha256);
    if dest.is_dir() {
        return Ok(dest);
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CodeError::Io { path, source }
    };
    fs::create_dir_all(root).map_err(io(root))?;
    let tmp = root.join(format!(".{sha256}.{}", crate::ids::random_string(b"abcdefghijklmnopqrstuvwxyz", 8)));
    let result = extract(&tmp, data, max_unpacked);
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    match fs::rename(&tmp, &dest) {
        Ok(()) => Ok(dest),
        // Another invocation unpacked the same package first.
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(dest)
        }
        Err(e) => Err(io(&dest)(e)),
    }
}

fn extract(dir: &Path, data: &[u8], max_unpacked: u64) -> Result<(), CodeError> {
    use std::os::unix::fs::PermissionsExt;

    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CodeError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut archive = zip::ZipArchive::new(Cursor::new(data)).map_err(|e| CodeError::NotZip(e.to_string()))?;
    let mut total = 0u64;
    let mut dirs = vec![dir.to_path_buf()];
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| CodeError::NotZip(e.to_string()))?;
        let rel = entry
            .enclosed_name()
            .ok_or_else(|| CodeError::UnsafePath(String::from_utf8_lossy(entry.name_raw()).into_owned()))?;
        let path = dir.join(rel);
        if entry.is_dir() {
            fs::create_dir_all(&path).map_err(io(&path))?;
            dirs.push(path);
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
            dirs.push(parent.to_path_buf());
        }
        let mut contents = Vec::new();
        // Read at most one byte past what is left, so a lying header cannot make us unpack without bound.
        let left = max_unpacked.saturating_sub(total);
        (&mut entry).take(left + 1).read_to_end(&mut contents).map_err(|e| CodeError::NotZip(e.to_string()))?;
        total += contents.len() as u64;
        if total > max_unpacked {
            return Err(CodeError::TooLarge { limit: max_unpacked });
        }
        fs::write(&path, &contents).map_err(io(&path))?;
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let mode = if executable { 0o555 } else { 0o444 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io(&path))?;
    }
    // Code is read-only to the function.
    dirs.sort();
    dirs.dedup();
    for d in dirs.iter().rev() {
        fs::set_permissions(d, fs::Permissions::from_mode(0o555)).map_err(io(d))?;
    }
    Ok(())
}

/// Packs a directory into a zip (the CLI and the embedded example use it). Files keep their executable bit.
pub fn zip_dir(dir: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for rel in files {
        let path = dir.join(&rel);
        let mode = fs::metadata(&path)?.permissions().mode();
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(if mode & 0o111 != 0 { 0o755 } else { 0o644 });
        let name = rel.to_string_lossy().replace('\\', "/");
        writer.start_file(name, options).map_err(std::io::Error::other)?;
        writer.write_all(&fs::read(&path)?)?;
    }
    Ok(writer.finish().map_err(std::io::Error::other)?.into_inner())
}

/// Packs named in-memory files into a zip.
pub fn zip_files(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;

    let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in files {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o644);
        writer.start_file(*name, options).expect("writing to memory cannot fail");
        writer.write_all(data).expect("writing to memory cannot fail");
    }
    writer.finish().expect("writing to memory cannot fail").into_inner()
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            out.push(path.strip_prefix(root).expect("walked from root").to_path_buf());
        }
    }
    Ok(())
}
