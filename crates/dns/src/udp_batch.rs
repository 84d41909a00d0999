//! Many UDP datagrams per syscall: `recvmmsg` and `sendmmsg` behind a safe API.
//!
//! A busy DNS socket spends more time entering and leaving the kernel than answering: one
//! `recv_from` and one `send_to` per query. [`RecvBatch`] takes every datagram queued (up to
//! its capacity) in one call, blocking only for the first, so an idle socket still honours its
//! read timeout; [`SendBatch`] sends the answers of a batch in one call. Both own their buffers
//! and the kernel's descriptors of them, and reuse them from call to call.
//!
//! It knows sockets and addresses, nothing of DNS. Linux only (so is `recvmmsg`).

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd};
use std::ptr;

/// The most messages the kernel takes in one call (`UIO_MAXIOV`); more are left for the next.
const MAX_BATCH: usize = 1024;

/// An empty message header, for the fields to be filled in.
fn empty_header() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers, for which all zero
    // bytes are a valid value (null pointers, zero lengths).
    unsafe { mem::zeroed() }
}

fn empty_storage() -> libc::sockaddr_storage {
    // SAFETY: as above: `sockaddr_storage` is integers only; zero is `AF_UNSPEC`.
    unsafe { mem::zeroed() }
}

/// The address the kernel wrote into `storage` (`len` bytes of it); none when it is not IP.
fn read_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a `sockaddr_in` there, at least that
            // long; `sockaddr_storage` is as large and as aligned as any socket address.
            let sin = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            // `s_addr` holds the address in network order, that is its bytes in memory order.
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a `sockaddr_in6`.
            let sin6 = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Writes `addr` into `storage` as the kernel reads it; returns its length.
