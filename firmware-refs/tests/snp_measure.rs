//! The SNP launch digest against sev-snp-measure 0.0.13: checked-in known answers, a live
//! comparison over a grid of inputs, and every refusal.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use common::{DEBIAN_OVMF, DEBIAN_OVMF_CODE, data, debian_ovmf, pattern, python_tool, run};
use contrast_firmware_refs::ovmf::OvmfError;
use contrast_firmware_refs::{
    DirectBootFiles, KernelHashes, Ovmf, SnpError, SnpLaunchConfig, VcpuType, VmmType,
    snp_launch_digest, snp_launch_digest_files,
};

/// One measurement: what to give both tools.
#[derive(Debug, Clone)]
struct Case {
    ovmf: String,
    vcpus: u32,
    vcpu_type: Option<&'static str>,
    vmm: &'static str,
    features: u64,
    kernel: Option<String>,
    initrd: Option<String>,
    append: Option<&'static str>,
}

impl Case {
    fn new(ovmf: &Path, vcpus: u32, vcpu_type: &'static str) -> Self {
        Case {
            ovmf: ovmf.display().to_string(),
            vcpus,
            vcpu_type: Some(vcpu_type),
            vmm: "QEMU",
            features: 1,
            kernel: None,
            initrd: None,
            append: None,
        }
    }

    fn ours(&self) -> Result<String, SnpError> {
        let ovmf = Ovmf::read(Path::new(&self.ovmf))?;
        let kernel_hashes = match &self.kernel {
            Some(k) => Some(KernelHashes::from_files(
                Path::new(k),
                self.initrd.as_deref().map(Path::new),
                self.append,
            )?),
            None => None,
        };
        let config = SnpLaunchConfig {
            vcpus: self.vcpus,
            vcpu_type: self.vcpu_type.map(|t| t.parse()).transpose()?,
            vmm: self.vmm.parse::<VmmType>().unwrap(),
            guest_features: self.features,
            kernel_hashes,
        };
        let in_memory = snp_launch_digest(&ovmf, &config).map(hex::encode)?;
        // The file variant (threads, hashes computed on the way) must agree.
        let boot = self.kernel.as_deref().map(|k| DirectBootFiles {
            kernel: Path::new(k),
            initrd: self.initrd.as_deref().map(Path::new),
            append: self.append,
        });
        let from_files = snp_launch_digest_files(Path::new(&self.ovmf), boot, &config)?;
        assert_eq!(hex::encode(from_files), in_memory, "{self:?}");
        Ok(in_memory)
    }

    fn python(&self, tool: &Path) -> String {
        let mut cmd = Command::new(tool);
        cmd.args(["--mode", "snp", "--ovmf", &self.ovmf])
            .args(["--vcpus", &self.vcpus.to_string()])
            .args(["--vmm-type", self.vmm])
            .args(["--guest-features", &format!("{:#x}", self.features)]);
        if let Some(t) = self.vcpu_type {
            cmd.args(["--vcpu-type", t]);
        }
        for (flag, value) in [("--kernel", &self.kernel), ("--initrd", &self.initrd)] {
            if let Some(v) = value {
                cmd.args([flag, v]);
            }
        }
        if let Some(a) = self.append {
            cmd.args(["--append", a]);
        }
        run(&mut cmd).trim().to_owned()
    }
}

