//! The build machine's tools the image build runs: zstd, strip, ldd, modprobe, xz,
//! mkfs.erofs and veritysetup. Each call checks the exit status and keeps stderr for the
//! error.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha256};

use crate::ImageError;

/// A host tool that is missing or failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program is not installed.
    #[error("{program} is not installed: apt-get install {package} (cargo xtask test installs it)")]
    Missing {
        /// The program.
        program: String,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// The program ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Talking to the program failed.
    #[error("{command}")]
    Io {
        /// The command line.
        command: String,
        /// The error.
        source: std::io::Error,
    },
}

fn package_of(program: &str) -> &'static str {
    match program {
        "zstd" => "zstd",
        "strip" => "binutils",
        "ldd" => "libc-bin",
        "modprobe" => "kmod",
        "xz" => "xz-utils",
        "mkfs.erofs" => "erofs-utils",
        "veritysetup" => "cryptsetup-bin",
        "busybox" => "busybox-static",
        "dpkg-deb" => "dpkg",
        _ => "the package that provides it",
    }
}

/// Runs `program args`, feeding `input` to stdin, and returns stdout.
fn run(program: &str, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, ToolError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ToolError::Missing {
                    program: program.to_owned(),
                    package: package_of(program),
                }
            } else {
                ToolError::Io {
                    command: command.clone(),
                    source,
                }
            }
        })?;
    // Feed stdin from a thread so a large output cannot deadlock against a full pipe.
    let writer = match (input, child.stdin.take()) {
        (Some(data), Some(mut stdin)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                use std::io::Write as _;
                stdin.write_all(&data)
            }))
        }
        _ => None,
    };
    let output = child.wait_with_output().map_err(|source| ToolError::Io {
        command: command.clone(),
        source,
    })?;
    if let Some(writer) = writer {
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the stdin writer thread panicked")));
        written.map_err(|source| ToolError::Io {
            command: command.clone(),
            source,
        })?;
    }
    if !output.status.success() {
        return Err(ToolError::Failed {
            command,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(output.stdout)
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// The ELF kernel inside a bzImage: the zstd payload the setup header points at.
pub(crate) fn unpack_bzimage(path: &Path, data: &[u8]) -> Result<Vec<u8>, ImageError> {
    let fail = |reason: &str| ImageError::Kernel {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let u32_at = |offset: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            data.get(offset..offset + 4)?.try_into().ok()?,
        ))
    };
    if data.get(0x202..0x206) != Some(b"HdrS") {
        return Err(fail("no bzImage setup header (HdrS)"));
    }
    let setup_sectors = match data.get(0x1f1) {
        Some(0) => 4,
        Some(n) => usize::from(*n),
        None => return Err(fail("truncated setup header")),
    };
    let (offset, length) = match (u32_at(0x248), u32_at(0x24c)) {
        (Some(o), Some(l)) => (o as usize, l as usize),
        _ => return Err(fail("truncated setup header")),
    };
    let start = (setup_sectors + 1) * 512 + offset;
    let payload = data
        .get(start..start + length)
        .ok_or_else(|| fail("the payload lies outside the file"))?;
    // The payload is a zstd frame followed by the decompressed size (u32, little endian).
    let (frame, size) = payload
        .split_last_chunk::<4>()
        .ok_or_else(|| fail("empty payload"))?;
    if !frame.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(fail("the payload is not zstd-compressed"));
    }
    let vmlinux = run("zstd", &["-dcq"], Some(frame))?;
    if vmlinux.len() != u32::from_le_bytes(*size) as usize || !vmlinux.starts_with(b"\x7fELF") {
        return Err(fail(
            "the unpacked payload is not the ELF kernel the header announces",
        ));
    }
    Ok(vmlinux)
}

/// `busybox --list`: the applet names.
pub(crate) fn busybox_applets(busybox: &Path) -> Result<Vec<String>, ImageError> {
    let out = run(&path_str(busybox), &["--list"], None)?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && *name != "busybox" && !name.contains('/'))
        .map(str::to_owned)
        .collect())
}

/// Copies `from` to `to` without debug sections (a debug build's binaries shrink ~4×).
pub fn strip(from: &Path, to: &Path) -> Result<(), ImageError> {
    run(
        "strip",
        &["--strip-debug", "-o", &path_str(to), &path_str(from)],
        None,
    )?;
    Ok(())
}

