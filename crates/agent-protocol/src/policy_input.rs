//! Requests as the Kata agent's policy sees them where that differs from the request's own
//! serde form: a `CopyFileRequest` is evaluated as the agent's `PolicyCopyFileRequest` (no
//! data; the file type and a symlink's target instead).

use crate::proto::agent::CopyFileRequest;

/// A request the agent cannot turn into its policy input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyInputError {
    /// A symlink's target (its data) is not UTF-8.
    #[error("CopyFileRequest: the symlink target for {path} is not UTF-8")]
    SymlinkTargetNotUtf8 {
        /// The request's path.
        path: String,
    },
}

/// The file type the Kata agent's policy sees for a copied file: `file_mode & S_IFMT`.
pub fn file_type(file_mode: u32) -> &'static str {
    const S_IFMT: u32 = 0o170_000;
    match file_mode & S_IFMT {
        0o100_000 => "Regular",
        0o040_000 => "Directory",
        0o120_000 => "Symlink",
        _ => "Unknown",
    }
}

/// The policy input of a `CopyFileRequest` (the Kata agent's `PolicyCopyFileRequest`).
pub fn copy_file_input(request: &CopyFileRequest) -> Result<serde_json::Value, PolicyInputError> {
    let file_type = file_type(request.file_mode);
    let symlink_target = if file_type == "Symlink" {
        Some(std::str::from_utf8(&request.data).map_err(|_| {
            PolicyInputError::SymlinkTargetNotUtf8 {
                path: request.path.clone(),
            }
        })?)
    } else {
        None
    };
    Ok(serde_json::json!({
        "path": request.path,
        "file_type": file_type,
        "symlink_target": symlink_target,
        "file_size": request.file_size,
        "file_mode": request.file_mode,
        "dir_mode": request.dir_mode,
        "uid": request.uid,
        "gid": request.gid,
        "offset": request.offset,
    }))
}
