//! The Kata runtime configuration per platform (docs/runtime.md §3–§4).
//!
//! Written from scratch rather than patched from a base file: only the keys that make a
//! confidential, measured VM are set, everything else keeps Kata's defaults. The kernel
//! command line is replaced, never appended to, because the launch measurement covers
//! it byte for byte.

use contrast_platforms::kata::ImagePull;
use contrast_platforms::{Platform, Tee, node_installer};
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::InstallError;
use crate::hostpath::join_host;
use crate::snp::SnpIdBlock;

/// The kernel command line of the guest image (docs/runtime.md §7, non-debug),
/// without the dm-verity arguments the image build appends. The installer image passes
/// the measured line; this is only the fallback.
pub const DEFAULT_KERNEL_PARAMS: &str = "tsc=reliable no_timer_check rcupdate.rcu_expedited=1 \
i8042.direct=1 i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1 noreplace-smp reboot=k \
cryptomgr.notests net.ifnames=0 pci=lastbus=0 root=/dev/vda1 rootflags=ro rootfstype=erofs \
console=hvc0 console=hvc1 quiet systemd.show_status=false panic=1 nr_cpus=1 selinux=0 \
systemd.unit=kata-containers.target systemd.mask=systemd-networkd.service \
systemd.mask=systemd-networkd.socket scsi_mod.scan=none";

/// The SNP guest policy of the AKS IGVM guest: SMT allowed, reserved bit 17 set
/// (docs/runtime.md §4).
pub const AKS_SNP_GUEST_POLICY: i64 = 0x30000;

/// Which VMM and TEE a platform's pods run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// QEMU with SEV-SNP (bare metal, K3s).
    QemuSnp,
    /// QEMU with TDX (bare metal, K3s, RKE2).
    QemuTdx,
    /// Cloud Hypervisor with SEV-SNP in an IGVM guest (AKS).
    ClhSnp,
}

impl RuntimeKind {
    /// The kind for `platform`; the simulated platforms have no node runtime.
    pub fn for_platform(platform: Platform) -> Result<Self, InstallError> {
        match platform {
            Platform::AksClhSnp => Ok(RuntimeKind::ClhSnp),
            Platform::K3sQemuSnp
            | Platform::K3sQemuSnpGpu
            | Platform::MetalQemuSnp
            | Platform::MetalQemuSnpGpu => Ok(RuntimeKind::QemuSnp),
            Platform::K3sQemuTdx | Platform::Rke2QemuTdx | Platform::MetalQemuTdx => {
                Ok(RuntimeKind::QemuTdx)
            }
            Platform::SimSnp | Platform::SimTdx => {
                Err(InstallError::UnsupportedPlatform { platform })
            }
        }
    }

    /// The Kata configuration's file name under `<base>/etc/`.
    pub fn config_file_name(self) -> &'static str {
        match self {
            RuntimeKind::QemuSnp => "configuration-qemu-snp.toml",
            RuntimeKind::QemuTdx => "configuration-qemu-tdx.toml",
            RuntimeKind::ClhSnp => "configuration-clh-snp.toml",
        }
    }
}

/// Whether `platform` passes a confidential GPU to the pod VM.
pub fn is_gpu(platform: Platform) -> bool {
    matches!(
        platform,
        Platform::K3sQemuSnpGpu | Platform::MetalQemuSnpGpu
    )
}

/// The inputs of the Kata configuration.
#[derive(Debug, Clone, Copy)]
pub struct KataInputs<'a> {
    /// The platform.
    pub platform: Platform,
    /// The runtime base directory as a host path (`/opt/edgeless/<handler>`).
    pub base_dir: &'a str,
    /// The guest kernel command line, exactly as measured.
    pub kernel_params: &'a str,
    /// The ID block for QEMU SNP guests (ignored elsewhere).
    pub snp_id_block: Option<&'a SnpIdBlock>,
    /// Agent debug console and runtime debug logs.
    pub debug: bool,
    /// The host path of the image puller config (registry credentials for the guest's
    /// pulls, unmeasured: docs/runtime.md §9), as `contrast_imagepuller_config` in
    /// `[hypervisor.qemu]`; ignored on cloud-hypervisor (AKS), which pulls on the host.
    pub imagepuller_config: Option<&'a str>,
}

