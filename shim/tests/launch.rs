//! The shim reads the Kata configuration the runtime installer writes (one schema) and
//! launches each platform's VM with the TEE's launch field set to the initdata digest.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use contrast_platforms::Platform;
use contrast_runtime_installer::kata::{KataInputs, kata_config};
use contrast_runtime_installer::snp::SnpIdBlock;
use contrast_shim::config::{ConfigError, RuntimeConfig, Tee};
use contrast_shim::network::{GuestNetwork, Tap};
use contrast_shim::vm::{VmFiles, launch_field_len, qemu_args};

const BASE: &str = "/opt/edgeless/contrast-cc-metal-qemu-snp-1a2b3c4d";
const CMDLINE: &str = "console=hvc0 root=/dev/vda1 dm-mod.create=\"x\"";

fn installed(platform: Platform, id_block: Option<&SnpIdBlock>) -> RuntimeConfig {
    let text = kata_config(&KataInputs {
        platform,
        base_dir: BASE,
        kernel_params: CMDLINE,
        snp_id_block: id_block,
        debug: false,
        imagepuller_config: None,
    })
    .unwrap();
    RuntimeConfig::parse(&text, Path::new("configuration.toml")).unwrap()
}

fn arg_after<'a>(args: &'a [String], flag: &str, containing: &str) -> &'a str {
    args.windows(2)
        .find(|w| w[0] == flag && w[1].contains(containing))
        .map(|w| w[1].as_str())
        .unwrap_or_else(|| panic!("no {flag} with {containing} in {args:?}"))
}

#[test]
fn every_qemu_platform_the_installer_writes_is_read_back() {
    for platform in Platform::ALL
        .into_iter()
        .filter(|p| !p.is_simulated() && *p != Platform::AksClhSnp)
    {
        let config = installed(platform, None);
        assert_eq!(config.kernel_params, CMDLINE, "{platform}");
        assert_eq!(
            config.image,
            Path::new(BASE).join("share/kata-containers.img"),
            "{platform}"
        );
        assert_eq!(
            config.memory_mib,
            platform.default_vm_memory_mib(),
            "{platform}"
        );
        assert!(config.qemu.starts_with(BASE), "{platform}");
        let snp = matches!(config.tee, Tee::Snp { .. });
        let tdx = matches!(config.tee, Tee::Tdx);
        assert_eq!(snp, platform.to_string().contains("SNP"), "{platform}");
        assert_eq!(tdx, platform.to_string().contains("TDX"), "{platform}");
    }
}

#[test]
fn aks_cloud_hypervisor_is_refused_by_name() {
    let text = kata_config(&KataInputs {
        platform: Platform::AksClhSnp,
        base_dir: BASE,
        kernel_params: CMDLINE,
        snp_id_block: None,
        debug: false,
        imagepuller_config: None,
    })
    .unwrap();
    let err = RuntimeConfig::parse(&text, Path::new("c.toml")).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Key {
                key: "hypervisor.qemu",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("Cloud Hypervisor"), "{err}");
}

