//! TDX RTMR0–3 of an OVMF direct boot, as Contrast computes them (docs/attestation.md
//! §3.2), and the Authenticode digest of a PE/COFF kernel.
//!
//! RTMR0 depends on QEMU's fw_cfg/ACPI blobs; like Contrast, three of its events are
//! fixed digests taken from Contrast's tdx-measure (valid for its QEMU configuration).

use aws_lc_rs::digest::{self, SHA384};

use crate::ovmf::{Guid, Ovmf, OvmfError, TDVF_SECTION_CFV, u16_at, u32_at};

/// Something that keeps the RTMRs from being computed.
#[derive(Debug, thiserror::Error)]
pub enum RtmrError {
    /// The firmware is unusable.
    #[error(transparent)]
    Ovmf(#[from] OvmfError),
    /// No CFV (UEFI variable store) section, whose digest RTMR0 starts with.
    #[error(
        "the OVMF TDX metadata has no CFV section (type 1): the variable store cannot be \
         measured; use the unified OVMF.fd, not a split OVMF_CODE file"
    )]
    NoCfv,
    /// The kernel is not a PE/COFF (EFI stub) image.
    #[error(
        "the kernel is not a PE/COFF image with an EFI stub: {0}; give a bzImage built with CONFIG_EFI_STUB"
    )]
    BadKernel(String),
    /// The initrd is too large for the boot protocol's 32-bit size field.
    #[error(
        "the initrd has {0} bytes; the boot protocol's ramdisk_size field holds at most 4 GiB - 1"
    )]
    InitrdTooLarge(usize),
}

/// An RTMR: `RTMR = SHA-384(RTMR ‖ digest)`, starting from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtmr(pub [u8; 48]);

impl Default for Rtmr {
    fn default() -> Self {
        Rtmr([0; 48])
    }
}

impl Rtmr {
    /// Extends with a 48-byte digest.
    pub fn extend(&mut self, measurement: &[u8; 48]) {
        let mut ctx = digest::Context::new(&SHA384);
        ctx.update(&self.0);
        ctx.update(measurement);
        self.0.copy_from_slice(ctx.finish().as_ref());
    }
}

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> [u8; 48] {
    let mut out = [0; 48];
    out.copy_from_slice(digest::digest(&SHA384, data).as_ref());
    out
}

const EFI_GLOBAL_VARIABLE: Guid = Guid::from_text("8be4df61-93ca-11d2-aa0d-00e098032b8c");
const EFI_IMAGE_SECURITY_DATABASE: Guid = Guid::from_text("d719b2cb-3d3a-4596-a3bc-dad00e67656f");
/// The firmware volume and file of the UiApp boot option QEMU's OVMF creates.
const UI_APP_FV: Guid = Guid::from_text("7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1");
const UI_APP_FILE: Guid = Guid::from_text("462caa21-7614-4503-836e-8ab6f4662331");
/// fw_cfg/ACPI event digests hard-coded by Contrast's tdx-measure.
const CONFIG_DIGESTS: [&str; 3] = [
    "4a41e320ca0bc7bc3c56c3aba1228e10fd946d95391a7638828319a7a82cefd5bb33eceb9fdf14c06f694c0583077610",
    "864cf9b429c91c2ff0295e2ce7d73737f347c413bb071e4b5e014727da5109a75588ccfd61b4d634f946af5c1207812b",
    "b08a2773870bc58f493030265cc1e433b6e54c839f3e8fad5287f732890e32f1225315deb05266e793165b8aa3dbad2c",
];
const SEPARATOR: [u8; 4] = [0; 4];