/// The Kata configuration TOML for `inputs`.
pub fn kata_config(inputs: &KataInputs<'_>) -> Result<String, InstallError> {
    let kind = RuntimeKind::for_platform(inputs.platform)?;
    let gpu = is_gpu(inputs.platform);
    // What the agent policy expects of the requests (contrast_platforms::kata): written
    // from the one place the policy generator reads too.
    let settings = inputs.platform.kata_runtime();
    let base = inputs.base_dir;
    let path = |rest: &str| join_host(base, &[rest]);

    let mut hypervisor = Table::new();
    let set = |table: &mut Table, key: &str, value: Value| {
        table.insert(key, Item::Value(value));
    };
    let vmm_path = match kind {
        RuntimeKind::QemuSnp => path("snp/bin/qemu-system-x86_64"),
        RuntimeKind::QemuTdx => path("tdx/bin/qemu-system-x86_64"),
        RuntimeKind::ClhSnp => path("bin/cloud-hypervisor-snp"),
    };
    set(&mut hypervisor, "path", vmm_path.as_str().into());
    set(
        &mut hypervisor,
        "valid_hypervisor_paths",
        strings(&[&vmm_path]),
    );
    match kind {
        RuntimeKind::QemuSnp | RuntimeKind::QemuTdx => {
            let firmware = node_installer::firmware(if kind == RuntimeKind::QemuSnp {
                Tee::Snp
            } else {
                Tee::Tdx
            });
            set(&mut hypervisor, "firmware", path(firmware).into());
            set(
                &mut hypervisor,
                "kernel",
                path(node_installer::KERNEL).into(),
            );
            set(
                &mut hypervisor,
                "initrd",
                path(node_installer::INITRD).into(),
            );
            set(
                &mut hypervisor,
                "image",
                path(node_installer::ROOTFS).into(),
            );
            set(&mut hypervisor, "rootfs_type", "erofs".into());
            set(&mut hypervisor, "machine_type", "q35".into());
            set(
                &mut hypervisor,
                "block_device_driver",
                settings.block_device_driver.config_value().into(),
            );
            set(&mut hypervisor, "block_device_aio", "threads".into());
            set(&mut hypervisor, "disable_image_nvdimm", true.into());
            set(&mut hypervisor, "cpu_features", "pmu=off".into());
            if let Some(config) = inputs.imagepuller_config {
                set(
                    &mut hypervisor,
                    "contrast_imagepuller_config",
                    config.into(),
                );
            }
        }
        RuntimeKind::ClhSnp => {
            // The IGVM file carries firmware, kernel and command line; it is measured whole.
            set(
                &mut hypervisor,
                "igvm",
                path("share/kata-containers-igvm.img").into(),
            );
            set(
                &mut hypervisor,
                "image",
                path(node_installer::ROOTFS).into(),
            );
            set(&mut hypervisor, "rootfs_type", "ext4".into());
            set(
                &mut hypervisor,
                "block_device_driver",
                settings.block_device_driver.config_value().into(),
            );
        }
    }
    // Replaced, not appended: the measurement covers exactly this line.
    set(
        &mut hypervisor,
        "kernel_params",
        inputs.kernel_params.into(),
    );
    set(&mut hypervisor, "default_vcpus", 1.into());
    set(
        &mut hypervisor,
        "default_memory",
        i64::from(inputs.platform.default_vm_memory_mib()).into(),
    );
    set(&mut hypervisor, "confidential_guest", true.into());
    if matches!(kind, RuntimeKind::QemuSnp | RuntimeKind::ClhSnp) {
        set(&mut hypervisor, "sev_snp_guest", true.into());
    }
    match (kind, inputs.snp_id_block) {
        (RuntimeKind::QemuSnp, Some(block)) => {
            set(
                &mut hypervisor,
                "snp_id_block",
                block.id_block_base64().into(),
            );
            set(
                &mut hypervisor,
                "snp_id_auth",
                block.id_auth_base64().into(),
            );
            // QEMU refuses a policy that differs from the ID block's.
            let policy =
                i64::try_from(block.guest_policy()).map_err(|_| InstallError::SnpIdBlocks {
                    file: "the ID block".into(),
                    reason: "the guest policy does not fit a TOML integer".into(),
                })?;
            set(&mut hypervisor, "snp_guest_policy", policy.into());
        }
        (RuntimeKind::ClhSnp, _) => {
            set(
                &mut hypervisor,
                "snp_guest_policy",
                AKS_SNP_GUEST_POLICY.into(),
            );
        }
        _ => {}
    }
    set(&mut hypervisor, "shared_fs", settings.shared_fs.into());
    set(
        &mut hypervisor,
        "disable_guest_selinux",
        settings.disable_guest_selinux.into(),
    );
    // Annotations could change what is measured; only the initdata (the policy, bound to
    // the evidence through HOST_DATA or MRCONFIGID) may come from the pod.
    set(
        &mut hypervisor,
        "enable_annotations",
        strings(&["cc_init_data"]),
    );
    set(&mut hypervisor, "enable_debug", inputs.debug.into());
    if let Some(hooks) = settings.guest_hook_path {
        set(&mut hypervisor, "guest_hook_path", hooks.into());
    }
    if gpu {
        set(&mut hypervisor, "cold_plug_vfio", "root-port".into());
    }

    let mut agent = Table::new();
    let (dial_timeout, create_timeout) = match (kind, gpu) {
        // GPU images are large and pulled inside the guest.
        (_, true) => (600, 600),
        _ => (90, 60),
    };
    set(&mut agent, "dial_timeout", dial_timeout.into());
    set(&mut agent, "kernel_modules", Value::Array(Array::new()));
    if inputs.debug {
        set(&mut agent, "enable_debug", true.into());
        set(&mut agent, "debug_console_enabled", true.into());
    }

    let mut runtime = Table::new();
    set(&mut runtime, "sandbox_cgroup_only", true.into());
    set(&mut runtime, "static_sandbox_resource_mgmt", true.into());
    set(
        &mut runtime,
        "create_container_timeout",
        create_timeout.into(),
    );
    set(
        &mut runtime,
        "disable_guest_seccomp",
        settings.disable_guest_seccomp.into(),
    );
    set(
        &mut runtime,
        "emptydir_mode",
        settings.emptydir_mode.config_value().into(),
    );
    set(&mut runtime, "internetworking_model", "tcfilter".into());
    set(&mut runtime, "vfio_mode", "guest-kernel".into());
    if settings.image_pull == ImagePull::InGuest {
        // AKS uses the tardev snapshotter instead.
        set(&mut runtime, "experimental_force_guest_pull", true.into());
    }
    if inputs.debug {
        set(&mut runtime, "enable_debug", true.into());
    }

    let vmm_name = match kind {
        RuntimeKind::QemuSnp | RuntimeKind::QemuTdx => "qemu",
        RuntimeKind::ClhSnp => "clh",
    };
    let mut doc = DocumentMut::new();
    doc.insert("hypervisor", Item::Table(parent_of(vmm_name, hypervisor)));
    doc.insert("agent", Item::Table(parent_of("kata", agent)));
    doc.insert("runtime", Item::Table(runtime));
    Ok(format!(
        "# Written by the Contrast runtime installer for {}; changes are overwritten.\n{doc}",
        inputs.platform
    ))
}

