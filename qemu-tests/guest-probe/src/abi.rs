//! configfs-tsm on the real kernel: without a provider, and with the fake provider.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use contrast_evidence::configfs_tsm::{
    ConfigfsTsm, ConfigfsTsmError, DEFAULT_REPORT_ROOT, FAKE_TEST_PROVIDER, ReportRequest,
};
use contrast_evidence::issuer::{
    ConfigfsTsmIssuer, EvidenceIssuer, IssueError, IssuerSettings, detect, select,
};
use contrast_platforms::error_chain;

use crate::common::{ensure_configfs, expect_no_report_dirs, fresh_report_data, host_data, step};

const ENXIO: i32 = 6;
const EINVAL: i32 = 22;

/// The fake provider's report body (qemu-tests/fake-tsm/fake_tsm.c).
const BODY_LEN: usize = 1184;
const REPORT_DATA: std::ops::Range<usize> = 0x50..0x90;
const HOST_DATA: std::ops::Range<usize> = 0xc0..0xe0;
const VMPL: std::ops::Range<usize> = 0x30..0x34;
const REPORT_ID: std::ops::Range<usize> = 0x140..0x160;
const FAKE_REPORT_ID: &[u8] = b"CONTRAST-FAKE-TSM-NOT-A-TEE";

/// The attributes fake_tsm shows (sev_guest without SVSM, minus auxblob).
const FAKE_ATTRIBUTES: [&str; 6] = [
    "generation",
    "inblob",
    "outblob",
    "privlevel",
    "privlevel_floor",
    "provider",
];

/// What every interferer writes: never a report data this probe asks for.
const FOREIGN_INBLOB: [u8; 64] = [0xee; 64];

/// `tsm-no-provider`.
pub(crate) fn no_provider() -> anyhow::Result<()> {
    ensure_configfs()?;
    expect_no_report_dirs("boot")?;

    step("mkdir by hand: ENXIO without a provider");
    let dir = Path::new(DEFAULT_REPORT_ROOT).join(format!("probe-{}", std::process::id()));
    match fs::create_dir(&dir) {
        Ok(()) => {
            let _ = fs::remove_dir(&dir);
            bail!("mkdir {} succeeded without a TSM provider", dir.display());
        }
        Err(e) => ensure!(
            e.raw_os_error() == Some(ENXIO),
            "mkdir {}: expected ENXIO, got {e}",
            dir.display()
        ),
    }

    step("ConfigfsTsmIssuer");
    expect_no_tee(
        &ConfigfsTsmIssuer::new(ConfigfsTsm::default()),
        "ConfigfsTsmIssuer",
    )?;
    step("detect()");
    let detected = detect().context("detect() found no interface, but configfs-tsm is there")?;
    ensure!(
        detected.name() == "configfs-tsm",
        "detect() chose {}, not configfs-tsm",
        detected.name()
    );
    expect_no_tee(detected.as_ref(), "detect()")?;
    step("select() without a simulator");
    let selected = select(&IssuerSettings {
        simulated_tee: "snp".to_owned(),
        ..IssuerSettings::default()
    })
    .context("select() without a simulator")?;
    expect_no_tee(selected.as_ref(), "select()")?;
    expect_no_report_dirs("the refused requests")
}

/// The issuer must fail with ENXIO and say why.
fn expect_no_tee(issuer: &dyn EvidenceIssuer, what: &str) -> anyhow::Result<()> {
    let err = match issuer.issue(&fresh_report_data(0x11)) {
        Ok(_) => bail!("{what} issued evidence without a TSM provider"),
        Err(err) => err,
    };
    ensure!(
        matches!(
            err,
            IssueError::ConfigfsTsm(ConfigfsTsmError::NoProvider { .. })
        ),
        "{what}: expected the no-provider (ENXIO) error, got: {err}"
    );
    let text = err.to_string();
    ensure!(
        text.contains("not running in a confidential VM"),
        "{what}: the error does not say \"not running in a confidential VM\": {text}"
    );
    step(&format!("{what}: {text}"));
    Ok(())
}

