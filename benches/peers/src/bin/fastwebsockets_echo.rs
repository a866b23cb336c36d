//! fastwebsockets echo server (hyper 1 upgrade): the fastest Rust peer in the published numbers.
//!
//! Follows the crate's own echo example: hyper serves the HTTP upgrade, then a `FragmentCollector`
//! reads whole messages and every text and binary message is written back. Pings and closes are
//! answered by fastwebsockets (auto pong, auto close).

use fastwebsockets::{FragmentCollector, OpCode, WebSocketError, upgrade};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use peers::Args;

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = echo(fut).await;
    });
    Ok(response)
}

fn main() {
    let args = Args::parse("fastwebsockets-echo", false);
    args.runtime().block_on(async move {
        let listener = peers::listen(args.listen).expect("listen");
        loop {
            let stream = peers::accept(&listener).await;
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(upgrade))
                    .with_upgrades()
                    .await;
            });
        }
    });
}
