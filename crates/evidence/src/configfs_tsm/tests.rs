use super::test_support::{FakeProvider, TempDir};
use super::*;

fn inblob() -> [u8; INBLOB_LEN] {
    std::array::from_fn(|i| i as u8)
}

fn issue(
    root: &Path,
    request: &ReportRequest,
    fake: &FakeProvider,
) -> Result<TsmReport, ConfigfsTsmError> {
    ConfigfsTsm::new(root).issue_with(request, fake, unique_name)
}

#[test]
fn issues_report_and_removes_directory() {
    let root = TempDir::new("success");
    let fake = FakeProvider::new("sev_guest");
    let report = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap();
    assert_eq!(report.provider, Provider::SevGuest);
    assert_eq!(report.outblob, FakeProvider::report_for(&inblob()));
    assert_eq!(report.auxblob, b"cert table");
    assert_eq!(*fake.writes.borrow(), ["inblob"]);
    assert_eq!(fake.created_dirs.borrow().len(), 1);
    assert!(fake.created_dirs.borrow()[0].starts_with(&root.0));
    assert!(
        root.entries().is_empty(),
        "left behind: {:?}",
        root.entries()
    );
}

#[test]
fn privlevel_is_written_and_counted() {
    let root = TempDir::new("privlevel");
    let fake = FakeProvider::new("sev_guest");
    let request = ReportRequest::new(inblob()).with_privlevel(2);
    let report = issue(&root.0, &request, &fake).unwrap();
    assert_eq!(report.outblob, FakeProvider::report_for(&inblob()));
    assert_eq!(*fake.writes.borrow(), ["privlevel", "inblob"]);
    assert!(root.entries().is_empty());
}

#[test]
fn missing_auxblob_reads_as_empty() {
    let root = TempDir::new("tdx");
    let fake = FakeProvider::new("tdx_guest");
    let report = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap();
    assert_eq!(report.provider, Provider::TdxGuest);
    assert!(report.auxblob.is_empty());
    assert!(root.entries().is_empty());
}

#[test]
fn refuses_concurrent_writer_and_removes_directory() {
    let root = TempDir::new("concurrent");
    let mut fake = FakeProvider::new("sev_guest");
    fake.extra_bumps = 1;
    let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigfsTsmError::ConcurrentWrite {
                before: 0,
                after: 2,
                expected: 1,
                writes: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("another process wrote"), "{err}");
    assert!(root.entries().is_empty());

    // Two writes: two expected bumps, four seen.
    let request = ReportRequest::new(inblob()).with_privlevel(0);
    let err = issue(&root.0, &request, &fake).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigfsTsmError::ConcurrentWrite {
                after: 4,
                expected: 2,
                writes: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(root.entries().is_empty());
}

#[test]
fn retries_in_a_fresh_directory_after_a_concurrent_write() {
    let root = TempDir::new("retry");
    let mut fake = FakeProvider::new("sev_guest");
    fake.extra_bumps = 1;
    fake.interfered_dirs = Some(1);
    let report = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(report.outblob, FakeProvider::report_for(&inblob()));
    let created = fake.created_dirs.borrow();
    assert_eq!(created.len(), 2);
    assert_ne!(created[0], created[1], "a retry must use a fresh directory");
    assert!(
        root.entries().is_empty(),
        "left behind: {:?}",
        root.entries()
    );
}

#[test]
fn gives_up_after_max_attempts() {
    let root = TempDir::new("retry-limit");
    let mut fake = FakeProvider::new("sev_guest");
    fake.extra_bumps = 1;
    let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::ConcurrentWrite { .. }),
        "{err:?}"
    );
    assert_eq!(
        fake.created_dirs.borrow().len(),
        DEFAULT_MAX_ATTEMPTS as usize
    );
    assert!(root.entries().is_empty());

    let fake = FakeProvider {
        extra_bumps: 1,
        ..FakeProvider::new("sev_guest")
    };
    let err = ConfigfsTsm::new(&root.0)
        .with_max_attempts(1)
        .issue_for_test(&ReportRequest::new(inblob()), &fake)
        .unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::ConcurrentWrite { .. }),
        "{err:?}"
    );
    assert_eq!(fake.created_dirs.borrow().len(), 1);
    // 0 means 1: there is always one attempt.
    assert_eq!(
        ConfigfsTsm::new(&root.0).with_max_attempts(0).max_attempts,
        1
    );
    assert!(root.entries().is_empty());
}

