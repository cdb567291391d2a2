//! Test support shared by the integration tests.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The simulator's key directory, made once and kept between runs under the target
/// directory (the simulated AMD's RSA-4096 keys are slow to make). Test processes may run
/// in parallel (nextest), and the simulator's store has no lock, so the keys are made in
/// a private directory that is then renamed into place: whoever renames first wins, and
/// every process uses one consistent set.
pub(crate) fn simulator_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("initdata-simulator");
        if !dir.exists() {
            let private = Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("initdata-simulator.{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&private);
            contrast_simulator::Simulator::open(&private).unwrap();
            if std::fs::rename(&private, &dir).is_err() {
                assert!(dir.exists(), "neither made nor found {}", dir.display());
                let _ = std::fs::remove_dir_all(&private);
            }
        }
        dir
    })
}

/// A directory removed on drop.
pub(crate) struct Workspace(PathBuf);

impl Workspace {
    /// A fresh directory for one test.
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("initdata-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Workspace(dir)
    }

    /// A path inside.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An initdata document with a small allowing policy.
pub(crate) fn document(algorithm: &str, policy: &str) -> String {
    format!(
        "version = \"0.1.0\"\nalgorithm = \"{algorithm}\"\n\n[data]\n\"policy.rego\" = '''\n{policy}'''\n"
    )
}
