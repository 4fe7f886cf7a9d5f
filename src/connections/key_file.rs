//! Development convenience: without TOKEN_ENCRYPTION_KEY, a key is generated once
//! and kept in the data folder, so tokens survive restarts on a laptop. Staging
//! and production refuse to start without a configured key (see `config`).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;

pub const FILE_NAME: &str = "token-encryption.key";

/// Reads `<dir>/token-encryption.key`, creating it (mode 0600) if absent.
pub fn load_or_create(dir: &Path) -> std::io::Result<([u8; 32], PathBuf)> {
    let path = dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not base64 of 32 bytes", path.display()),
                    )
                })?;
            Ok((key, path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            writeln!(
                file,
                "{}",
                base64::engine::general_purpose::STANDARD.encode(key)
            )?;
            file.sync_all()?;
            Ok((key, path))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, path) = super::load_or_create(dir.path()).unwrap();
        let (b, _) = super::load_or_create(dir.path()).unwrap();
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
