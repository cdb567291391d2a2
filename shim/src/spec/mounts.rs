//! The container's mounts in the guest (ctr.go:446-558, ka.go:1600-1638): each is kept,
//! dropped, copied in with CopyFile, or made a guest storage (emptyDir volumes).

use super::*;

/// What becomes of one OCI mount in the guest.
pub(super) enum MountFate {
    /// Sent as it is.
    Keep,
    /// Copied in; the source becomes the guest path.
    Copied(String),
    /// The sandbox's shared memory (ka.go:1150-1170).
    Shm,
    /// Left out of the spec: its source cannot be copied (fs.go:363-371, ka.go:1007-1024).
    Dropped,
}

/// The mounts of the guest spec and the storages of its emptyDir volumes (the
/// `ephemeral` ones, then the `local` ones: ka.go:1610-1628), with the CopyFile requests
/// for the copied mounts appended to `copies` in the runtime's order.
/// `sandbox_id` is the sandbox's ID, or the path of the annotation that lacks it.
pub(super) fn guest_mounts(
    root: &Node<'_>,
    container_id: &str,
    sandbox_id: &Result<String, String>,
    copies: &mut Vec<CopyFileRequest>,
) -> Result<(Vec<oci::Mount>, Vec<Storage>), SpecError> {
    let mut out = Vec::new();
    let mut ephemeral = Vec::new();
    let mut local = Vec::new();
    let mut host_mounts = None;
    for m in root.get("mounts").array()? {
        let mut mount = convert_mount(&m)?;
        if is_empty_dir(&mount.source) {
            let table = match &host_mounts {
                Some(table) => table,
                None => host_mounts.insert(std::fs::read_to_string(HOST_MOUNTS).map_err(|e| {
                    SpecError::HostFile {
                        field: m.get("source").path,
                        path: PathBuf::from(HOST_MOUNTS),
                        source: e,
                    }
                })?),
            };
            let sandbox_id = sandbox_id
                .as_ref()
                .map_err(|field| SpecError::MissingField {
                    field: field.clone(),
                    why: "a container's emptyDir volumes live in its sandbox's directory in the \
                      guest; containerd's CRI always names the sandbox",
                })?;
            let (storage, memory) = empty_dir_storage(&m, &mut mount, table, sandbox_id)?;
            if memory {
                ephemeral.push(storage);
            } else {
                local.push(storage);
            }
            out.push(mount);
            continue;
        }
        match mount_fate(&m, &mount, container_id, copies)? {
            MountFate::Keep => {}
            MountFate::Copied(guest_path) => mount.source = guest_path,
            MountFate::Shm => {
                mount.type_ = "bind".to_owned();
                mount.source = GUEST_SANDBOX_SHM.to_owned();
                mount.options = vec!["rbind".to_owned()];
            }
            MountFate::Dropped => continue,
        }
        out.push(mount);
    }
    ephemeral.append(&mut local);
    Ok((out, ephemeral))
}

/// `isEmptyDir` (mount.go:361-375): kubelet's emptyDir directory is the source's parent.
pub(super) fn is_empty_dir(source: &str) -> bool {
    let parts: Vec<&str> = source.split('/').collect();
    parts.len() > 1 && parts[parts.len() - 2] == K8S_EMPTY_DIR
}

/// The file system type mounted at `path` by the first entry of a `/proc/mounts` table
/// that names it (`GetDevicePathAndFsTypeOptions`); `None` when nothing is mounted there
/// (a disk-backed emptyDir is a plain directory).
pub(super) fn mounted_fs_type<'a>(table: &'a str, path: &str) -> Option<&'a str> {
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.len() == 6 && fields[1] == path).then_some(fields[2])
    })
}