/// `tsm-abi`.
pub(crate) fn with_fake_provider(host_data_hex: &str) -> anyhow::Result<()> {
    let host_data = host_data(host_data_hex)?;
    ensure_configfs()?;
    expect_no_report_dirs("boot")?;
    let tsm = ConfigfsTsm::default();

    step("production paths refuse the fake provider");
    refused_by_hardware_paths(&tsm)?;
    expect_no_report_dirs("the refused hardware requests")?;

    step("mkdir failure leaves nothing behind");
    let tsm_dir = Path::new(DEFAULT_REPORT_ROOT)
        .parent()
        .context("the report root has a parent")?;
    let before = list(tsm_dir)?;
    match ConfigfsTsm::new(tsm_dir)
        .issue_from_fake_test_provider(&ReportRequest::new(fresh_report_data(0x22)))
    {
        Ok(_) => bail!(
            "a report came from {}, where mkdir must fail",
            tsm_dir.display()
        ),
        Err(e) => step(&format!("refused as expected: {}", error_chain(&e))),
    }
    ensure!(
        list(tsm_dir)? == before,
        "{} changed after a failed request: {:?}",
        tsm_dir.display(),
        list(tsm_dir)?
    );
    expect_no_report_dirs("a failed mkdir")?;

    step("provider errors reach the caller and leave nothing behind");
    provider_errors()?;

    step("our client: one report");
    let report_data = fresh_report_data(0x33);
    let report = tsm
        .issue_from_fake_test_provider(&ReportRequest::new(report_data))
        .context("issuing a report from fake_sev_guest")?;
    check_body(&report.outblob, &report_data, &host_data)?;
    ensure!(
        report.attempts == 1,
        "{} attempts without interference",
        report.attempts
    );
    expect_no_report_dirs("a successful request")?;

    step("the ABI by hand: generation, commit at close");
    abi_by_hand(&host_data)?;
    expect_no_report_dirs("the hand-driven directory")?;

    step("interference: a client without the generation check returns foreign reports");
    let naive = interfere(Client::Naive, Duration::from_secs(20), |c| c.wrong >= 3)?;
    step(&format!("naive client: {naive:?}"));
    ensure!(
        naive.wrong > 0,
        "inconclusive: the interfering writer never changed a naive client's report ({naive:?}), \
         so the checks below could not catch a wrong client"
    );

    step("interference: our client, one attempt, refuses instead of returning foreign reports");
    let single = interfere(
        Client::Ours(ConfigfsTsm::default().with_max_attempts(1)),
        Duration::from_secs(20),
        |c| c.refused >= 5,
    )?;
    step(&format!("our client, one attempt: {single:?}"));
    ensure!(
        single.refused > 0,
        "inconclusive: the interfering writer never hit our client's window ({single:?})"
    );
    expect_no_report_dirs("the interfered requests")?;

    step("interference: our client retries in a fresh directory");
    let retrying = interfere(
        Client::Ours(ConfigfsTsm::default()),
        Duration::from_secs(20),
        |c| c.retried_ok >= 3,
    )?;
    step(&format!("our client, retrying: {retrying:?}"));
    ensure!(
        retrying.retried_ok > 0,
        "our client never succeeded on a retry under interference ({retrying:?})"
    );
    expect_no_report_dirs("the retried requests")?;

    step("concurrent requests from 8 threads");
    concurrent_requests(8, 5, &host_data)?;
    expect_no_report_dirs("the concurrent requests")
}

