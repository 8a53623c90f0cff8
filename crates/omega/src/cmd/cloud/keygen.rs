//! `omega cloud keygen --out DIR` (`cloud.md` §14.6): `control.key` (PKCS#8 PEM, mode 0600)
//! and `control.pub` (SubjectPublicKeyInfo PEM). Existing files are never overwritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use omega_protocol::signing::generate_ed25519;

use super::KeygenArgs;
use crate::exit::UsageError;

/// The private key's file name.
pub const PRIVATE: &str = "control.key";
/// The public key's file name.
pub const PUBLIC: &str = "control.pub";

/// Writes the pair and prints where, with the key id.
pub fn run(args: &KeygenArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.out;
    let (private, public) = (dir.join(PRIVATE), dir.join(PUBLIC));
    for p in [&private, &public] {
        if p.exists() {
            return Err(UsageError(format!(
                "{} already exists: keygen never overwrites a key (move it away or choose another --out)",
                p.display()
            ))
            .into());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pair = generate_ed25519().context("generating the key pair")?;
    write_new(&private, pair.private_pem.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&public, pair.public_pem.as_bytes(), 0o644) {
        let _ = std::fs::remove_file(&private);
        return Err(e);
    }
    println!(
        "wrote {} (secret: set control.signing_key_path to it) and {} (install on every device: \
         security.signed_control.public_key_path); key_id {}",
        private.display(),
        public.display(),
        pair.key_id
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` (failing if it exists) with `mode`, writes `bytes` and syncs.
pub(super) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
