//! The runtime-spec JSON (containerd's names) to the agent's oci.proto (Go's field names),
//! field by field as `OCItoGRPC` matches them by Go name (pkg/agent/protocols/grpc/
//! utils.go:172-249). Fields the proto lacks are dropped; an absent pointer stays unset.

use super::*;

pub(super) fn convert_spec(root: &Node<'_>) -> Result<oci::Spec, SpecError> {
    let mut s = oci::Spec::new();
    s.Version = root.get("ociVersion").string()?;
    let process = root.get("process");
    if process.is_absent() {
        // ParseConfigJSON fails without a process (compatoci/utils.go:113-115).
        return Err(SpecError::MissingField {
            field: process.path,
            why: "the Kata runtime requires it, and containerd always writes it",
        });
    }
    s.Process = MessageField::some(convert_process(&process)?);
    s.Root = root.get("root").object(convert_root)?;
    s.Hostname = root.get("hostname").string()?;
    // Mounts, annotations and hooks are set by the caller.
    s.Linux = root.get("linux").object(convert_linux)?;
    Ok(s)
}

pub(super) fn convert_process(p: &Node<'_>) -> Result<oci::Process, SpecError> {
    let mut out = oci::Process::new();
    out.Terminal = p.get("terminal").bool()?;
    out.ConsoleSize = p.get("consoleSize").object(|b| {
        let mut out = oci::Box::new();
        out.Height = b.get("height").u32()?;
        out.Width = b.get("width").u32()?;
        Ok(out)
    })?;
    out.User = p.get("user").object(|u| {
        let mut out = oci::User::new();
        out.UID = u.get("uid").u32()?;
        out.GID = u.get("gid").u32()?;
        out.AdditionalGids = u.get("additionalGids").u32s()?;
        out.Username = u.get("username").string()?;
        Ok(out)
    })?;
    out.Args = p.get("args").strings()?;
    out.Env = p.get("env").strings()?;
    out.Cwd = p.get("cwd").string()?;
    out.Capabilities = MessageField::some(convert_capabilities(&p.get("capabilities"))?);
    out.Rlimits = p
        .get("rlimits")
        .array()?
        .iter()
        .map(|r| {
            let mut out = oci::POSIXRlimit::new();
            out.Type = r.get("type").string()?;
            out.Hard = r.get("hard").u64()?;
            out.Soft = r.get("soft").u64()?;
            Ok(out)
        })
        .collect::<Result<_, SpecError>>()?;
    out.NoNewPrivileges = p.get("noNewPrivileges").bool()?;
    out.ApparmorProfile = p.get("apparmorProfile").string()?;
    out.OOMScoreAdj = p.get("oomScoreAdj").i64()?;
    out.SelinuxLabel = p.get("selinuxLabel").string()?;
    Ok(out)
}

/// Always an object (compatoci/utils.go:45-100): the sets of an object, or one old-style
/// list for every set, or none.
pub(super) fn convert_capabilities(c: &Node<'_>) -> Result<oci::LinuxCapabilities, SpecError> {
    let mut out = oci::LinuxCapabilities::new();
    if let Some(Value::Array(_)) = c.value {
        let list = c.strings()?;
        out.Bounding.clone_from(&list);
        out.Effective.clone_from(&list);
        out.Inheritable.clone_from(&list);
        out.Permitted.clone_from(&list);
        out.Ambient = list;
        return Ok(out);
    }
    if c.is_absent() {
        return Ok(out);
    }
    c.expect_object()?;
    out.Bounding = c.get("bounding").strings()?;
    out.Effective = c.get("effective").strings()?;
    out.Inheritable = c.get("inheritable").strings()?;
    out.Permitted = c.get("permitted").strings()?;
    out.Ambient = c.get("ambient").strings()?;
    Ok(out)
}

pub(super) fn convert_root(r: &Node<'_>) -> Result<oci::Root, SpecError> {
    let mut out = oci::Root::new();
    out.Path = r.get("path").string()?;
    out.Readonly = r.get("readonly").bool()?;
    Ok(out)
}

pub(super) fn convert_mount(m: &Node<'_>) -> Result<oci::Mount, SpecError> {
    let mut out = oci::Mount::new();
    out.destination = m.get("destination").string()?;
    out.source = m.get("source").string()?;
    out.type_ = m.get("type").string()?;
    out.options = m.get("options").strings()?;
    Ok(out)
}

