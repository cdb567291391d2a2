//! Certificate reload: the credential files are polled, and a changed set that loads
//! cleanly replaces the configuration used for new handshakes. Open connections keep the
//! session they were established with.

use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::stats::Stats;
use crate::tls::{MeshTls, TlsPaths};

/// What identifies one version of a file: device, inode (a rename or symlink swap gives
/// a new one), size and both change times (an in-place write moves them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// The stamps of the three credential files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint([FileStamp; 3]);

impl Fingerprint {
    /// Stamps the files as they are now (following symlinks).
    pub(crate) fn of(paths: &TlsPaths) -> std::io::Result<Fingerprint> {
        let stamp = |path: &std::path::Path| -> std::io::Result<FileStamp> {
            let meta = std::fs::metadata(path)?;
            Ok(FileStamp {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.size(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                ctime: (meta.ctime(), meta.ctime_nsec()),
            })
        };
        Ok(Fingerprint([
            stamp(&paths.mesh_ca)?,
            stamp(&paths.cert_chain)?,
            stamp(&paths.key)?,
        ]))
    }
}

/// Polls the files every `interval` until shutdown.
///
/// A changed set that does not load (a half-written update, a key that does not match its
/// certificate) is logged once and retried when the files change again; the previous
/// credentials stay in use meanwhile.
pub(crate) async fn watch_files(
    paths: TlsPaths,
    mut loaded: Option<Fingerprint>,
    sender: watch::Sender<Arc<MeshTls>>,
    stats: Arc<Stats>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut refused: Option<Fingerprint> = None;
    let mut unreadable = false;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let fingerprint = match Fingerprint::of(&paths) {
            Ok(fingerprint) => {
                unreadable = false;
                fingerprint
            }
            Err(error) => {
                if !unreadable {
                    warn!(%error, "credential files not readable; keeping the current ones");
                    unreadable = true;
                }
                continue;
            }
        };
        if Some(fingerprint) == loaded || Some(fingerprint) == refused {
            continue;
        }
        match MeshTls::load(&paths) {
            Ok(tls) => {
                sender.send_replace(Arc::new(tls));
                loaded = Some(fingerprint);
                refused = None;
                stats.tls_reloads.increment();
                info!("credential files changed; new handshakes use the new certificate");
            }
            Err(error) => {
                refused = Some(fingerprint);
                stats.tls_reload_failures.increment();
                warn!(
                    error = %contrast_platforms::error_chain(&error),
                    "changed credential files are not usable; keeping the current ones"
                );
            }
        }
    }
}
