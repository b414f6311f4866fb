//! The process's raw file-descriptor work: descriptors inherited from an upgrading parent,
//! and descriptors passed over a unix socket (SCM_RIGHTS). With pam.rs, the only `unsafe` of the crate
//! lives here: taking ownership of a descriptor number the kernel or the parent gave us.
#![allow(unsafe_code)]

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Takes ownership of descriptor `fd`, inherited from the process that started us
/// (`--inherit-fd`, `PG_DOORMAN_UPGRADE_FD`). Errors: not an open socket (EBADF, ENOTSOCK).
pub fn take_inherited(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(libc_ebadf()));
    }
    // SAFETY: only borrowed for the duration of the check; an invalid number fails fstat
    // with EBADF instead of touching anything.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let st = nix::sys::stat::fstat(borrowed).map_err(std::io::Error::from)?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFSOCK {
        return Err(std::io::Error::from_raw_os_error(nix::libc::ENOTSOCK));
    }
    // Close-on-exec again: a later upgrade's child gets its own duplicate, not this one.
    nix::fcntl::fcntl(
        borrowed,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: the parent handed this open socket (checked above) to us alone, by number,
    // and nothing else in this process has wrapped it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn libc_ebadf() -> i32 {
    nix::libc::EBADF
}

/// Registers an owned socket with the runtime's reactor (inside the runtime).
pub fn async_fd(fd: OwnedFd) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is an open descriptor that it alone closes, on drop, after the
    // AsyncFd deregistered it; its as_raw_fd never changes.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// Sends one datagram on a SOCK_SEQPACKET socket, with `fd` attached when given. Never
/// blocks (EAGAIN comes back as WouldBlock).
pub fn send_packet(sock: &OwnedFd, data: &[u8], fd: Option<&OwnedFd>) -> std::io::Result<usize> {
    let iov = [IoSlice::new(data)];
    let raw: [RawFd; 1] = [fd.map_or(-1, |f| f.as_raw_fd())];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if fd.is_some() { &cmsg } else { &[] };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(std::io::Error::from)
}

/// Receives one datagram into `buf`: its length (0 = the peer closed) and the descriptor it
/// carried, if any (close-on-exec). Never blocks.
pub fn recv_packet(sock: &OwnedFd, buf: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let n = msg.bytes;
    let mut got = None;
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: the kernel just installed `raw` in our descriptor table for this
                // message; nothing else knows the number yet.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if got.is_none() {
                    got = Some(owned);
                }
                // Extra descriptors (never sent by us) are closed by the drop.
            }
        }
    }
    Ok((n, got))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

    #[test]
    fn a_descriptor_crosses_a_seqpacket_pair_with_its_datagram() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = OwnedFd::from(listener);
        send_packet(&a, b"hello", Some(&fd)).unwrap();
        send_packet(&a, b"second", None).unwrap();
        let mut buf = [0u8; 64];
        let (n, got) = recv_packet(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let back = std::net::TcpListener::from(got.unwrap());
        assert_eq!(back.local_addr().unwrap(), addr);
        let (n, got) = recv_packet(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"second");
        assert!(got.is_none());
        drop(a);
        assert_eq!(recv_packet(&b, &mut buf).unwrap().0, 0);
    }

    #[test]
    fn inheriting_a_non_socket_is_refused() {
        assert!(take_inherited(-1).is_err());
        let f = tempfile::tempfile().unwrap();
        let e = take_inherited(f.as_raw_fd()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(nix::libc::ENOTSOCK));
    }
}