/// An emptyDir mount as the runtime retypes and points it (create.go:93-117, then
/// `handleEphemeralStorage` and `handleLocalStorage`, ka.go:1801-1885), and its storage;
/// `true` for a memory-backed one. The mount keeps containerd's options.
pub(super) fn empty_dir_storage(
    node: &Node<'_>,
    mount: &mut oci::Mount,
    host_mounts: &str,
    sandbox_id: &str,
) -> Result<(Storage, bool), SpecError> {
    let field = node.get("source").path;
    let fs_type = mounted_fs_type(host_mounts, &mount.source);
    if fs_type == Some("hugetlbfs") {
        return Err(SpecError::Unsupported {
            field,
            reason: "a hugepage-backed emptyDir (medium: HugePages): the shim does not                      give the guest hugepages; use medium Memory or the default"
                .to_owned(),
        });
    }
    let meta = std::fs::metadata(&mount.source).map_err(|e| SpecError::HostFile {
        field: field.clone(),
        path: PathBuf::from(&mount.source),
        source: e,
    })?;
    let fs_gid = (meta.gid() != 0).then(|| format!("{FS_GID_OPTION}={}", meta.gid()));
    let name = mount
        .source
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut storage = Storage::new();
    let memory = fs_type == Some("tmpfs");
    if memory {
        mount.type_ = "bind".to_owned();
        mount.source = format!("{GUEST_EPHEMERAL_DIR}/{name}");
        storage.driver = "ephemeral".to_owned();
        storage.source = "tmpfs".to_owned();
        storage.fstype = "tmpfs".to_owned();
        storage.options = fs_gid.into_iter().collect();
    } else {
        // The type stays `local`, as the runtime leaves it.
        mount.type_ = "local".to_owned();
        mount.source = format!("{GUEST_SHARED_DIR}/{sandbox_id}/rootfs/local/{name}");
        storage.driver = "local".to_owned();
        storage.source = "local".to_owned();
        storage.fstype = "local".to_owned();
        storage.options = LOCAL_DIR_OPTIONS.iter().map(|o| (*o).to_owned()).collect();
        storage.options.extend(fs_gid);
    }
    storage.mount_point.clone_from(&mount.source);
    Ok((storage, memory))
}

/// The runtime's decision for one mount (`mountSharedDirMounts`, ctr.go:456-520, then
/// `handleShm`).
pub(super) fn mount_fate(
    node: &Node<'_>,
    mount: &oci::Mount,
    container_id: &str,
    copies: &mut Vec<CopyFileRequest>,
) -> Result<MountFate, SpecError> {
    if mount.destination == "/dev/shm" {
        // Skipped by the copy loop (ctr.go:483) and pointed at the sandbox's shm by
        // handleShm whatever its type, unless it is an ephemeral volume (ka.go:1150-1170).
        return Ok(MountFate::Shm);
    }
    if is_system_mount(&mount.source) || mount.type_ != "bind" {
        // ctr.go:460 (/proc, /sys sources) and ctr.go:476 (only bind mounts are shared).
        return Ok(MountFate::Keep);
    }
    if is_host_device(&mount.source) {
        // ctr.go:497: host device nodes (and /dev directories) are not passed in; the
        // mount stays as containerd wrote it.
        return Ok(MountFate::Keep);
    }
    let guest_path = format!(
        "{GUEST_SHARED_DIR}/{}",
        share_file_name(container_id, &mount.destination)?
    );
    let field = node.get("source").path;
    match copy_tree(Path::new(&mount.source), &guest_path, &field)? {
        Some(mut requests) => {
            copies.append(&mut requests);
            Ok(MountFate::Copied(guest_path))
        }
        None => Ok(MountFate::Dropped),
    }
}