fn utf16le(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// UEFI_VARIABLE_DATA: GUID ‖ u64 name length (UTF-16 units) ‖ u64 data length ‖
/// UTF-16LE name ‖ data.
pub fn uefi_variable_data(vendor: Guid, name: &str, data: &[u8]) -> Vec<u8> {
    let name16 = utf16le(name);
    let mut out = vendor.0.to_vec();
    out.extend_from_slice(&((name16.len() / 2) as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&name16);
    out.extend_from_slice(data);
    out
}

/// The EFI_LOAD_OPTION of Boot0000: active, hidden, application; "UiApp"; device path
/// FV(UI_APP_FV)/File(UI_APP_FILE)/End.
pub fn boot0000_load_option() -> Vec<u8> {
    let mut path = Vec::new();
    for (kind, sub, data) in [
        (4u8, 7u8, &UI_APP_FV.0[..]),
        (4, 6, &UI_APP_FILE.0[..]),
        (0x7f, 0xff, &[][..]),
    ] {
        path.extend_from_slice(&[kind, sub]);
        path.extend_from_slice(&((data.len() + 4) as u16).to_le_bytes());
        path.extend_from_slice(data);
    }
    let attributes: u32 = 1 | 1 << 3 | 1 << 8;
    let mut out = attributes.to_le_bytes().to_vec();
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    out.extend_from_slice(&utf16le("UiApp\0"));
    out.extend_from_slice(&path);
    out
}

/// The digests RTMR0 is extended with: the variable store, the Secure Boot variables
/// (empty), separator, fw_cfg/ACPI events, BootOrder and Boot0000.
pub fn rtmr0_events(ovmf: &Ovmf) -> Result<Vec<[u8; 48]>, RtmrError> {
    let sections = ovmf.tdvf_sections()?;
    let cfv = sections
        .iter()
        .find(|s| s.section_type == TDVF_SECTION_CFV)
        .and_then(|s| ovmf.section_data(s))
        .ok_or(RtmrError::NoCfv)?;
    let mut events = vec![sha384(cfv)];
    for (vendor, name) in [
        (EFI_GLOBAL_VARIABLE, "SecureBoot"),
        (EFI_GLOBAL_VARIABLE, "PK"),
        (EFI_GLOBAL_VARIABLE, "KEK"),
        (EFI_IMAGE_SECURITY_DATABASE, "db"),
        (EFI_IMAGE_SECURITY_DATABASE, "dbx"),
    ] {
        events.push(sha384(&uefi_variable_data(vendor, name, &[])));
    }
    events.push(sha384(&SEPARATOR));
    for hex_digest in CONFIG_DIGESTS {
        let mut d = [0u8; 48];
        // Constants above; a test decodes them.
        hex::decode_to_slice(hex_digest, &mut d).unwrap_or_default();
        events.push(d);
    }
    // Boot variables are measured by their value alone.
    events.push(sha384(&[0, 0])); // BootOrder = [0]
    events.push(sha384(&boot0000_load_option()));
    Ok(events)
}

/// Extends a zero register with `events` in order.
pub fn fold(events: &[[u8; 48]]) -> [u8; 48] {
    let mut r = Rtmr::default();
    events.iter().for_each(|e| r.extend(e));
    r.0
}

/// The kernel as QEMU loads it: boot-protocol header fields patched (type_of_loader,
/// loadflags, heap_end_ptr, cmd_line_ptr, and Contrast's fixed initrd address and size).
pub fn patch_kernel(kernel: &[u8], initrd_len: usize) -> Result<Vec<u8>, RtmrError> {
    if kernel.len() < 0x22c {
        return Err(RtmrError::BadKernel(format!(
            "{} bytes is shorter than the x86 boot setup header",
            kernel.len()
        )));
    }
    let initrd_len =
        u32::try_from(initrd_len).map_err(|_| RtmrError::InitrdTooLarge(initrd_len))?;
    let mut k = kernel.to_vec();
    k[0x210] = 0xb0; // type_of_loader: QEMU
    k[0x211] = 0x81; // loadflags: LOADED_HIGH | CAN_USE_HEAP
    k[0x224..0x226].copy_from_slice(&[0x00, 0xfe]); // heap_end_ptr
    k[0x228..0x22c].copy_from_slice(&[0x00, 0x00, 0x02, 0x00]); // cmd_line_ptr
    k[0x218..0x21c].copy_from_slice(&0x8000_0000u32.to_le_bytes()); // ramdisk_image
    k[0x21c..0x220].copy_from_slice(&initrd_len.to_le_bytes()); // ramdisk_size
    Ok(k)
}

/// The Authenticode SHA-384 digest of a PE/COFF image (Microsoft "Windows Authenticode
/// Portable Executable Signature Format", image hash): everything but the checksum, the
/// certificate table entry and the certificate table, with sections in file order.
pub fn authenticode_sha384(image: &[u8]) -> Result<[u8; 48], RtmrError> {
    let bad = |m: &str| RtmrError::BadKernel(m.to_owned());
    if image.get(..2) != Some(b"MZ") {
        return Err(bad("no MZ header"));
    }
    let pe = u32_at(image, 0x3c).ok_or_else(|| bad("truncated DOS header"))? as usize;
    if image.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0") {
        return Err(bad("no PE signature"));
    }
    let field16 = |at: usize| u16_at(image, at).ok_or_else(|| bad("truncated PE header"));
    let sections = usize::from(field16(pe + 6)?);
    let optional_len = usize::from(field16(pe + 20)?);
    let opt = pe + 24;
    let (dirs_count_at, dirs_at) = match field16(opt)? {
        0x10b => (opt + 92, opt + 96),
        0x20b => (opt + 108, opt + 112),
        _ => return Err(bad("unknown optional header magic")),
    };
    let checksum_at = opt + 64;
    let headers_len =
        u32_at(image, opt + 60).ok_or_else(|| bad("truncated optional header"))? as usize;
    let dirs = u32_at(image, dirs_count_at).ok_or_else(|| bad("truncated optional header"))?;
    let section_table = opt + optional_len;
    if headers_len > image.len()
        || headers_len < section_table + 40 * sections
        || dirs_at > headers_len
    {
        return Err(bad(
            "SizeOfHeaders does not cover the headers or exceeds the file",
        ));
    }

    let mut ctx = digest::Context::new(&SHA384);
    ctx.update(&image[..checksum_at]);
    let cert_dir_at = dirs_at + 4 * 8;
    let cert_size = if dirs > 4 && cert_dir_at + 8 <= headers_len {
        ctx.update(&image[checksum_at + 4..cert_dir_at]);
        ctx.update(&image[cert_dir_at + 8..headers_len]);
        u32_at(image, cert_dir_at + 4).unwrap_or(0) as usize
    } else {
        ctx.update(&image[checksum_at + 4..headers_len]);
        0
    };

    let mut raw: Vec<(usize, usize)> = (0..sections)
        .map(|i| {
            let at = section_table + 40 * i;
            let size = u32_at(image, at + 16).unwrap_or(0) as usize;
            let ptr = u32_at(image, at + 20).unwrap_or(0) as usize;
            (ptr, size)
        })
        .filter(|&(_, size)| size > 0)
        .collect();
    raw.sort_unstable();
    let mut hashed = headers_len;
    for (ptr, size) in raw {
        let data = image
            .get(ptr..ptr.saturating_add(size))
            .filter(|d| d.len() == size)
            .ok_or_else(|| bad("a section's raw data runs past the end of the file"))?;
        ctx.update(data);
        hashed += size;
    }
    // Data after the sections, except the certificate table, counts too.
    if image.len() > hashed.saturating_add(cert_size) {
        ctx.update(
            image
                .get(hashed..image.len() - cert_size)
                .unwrap_or_default(),
        );
    }
    let mut out = [0; 48];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// The inputs of a direct boot besides the firmware.
#[derive(Debug, Clone, Copy)]
pub struct DirectBoot<'a> {
    /// The bzImage.
    pub kernel: &'a [u8],
    /// The initrd.
    pub initrd: &'a [u8],
    /// The kernel command line as given to QEMU's `-append`.
    pub cmdline: &'a str,
}

/// The digests RTMR1 is extended with: the kernel's Authenticode digest, then the
/// boot-service events.
pub fn rtmr1_events(boot: &DirectBoot<'_>) -> Result<Vec<[u8; 48]>, RtmrError> {
    let kernel = patch_kernel(boot.kernel, boot.initrd.len())?;
    Ok(vec![
        authenticode_sha384(&kernel)?,
        sha384(b"Calling EFI Application from Boot Option"),
        sha384(&SEPARATOR),
        sha384(b"Exit Boot Services Invocation"),
        sha384(b"Exit Boot Services Returned with Success"),
    ])
}

/// The digests RTMR2 is extended with: the command line the EFI stub sees (with
/// " initrd=initrd" appended by the loader) as UTF-16LE with its NUL, then the initrd.
pub fn rtmr2_events(boot: &DirectBoot<'_>) -> Vec<[u8; 48]> {
    vec![
        sha384(&utf16le(&format!("{} initrd=initrd\0", boot.cmdline))),
        sha384(boot.initrd),
    ]
}

/// RTMR0–3 of `ovmf` booting `boot` directly (RTMR3 is unused, zero).
pub fn rtmrs(ovmf: &Ovmf, boot: &DirectBoot<'_>) -> Result<[[u8; 48]; 4], RtmrError> {
    Ok([
        fold(&rtmr0_events(ovmf)?),
        fold(&rtmr1_events(boot)?),
        fold(&rtmr2_events(boot)),
        [0; 48],
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn config_digests_are_48_bytes_of_hex() {
        for d in CONFIG_DIGESTS {
            assert_eq!(hex::decode(d).unwrap().len(), 48);
        }
    }

    #[test]
    fn extend_is_sha384_of_register_and_digest() {
        let mut r = Rtmr::default();
        r.extend(&[1; 48]);
        let mut both = vec![0u8; 48];
        both.extend_from_slice(&[1; 48]);
        assert_eq!(r.0, sha384(&both));
    }

    #[test]
    fn boot0000_matches_the_uefi_load_option_layout() {
        // Written out from the UEFI spec (EFI_LOAD_OPTION, media device path nodes).
        let expected = concat!(
            "09010000",
            "2c00",                      // attributes, path length 44
            "5500690041007000700000 00", // "UiApp\0"
            "0407 1400",
            "c9bdb87cebf8344faaea3ee4af6516a1", // FV node
            "0406 1400",
            "21aa2c46147603458 36e8ab6f4662331", // file node
            "7fff 0400",                         // end
        )
        .replace(' ', "");
        assert_eq!(hex::encode(boot0000_load_option()), expected);
    }

    #[test]
    fn variable_event_layout() {
        let v = uefi_variable_data(EFI_GLOBAL_VARIABLE, "PK", &[9]);
        assert_eq!(
            hex::encode(v),
            "61dfe48bca93d211aa0d00e098032b8c0200000000000000010000000000000050004b0009"
        );
    }

    #[test]
    fn kernel_refusals() {
        assert!(matches!(
            patch_kernel(&[0; 0x100], 0),
            Err(RtmrError::BadKernel(_))
        ));
        assert!(matches!(
            authenticode_sha384(&[0; 0x400]),
            Err(RtmrError::BadKernel(_))
        ));
        let mut mz = vec![0u8; 0x400];
        mz[..2].copy_from_slice(b"MZ");
        mz[0x3c] = 0xff;
        mz[0x3d] = 0xff;
        assert!(matches!(
            authenticode_sha384(&mz),
            Err(RtmrError::BadKernel(_))
        ));
    }
}