fn parent_of(key: &str, child: Table) -> Table {
    let mut parent = Table::new();
    parent.set_implicit(true);
    parent.insert(key, Item::Table(child));
    parent
}

fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().copied().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const BASE: &str = "/opt/edgeless/contrast-cc-metal-qemu-snp-1a2b3c4d";

    fn inputs(platform: Platform) -> KataInputs<'static> {
        KataInputs {
            platform,
            base_dir: BASE,
            kernel_params: "console=hvc0 root=/dev/vda1",
            snp_id_block: None,
            debug: false,
            imagepuller_config: None,
        }
    }

    fn parse(text: &str) -> DocumentMut {
        text.parse().unwrap()
    }

    #[test]
    fn qemu_snp_layout() {
        let mut block = vec![0u8; 96];
        block[88..].copy_from_slice(&0x30000u64.to_le_bytes());
        let id = SnpIdBlock::new(block, vec![9; 4096]).unwrap();
        let text = kata_config(&KataInputs {
            snp_id_block: Some(&id),
            ..inputs(Platform::MetalQemuSnp)
        })
        .unwrap();
        let doc = parse(&text);
        let qemu = &doc["hypervisor"]["qemu"];
        let s = |key: &str| qemu[key].as_str().unwrap().to_owned();
        assert_eq!(s("path"), format!("{BASE}/snp/bin/qemu-system-x86_64"));
        assert_eq!(
            qemu["valid_hypervisor_paths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect::<Vec<_>>(),
            [format!("{BASE}/snp/bin/qemu-system-x86_64")]
        );
        assert_eq!(s("firmware"), format!("{BASE}/snp/share/OVMF.fd"));
        assert_eq!(s("kernel"), format!("{BASE}/share/kata-kernel"));
        assert_eq!(s("initrd"), format!("{BASE}/share/kata-initrd.gz"));
        assert_eq!(s("image"), format!("{BASE}/share/kata-containers.img"));
        assert_eq!(s("rootfs_type"), "erofs");
        assert_eq!(s("kernel_params"), "console=hvc0 root=/dev/vda1");
        assert_eq!(qemu["default_memory"].as_integer(), Some(512));
        assert_eq!(qemu["sev_snp_guest"].as_bool(), Some(true));
        assert_eq!(qemu["confidential_guest"].as_bool(), Some(true));
        assert_eq!(s("snp_id_block"), id.id_block_base64());
        assert_eq!(s("snp_id_auth"), id.id_auth_base64());
        assert_eq!(qemu["snp_guest_policy"].as_integer(), Some(0x30000));
        assert_eq!(s("block_device_aio"), "threads");
        assert_eq!(doc["agent"]["kata"]["dial_timeout"].as_integer(), Some(90));
        assert_eq!(
            doc["runtime"]["experimental_force_guest_pull"].as_bool(),
            Some(true)
        );
        assert_eq!(doc["runtime"]["sandbox_cgroup_only"].as_bool(), Some(true));
        assert!(text.contains("[hypervisor.qemu]\n"), "{text}");
        assert!(
            !text.contains("[hypervisor]\n"),
            "no empty parent header: {text}"
        );
    }

    #[test]
    fn qemu_tdx_has_no_snp_keys() {
        let doc = parse(&kata_config(&inputs(Platform::Rke2QemuTdx)).unwrap());
        let qemu = &doc["hypervisor"]["qemu"];
        assert_eq!(
            qemu["path"].as_str(),
            Some(format!("{BASE}/tdx/bin/qemu-system-x86_64").as_str())
        );
        assert_eq!(
            qemu["firmware"].as_str(),
            Some(format!("{BASE}/tdx/share/OVMF.fd").as_str())
        );
        for key in ["sev_snp_guest", "snp_id_block", "snp_guest_policy"] {
            assert!(qemu.get(key).is_none(), "{key}");
        }
    }

    #[test]
    fn aks_clh_layout() {
        let doc = parse(&kata_config(&inputs(Platform::AksClhSnp)).unwrap());
        assert!(doc["hypervisor"].get("qemu").is_none());
        let clh = &doc["hypervisor"]["clh"];
        assert_eq!(
            clh["path"].as_str(),
            Some(format!("{BASE}/bin/cloud-hypervisor-snp").as_str())
        );
        assert_eq!(
            clh["igvm"].as_str(),
            Some(format!("{BASE}/share/kata-containers-igvm.img").as_str())
        );
        assert_eq!(clh["snp_guest_policy"].as_integer(), Some(196608));
        assert_eq!(clh["default_memory"].as_integer(), Some(256));
        assert_eq!(clh["shared_fs"].as_str(), Some("none"));
        assert!(
            doc["runtime"]
                .get("experimental_force_guest_pull")
                .is_none()
        );
    }

    /// What the agent policy is generated to expect is what the configuration says, for
    /// every platform with a node runtime: both come from `Platform::kata_runtime`.
    #[test]
    fn the_settings_the_policy_depends_on_are_the_platforms() {
        for platform in Platform::ALL.into_iter().filter(|p| !p.is_simulated()) {
            let expected = platform.kata_runtime();
            let doc = parse(&kata_config(&inputs(platform)).unwrap());
            let vmm = if platform == Platform::AksClhSnp {
                "clh"
            } else {
                "qemu"
            };
            let hypervisor = &doc["hypervisor"][vmm];
            assert_eq!(
                hypervisor["shared_fs"].as_str(),
                Some(expected.shared_fs),
                "{platform}"
            );
            assert_eq!(
                hypervisor["disable_guest_selinux"].as_bool(),
                Some(expected.disable_guest_selinux),
                "{platform}"
            );
            assert_eq!(
                hypervisor["block_device_driver"].as_str(),
                Some(expected.block_device_driver.config_value()),
                "{platform}"
            );
            assert_eq!(
                hypervisor.get("guest_hook_path").and_then(|v| v.as_str()),
                expected.guest_hook_path,
                "{platform}"
            );
            assert_eq!(
                doc["runtime"]["disable_guest_seccomp"].as_bool(),
                Some(expected.disable_guest_seccomp),
                "{platform}"
            );
            assert_eq!(
                doc["runtime"]["emptydir_mode"].as_str(),
                Some(expected.emptydir_mode.config_value()),
                "{platform}"
            );
            assert_eq!(
                doc["runtime"]
                    .get("experimental_force_guest_pull")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                expected.image_pull == ImagePull::InGuest,
                "{platform}"
            );
        }
    }

    #[test]
    fn gpu_and_debug_settings() {
        let doc = parse(
            &kata_config(&KataInputs {
                debug: true,
                ..inputs(Platform::MetalQemuSnpGpu)
            })
            .unwrap(),
        );
        let qemu = &doc["hypervisor"]["qemu"];
        assert_eq!(qemu["cold_plug_vfio"].as_str(), Some("root-port"));
        assert_eq!(qemu["default_memory"].as_integer(), Some(1024));
        assert_eq!(qemu["enable_debug"].as_bool(), Some(true));
        assert_eq!(doc["agent"]["kata"]["dial_timeout"].as_integer(), Some(600));
        assert_eq!(
            doc["agent"]["kata"]["debug_console_enabled"].as_bool(),
            Some(true)
        );
        assert_eq!(
            doc["runtime"]["create_container_timeout"].as_integer(),
            Some(600)
        );
    }

    #[test]
    fn imagepuller_config_is_set_on_qemu_only_and_omitted_without_one() {
        const PATH: &str = "/opt/edgeless/h/etc/host-config/contrast-imagepuller.toml";
        for platform in Platform::ALL.into_iter().filter(|p| !p.is_simulated()) {
            let with = parse(
                &kata_config(&KataInputs {
                    imagepuller_config: Some(PATH),
                    ..inputs(platform)
                })
                .unwrap(),
            );
            let without = parse(&kata_config(&inputs(platform)).unwrap());
            if platform == Platform::AksClhSnp {
                assert!(
                    with["hypervisor"]["clh"]
                        .get("contrast_imagepuller_config")
                        .is_none(),
                    "{platform}"
                );
                assert!(with["hypervisor"].get("qemu").is_none(), "{platform}");
                continue;
            }
            assert_eq!(
                with["hypervisor"]["qemu"]["contrast_imagepuller_config"].as_str(),
                Some(PATH),
                "{platform}"
            );
            assert!(
                without["hypervisor"]["qemu"]
                    .get("contrast_imagepuller_config")
                    .is_none(),
                "{platform}"
            );
        }
    }

    #[test]
    fn simulated_platforms_are_refused() {
        for platform in [Platform::SimSnp, Platform::SimTdx] {
            let err = kata_config(&inputs(platform)).unwrap_err();
            assert!(
                matches!(err, InstallError::UnsupportedPlatform { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn output_is_deterministic() {
        let a = kata_config(&inputs(Platform::MetalQemuTdx)).unwrap();
        let b = kata_config(&inputs(Platform::MetalQemuTdx)).unwrap();
        assert_eq!(a, b);
    }
}