#[test]
fn known_answers() {
    let amd_sev = data("ovmf_AmdSev_suffix.bin");
    let ovmf_x64 = data("ovmf_OvmfX64_suffix.bin");
    let null = Some("/dev/null".to_owned());
    let with_null_kernel = |mut c: Case| {
        c.kernel = null.clone();
        c.initrd = null.clone();
        c
    };
    // Expected values of virtee/sev tests/measurement.rs (QEMU).
    let mut cases = vec![
        (
            Case {
                append: Some("console=ttyS0 loglevel=7"),
                ..with_null_kernel(Case::new(&amd_sev, 1, "EPYC-v4"))
            },
            "6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa",
        ),
        (
            Case {
                append: Some("console=ttyS0 loglevel=7"),
                features: 0x21,
                ..with_null_kernel(Case::new(&amd_sev, 1, "EPYC-v4"))
            },
            "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977",
        ),
        (
            with_null_kernel(Case::new(&amd_sev, 1, "EPYC-v4")),
            "ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5",
        ),
        (
            Case {
                features: 0x21,
                ..with_null_kernel(Case::new(&amd_sev, 1, "EPYC-v4"))
            },
            "329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198",
        ),
        (
            Case::new(&amd_sev, 1, "EPYC-v4"),
            "19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d",
        ),
        (
            Case {
                features: 0x21,
                ..Case::new(&amd_sev, 1, "EPYC-v4")
            },
            "e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b",
        ),
        (
            with_null_kernel(Case::new(&amd_sev, 4, "EPYC-v4")),
            "5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5",
        ),
        (
            Case {
                features: 0x21,
                ..with_null_kernel(Case::new(&amd_sev, 4, "EPYC-v4"))
            },
            "4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942",
        ),
        (
            Case::new(&ovmf_x64, 1, "EPYC-v4"),
            "da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005",
        ),
        (
            Case {
                features: 0x21,
                ..Case::new(&ovmf_x64, 1, "EPYC-v4")
            },
            "28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385",
        ),
    ];
    // Computed with sev-snp-measure 0.0.13 on Debian 12's ovmf 2022.11-6+deb12u2.
    let ovmf = debian_ovmf(DEBIAN_OVMF);
    let code = debian_ovmf(DEBIAN_OVMF_CODE);
    let debian = [
        (
            Case::new(&ovmf, 1, "EPYC-v4"),
            "11570979c77a0adb515761a702527c8b9e11554e730552621d950988613a3a75c6ff1703f540bd22a9beede8fe7a97e3",
        ),
        (
            Case::new(&ovmf, 4, "EPYC-Milan"),
            "e9c10ab98f8086bf4a4993dcdc1f768b1128bcb02301d1791f1d3274329e790db2d12a301d66d99a462a13b5d87e2840",
        ),
        (
            Case {
                features: 0x21,
                ..Case::new(&ovmf, 1, "EPYC-Genoa")
            },
            "ebac8ede8ae285cff4e24b1b8deb17d242e1c563a84e88c392e2b07abc81867f8e1cbc8d0f49decfa8570ecab7de9bcf",
        ),
        (
            Case::new(&code, 4, "EPYC-Milan"),
            "cc2b38913550ecd41aadbcf2a5d309ae9d3cb0455c9e1f72892f6b18cfaea3f2e4f46a28b61ca0353724ee707c73177c",
        ),
        (
            Case {
                features: 0x21,
                ..Case::new(&code, 1, "EPYC-Genoa")
            },
            "0a2e75b58845495a5acd10dc7a800fbe70eecabeb43e5b01cd3c846c947e5b54074784758aa09b9d6e190991d831eef8",
        ),
        (
            Case {
                vmm: "ec2",
                vcpu_type: None,
                ..Case::new(&ovmf, 2, "EPYC")
            },
            "7f6fef705ba886215518820a96b21feaa2f874814889d8b5a776b1abf0058c913ca457043ab5a3092f35847c3078c93c",
        ),
        (
            Case {
                vmm: "gce",
                vcpu_type: None,
                ..Case::new(&ovmf, 2, "EPYC")
            },
            "54089cc1872606eb58e09c0c780095ec910d96faf61d0ddbc608539b6b3338fb109b89f3e3662ee6cdb74552629e86d5",
        ),
    ];
    cases.extend(debian);
    for (case, expected) in cases {
        assert_eq!(case.ours().unwrap(), expected, "{case:?}");
    }
}