fn refused_by_hardware_paths(tsm: &ConfigfsTsm) -> anyhow::Result<()> {
    match tsm.issue(&ReportRequest::new(fresh_report_data(0x44))) {
        Ok(report) => bail!(
            "ConfigfsTsm::issue accepted the fake provider (as {})",
            report.provider
        ),
        Err(ConfigfsTsmError::FakeTestProvider { .. }) => {}
        Err(e) => bail!(
            "ConfigfsTsm::issue: expected the fake-provider refusal, got: {}",
            error_chain(&e)
        ),
    }
    let detected = detect().context("detect()")?;
    for (what, issuer) in [
        (
            "ConfigfsTsmIssuer",
            &ConfigfsTsmIssuer::new(tsm.clone()) as &dyn EvidenceIssuer,
        ),
        ("detect()", detected.as_ref()),
    ] {
        match issuer.issue(&fresh_report_data(0x45)) {
            Ok(_) => bail!("{what} issued evidence from the fake provider"),
            Err(IssueError::ConfigfsTsm(ConfigfsTsmError::FakeTestProvider { .. })) => {}
            Err(e) => bail!(
                "{what}: expected the fake-provider refusal, got: {}",
                error_chain(&e)
            ),
        }
    }
    Ok(())
}

/// fake_tsm's run-time switch that makes report generation fail.
const REPORT_ERROR_PARAMETER: &str = "/sys/module/fake_tsm/parameters/report_error";

fn set_report_error(errno: i32) -> anyhow::Result<()> {
    fs::write(REPORT_ERROR_PARAMETER, errno.to_string())
        .with_context(|| format!("writing {errno} to {REPORT_ERROR_PARAMETER}"))
}

fn provider_errors() -> anyhow::Result<()> {
    let result = provider_errors_while_set();
    // Whatever happened, the checks after this need a working provider.
    set_report_error(0)?;
    result
}

fn provider_errors_while_set() -> anyhow::Result<()> {
    const EIO: i32 = 5;
    const EBUSY: i32 = 16;
    let tsm = ConfigfsTsm::default();
    set_report_error(EBUSY)?;
    match tsm.issue_from_fake_test_provider(&ReportRequest::new(fresh_report_data(0x23))) {
        Ok(_) => bail!("a report although the provider fails with EBUSY"),
        Err(ConfigfsTsmError::Busy { .. }) => {}
        Err(e) => bail!(
            "provider EBUSY: expected the busy error, got: {}",
            error_chain(&e)
        ),
    }
    expect_no_report_dirs("a provider error (EBUSY)")?;
    set_report_error(EIO)?;
    match tsm.issue_from_fake_test_provider(&ReportRequest::new(fresh_report_data(0x24))) {
        Ok(_) => bail!("a report although the provider fails with EIO"),
        Err(ConfigfsTsmError::Io { ref source, .. }) if source.raw_os_error() == Some(EIO) => {}
        Err(e) => bail!(
            "provider EIO: expected an I/O error with EIO, got: {}",
            error_chain(&e)
        ),
    }
    expect_no_report_dirs("a provider error (EIO)")
}

fn check_body(body: &[u8], report_data: &[u8; 64], host_data: &[u8; 32]) -> anyhow::Result<()> {
    ensure!(
        body.len() == BODY_LEN,
        "outblob is {} bytes, not {BODY_LEN}",
        body.len()
    );
    ensure!(
        body[REPORT_DATA] == report_data[..],
        "REPORT_DATA is {}, not the inblob {}",
        hex::encode(&body[REPORT_DATA]),
        hex::encode(report_data)
    );
    ensure!(
        body[HOST_DATA] == host_data[..],
        "HOST_DATA is {}, not the module's {}",
        hex::encode(&body[HOST_DATA]),
        hex::encode(host_data)
    );
    ensure!(
        body[REPORT_ID].starts_with(FAKE_REPORT_ID),
        "REPORT_ID is {}, not the fake marker",
        hex::encode(&body[REPORT_ID])
    );
    Ok(())
}

/// A report directory made by hand, removed on drop.
struct HandDir(PathBuf);

impl Drop for HandDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

impl HandDir {
    fn generation(&self) -> anyhow::Result<u64> {
        let path = self.0.join("generation");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{} holds {text:?}", path.display()))
    }