#[test]
fn snp_launch_carries_host_data_the_id_block_and_the_measured_command_line() {
    let mut block = vec![0u8; 96];
    block[88..].copy_from_slice(&0x30000u64.to_le_bytes());
    let id = SnpIdBlock::new(block, vec![9; 4096]).unwrap();
    let config = installed(Platform::MetalQemuSnp, Some(&id));
    let field = vec![0xab; launch_field_len(&config.tee)];
    assert_eq!(field.len(), 32);
    let taps = GuestNetwork::Taps(vec![
        Tap {
            name: "tap0_kata".into(),
            mac: "0a:58:0a:f4:00:0e".into(),
        },
        Tap {
            name: "tap1_kata".into(),
            mac: "0a:58:c0:a8:07:02".into(),
        },
    ]);
    let args = qemu_args(
        &config,
        &VmFiles::in_dir(Path::new("/run/x")),
        "sandbox1",
        &field,
        &taps,
    );
    let object = arg_after(&args, "-object", "sev-snp-guest");
    assert!(
        object.contains("host-data=q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="),
        "{object}"
    );
    assert!(
        object.contains(&format!("id-block={}", id.id_block_base64())),
        "{object}"
    );
    assert!(object.contains("policy=0x30000"), "{object}");
    assert!(arg_after(&args, "-machine", "q35").contains("confidential-guest-support=cgs0"));
    // The command line is the measured one, byte for byte (no test mode).
    assert_eq!(arg_after(&args, "-append", ""), CMDLINE);
    assert!(arg_after(&args, "-bios", "OVMF").ends_with("snp/share/OVMF.fd"));
    assert!(arg_after(&args, "-device", "serial=initdata").starts_with("virtio-blk-pci"));
    assert!(arg_after(&args, "-device", "vhost-vsock-pci").contains("guest-cid="));
    assert!(!args.iter().any(|a| a.contains("contrast.test")));
    // The pod's interfaces: one tap each (QEMU makes it in the pod's namespace), the NIC
    // with the interface's own MAC; no user network.
    // vhost-net, Kata's default on a real platform.
    assert_eq!(
        arg_after(&args, "-netdev", "tap,id=net0"),
        "tap,id=net0,ifname=tap0_kata,script=no,downscript=no,vhost=on"
    );
    assert_eq!(
        arg_after(&args, "-device", "virtio-net-pci,netdev=net1"),
        "virtio-net-pci,netdev=net1,mac=0a:58:c0:a8:07:02"
    );
    assert!(!args.iter().any(|a| a.starts_with("user,")));
}

#[test]
fn tdx_launch_carries_mrconfigid() {
    let config = installed(Platform::MetalQemuTdx, None);
    let field = vec![1u8; launch_field_len(&config.tee)];
    assert_eq!(field.len(), 48);
    // A pod network namespace without interfaces: no NIC at all.
    let args = qemu_args(
        &config,
        &VmFiles::in_dir(Path::new("/run/x")),
        "s",
        &field,
        &GuestNetwork::Taps(Vec::new()),
    );
    let object = arg_after(&args, "-object", "tdx-guest");
    assert!(object.contains("mrconfigid=AQEB"), "{object}");
    assert!(!args.iter().any(|a| a.contains("sev-snp-guest")));
    assert!(!args.iter().any(|a| a == "-netdev"), "{args:?}");
}

#[test]
fn a_simulated_launch_is_in_test_mode_and_says_so_on_the_command_line() {
    let text = format!(
        r#"
[hypervisor.qemu]
path = "/usr/bin/qemu-system-x86_64"
firmware = "/usr/share/qemu/qboot.rom"
kernel = "/img/vmlinux"
initrd = "/img/initrd"
image = "/img/rootfs.img"
kernel_params = "{CMDLINE_ESCAPED}"
default_memory = 1024
confidential_guest = true

[simulation]
test = "pod"
payload = "/img/payload.cpio"
vsock_backend = "/bin/vhost-device-vsock"
"#,
        CMDLINE_ESCAPED = CMDLINE.replace('"', "\\\"")
    );
    let config = RuntimeConfig::parse(&text, Path::new("sim.toml")).unwrap();
    let args = qemu_args(
        &config,
        &VmFiles::in_dir(Path::new("/run/x")),
        "s",
        &[7; 32],
        &GuestNetwork::User,
    );
    assert_eq!(
        arg_after(&args, "-append", ""),
        format!("{CMDLINE} contrast.test=pod")
    );
    assert!(arg_after(&args, "-fw_cfg", "contrast-host-data").ends_with(&"07".repeat(32)));
    assert!(arg_after(&args, "-machine", "pc").contains("accel=tcg"));
    assert!(arg_after(&args, "-device", "serial=contrast-test").starts_with("virtio-blk-pci"));
    assert!(
        args.iter()
            .any(|a| a == "vhost-user-vsock-pci,chardev=vvsock")
    );
    // A host-network pod: QEMU's user network.
    assert_eq!(arg_after(&args, "-netdev", "user"), "user,id=net0");
    // A pod network under TCG: no vhost-net (it needs KVM).
    let args = qemu_args(
        &config,
        &VmFiles::in_dir(Path::new("/run/x")),
        "s",
        &[7; 32],
        &GuestNetwork::Taps(vec![Tap {
            name: "tap0_kata".into(),
            mac: "0a:58:0a:f4:00:0e".into(),
        }]),
    );
    assert!(arg_after(&args, "-netdev", "tap,").ends_with(",vhost=off"));
}