/// The grid of the live comparison.
fn grid(dir: &Path) -> Vec<Case> {
    let kernel = dir.join("kernel");
    let initrd = dir.join("initrd");
    std::fs::write(&kernel, pattern(1 << 20, 1)).unwrap();
    std::fs::write(&initrd, pattern(3 << 19, 2)).unwrap();
    let (kernel, initrd) = (kernel.display().to_string(), initrd.display().to_string());
    let ovmf = debian_ovmf(DEBIAN_OVMF);
    let code = debian_ovmf(DEBIAN_OVMF_CODE);
    let amd_sev = data("ovmf_AmdSev_suffix.bin");
    let mut cases = Vec::new();
    let types: &[&'static str] = &[
        "EPYC",
        "EPYC-v1",
        "EPYC-v4",
        "EPYC-IBPB",
        "EPYC-Rome",
        "EPYC-Rome-v3",
        "EPYC-Milan",
        "EPYC-Milan-v2",
        "EPYC-Genoa",
        "EPYC-Genoa-v1",
        "EPYC-Turin",
    ];
    for (i, t) in types.iter().enumerate() {
        let (a, b) = if i % 2 == 0 {
            (&ovmf, &code)
        } else {
            (&code, &ovmf)
        };
        cases.push(Case {
            features: [0x1, 0x21, 0x5][i % 3],
            ..Case::new(a, [1, 2, 3, 8, 64][i % 5], t)
        });
        cases.push(Case::new(b, [5, 1, 16, 2][i % 4], t));
    }
    for vmm in ["ec2", "gce"] {
        cases.push(Case {
            vmm,
            vcpu_type: None,
            ..Case::new(&code, 3, "EPYC")
        });
        cases.push(Case {
            vmm,
            ..Case::new(&amd_sev, 2, "EPYC-Milan")
        });
    }
    // Measured direct boot on the AmdSev fixture.
    for (vcpus, t, initrd, append, vmm) in [
        (1, "EPYC-Milan", None, None, "QEMU"),
        (
            1,
            "EPYC-Genoa",
            Some(&initrd),
            Some("console=ttyS0 root=/dev/vda1 ro"),
            "QEMU",
        ),
        (4, "EPYC-v4", Some(&initrd), None, "QEMU"),
        (7, "EPYC-Rome", None, Some("a=b ünïcode"), "QEMU"),
        (2, "EPYC-Milan", Some(&initrd), Some("x"), "ec2"),
        (2, "EPYC-Milan", Some(&initrd), Some("x"), "gce"),
    ] {
        cases.push(Case {
            kernel: Some(kernel.clone()),
            initrd: initrd.cloned(),
            append,
            vmm,
            ..Case::new(&amd_sev, vcpus, t)
        });
    }
    cases.push(Case::new(&amd_sev, 220, "EPYC-Genoa"));
    cases
}