/// `isSystemMount` (mount.go:46-55): the cleaned source is `/proc` or `/sys` or below.
pub(super) fn is_system_mount(source: &str) -> bool {
    let clean = contrast_platforms::kata::clean_path(source);
    SYSTEM_MOUNT_PREFIXES.iter().any(|p| {
        clean == *p
            || clean
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// `isHostDevice` (mount.go:60-83): `/dev` itself, or anything below it that is not a
/// regular file, or that cannot be stat'ed (the runtime then skips the mount too).
pub(super) fn is_host_device(source: &str) -> bool {
    let clean = contrast_platforms::kata::clean_path(source);
    if clean == "/dev" {
        return true;
    }
    if !clean.starts_with("/dev/") {
        return false;
    }
    // os.Stat follows symlinks.
    std::fs::metadata(&clean).map_or(true, |m| !m.file_type().is_file())
}

/// `<container id>-<16 random hex digits>-<basename of the destination>`
/// (`shareFileName`, fs.go:310-323).
pub(super) fn share_file_name(container_id: &str, destination: &str) -> Result<String, SpecError> {
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| SpecError::Random)?;
    let clean = contrast_platforms::kata::clean_path(destination);
    let base = clean
        .rsplit('/')
        .next()
        .filter(|b| !b.is_empty())
        .unwrap_or("/");
    Ok(format!("{container_id}-{}-{base}", hex::encode(random)))
}

/// The CopyFile requests for the host file or tree at `source` copied to `guest_path`
/// (`ShareFile`'s copy branch, fs.go:346-422): `None` when the source itself is neither a
/// regular file, a directory nor a symlink (the runtime then drops the mount); other such
/// files below it are skipped.
pub(super) fn copy_tree(
    source: &Path,
    guest_path: &str,
    field: &str,
) -> Result<Option<Vec<CopyFileRequest>>, SpecError> {
    let host_error = |path: &Path, e: std::io::Error| SpecError::HostFile {
        field: field.to_owned(),
        path: path.to_owned(),
        source: e,
    };
    let clean = PathBuf::from(contrast_platforms::kata::clean_path(
        &source.to_string_lossy(),
    ));
    let meta = std::fs::symlink_metadata(&clean).map_err(|e| host_error(&clean, e))?;
    if !copyable(&meta.file_type()) {
        return Ok(None);
    }
    let mut out = Vec::new();
    // filepath.WalkDir: the root, then each directory's entries in lexical order, depth
    // first, without following symlinks.
    let mut stack: Vec<(PathBuf, String)> = vec![(clean, guest_path.to_owned())];
    while let Some((host, guest)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&host).map_err(|e| host_error(&host, e))?;
        out.extend(copy_file_requests(&host, &meta, &guest, field)?);
        if !meta.file_type().is_dir() {
            continue;
        }
        let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(&host)
            .map_err(|e| host_error(&host, e))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| host_error(&host, e))?;
        names.sort();
        for name in names.into_iter().rev() {
            let child = host.join(&name);
            let child_meta =
                std::fs::symlink_metadata(&child).map_err(|e| host_error(&child, e))?;
            // fs.go:363-373: a socket, device or FIFO below the root is skipped.
            if !copyable(&child_meta.file_type()) {
                continue;
            }
            let name = name.to_str().ok_or_else(|| SpecError::NotUtf8 {
                field: field.to_owned(),
                path: child.clone(),
            })?;
            stack.push((child.clone(), format!("{guest}/{name}")));
        }
    }
    Ok(Some(out))
}

pub(super) fn copyable(file_type: &std::fs::FileType) -> bool {
    file_type.is_file() || file_type.is_dir() || file_type.is_symlink()
}

/// The requests for one file (`kataAgent.copyFile`, ka.go:2753-2833): the raw `st_mode`,
/// the host owner; a regular file's bytes in 1 MiB chunks (one request without data
/// when empty), a symlink's target as data, a directory without data.
pub(super) fn copy_file_requests(
    host: &Path,
    meta: &std::fs::Metadata,
    guest: &str,
    field: &str,
) -> Result<Vec<CopyFileRequest>, SpecError> {
    let host_error = |e: std::io::Error| SpecError::HostFile {
        field: field.to_owned(),
        path: host.to_owned(),
        source: e,
    };
    let mut base = CopyFileRequest::new();
    base.path = guest.to_owned();
    base.dir_mode = COPY_DIR_MODE;
    base.file_mode = meta.mode();
    // Go's int32() of the uint32 owner: the same bits.
    base.uid = i32::from_ne_bytes(meta.uid().to_ne_bytes());
    base.gid = i32::from_ne_bytes(meta.gid().to_ne_bytes());
    let file_type = meta.file_type();
    if file_type.is_symlink() {
        let target = std::fs::read_link(host).map_err(host_error)?;
        base.data = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str()).to_vec();
        return Ok(vec![base]);
    }
    if file_type.is_dir() {
        return Ok(vec![base]);
    }
    if !file_type.is_file() {
        return Err(SpecError::UncopyableFile {
            field: field.to_owned(),
            path: host.to_owned(),
        });
    }
    let bytes = std::fs::read(host).map_err(host_error)?;
    base.file_size = i64::try_from(bytes.len()).map_err(|_| SpecError::UncopyableFile {
        field: field.to_owned(),
        path: host.to_owned(),
    })?;
    if bytes.is_empty() {
        return Ok(vec![base]);
    }
    let mut out = Vec::new();
    for (i, chunk) in bytes.chunks(COPY_CHUNK).enumerate() {
        let mut req = base.clone();
        req.data = chunk.to_vec();
        // offset += grpcMaxDataSize (ka.go:2828).
        req.offset = i64::try_from(i * COPY_CHUNK).unwrap_or(i64::MAX);
        out.push(req);
    }
    Ok(out)
}