pub(super) fn convert_linux(l: &Node<'_>) -> Result<oci::Linux, SpecError> {
    let mut out = oci::Linux::new();
    out.UIDMappings = convert_id_mappings(&l.get("uidMappings"))?;
    out.GIDMappings = convert_id_mappings(&l.get("gidMappings"))?;
    out.Sysctl = l.get("sysctl").string_map()?.into_iter().collect();
    out.Resources = l.get("resources").object(convert_resources)?;
    out.CgroupsPath = l.get("cgroupsPath").string()?;
    out.Namespaces = l
        .get("namespaces")
        .array()?
        .iter()
        .map(|ns| {
            let mut out = oci::LinuxNamespace::new();
            out.Type = ns.get("type").string()?;
            out.Path = ns.get("path").string()?;
            Ok(out)
        })
        .collect::<Result<_, SpecError>>()?;
    out.Devices = l
        .get("devices")
        .array()?
        .iter()
        .map(convert_device)
        .collect::<Result<_, _>>()?;
    // Seccomp is never sent (disable_guest_seccomp); see `constrain`.
    out.RootfsPropagation = l.get("rootfsPropagation").string()?;
    out.MaskedPaths = l.get("maskedPaths").strings()?;
    out.ReadonlyPaths = l.get("readonlyPaths").strings()?;
    out.MountLabel = l.get("mountLabel").string()?;
    out.IntelRdt = l.get("intelRdt").object(|r| {
        let mut out = oci::LinuxIntelRdt::new();
        out.L3CacheSchema = r.get("l3CacheSchema").string()?;
        Ok(out)
    })?;
    Ok(out)
}

pub(super) fn convert_id_mappings(list: &Node<'_>) -> Result<Vec<oci::LinuxIDMapping>, SpecError> {
    list.array()?
        .iter()
        .map(|m| {
            let mut out = oci::LinuxIDMapping::new();
            out.HostID = m.get("hostID").u32()?;
            out.ContainerID = m.get("containerID").u32()?;
            out.Size = m.get("size").u32()?;
            Ok(out)
        })
        .collect()
}

pub(super) fn convert_device(d: &Node<'_>) -> Result<oci::LinuxDevice, SpecError> {
    let mut out = oci::LinuxDevice::new();
    out.Path = d.get("path").string()?;
    out.Type = d.get("type").string()?;
    out.Major = d.get("major").i64()?;
    out.Minor = d.get("minor").i64()?;
    out.FileMode = d.get("fileMode").u32()?;
    out.UID = d.get("uid").u32()?;
    out.GID = d.get("gid").u32()?;
    Ok(out)
}

/// Only what `constrain` keeps is converted: memory, CPU and hugepage limits (devices,
/// pids, block I/O and network are cleared there). Hugepage limits pass through: kubelet
/// sends one for every page size of the node, 0 unless requested; only hugepage
/// *volumes* (emptyDir, refused) get the runtime's hugepage storage (ka.go:1620-1625).
pub(super) fn convert_resources(r: &Node<'_>) -> Result<oci::LinuxResources, SpecError> {
    let mut out = oci::LinuxResources::new();
    out.Memory = r.get("memory").object(|m| {
        let mut out = oci::LinuxMemory::new();
        out.Limit = m.get("limit").i64()?;
        out.Reservation = m.get("reservation").i64()?;
        out.Swap = m.get("swap").i64()?;
        out.Kernel = m.get("kernel").i64()?;
        out.KernelTCP = m.get("kernelTCP").i64()?;
        out.Swappiness = m.get("swappiness").u64()?;
        out.DisableOOMKiller = m.get("disableOOMKiller").bool()?;
        Ok(out)
    })?;
    out.CPU = r.get("cpu").object(|c| {
        let mut out = oci::LinuxCPU::new();
        out.Shares = c.get("shares").u64()?;
        out.Quota = c.get("quota").i64()?;
        out.Period = c.get("period").u64()?;
        out.RealtimeRuntime = c.get("realtimeRuntime").i64()?;
        out.RealtimePeriod = c.get("realtimePeriod").u64()?;
        out.Cpus = c.get("cpus").string()?;
        out.Mems = c.get("mems").string()?;
        Ok(out)
    })?;
    out.HugepageLimits = r
        .get("hugepageLimits")
        .array()?
        .iter()
        .map(|h| {
            let mut out = oci::LinuxHugepageLimit::new();
            out.Pagesize = h.get("pageSize").string()?;
            out.Limit = h.get("limit").u64()?;
            Ok(out)
        })
        .collect::<Result<_, SpecError>>()?;
    Ok(out)
}
