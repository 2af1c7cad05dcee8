//! TCP-MD5 signatures (RFC 2385) on the session's socket.
//!
//! Linux takes the key through `setsockopt(TCP_MD5SIG)` with a `struct
//! tcp_md5sig`, which neither libc nor nix wraps, so the struct is laid
//! out here as the octets the kernel reads (linux/tcp.h), and the one
//! system call is the only unsafe code of this crate.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// `TCP_MD5SIG_MAXKEYLEN` in linux/tcp.h.
pub const MAX_KEY_LEN: usize = 80;
/// `struct __kernel_sockaddr_storage`: 128 octets.
const ADDRESS_LEN: usize = 128;
/// address, flags (1), prefix length (1), key length (2), ifindex (4), key.
const STRUCT_LEN: usize = ADDRESS_LEN + 1 + 1 + 2 + 4 + MAX_KEY_LEN;

/// The octets of a `struct tcp_md5sig` for `peer` and `key`. Kept 8-byte
/// aligned like the C struct, whose first member is a sockaddr_storage.
#[repr(C, align(8))]
struct TcpMd5Sig([u8; STRUCT_LEN]);

fn layout(peer: IpAddr, key: &[u8]) -> io::Result<TcpMd5Sig> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a TCP-MD5 password has 1 to {MAX_KEY_LEN} octets, this one {}",
                key.len()
            ),
        ));
    }
    let mut octets = [0u8; STRUCT_LEN];
    match peer {
        IpAddr::V4(address) => {
            let family = u16::try_from(libc::AF_INET).unwrap_or_default();
            octets[0..2].copy_from_slice(&family.to_ne_bytes());
            // sin_port stays 0: the key is the peer's, on any port.
            octets[4..8].copy_from_slice(&address.octets());
        }
        IpAddr::V6(address) => {
            let family = u16::try_from(libc::AF_INET6).unwrap_or_default();
            octets[0..2].copy_from_slice(&family.to_ne_bytes());
            // sin6_port and sin6_flowinfo stay 0.
            octets[8..24].copy_from_slice(&address.octets());
        }
    }
    let key_len = u16::try_from(key.len()).unwrap_or_default();
    octets[ADDRESS_LEN + 2..ADDRESS_LEN + 4].copy_from_slice(&key_len.to_ne_bytes());
    let key_at = ADDRESS_LEN + 8;
    octets[key_at..key_at + key.len()].copy_from_slice(key);
    Ok(TcpMd5Sig(octets))
}

/// Signs every segment to and from `peer` on `socket` with `password`.
/// Must be set before connecting.
pub(crate) fn set_password(socket: &impl AsRawFd, peer: IpAddr, password: &str) -> io::Result<()> {
    let signature = layout(peer, password.as_bytes())?;
    let len = libc::socklen_t::try_from(STRUCT_LEN).unwrap_or_default();
    #[allow(unsafe_code)]
    // SAFETY: `signature` is a live, 8-byte aligned buffer of exactly `len`
    // octets laid out as the kernel's struct tcp_md5sig; the kernel only
    // reads it during the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            std::ptr::from_ref(&signature).cast::<libc::c_void>(),
            len,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_carries_family_address_key_length_and_key_where_the_kernel_reads_them() {
        let TcpMd5Sig(octets) =
            layout("192.168.2.2".parse().expect("address"), b"secret").expect("a key");
        assert_eq!(octets.len(), 216);
        assert_eq!(u16::from_ne_bytes([octets[0], octets[1]]), 2);
        assert_eq!(&octets[4..8], &[192, 168, 2, 2]);
        assert_eq!(u16::from_ne_bytes([octets[130], octets[131]]), 6);
        assert_eq!(&octets[136..142], b"secret");
        assert!(layout("192.168.2.2".parse().expect("address"), &[b'x'; 81]).is_err());
        assert!(layout("fd00::2".parse().expect("address"), b"").is_err());
    }

    #[test]
    fn the_kernel_takes_the_struct() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a socket");
        set_password(&socket, "127.0.0.1".parse().expect("address"), "secret").expect("taken");
    }
}