#[test]
fn vhost_net_is_on_unless_the_configuration_disables_it() {
    let base = "[hypervisor.qemu]\npath = \"/q\"\nkernel = \"/k\"\nimage = \"/i\"\nkernel_params = \"\"\ndefault_memory = 512\nconfidential_guest = true\nsev_snp_guest = true\n";
    let on = RuntimeConfig::parse(base, Path::new("c.toml")).unwrap();
    assert!(on.vhost_net);
    let off = RuntimeConfig::parse(
        &format!("{base}disable_vhost_net = true\n"),
        Path::new("c.toml"),
    )
    .unwrap();
    assert!(!off.vhost_net);
}

#[test]
fn a_configuration_that_is_not_confidential_is_refused() {
    let text = r#"
[hypervisor.qemu]
path = "/q"
kernel = "/k"
image = "/i"
kernel_params = ""
default_memory = 512
"#;
    let err = RuntimeConfig::parse(text, Path::new("c.toml")).unwrap_err();
    assert!(err.to_string().contains("confidential_guest"), "{err}");
}

#[test]
fn an_internetworking_model_other_than_tcfilter_is_refused_by_key() {
    let base = "[hypervisor.qemu]\npath = \"/q\"\nkernel = \"/k\"\nimage = \"/i\"\nkernel_params = \"\"\ndefault_memory = 512\nconfidential_guest = true\nsev_snp_guest = true\n";
    let text = format!("{base}[runtime]\ninternetworking_model = \"macvtap\"\n");
    let err = RuntimeConfig::parse(&text, Path::new("c.toml")).unwrap_err();
    assert!(
        err.to_string().contains("runtime.internetworking_model")
            && err.to_string().contains("macvtap"),
        "{err}"
    );
    let text = format!("{base}[runtime]\ninternetworking_model = \"tcfilter\"\n");
    RuntimeConfig::parse(&text, Path::new("c.toml")).unwrap();
}