    fn write(&self, attribute: &str, content: &[u8]) -> anyhow::Result<()> {
        let path = self.0.join(attribute);
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        file.write_all(content)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    fn outblob(&self) -> io::Result<Vec<u8>> {
        fs::read(self.0.join("outblob"))
    }
}

fn abi_by_hand(host_data: &[u8; 32]) -> anyhow::Result<()> {
    let dir =
        HandDir(Path::new(DEFAULT_REPORT_ROOT).join(format!("probe-hand-{}", std::process::id())));
    fs::create_dir(&dir.0).with_context(|| format!("mkdir {}", dir.0.display()))?;
    let attributes = list(&dir.0)?;
    ensure!(
        attributes == FAKE_ATTRIBUTES,
        "attributes {attributes:?}, expected {FAKE_ATTRIBUTES:?}"
    );
    let provider = fs::read_to_string(dir.0.join("provider")).context("reading provider")?;
    ensure!(
        provider == format!("{FAKE_TEST_PROVIDER}\n"),
        "provider is {provider:?}"
    );
    ensure!(
        dir.generation()? == 0,
        "generation {} after mkdir",
        dir.generation()?
    );
    match dir.outblob() {
        Ok(_) => bail!("outblob was readable before any inblob"),
        Err(e) => ensure!(
            e.raw_os_error() == Some(EINVAL),
            "outblob before inblob: {e}"
        ),
    }

    // One write, committed only when the file is closed.
    let first = fresh_report_data(0x55);
    let path = dir.0.join("inblob");
    let mut file = OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(&first).context("writing inblob")?;
    ensure!(
        dir.generation()? == 0,
        "generation moved to {} before the inblob file was closed",
        dir.generation()?
    );
    drop(file);
    ensure!(
        dir.generation()? == 1,
        "generation {} after one committed inblob",
        dir.generation()?
    );
    check_body(
        &dir.outblob().context("reading outblob")?,
        &first,
        host_data,
    )?;

    let second = fresh_report_data(0x56);
    dir.write("inblob", &second)?;
    ensure!(
        dir.generation()? == 2,
        "generation {} after two inblobs",
        dir.generation()?
    );
    check_body(
        &dir.outblob().context("reading outblob")?,
        &second,
        host_data,
    )?;

    dir.write("privlevel", b"1")?;
    ensure!(
        dir.generation()? == 3,
        "generation {} after privlevel",
        dir.generation()?
    );
    let body = dir.outblob().context("reading outblob")?;
    check_body(&body, &second, host_data)?;
    ensure!(
        body[VMPL] == 1u32.to_le_bytes(),
        "VMPL {:?} after privlevel 1",
        &body[VMPL]
    );

    // The provider refuses REPORT_DATA that is not 64 bytes, as the real ones do.
    dir.write("inblob", b"too short")?;
    ensure!(
        dir.generation()? == 4,
        "generation {} after a short inblob",
        dir.generation()?
    );
    match dir.outblob() {
        Ok(body) => bail!("a {}-byte report for a 9-byte inblob", body.len()),
        Err(e) => ensure!(
            e.raw_os_error() == Some(EINVAL),
            "outblob for a short inblob: {e}"
        ),
    }
    fs::remove_dir(&dir.0).with_context(|| format!("rmdir {}", dir.0.display()))?;
    Ok(())
}

/// What the requests under interference gave.
#[derive(Debug, Default)]
struct Counts {
    /// Requests made.
    requests: u64,
    /// Reports with the requested REPORT_DATA.
    ok: u64,
    /// Of those, how many took more than one directory.
    retried_ok: u64,
    /// Requests refused because another writer interfered.
    refused: u64,
    /// Reports with foreign REPORT_DATA (only the naive client may have any).
    wrong: u64,
    /// Committed writes of the interfering thread.
    writer_writes: u64,
}

enum Client {
    /// Our client.
    Ours(ConfigfsTsm),
    /// The protocol without the generation check, to show that the interference is real.
    Naive,
}

const NAIVE_PREFIX: &str = "probe-naive-";

/// Runs `client` while another thread rewrites `inblob` in its report directories, until
/// `enough` or `limit`.
fn interfere(
    client: Client,
    limit: Duration,
    enough: impl Fn(&Counts) -> bool,
) -> anyhow::Result<Counts> {
    let ours = format!("contrast-{}-", std::process::id());
    let stop = AtomicBool::new(false);
    let writer_writes = AtomicU64::new(0);
    let mut counts = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let Ok(entries) = fs::read_dir(DEFAULT_REPORT_ROOT) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !(name.starts_with(&ours) || name.starts_with(NAIVE_PREFIX)) {
                        continue;
                    }
                    let written = OpenOptions::new()
                        .write(true)
                        .open(entry.path().join("inblob"))
                        .and_then(|mut file| file.write_all(&FOREIGN_INBLOB));
                    if written.is_ok() {
                        writer_writes.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        let result = requests_under_interference(&client, limit, &enough);
        stop.store(true, Ordering::Relaxed);
        result
    })?;
    counts.writer_writes = writer_writes.load(Ordering::Relaxed);
    Ok(counts)
}

