//! `limits.max_connects_per_sec`: the node's accept rate, and the answer to connections past it.
//!
//! Each shard accepts on its own socket, so the node's rate is split over the shards (the kernel
//! spreads connections over the sockets evenly enough) and each keeps a token bucket with one second
//! of burst: no shared counter, no cross-core traffic. A connection past the rate is answered
//! `503 Service Unavailable` with `Retry-After` before anything of a WebSocket exists for it (no
//! record in the connection table, no handshake buffer, no slot of `max_connections`): a reconnect
//! storm costs an accept and one small write per refused client.

use std::{net::Shutdown, time::Duration};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

/// The answer to a connection over the rate.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\n\
Content-Type: text/plain\r\n\
Content-Length: 47\r\n\
Connection: close\r\n\
\r\n\
connection rate over the limit; retry shortly\r\n";

/// How long a refused connection may take to read the answer and close.
const LINGER: Duration = Duration::from_secs(2);

/// Shard `shard`'s share of `rate` connections per second over `shards` shards (the remainder goes
/// to the first shards, so the shares add up to `rate`). 0: no limit.
pub fn share(rate: u32, shards: usize, shard: usize) -> u32 {
    if rate == 0 {
        return 0;
    }
    let shards = shards.max(1) as u32;
    let extra = u32::from((shard as u32) < rate % shards);
    (rate / shards + extra).max(1)
}

/// Answers `stream` with the 503 and closes it: the answer, then FIN, then what the client sent is
/// read and dropped until it closes (so the kernel does not reset the connection over unread bytes
/// and lose the answer), for `LINGER` at most.
pub async fn refuse(mut stream: TcpStream) {
    let answered = async {
        stream.write_all(REFUSAL).await?;
        stream.shutdown(Shutdown::Write).await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = futures_lite::future::or(async { answered.await.is_ok() }, async {
        glommio::timer::sleep(LINGER).await;
        false
    })
    .await;
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_rate() {
        for (rate, shards) in [(10, 3), (1, 4), (100, 1), (7, 7), (65, 8)] {
            let total: u32 = (0..shards).map(|s| share(rate, shards, s)).sum();
            assert!(
                total >= rate && total <= rate.max(shards as u32),
                "{rate}/{shards}"
            );
        }
        assert_eq!(share(0, 4, 0), 0);
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
    }

    #[test]
    fn the_answer_declares_its_length() {
        let text = std::str::from_utf8(REFUSAL).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{body:?}"
        );
    }
}