#[test]
fn byte_identical_to_sev_snp_measure_over_a_grid() {
    let tool = python_tool("sev-snp-measure");
    let dir = tempfile::tempdir().unwrap();
    let cases = grid(dir.path());
    assert!(cases.len() >= 30);
    // Python start-up dominates: run a few at once.
    let queue = Mutex::new(cases.clone());
    let mismatches = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while let Some(case) = queue.lock().unwrap().pop() {
                    let (ours, theirs) = (case.ours().unwrap(), case.python(&tool));
                    if ours != theirs {
                        mismatches
                            .lock()
                            .unwrap()
                            .push(format!("{case:?}: ours {ours}, sev-snp-measure {theirs}"));
                    }
                }
            });
        }
    });
    let mismatches = mismatches.into_inner().unwrap();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn refusals() {
    let ovmf_path = debian_ovmf(DEBIAN_OVMF);
    let ovmf = Ovmf::read(&ovmf_path).unwrap();
    let milan = SnpLaunchConfig::qemu(1, VcpuType::MILAN);

    let zero = SnpLaunchConfig {
        vcpus: 0,
        ..milan.clone()
    };
    assert!(matches!(
        snp_launch_digest(&ovmf, &zero),
        Err(SnpError::NoVcpus)
    ));

    let no_type = SnpLaunchConfig {
        vcpu_type: None,
        ..milan.clone()
    };
    assert!(matches!(
        snp_launch_digest(&ovmf, &no_type),
        Err(SnpError::MissingVcpuType)
    ));

    let err = "EPYC-Zen6".parse::<VcpuType>().unwrap_err().to_string();
    assert!(
        err.contains("EPYC-Milan") && err.contains("EPYC-Turin"),
        "{err}"
    );

    // Debian's OVMF has no SNP_KERNEL_HASHES section: the Python tool refuses too.
    let with_kernel = SnpLaunchConfig {
        kernel_hashes: Some(KernelHashes::new(b"kernel", None, None)),
        ..milan.clone()
    };
    let err = snp_launch_digest(&ovmf, &with_kernel).unwrap_err();
    assert!(matches!(err, SnpError::NoKernelHashesSection), "{err}");
    assert!(err.to_string().contains("SNP_KERNEL_HASHES"));

    // No SEV metadata: the Python tool silently measures this image; we refuse.
    let code_4m = Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd");
    assert!(code_4m.exists(), "install the Debian package `ovmf`");
    let err = snp_launch_digest(&Ovmf::read(code_4m).unwrap(), &milan).unwrap_err();
    assert!(
        matches!(err, SnpError::Ovmf(OvmfError::NoSevMetadata)),
        "{err}"
    );
    assert!(err.to_string().contains("no SEV metadata"), "{err}");

    // Not OVMF at all.
    assert!(matches!(
        Ovmf::parse(vec![0; 1 << 20]),
        Err(OvmfError::NoFooterTable)
    ));

    // Truncating an image by a page moves its footer table: refused, never a panic.
    let bytes = std::fs::read(&ovmf_path).unwrap();
    assert!(Ovmf::parse(bytes[..bytes.len() - 4096].to_vec()).is_err());

    // An image that is not whole pages.
    let mut odd = vec![0u8; 16];
    odd.extend_from_slice(&std::fs::read(data("ovmf_AmdSev_suffix.bin")).unwrap());
    let err = snp_launch_digest(&Ovmf::parse(odd).unwrap(), &milan).unwrap_err();
    assert!(matches!(err, SnpError::ImageNotWholePages(4112)), "{err}");

    // The same through the file variant; a missing kernel is named.
    let null_kernel = DirectBootFiles {
        kernel: Path::new("/dev/null"),
        initrd: None,
        append: None,
    };
    let err = snp_launch_digest_files(&ovmf_path, Some(null_kernel), &milan).unwrap_err();
    assert!(matches!(err, SnpError::NoKernelHashesSection), "{err}");
    let missing = DirectBootFiles {
        initrd: Some(Path::new("/nonexistent/initrd")),
        ..null_kernel
    };
    let err = snp_launch_digest_files(&data("ovmf_AmdSev_suffix.bin"), Some(missing), &milan)
        .unwrap_err();
    assert!(
        err.to_string().contains("initrd /nonexistent/initrd"),
        "{err}"
    );
    // A kernel file that does not exist is named.
    let err = KernelHashes::from_files(Path::new("/nonexistent/vmlinuz"), None, None).unwrap_err();
    assert!(
        err.to_string().contains("kernel /nonexistent/vmlinuz"),
        "{err}"
    );
}

#[test]
fn every_vcpu_count_gives_its_own_digest() {
    // The AP VMSA is hashed once and folded per vCPU (the grid checks 220 vCPUs against
    // the Python tool); each count must still give a distinct digest.
    let ovmf = Ovmf::read(&data("ovmf_AmdSev_suffix.bin")).unwrap();
    let digest = |n| snp_launch_digest(&ovmf, &SnpLaunchConfig::qemu(n, VcpuType::GENOA)).unwrap();
    let all: Vec<_> = (1..=8).map(digest).collect();
    for (i, a) in all.iter().enumerate() {
        assert!(all[i + 1..].iter().all(|b| b != a));
    }
}