/// The shared libraries `programs` load (their `ldd` closure, plus libgcc_s, which glibc
/// loads at run time for thread cancellation without ldd seeing it).
pub fn shared_libraries(programs: &[PathBuf]) -> Result<BTreeSet<PathBuf>, ImageError> {
    let mut libraries = BTreeSet::new();
    for program in programs {
        let out = match run("ldd", &[&path_str(program)], None) {
            Ok(out) => out,
            // A static program (busybox-static) loads nothing.
            Err(ToolError::Failed { stderr, .. })
                if stderr.contains("not a dynamic executable") =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for line in String::from_utf8_lossy(&out).lines() {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(path) = path.filter(|p| p.starts_with('/')) {
                libraries.insert(PathBuf::from(path));
            }
        }
    }
    if libraries
        .iter()
        .any(|l| l.to_string_lossy().contains("libc.so"))
    {
        libraries.insert(PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"));
    }
    Ok(libraries)
}

/// The module files for `names` and their dependencies, in load order, each once.
pub(crate) fn resolve_modules(
    system: &Path,
    kernel: &str,
    names: &[&str],
) -> Result<Vec<PathBuf>, ImageError> {
    let mut order: Vec<PathBuf> = Vec::new();
    for name in names {
        let out = run(
            "modprobe",
            &[
                "-d",
                &path_str(system),
                "-S",
                kernel,
                "--show-depends",
                name,
            ],
            None,
        )?;
        for line in String::from_utf8_lossy(&out).lines() {
            // "insmod /lib/modules/…/x.ko.xz [params]"; "builtin x" needs nothing.
            if let Some(path) = line
                .strip_prefix("insmod ")
                .and_then(|r| r.split_whitespace().next())
            {
                let path = PathBuf::from(path);
                if !order.contains(&path) {
                    order.push(path);
                }
            }
        }
    }
    Ok(order)
}

/// The content of an `.xz` module, decompressed (busybox insmod then loads it without a
/// warning), or the file as it is.
pub(crate) fn decompress_xz(path: &Path) -> Result<Vec<u8>, ImageError> {
    if path.extension().is_some_and(|e| e == "xz") {
        Ok(run("xz", &["-dc", &path_str(path)], None)?)
    } else {
        std::fs::read(path).map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Packs `root` into an erofs image: one fixed time, root owner, fixed UUID, no extended
/// attributes from the build machine.
pub(crate) fn mkfs_erofs(root: &Path, image: &Path, uuid: &str) -> Result<(), ImageError> {
    run(
        "mkfs.erofs",
        &[
            "--quiet",
            "-T0",
            "--all-root",
            "-x-1",
            &format!("-U{uuid}"),
            &path_str(image),
            &path_str(root),
        ],
        None,
    )?;
    Ok(())
}

/// The dm-verity parameters of a formatted image.
#[derive(Debug)]
pub(crate) struct Verity {
    pub(crate) root_hash: String,
    pub(crate) hash_offset: u64,
}

/// Appends the dm-verity hash tree (SHA-256, 4 KiB blocks) to `image`. The salt is the
/// SHA-256 of the filesystem image: unique per content, yet reproducible.
pub(crate) fn verity_format(image: &Path, uuid: &str) -> Result<Verity, ImageError> {
    let data = std::fs::read(image).map_err(|source| ImageError::Io {
        path: image.to_path_buf(),
        source,
    })?;
    let block = 4096u64;
    let size = data.len() as u64;
    let padded = size.div_ceil(block) * block;
    if padded != size {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(image)
            .map_err(|source| ImageError::Io {
                path: image.to_path_buf(),
                source,
            })?;
        file.set_len(padded).map_err(|source| ImageError::Io {
            path: image.to_path_buf(),
            source,
        })?;
    }
    let salt = hex::encode(Sha256::digest(&data));
    let image = path_str(image);
    let out = run(
        "veritysetup",
        &[
            "format",
            "--hash=sha256",
            "--data-block-size=4096",
            "--hash-block-size=4096",
            &format!("--data-blocks={}", padded / block),
            &format!("--hash-offset={padded}"),
            &format!("--salt={salt}"),
            &format!("--uuid={uuid}"),
            &image,
            &image,
        ],
        None,
    )?;
    let text = String::from_utf8_lossy(&out);
    let root_hash = text
        .lines()
        .find_map(|l| l.strip_prefix("Root hash:"))
        .map(|h| h.trim().to_owned())
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| ImageError::NoRootHash {
            output: text.clone().into_owned(),
        })?;
    Ok(Verity {
        root_hash,
        hash_offset: padded,
    })
}

/// The file at `path` (relative, no leading `/`) inside the Debian package `deb`: dpkg-deb
/// unpacks the data archive (xz or zstd), tar finds the file.
pub(crate) fn deb_file(deb: &Path, path: &str) -> Result<Vec<u8>, ImageError> {
    let tar = run("dpkg-deb", &["--fsys-tarfile", &path_str(deb)], None)?;
    let io = |source| ImageError::Io {
        path: deb.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let name = entry.path().map_err(io)?.into_owned();
        let name = name.to_string_lossy();
        if name.trim_start_matches("./") == path && entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).map_err(io)?;
            return Ok(data);
        }
    }
    Err(ImageError::NotInPackage {
        deb: deb.to_path_buf(),
        path: path.to_owned(),
    })
}