fn write_addr(addr: SocketAddr, storage: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sockaddr_storage` is larger than a `sockaddr_in` and at least as aligned;
            // the pointer comes from a unique reference, so nothing else sees the write.
            unsafe {
                ptr::write(
                    (storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for a `sockaddr_in6`.
            unsafe {
                ptr::write(
                    (storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Datagrams received together, in buffers of a fixed size reused from call to call.
pub struct RecvBatch {
    /// Bytes per buffer: a longer datagram is cut to this and flagged.
    size: usize,
    bufs: Box<[u8]>,
    iovecs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    headers: Box<[libc::mmsghdr]>,
    /// How many of the buffers the last [`RecvBatch::recv`] filled.
    received: usize,
}

/// One datagram of a [`RecvBatch`].
#[derive(Debug)]
pub struct Datagram<'a> {
    /// What was read: the whole datagram, or its first `size` bytes when `truncated`.
    pub payload: &'a [u8],
    pub peer: SocketAddr,
    /// Longer than the buffer: `payload` is all of the buffer and the rest is lost.
    pub truncated: bool,
}

impl RecvBatch {
    /// Room for `capacity` datagrams (at most 1024, the kernel's limit) of `size` bytes.
    pub fn new(capacity: usize, size: usize) -> RecvBatch {
        assert!(
            (1..=MAX_BATCH).contains(&capacity),
            "a batch of 1 to {MAX_BATCH} datagrams"
        );
        assert!(size > 0, "buffers of at least a byte");
        RecvBatch {
            size,
            bufs: vec![0u8; capacity * size].into_boxed_slice(),
            iovecs: (0..capacity)
                .map(|_| libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            addrs: (0..capacity).map(|_| empty_storage()).collect(),
            headers: (0..capacity).map(|_| empty_header()).collect(),
            received: 0,
        }
    }

    /// Waits for a datagram on `socket` (as long as its read timeout says, if it has one), then
    /// takes every other one already queued, up to the capacity; returns how many it read.
    pub fn recv(&mut self, socket: &impl AsFd) -> io::Result<usize> {
        self.received = 0;
        // The descriptors are written afresh every time: the kernel changes the name lengths
        // and flags, and nothing stale can point anywhere.
        for (i, ((iov, addr), h)) in self
            .iovecs
            .iter_mut()
            .zip(self.addrs.iter_mut())
            .zip(self.headers.iter_mut())
            .enumerate()
        {
            iov.iov_base = self.bufs[i * self.size..].as_mut_ptr().cast();
            iov.iov_len = self.size;
            h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        let fd = socket.as_fd().as_raw_fd();
        // SAFETY: `headers` holds `headers.len()` initialized entries, each pointing at one
        // iovec of a distinct `size`-byte slice of `bufs` and at one `sockaddr_storage` with its
        // true length; all of them are owned by `self`, borrowed mutably for the call, and
        // outlive it. `fd` is open: `socket` is borrowed for the call. No timeout pointer: the
        // socket's own read timeout bounds the wait for the first datagram.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                libc::MSG_WAITFORONE as _,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// The datagrams of the last [`RecvBatch::recv`], in the order they came (any whose sender
    /// is not an IP address, which a UDP socket never has, left out).
    pub fn iter(&self) -> impl Iterator<Item = Datagram<'_>> {
        self.headers[..self.received]
            .iter()
            .zip(self.addrs.iter())
            .enumerate()
            .filter_map(|(i, (h, addr))| {
                let peer = read_addr(addr, h.msg_hdr.msg_namelen)?;
                let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                // A datagram cut to the buffer is all of it, whatever length the kernel says.
                let len = if truncated {
                    self.size
                } else {
                    (h.msg_len as usize).min(self.size)
                };
                let start = i * self.size;
                Some(Datagram {
                    payload: &self.bufs[start..start + len],
                    peer,
                    truncated,
                })
            })
    }
}

/// What a [`SendBatch::flush`] did.
#[derive(Debug, Default)]
pub struct Flushed {
    pub sent: usize,
    /// Not sent: the socket's buffer full (the rest of the batch), or a peer the kernel would
    /// not send to (that datagram alone).
    pub dropped: usize,
    /// The last reason one was dropped.
    pub error: Option<io::Error>,
}

/// Datagrams to send together: copied in by [`SendBatch::push`], sent by [`SendBatch::flush`].
#[derive(Default)]
pub struct SendBatch {
    /// Every payload, one after the other.
    data: Vec<u8>,
    /// Each datagram: where its payload starts in `data`, its length, where it goes.
    queued: Vec<(usize, usize, SocketAddr)>,
    iovecs: Vec<libc::iovec>,
    /// Each peer as the kernel reads it, and its length.
    addrs: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    headers: Vec<libc::mmsghdr>,
}

impl SendBatch {
    /// Room for `datagrams` of `bytes` each before anything grows.
    pub fn with_capacity(datagrams: usize, bytes: usize) -> SendBatch {
        SendBatch {
            data: Vec::with_capacity(datagrams * bytes),
            queued: Vec::with_capacity(datagrams),
            iovecs: Vec::with_capacity(datagrams),
            addrs: Vec::with_capacity(datagrams),
            headers: Vec::with_capacity(datagrams),
        }
    }

    /// Queues `payload` for `peer`.
    pub fn push(&mut self, payload: &[u8], peer: SocketAddr) {
        self.queued.push((self.data.len(), payload.len(), peer));
        self.data.extend_from_slice(payload);
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Sends everything queued on `socket`, and empties the batch. A call that sends only some
    /// is followed by another for the rest; a full socket buffer (`EAGAIN`, `ENOBUFS`) drops
    /// the rest, as the network might (it is UDP: clients ask again); a datagram refused for
    /// itself (its peer unreachable, say) is dropped alone.
    pub fn flush(&mut self, socket: &impl AsFd) -> Flushed {
        let mut flushed = Flushed::default();
        let total = self.queued.len();
        if total == 0 {
            return flushed;
        }
        // `iovecs` and `addrs` are complete before `headers` point into them: they do not move
        // while the headers are in use.
        self.iovecs.clear();
        self.addrs.clear();
        self.headers.clear();
        for &(start, len, peer) in &self.queued {
            self.iovecs.push(libc::iovec {
                iov_base: self.data[start..start + len].as_ptr() as *mut libc::c_void,
                iov_len: len,
            });
            let mut storage = empty_storage();
            let addr_len = write_addr(peer, &mut storage);
            self.addrs.push((storage, addr_len));
        }
        for (iov, (storage, addr_len)) in self.iovecs.iter_mut().zip(self.addrs.iter_mut()) {
            let mut h = empty_header();
            h.msg_hdr.msg_name = (storage as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = *addr_len;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            self.headers.push(h);
        }
        let fd = socket.as_fd().as_raw_fd();
        let mut done = 0;
        while done < total {
            let rest = &mut self.headers[done..];
            // SAFETY: `rest` holds initialized headers, each pointing at one iovec (of a slice of
            // `data`) and one address of its true length, all owned by `self`, none moved or
            // changed since the headers were made, and all outliving the call; the kernel only
            // reads the payloads. `fd` is open: `socket` is borrowed for the call.
            let n = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            if n > 0 {
                flushed.sent += n as usize;
                done += n as usize;
                continue;
            }
            // (None sent without an error does not happen; were it to, it would be as full.)
            let e = if n == 0 {
                io::Error::from(io::ErrorKind::WouldBlock)
            } else {
                io::Error::last_os_error()
            };
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let full = e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS);
            let lost = if full { total - done } else { 1 };
            flushed.dropped += lost;
            done += lost;
            flushed.error = Some(e);
        }
        self.data.clear();
        self.queued.clear();
        flushed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    use super::*;

    fn bind(ip: &str) -> UdpSocket {
        let s = UdpSocket::bind((ip, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    #[test]
    fn several_datagrams_from_several_peers_in_one_call() {
        let server = bind("127.0.0.1");
        let to = server.local_addr().unwrap();
        let clients = [bind("127.0.0.1"), bind("127.0.0.2"), bind("127.0.0.3")];
        let mut sent = BTreeMap::new();
        for (i, c) in clients.iter().enumerate() {
            for j in 0..2 {
                let payload = format!("query {i}.{j}").into_bytes();
                c.send_to(&payload, to).unwrap();
                sent.entry(c.local_addr().unwrap())
                    .or_insert_with(Vec::new)
                    .push(payload);
            }
        }
        // Loopback delivers as it sends: all six are queued already.
        let mut batch = RecvBatch::new(8, 64);
        assert_eq!(batch.recv(&server).unwrap(), 6);
        let mut got = BTreeMap::new();
        for d in batch.iter() {
            assert!(!d.truncated);
            got.entry(d.peer).or_insert_with(Vec::new).push(d.payload.to_vec());
        }
        assert_eq!(got, sent);
    }

    #[test]
    fn a_batch_takes_at_most_its_capacity_and_leaves_the_rest() {
        let server = bind("127.0.0.1");
        let client = bind("127.0.0.1");
        for i in 0..5u8 {
            client.send_to(&[i], server.local_addr().unwrap()).unwrap();
        }
        let mut batch = RecvBatch::new(3, 16);
        assert_eq!(batch.recv(&server).unwrap(), 3);
        assert_eq!(batch.iter().map(|d| d.payload[0]).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(batch.recv(&server).unwrap(), 2);
        assert_eq!(batch.iter().map(|d| d.payload[0]).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn the_read_timeout_ends_a_wait_for_nothing() {
        let server = bind("127.0.0.1");
        server.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut batch = RecvBatch::new(4, 16);
        let started = Instant::now();
        let e = batch.recv(&server).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(batch.iter().count(), 0);
    }

    #[test]
    fn a_datagram_longer_than_its_buffer_is_flagged() {
        let server = bind("127.0.0.1");
        let client = bind("127.0.0.1");
        let to = server.local_addr().unwrap();
        client.send_to(&[7u8; 9], to).unwrap();
        client.send_to(&[8u8; 8], to).unwrap();
        client.send_to(&[9u8; 3], to).unwrap();
        let mut batch = RecvBatch::new(4, 8);
        assert_eq!(batch.recv(&server).unwrap(), 3);
        let got: Vec<_> = batch.iter().map(|d| (d.payload.to_vec(), d.truncated)).collect();
        assert_eq!(
            got,
            [(vec![7u8; 8], true), (vec![8u8; 8], false), (vec![9u8; 3], false)]
        );
    }

    #[test]
    fn a_send_batch_reaches_every_peer() {
        let sender = bind("127.0.0.1");
        let peers = [bind("127.0.0.1"), bind("127.0.0.4"), bind("127.0.0.5")];
        let mut batch = SendBatch::with_capacity(2, 16);
        for (i, p) in peers.iter().enumerate() {
            // Twice each, more than the capacity: the batch grows.
            batch.push(format!("answer {i}").as_bytes(), p.local_addr().unwrap());
            batch.push(format!("again {i}").as_bytes(), p.local_addr().unwrap());
        }
        let flushed = batch.flush(&sender);
        assert_eq!((flushed.sent, flushed.dropped), (6, 0), "{:?}", flushed.error);
        assert!(batch.is_empty());
        let mut buf = [0u8; 64];
        for (i, p) in peers.iter().enumerate() {
            for want in [format!("answer {i}"), format!("again {i}")] {
                let (n, from) = p.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], want.as_bytes());
                assert_eq!(from, sender.local_addr().unwrap());
            }
        }
        // Reused: the second flush sends only what came after the first.
        batch.push(b"later", peers[0].local_addr().unwrap());
        assert_eq!(batch.flush(&sender).sent, 1);
        let (n, _) = peers[0].recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"later");
    }

    #[test]
    fn a_datagram_the_kernel_refuses_is_dropped_alone() {
        let sender = bind("127.0.0.1");
        let peer = bind("127.0.0.1");
        let mut batch = SendBatch::default();
        batch.push(b"one", peer.local_addr().unwrap());
        // An IPv4 socket cannot send to an IPv6 address.
        batch.push(b"lost", "[::1]:53".parse().unwrap());
        batch.push(b"two", peer.local_addr().unwrap());
        let flushed = batch.flush(&sender);
        assert_eq!((flushed.sent, flushed.dropped), (2, 1));
        assert!(flushed.error.is_some());
        let mut buf = [0u8; 16];
        for want in [&b"one"[..], b"two"] {
            let (n, _) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
    }

    #[test]
    fn addresses_round_trip_through_the_kernel_form() {
        for addr in [
            "127.0.0.1:53",
            "10.1.2.3:65535",
            "[::1]:5353",
            "[fe80::1%3]:53",
            "[2001:db8::7]:1",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut storage = empty_storage();
            let len = write_addr(addr, &mut storage);
            assert_eq!(read_addr(&storage, len), Some(addr));
        }
        let mut storage = empty_storage();
        let len = write_addr("127.0.0.1:53".parse().unwrap(), &mut storage);
        assert_eq!(read_addr(&storage, len - 1), None, "a length too short for the family");
        assert_eq!(read_addr(&empty_storage(), 128), None, "not an IP family");
    }
}
