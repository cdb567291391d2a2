//! The initdata block device (docs/protocol.md §10.3), the one home of its layout: the
//! magic `initdata` (8 bytes), the length of what follows as a little-endian u64, then the
//! gzip-compressed TOML, then padding to whole sectors. The node shim writes it; the
//! guest's initdata check reads it (and bounds every length, since the host chooses it).
//!
//! The image puller config (registry credentials, unmeasured) travels on a second device
//! of the same layout under its own magic, as Contrast's runtime attaches it.

/// The magic at the start of the device.
pub const MAGIC: &[u8; 8] = b"initdata";

/// The magic of the image puller config's device (serial `imagepuller`).
pub const IMAGEPULLER_MAGIC: &[u8; 8] = b"imgpullr";

/// Where the guest leaves the image puller config for the agent's pulls (Contrast's path).
pub const GUEST_IMAGEPULLER_CONFIG: &str = "/run/insecure-cfg/imagepuller.toml";

/// Beside the image puller config: why the node's config could not be read from its
/// device, so that pulls fail with the reason instead of going out anonymously.
pub fn imagepuller_error_path(config: &std::path::Path) -> std::path::PathBuf {
    config.with_extension("error")
}

/// Magic and length.
pub const HEADER_LEN: usize = 16;

/// The sector size the device is padded to.
pub const SECTOR_LEN: usize = 512;

/// `toml` in the initdata device's form: magic, length, gzip, with `padding` zero bytes
/// after.
pub fn encode_header_form(toml: &[u8], padding: usize) -> Vec<u8> {
    encode_header_form_with(MAGIC, toml, padding)
}

/// [`encode_header_form`] under another `magic`.
pub fn encode_header_form_with(magic: &[u8; 8], toml: &[u8], padding: usize) -> Vec<u8> {
    let blob = gzip(toml);
    let mut out = Vec::with_capacity(HEADER_LEN + blob.len() + padding);
    out.extend_from_slice(magic);
    out.extend_from_slice(&(blob.len() as u64).to_le_bytes());
    out.extend_from_slice(&blob);
    out.resize(out.len() + padding, 0);
    out
}

/// The device image for `toml`: the header form padded to a whole number of 4 KiB blocks
/// (QEMU sizes a raw disk from its file; a partial sector would be cut off).
pub fn device_image(toml: &[u8]) -> Vec<u8> {
    device_image_with(MAGIC, toml)
}

/// [`device_image`] under another `magic`.
pub fn device_image_with(magic: &[u8; 8], toml: &[u8]) -> Vec<u8> {
    let unpadded = encode_header_form_with(magic, toml, 0);
    let padding = (4096 - unpadded.len() % 4096) % 4096;
    encode_header_form_with(magic, toml, padding)
}

/// `bytes` gzip-compressed.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// The launch field a TEE holds for an initdata `digest`: SEV-SNP's HOST_DATA (32 bytes)
/// or TDX's MRCONFIGID (48 bytes), the digest cut to the field's length or zero-padded, as
/// the Kata runtime fits it.
pub fn launch_field(digest: &[u8], field_len: usize) -> Vec<u8> {
    let mut field = digest[..digest.len().min(field_len)].to_vec();
    field.resize(field_len, 0);
    field
}

/// SEV-SNP's HOST_DATA length.
pub const SNP_HOST_DATA_LEN: usize = 32;

/// TDX's MRCONFIGID length.
pub const TDX_MR_CONFIG_ID_LEN: usize = 48;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_image_is_whole_blocks_and_starts_with_the_header() {
        let image = device_image(b"version = \"0.1.0\"\n");
        assert_eq!(image.len() % 4096, 0);
        assert_eq!(&image[..8], MAGIC);
        let len = u64::from_le_bytes(image[8..16].try_into().unwrap_or_default());
        assert_eq!(&image[16..18], &[0x1f, 0x8b], "gzip follows the header");
        assert!(len > 0 && (len as usize) < image.len());
    }

    #[test]
    fn digests_are_cut_or_padded_to_the_field() {
        let sha256 = [7u8; 32];
        assert_eq!(launch_field(&sha256, SNP_HOST_DATA_LEN), sha256);
        let tdx = launch_field(&sha256, TDX_MR_CONFIG_ID_LEN);
        assert_eq!(&tdx[..32], sha256);
        assert_eq!(&tdx[32..], [0; 16]);
        assert_eq!(launch_field(&[1; 64], SNP_HOST_DATA_LEN), [1; 32]);
    }
}
