//! The fake kernel side for unit tests here and in [`crate::issuer`].
#![allow(clippy::unwrap_used)]

use super::*;
use std::cell::RefCell;

/// A fresh directory under the system temporary directory, removed on drop.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(test: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("configfs-tsm-test-{test}-{}", unique_name()));
        fs::create_dir(&path).unwrap();
        TempDir(path)
    }

    pub(crate) fn entries(&self) -> Vec<PathBuf> {
        fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Does the kernel's part on a plain directory, like a TSM provider would.
pub(crate) struct FakeProvider {
    pub(crate) provider: &'static str,
    /// Extra `generation` bumps per write, as if another process wrote too.
    pub(crate) extra_bumps: u64,
    /// Only the first this many report directories see `extra_bumps` (`None`: all).
    pub(crate) interfered_dirs: Option<usize>,
    pub(crate) has_privlevel: bool,
    pub(crate) auxblob: Option<Vec<u8>>,
    pub(crate) empty_outblob: bool,
    pub(crate) generation_content: Option<&'static str>,
    /// Leave a file behind at rmdir, so that rmdir fails.
    pub(crate) leak_file: bool,
    /// What `outblob` holds for an `inblob`.
    pub(crate) outblob_for: fn(&[u8]) -> Vec<u8>,
    pub(crate) created_dirs: RefCell<Vec<PathBuf>>,
    pub(crate) writes: RefCell<Vec<String>>,
}

impl FakeProvider {
    pub(crate) fn new(provider: &'static str) -> FakeProvider {
        FakeProvider {
            provider,
            extra_bumps: 0,
            interfered_dirs: None,
            has_privlevel: provider == "sev_guest",
            auxblob: (provider == "sev_guest").then(|| b"cert table".to_vec()),
            empty_outblob: false,
            generation_content: None,
            leak_file: false,
            outblob_for: FakeProvider::report_for,
            created_dirs: RefCell::new(Vec::new()),
            writes: RefCell::new(Vec::new()),
        }
    }

    pub(crate) fn report_for(inblob: &[u8]) -> Vec<u8> {
        [b"REPORT:".as_slice(), inblob].concat()
    }
}

impl KernelSide for FakeProvider {
    fn created(&self, dir: &Path) {
        self.created_dirs.borrow_mut().push(dir.to_path_buf());
        fs::write(dir.join("provider"), format!("{}\n", self.provider)).unwrap();
        fs::write(
            dir.join("generation"),
            self.generation_content.unwrap_or("0\n"),
        )
        .unwrap();
        fs::write(dir.join("inblob"), b"").unwrap();
        fs::write(dir.join("outblob"), b"").unwrap();
        if self.has_privlevel {
            fs::write(dir.join("privlevel"), b"").unwrap();
        }
        if let Some(auxblob) = &self.auxblob {
            fs::write(dir.join("auxblob"), auxblob).unwrap();
        }
    }

    fn written(&self, dir: &Path, attribute: &str) {
        self.writes.borrow_mut().push(attribute.to_owned());
        let generation_path = dir.join("generation");
        if let Ok(generation) = fs::read_to_string(&generation_path)
            .unwrap()
            .trim()
            .parse::<u64>()
        {
            let dirs = self.created_dirs.borrow();
            let interfered = match self.interfered_dirs {
                None => true,
                Some(count) => dirs.iter().take(count).any(|d| d == dir),
            };
            let extra = if interfered { self.extra_bumps } else { 0 };
            let generation = generation + 1 + extra;
            fs::write(&generation_path, format!("{generation}\n")).unwrap();
        }
        if attribute == "inblob" && !self.empty_outblob {
            let inblob = fs::read(dir.join("inblob")).unwrap();
            fs::write(dir.join("outblob"), (self.outblob_for)(&inblob)).unwrap();
        }
    }

    fn removing(&self, dir: &Path) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !(self.leak_file && path.ends_with("provider")) {
                fs::remove_file(path).unwrap();
            }
        }
    }
}

impl ConfigfsTsm {
    /// [`ConfigfsTsm::issue_from_fake_test_provider`] with `kernel` doing the kernel's part.
    pub(crate) fn issue_fake_for_test(
        &self,
        request: &ReportRequest,
        kernel: &dyn KernelSide,
    ) -> Result<FakeTestProviderReport, ConfigfsTsmError> {
        self.issue_fake_with(request, kernel, unique_name)
    }

    /// [`ConfigfsTsm::issue`] with `kernel` doing the kernel's part.
    pub(crate) fn issue_for_test(
        &self,
        request: &ReportRequest,
        kernel: &dyn KernelSide,
    ) -> Result<TsmReport, ConfigfsTsmError> {
        self.issue_with(request, kernel, unique_name)
    }
}
