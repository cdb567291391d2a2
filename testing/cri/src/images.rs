//! Test images without a registry: this machine's static busybox in one layer, written
//! as an OCI layout tarball and imported into containerd's CRI namespace with `ctr`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub use contrast_image::oci::{Image, Layer};

use contrast_image::oci::{RunConfig, write_layout};

use crate::{CRI_NAMESPACE, Containerd, CriError};

/// The static busybox of Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";
/// containerd's client.
const CTR: &str = "/usr/bin/ctr";
/// The name [`Containerd::import_test_images`] gives the busybox image.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:contrast-test";
/// The name [`Containerd::import_test_images`] gives the pause image.
pub const PAUSE_IMAGE: &str = "docker.io/library/pause:contrast-test";

/// Applets linked to busybox in `/bin`.
const APPLETS: [&str; 8] = ["sh", "echo", "cat", "sleep", "ls", "true", "false", "env"];

/// The static busybox's bytes.
fn busybox() -> Result<Vec<u8>, CriError> {
    std::fs::read(BUSYBOX).map_err(|source| CriError::Io {
        action: "read (apt-get install busybox-static)",
        path: BUSYBOX.into(),
        source,
    })
}

/// A layer with busybox as `/bin/busybox` and its applets in `/bin`.
pub fn busybox_layer() -> Result<Layer, CriError> {
    let mut layer = Layer::new();
    layer.file("bin/busybox", busybox()?, 0o755);
    for applet in APPLETS {
        layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    Ok(layer)
}

/// An image of [`busybox_layer`] that runs `entrypoint` (a shell when empty).
pub fn busybox_image(entrypoint: &[&str]) -> Result<Image, CriError> {
    let entrypoint = if entrypoint.is_empty() {
        vec!["/bin/sh".to_owned()]
    } else {
        entrypoint.iter().map(|arg| (*arg).to_owned()).collect()
    };
    let run = RunConfig {
        entrypoint,
        env: vec!["PATH=/bin".to_owned()],
        user: "0".to_owned(),
        working_dir: "/".to_owned(),
    };
    let image_error = |source| CriError::Image {
        name: "busybox".to_owned(),
        source: Box::new(source),
    };
    let tar = busybox_layer()?.tar().map_err(image_error)?;
    Image::new(&tar, &run).map_err(image_error)
}

/// A pause image: busybox sleeping for ever (SIGKILL ends it, as containerd stops
/// sandboxes).
pub fn pause_image() -> Result<Image, CriError> {
    busybox_image(&["/bin/busybox", "sleep", "2147483647"])
}

/// The name of [`kubernetes_pause_image`] (the sandbox image of a node whose pods run in
/// VMs).
pub const KUBERNETES_PAUSE_IMAGE: &str = "docker.io/library/pause:contrast-vm";

/// A pause image configured as Kubernetes' own (`registry.k8s.io/pause`: `/pause` as the
/// entrypoint, the default PATH, user 65535): what a pod VM's agent policy expects of the
/// sandbox container. The binary is busybox; a pod VM never runs it (the guest brings
/// its own pause), so it only has to unpack.
pub fn kubernetes_pause_image() -> Result<Image, CriError> {
    let mut layer = Layer::new();
    layer.file("pause", busybox()?, 0o755);
    let run = RunConfig {
        entrypoint: vec!["/pause".to_owned()],
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()],
        user: "65535:65535".to_owned(),
        working_dir: "/".to_owned(),
    };
    let image_error = |source| CriError::Image {
        name: "pause".to_owned(),
        source: Box::new(source),
    };
    let tar = layer.tar().map_err(image_error)?;
    Image::new(&tar, &run).map_err(image_error)
}

/// Writes `images` (name, image) as an OCI layout tarball at `path`.
pub fn write_layout_tar(path: &Path, images: &[(&str, &Image)]) -> Result<(), CriError> {
    let scratch = tempfile::tempdir().map_err(|source| CriError::Io {
        action: "create a temporary directory in",
        path: std::env::temp_dir(),
        source,
    })?;
    write_layout(scratch.path(), images).map_err(|source| CriError::Image {
        name: images
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(", "),
        source: Box::new(source),
    })?;
    let io = |source| CriError::Io {
        action: "write the OCI layout tarball",
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut tar = tar::Builder::new(file);
    tar.append_dir_all(".", scratch.path()).map_err(io)?;
    tar.into_inner().map_err(io)?;
    Ok(())
}

impl Containerd {
    /// Imports `image` under `name` (a full reference such as
    /// `docker.io/library/x:tag`, as the CRI normalises names) into the CRI namespace.
    pub fn import_image(&self, name: &str, image: &Image) -> Result<(), CriError> {
        let tarball = self
            .dir()
            .join(format!("import-{}.tar", image.digest().replace(':', "-")));
        write_layout_tar(&tarball, &[(name, image)])?;
        self.import_tarball(&tarball)?;
        std::fs::remove_file(&tarball).map_err(|source| CriError::Io {
            action: "remove",
            path: tarball,
            source,
        })
    }

    /// Imports an OCI layout (or docker save) tarball into the CRI namespace with `ctr`.
    pub fn import_tarball(&self, tarball: &Path) -> Result<(), CriError> {
        let mut command = Command::new(CTR);
        command
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", CRI_NAMESPACE, "images", "import"])
            .arg(tarball);
        run(command)
    }

    /// Runs `ctr` against this containerd (in the CRI namespace) with `args`: its output,
    /// whether it succeeded or not.
    pub fn ctr(&self, args: &[&str]) -> Result<std::process::Output, CriError> {
        Command::new(CTR)
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", CRI_NAMESPACE])
            .args(args)
            .output()
            .map_err(|source| CriError::Spawn {
                program: PathBuf::from(CTR),
                source,
            })
    }

    /// Imports [`busybox_image`] as [`BUSYBOX_IMAGE`] and [`pause_image`] as
    /// [`PAUSE_IMAGE`].
    pub fn import_test_images(&self) -> Result<(), CriError> {
        self.import_image(BUSYBOX_IMAGE, &busybox_image(&[])?)?;
        self.import_image(PAUSE_IMAGE, &pause_image()?)
    }
}

/// Runs `command`, an error with its stderr if it fails.
pub(crate) fn run(mut command: Command) -> Result<(), CriError> {
    let line = format!("{command:?}");
    let output = command.output().map_err(|source| CriError::Spawn {
        program: PathBuf::from(command.get_program()),
        source,
    })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(CriError::Command {
            command: line,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}
