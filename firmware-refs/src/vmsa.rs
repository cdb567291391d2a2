//! The initial VMSA (SEV-ES save area) of each vCPU, as the VMM sets it before launch.
//!
//! Register values and layout are those sev-snp-measure 0.0.13 measures (Linux
//! `struct sev_es_save_area`; KVM's reset state), per VMM type.

use std::fmt;
use std::str::FromStr;

/// The VMM that launches the guest: each sets a few registers differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmmType {
    /// QEMU/KVM (the default).
    #[default]
    Qemu,
    /// AWS EC2.
    Ec2,
    /// Google Compute Engine.
    Gce,
}

impl VmmType {
    /// The name sev-snp-measure uses.
    pub fn name(self) -> &'static str {
        match self {
            VmmType::Qemu => "QEMU",
            VmmType::Ec2 => "ec2",
            VmmType::Gce => "gce",
        }
    }
}

impl fmt::Display for VmmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A VMM name that is not `QEMU`, `ec2` or `gce`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown VMM type {0:?}; expected QEMU, ec2 or gce")]
pub struct UnknownVmmType(pub String);

impl FromStr for VmmType {
    type Err = UnknownVmmType;

    /// Parses `QEMU`, `ec2` or `gce` in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [VmmType::Qemu, VmmType::Ec2, VmmType::Gce]
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownVmmType(s.to_owned()))
    }
}

/// The BSP starts at the x86 reset vector.
pub const BSP_EIP: u32 = 0xffff_fff0;

/// Where a segment register lives in the save area: selector, attributes, limit, base.
fn put_segment(page: &mut [u8; 4096], at: usize, selector: u16, attrib: u16, base: u64) {
    page[at..at + 2].copy_from_slice(&selector.to_le_bytes());
    page[at + 2..at + 4].copy_from_slice(&attrib.to_le_bytes());
    page[at + 4..at + 8].copy_from_slice(&0xffffu32.to_le_bytes());
    page[at + 8..at + 16].copy_from_slice(&base.to_le_bytes());
}

fn put_u64(page: &mut [u8; 4096], at: usize, value: u64) {
    page[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// The 4096-byte VMSA of a vCPU that starts at `eip`.
pub fn vmsa_page(eip: u32, sev_features: u64, vcpu_sig: u32, vmm: VmmType) -> [u8; 4096] {
    let (cs_attrib, ss_attrib, tr_attrib, rdx, mxcsr, fcw, g_pat) = match vmm {
        VmmType::Qemu => (
            0x9b,
            0x93,
            0x8b,
            u64::from(vcpu_sig),
            0x1f80,
            0x37f,
            0x0007_0406_0007_0406,
        ),
        // EC2 starts the BSP with a non-accessed code segment.
        VmmType::Ec2 => {
            let cs = if eip == BSP_EIP { 0x9a } else { 0x9b };
            (cs, 0x92, 0x83, 0x600, 0, 0, 0x0007_0406_0007_0406)
        }
        VmmType::Gce => (0x9b, 0x93, 0x8b, 0x600, 0, 0, 0x0007_0106),
    };
    let mut page = [0u8; 4096];
    let data = |p: &mut [u8; 4096], at| put_segment(p, at, 0, 0x93, 0);
    data(&mut page, 0x00); // es
    put_segment(
        &mut page,
        0x10,
        0xf000,
        cs_attrib,
        u64::from(eip & 0xffff_0000),
    );
    put_segment(&mut page, 0x20, 0, ss_attrib, 0);
    data(&mut page, 0x30); // ds
    data(&mut page, 0x40); // fs
    data(&mut page, 0x50); // gs
    put_segment(&mut page, 0x60, 0, 0, 0); // gdtr
    put_segment(&mut page, 0x70, 0, 0x82, 0); // ldtr
    put_segment(&mut page, 0x80, 0, 0, 0); // idtr
    put_segment(&mut page, 0x90, 0, tr_attrib, 0);
    put_u64(&mut page, 0xd0, 0x1000); // EFER.SVME, set by KVM
    put_u64(&mut page, 0x148, 0x40); // CR4.MCE, set by KVM
    put_u64(&mut page, 0x158, 0x10); // CR0.ET
    put_u64(&mut page, 0x160, 0x400); // DR7
    put_u64(&mut page, 0x168, 0xffff_0ff0); // DR6
    put_u64(&mut page, 0x170, 0x2); // RFLAGS
    put_u64(&mut page, 0x178, u64::from(eip & 0xffff)); // RIP
    put_u64(&mut page, 0x268, g_pat);
    put_u64(&mut page, 0x310, rdx);
    put_u64(&mut page, 0x3b0, sev_features);
    put_u64(&mut page, 0x3e8, 0x1); // XCR0
    page[0x408..0x40c].copy_from_slice(&(mxcsr as u32).to_le_bytes());
    page[0x410..0x412].copy_from_slice(&(fcw as u16).to_le_bytes());
    page
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn vmm_names_parse_in_any_case_and_refuse_others() {
        assert_eq!("qemu".parse(), Ok(VmmType::Qemu));
        assert_eq!("EC2".parse(), Ok(VmmType::Ec2));
        assert_eq!("gce".parse(), Ok(VmmType::Gce));
        let err = "kvm".parse::<VmmType>().unwrap_err().to_string();
        assert!(err.contains("QEMU, ec2 or gce"), "{err}");
    }

    #[test]
    fn ap_vmsa_starts_at_the_reset_block_address() {
        let page = vmsa_page(0x80b004, 1, 0x00a00f11, VmmType::Qemu);
        // cs.base = EIP & 0xffff0000, rip = EIP & 0xffff
        assert_eq!(&page[0x18..0x20], &0x800000u64.to_le_bytes());
        assert_eq!(&page[0x178..0x180], &0xb004u64.to_le_bytes());
        assert_eq!(&page[0x310..0x318], &0x00a00f11u64.to_le_bytes());
        assert_eq!(&page[0x3b0..0x3b8], &1u64.to_le_bytes());
    }
}
