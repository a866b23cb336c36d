//! tokio-tungstenite echo server: the peer the gateway's tungstenite-based codec is measured against.
//!
//! Every text and binary message is sent back; pings are answered by tungstenite itself.
//! `--read-buffer BYTES` sets tungstenite's read and write buffer sizes (4096 by default, the
//! configuration behind the published 6.5 KB per idle connection); `--defaults` keeps tungstenite's
//! default configuration (128 KiB read buffer allocated per connection up front).

use futures_util::{SinkExt, StreamExt};
use peers::Args;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

fn main() {
    let args = Args::parse("tokio-tungstenite-echo", true);
    let config = if args.defaults {
        WebSocketConfig::default()
    } else {
        WebSocketConfig::default()
            .read_buffer_size(args.read_buffer)
            .write_buffer_size(args.read_buffer)
    };
    args.runtime().block_on(async move {
        let listener = peers::listen(args.listen).expect("listen");
        loop {
            let stream = peers::accept(&listener).await;
            tokio::spawn(async move {
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(config)).await
                else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}
