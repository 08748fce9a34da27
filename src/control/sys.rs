//! The one syscall of the control socket that nix does not wrap:
//! `getsockopt(SOL_SOCKET, SO_PEERGROUPS)`, the supplementary groups of the
//! process that connected (Linux 4.13+). Reading them from the socket rather
//! than from `/proc/PID/status` works under `ProtectProc=invisible` and
//! cannot race with the caller exiting and its PID being reused.
//!
//! And `setxattr(system.posix_acl_access)`, to let a second group open the
//! socket file (nix does not wrap extended attributes either).

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

/// The supplementary group IDs of the peer of a connected Unix socket, as
/// the kernel recorded them at `connect`.
pub(super) fn peer_groups(sock: &impl AsFd) -> io::Result<Vec<u32>> {
    let fd = sock.as_fd().as_raw_fd();
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    // Grows once if the caller has more groups than fit: the kernel answers
    // ERANGE and says how many bytes it needs.
    for _ in 0..2 {
        let mut len = libc::socklen_t::try_from(groups.len() * size_of::<libc::gid_t>())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `fd` is a valid open socket borrowed for this call; the
        // kernel writes at most `len` bytes into `groups`, which owns exactly
        // that many initialised bytes, and stores the used length in `len`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = usize::try_from(len).unwrap_or(0) / size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n.min(groups.len()));
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) || n <= groups.len() {
            return Err(err);
        }
        groups.resize(n, 0);
    }
    Err(io::Error::from_raw_os_error(libc::ERANGE))
}

/// Gives group `gid` read and write access to `path` besides its owner and
/// owning group, with a POSIX access ACL (`setfacl -m g:GID:rw`); others get
/// nothing. Fails where the filesystem has no ACLs.
pub(super) fn grant_group_rw(path: &Path, gid: u32) -> io::Result<()> {
    // The kernel's xattr form of an ACL: a version, then (tag, perm, id)
    // entries sorted by tag, little-endian (linux/posix_acl_xattr.h).
    const VERSION: u32 = 2;
    const USER_OBJ: u16 = 0x01;
    const GROUP_OBJ: u16 = 0x04;
    const GROUP: u16 = 0x08;
    const MASK: u16 = 0x10;
    const OTHER: u16 = 0x20;
    const NO_ID: u32 = u32::MAX;
    const RW: u16 = 6;
    let mut acl = Vec::with_capacity(4 + 5 * 8);
    acl.extend_from_slice(&VERSION.to_le_bytes());
    for (tag, perm, id) in [
        (USER_OBJ, RW, NO_ID),
        (GROUP_OBJ, RW, NO_ID),
        (GROUP, RW, gid),
        (MASK, RW, NO_ID),
        (OTHER, 0, NO_ID),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let name = c"system.posix_acl_access";
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // kernel reads exactly `acl.len()` bytes from `acl`.
    let r = unsafe {
        libc::setxattr(
            cpath.as_ptr(),
            name.as_ptr(),
            acl.as_ptr().cast(),
            acl.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socket_pair_reports_this_process_groups() {
        let (a, _b) = UnixStream::pair().expect("socketpair");
        let mut got = peer_groups(&a).expect("SO_PEERGROUPS");
        let mut want: Vec<u32> = nix::unistd::getgroups()
            .expect("getgroups")
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want);
    }
}