#[test]
fn other_errors_are_not_retried() {
    let root = TempDir::new("no-retry");
    let mut fake = FakeProvider::new("sev_guest");
    fake.empty_outblob = true;
    let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::EmptyOutblob { .. }),
        "{err:?}"
    );
    assert_eq!(fake.created_dirs.borrow().len(), 1);
}

#[test]
fn hardware_issue_refuses_the_fake_test_provider() {
    let root = TempDir::new("fake-refused");
    let fake = FakeProvider::new(FAKE_TEST_PROVIDER);
    let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::FakeTestProvider { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("prove nothing"), "{err}");
    // Refused before any write.
    assert!(fake.writes.borrow().is_empty());
    assert!(root.entries().is_empty());
}

#[test]
fn fake_test_provider_issue_accepts_only_the_fake() {
    let root = TempDir::new("fake-accepted");
    let fake = FakeProvider::new(FAKE_TEST_PROVIDER);
    let report = ConfigfsTsm::new(&root.0)
        .issue_fake_for_test(&ReportRequest::new(inblob()), &fake)
        .unwrap();
    assert_eq!(report.outblob, FakeProvider::report_for(&inblob()));
    assert_eq!(report.attempts, 1);
    assert!(root.entries().is_empty());

    for provider in ["sev_guest", "tdx_guest", "fake_sev_guest2", "fake", ""] {
        let fake = FakeProvider::new(provider);
        let err = ConfigfsTsm::new(&root.0)
            .issue_fake_for_test(&ReportRequest::new(inblob()), &fake)
            .unwrap_err();
        assert!(
            matches!(&err, ConfigfsTsmError::NotTheFakeTestProvider { found, .. } if found == provider),
            "{provider}: {err:?}"
        );
        assert!(fake.writes.borrow().is_empty(), "{provider}");
        assert!(root.entries().is_empty(), "{provider}");
    }
}

#[test]
fn refuses_missing_report_root() {
    let root = TempDir::new("missing");
    let missing = root.0.join("tsm").join("report");
    let fake = FakeProvider::new("sev_guest");
    let err = issue(&missing, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::NotAvailable { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("configfs-tsm not available")
            && err
                .to_string()
                .contains("mount configfs or use a 6.7+ kernel"),
        "{err}"
    );
    assert!(fake.created_dirs.borrow().is_empty());
}

#[test]
fn refuses_report_root_that_is_a_file() {
    let root = TempDir::new("file");
    let file = root.0.join("report");
    fs::write(&file, b"").unwrap();
    let fake = FakeProvider::new("sev_guest");
    let err = issue(&file, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::NotAvailable { .. }),
        "{err:?}"
    );
}

#[test]
fn refuses_unknown_provider_and_removes_directory() {
    let root = TempDir::new("unknown");
    let fake = FakeProvider::new("unknown");
    let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::UnknownProvider { .. }),
        "{err:?}"
    );
    let chain = contrast_platforms::error_chain(&err);
    assert!(chain.contains("\"unknown\""), "{chain}");
    // Refused before asking for a report.
    assert!(fake.writes.borrow().is_empty());
    assert!(root.entries().is_empty());
}

#[test]
fn refuses_privlevel_out_of_range_before_creating_anything() {
    let root = TempDir::new("privlevel-range");
    let fake = FakeProvider::new("sev_guest");
    let request = ReportRequest::new(inblob()).with_privlevel(PRIVLEVEL_MAX + 1);
    let err = issue(&root.0, &request, &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::PrivlevelOutOfRange { privlevel: 4 }),
        "{err:?}"
    );
    assert!(fake.created_dirs.borrow().is_empty());
}

