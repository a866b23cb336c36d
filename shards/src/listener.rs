//! The WebSocket listeners: one SO_REUSEPORT socket per shard, all on the same address.
//!
//! Sockets are created with socket2 so the backlog is ours (glommio's own `bind` fixes it at 1024).
//! With port 0 the first socket picks the port and the others bind to it, so every shard serves one
//! address. The kernel spreads incoming connections over the sockets by 4-tuple hash.

use std::{io, net::SocketAddr, os::fd::OwnedFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Binds `count` listening sockets on `addr` with SO_REUSEPORT; returns them and the bound address.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<(Vec<OwnedFd>, SocketAddr)> {
    let mut bound = addr;
    let mut fds = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(bound),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&SockAddr::from(bound))?;
        socket.listen(backlog)?;
        if bound.port() == 0 {
            bound = socket
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("listener has no socket address"))?;
        }
        fds.push(OwnedFd::from(socket));
    }
    Ok((fds, bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_every_socket_the_same_port() {
        let (fds, addr) = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
        assert_eq!(fds.len(), 3);
        assert_ne!(addr.port(), 0);
        for fd in fds {
            let s = Socket::from(fd);
            assert_eq!(s.local_addr().unwrap().as_socket().unwrap(), addr);
        }
    }
}