fn requests_under_interference(
    client: &Client,
    limit: Duration,
    enough: &impl Fn(&Counts) -> bool,
) -> anyhow::Result<Counts> {
    let start = Instant::now();
    let mut counts = Counts::default();
    while start.elapsed() < limit && !enough(&counts) {
        let report_data = fresh_report_data(0x66);
        counts.requests += 1;
        let (body, attempts) = match client {
            Client::Ours(tsm) => {
                match tsm.issue_from_fake_test_provider(&ReportRequest::new(report_data)) {
                    Ok(report) => (report.outblob, report.attempts),
                    Err(ConfigfsTsmError::ConcurrentWrite { .. }) => {
                        counts.refused += 1;
                        continue;
                    }
                    Err(e) => bail!(
                        "request {} under interference: {}",
                        counts.requests,
                        error_chain(&e)
                    ),
                }
            }
            Client::Naive => (naive_request(&report_data, counts.requests)?, 1),
        };
        let found = body
            .get(REPORT_DATA)
            .context("outblob shorter than a report")?;
        if found == report_data {
            counts.ok += 1;
            if attempts > 1 {
                counts.retried_ok += 1;
            }
        } else if matches!(client, Client::Naive) {
            counts.wrong += 1;
        } else {
            bail!(
                "our client returned a report bound to {}, not the requested {}: the \
                 generation check let another writer's report through",
                hex::encode(found),
                hex::encode(report_data)
            );
        }
    }
    Ok(counts)
}

/// mkdir, write inblob, read outblob, rmdir: no generation check.
fn naive_request(report_data: &[u8; 64], n: u64) -> anyhow::Result<Vec<u8>> {
    let dir = HandDir(
        Path::new(DEFAULT_REPORT_ROOT).join(format!("{NAIVE_PREFIX}{}-{n}", std::process::id())),
    );
    fs::create_dir(&dir.0).with_context(|| format!("mkdir {}", dir.0.display()))?;
    dir.write("inblob", report_data)?;
    dir.outblob()
        .with_context(|| format!("reading {}/outblob", dir.0.display()))
}

fn concurrent_requests(threads: u8, each: usize, host_data: &[u8; 32]) -> anyhow::Result<()> {
    let tsm = ConfigfsTsm::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let tsm = &tsm;
                scope.spawn(move || -> anyhow::Result<()> {
                    for i in 0..each {
                        let report_data = fresh_report_data(0x80 + thread);
                        let report = tsm
                            .issue_from_fake_test_provider(&ReportRequest::new(report_data))
                            .with_context(|| format!("thread {thread}, request {i}"))?;
                        check_body(&report.outblob, &report_data, host_data)
                            .with_context(|| format!("thread {thread}, request {i}"))?;
                        // Each request has its own directory: nobody else writes to it.
                        ensure!(
                            report.attempts == 1,
                            "thread {thread}, request {i}: {} attempts",
                            report.attempts
                        );
                    }
                    Ok(())
                })
            })
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => bail!("a request thread panicked"),
            }
        }
        Ok(())
    })
}

fn list(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