#[test]
fn refuses_privlevel_when_provider_lacks_it() {
    let root = TempDir::new("privlevel-tdx");
    let fake = FakeProvider::new("tdx_guest");
    let request = ReportRequest::new(inblob()).with_privlevel(0);
    let err = issue(&root.0, &request, &fake).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigfsTsmError::PrivlevelUnsupported { ref provider } if provider == "tdx_guest"
        ),
        "{err:?}"
    );
    assert!(root.entries().is_empty());
}

#[test]
fn refuses_empty_outblob() {
    let root = TempDir::new("empty");
    let mut fake = FakeProvider::new("sev_guest");
    fake.empty_outblob = true;
    let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::EmptyOutblob { .. }),
        "{err:?}"
    );
    assert!(root.entries().is_empty());
}

#[test]
fn refuses_unparsable_generation() {
    let root = TempDir::new("generation");
    let mut fake = FakeProvider::new("sev_guest");
    fake.generation_content = Some("zero\n");
    let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(&err, ConfigfsTsmError::BadGeneration { content, .. } if content == "zero\n"),
        "{err:?}"
    );
    assert!(root.entries().is_empty());
}

#[test]
fn reports_failed_removal() {
    let root = TempDir::new("rmdir");
    let mut fake = FakeProvider::new("sev_guest");
    fake.leak_file = true;
    let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
    assert!(
        matches!(err, ConfigfsTsmError::RemoveFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("remove it with rmdir"), "{err}");
}

#[test]
fn never_reuses_an_existing_directory() {
    let root = TempDir::new("collision");
    let taken = root.0.join("taken");
    fs::create_dir(&taken).unwrap();
    let fake = FakeProvider::new("sev_guest");
    let err = ConfigfsTsm::new(&root.0)
        .issue_with(&ReportRequest::new(inblob()), &fake, || "taken".to_owned())
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigfsTsmError::NameCollision {
                attempts: NAME_ATTEMPTS,
                ..
            }
        ),
        "{err:?}"
    );
    // Someone else's directory stays.
    assert!(taken.is_dir());
    assert!(fake.created_dirs.borrow().is_empty());
}

#[test]
fn unique_names_differ() {
    assert_ne!(unique_name(), unique_name());
}

#[test]
fn maps_errno_values_of_the_abi() {
    let path = Path::new("/sys/kernel/config/tsm/report/x/outblob");
    let err = classify(path, io::Error::from_raw_os_error(ENXIO));
    assert!(
        matches!(err, ConfigfsTsmError::NoProvider { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("not running in a confidential VM"),
        "{err}"
    );
    let err = classify(path, io::Error::from_raw_os_error(EBUSY));
    assert!(matches!(err, ConfigfsTsmError::Busy { .. }), "{err:?}");
    assert!(err.to_string().contains("retry"), "{err}");
    let err = classify(path, io::Error::from_raw_os_error(EFBIG));
    assert!(matches!(err, ConfigfsTsmError::TooLarge { .. }), "{err:?}");
    // EACCES: plain I/O, with the path.
    let err = classify(path, io::Error::from_raw_os_error(13));
    assert!(matches!(err, ConfigfsTsmError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("x/outblob"), "{err}");
}

#[test]
fn errno_constants_match_the_platform() {
    assert_eq!(
        io::Error::from_raw_os_error(EBUSY).kind(),
        io::ErrorKind::ResourceBusy
    );
    assert_eq!(
        io::Error::from_raw_os_error(EFBIG).kind(),
        io::ErrorKind::FileTooLarge
    );
    assert!(
        io::Error::from_raw_os_error(ENXIO)
            .to_string()
            .contains("No such device or address")
    );
}

#[test]
fn inblob_must_be_64_bytes() {
    assert_eq!(
        ReportRequest::from_slice(&inblob()).unwrap(),
        ReportRequest::new(inblob())
    );
    for len in [0, 32, 63, 65, 128] {
        let err = ReportRequest::from_slice(&vec![0; len]).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::InblobLength { len: l } if l == len),
            "{err:?}"
        );
        assert!(err.to_string().contains("exactly 64 bytes"), "{err}");
    }
}

#[test]
fn default_root_is_the_kernel_path() {
    assert_eq!(
        ConfigfsTsm::default().report_root(),
        Path::new(DEFAULT_REPORT_ROOT)
    );
}