#[test]
fn timeouts_beyond_a_day_are_refused_by_key() {
    for (key, table) in [
        (
            "agent.kata.dial_timeout",
            "[agent.kata]\ndial_timeout = 99999999999",
        ),
        (
            "runtime.create_container_timeout",
            "[runtime]\ncreate_container_timeout = 99999999999",
        ),
    ] {
        let text = format!(
            "[hypervisor.qemu]\npath = \"/q\"\nkernel = \"/k\"\nimage = \"/i\"\nkernel_params = \"\"\ndefault_memory = 512\nconfidential_guest = true\nsev_snp_guest = true\n{table}\n"
        );
        let err = RuntimeConfig::parse(&text, Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn the_pods_limits_size_the_vm_as_kata_sizes_it() {
    use contrast_shim::config::SandboxSizing;
    let config = installed(Platform::MetalQemuSnp, None);
    let spec = |annotations: serde_json::Value| serde_json::json!({"annotations": annotations});
    // Kata's own example: 1 MiB and 2.2 CPUs (4 vCPUs with the default 1, rounded up).
    let sized = SandboxSizing::of(&spec(serde_json::json!({
        "io.kubernetes.cri.sandbox-memory": "1048576",
        "io.kubernetes.cri.sandbox-cpu-period": "100000",
        "io.kubernetes.cri.sandbox-cpu-quota": "220000",
    })));
    assert_eq!(sized.memory_mib, 1);
    let vm = sized.apply(&config);
    assert_eq!(vm.memory_mib, config.memory_mib + 1);
    assert_eq!(vm.vcpus, 4, "1 default + 2.2, rounded up");
    // The static CPU manager: no quota, CPUs from the shares.
    let pinned = SandboxSizing::of(&spec(serde_json::json!({
        "io.kubernetes.cri.sandbox-cpu-quota": "-1",
        "io.kubernetes.cri.sandbox-cpu-shares": "2048",
    })));
    assert_eq!(pinned.cpus, 2.0);
    // BestEffort (the cgroup floor of 2 shares, no quota) and unreadable values add nothing.
    for annotations in [
        serde_json::json!({"io.kubernetes.cri.sandbox-cpu-shares": "2"}),
        serde_json::json!({"io.kubernetes.cri.sandbox-memory": "lots"}),
        serde_json::json!({}),
    ] {
        let sizing = SandboxSizing::of(&spec(annotations.clone()));
        assert_eq!(sizing.apply(&config), config, "{annotations}");
    }
}

#[test]
fn the_image_puller_config_rides_on_a_disk_of_its_own() {
    let base = "[hypervisor.qemu]\npath = \"/q\"\nkernel = \"/k\"\nimage = \"/i\"\nkernel_params = \"\"\ndefault_memory = 512\nconfidential_guest = true\nsev_snp_guest = true\n";
    let files = VmFiles::in_dir(Path::new("/run/x"));
    let args_of =
        |config: &RuntimeConfig| qemu_args(config, &files, "s", &[0; 32], &GuestNetwork::User);
    // No key, or Contrast's empty path: no config (the disk then holds an empty one), but
    // the same devices: QEMU's DSDT, which TDX measures into RTMR0, lists each of them.
    let mut device_sets = Vec::new();
    for text in [
        base.to_owned(),
        format!("{base}contrast_imagepuller_config = \"\"\n"),
    ] {
        let config = RuntimeConfig::parse(&text, Path::new("c.toml")).unwrap();
        assert_eq!(config.imagepuller_config, None);
        device_sets.push(args_of(&config));
    }
    let path = "/opt/edgeless/h/etc/host-config/contrast-imagepuller.toml";
    let config = RuntimeConfig::parse(
        &format!("{base}contrast_imagepuller_config = \"{path}\"\n"),
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!(config.imagepuller_config.as_deref(), Some(Path::new(path)));
    let args = args_of(&config);
    assert_eq!(
        arg_after(&args, "-device", "serial=imagepuller"),
        "virtio-blk-pci,drive=imagepuller,serial=imagepuller"
    );
    for without in &device_sets {
        assert_eq!(
            without, &args,
            "the command line depends on the node's config"
        );
    }
    assert!(
        arg_after(&args, "-drive", "id=imagepuller")
            .starts_with(&format!("file={},", files.imagepuller.display()))
    );
    // What the installer writes is what the shim reads.
    let text = kata_config(&KataInputs {
        platform: Platform::MetalQemuSnp,
        base_dir: BASE,
        kernel_params: CMDLINE,
        snp_id_block: None,
        debug: false,
        imagepuller_config: Some(path),
    })
    .unwrap();
    let installed = RuntimeConfig::parse(&text, Path::new("configuration.toml")).unwrap();
    assert_eq!(
        installed.imagepuller_config.as_deref(),
        Some(Path::new(path))
    );
    // The root file system stays the first disk.
    let first_disk = args.iter().position(|a| a.contains("drive=root")).unwrap();
    let puller_disk = args
        .iter()
        .position(|a| a.contains("drive=imagepuller"))
        .unwrap();
    assert!(first_disk < puller_disk);
}
