//! MSRP throughput and round trips over loopback, each next to a raw socket
//! doing the same in the same run:
//!
//! - bulk: one message of SIZE bytes (default 1 GiB) through MSRPSession,
//!   against a raw TCP socket copying the same bytes; the same over TLS
//!   against a raw rustls stream;
//! - round trips: small SENDs each waiting for its 200, against a raw
//!   TCP ping-pong of the same size.
//!
//! cargo run --release --example msrp_bench [-- SIZE_MIB [ROUNDS]]

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sipsimple::api::msrp::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

#[path = "common/tls.rs"]
mod tls;
use tls::tls_configs;

/// A reader of `left` bytes from a repeated block (what a file read costs:
/// one copy into the caller's buffer).
struct Source {
    block: Arc<Vec<u8>>,
    pos: usize,
    left: u64,
}

impl AsyncRead for Source {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while buf.remaining() > 0 && self.left > 0 {
            let pos = self.pos;
            let n = (self.block.len() - pos)
                .min(buf.remaining())
                .min(self.left as usize);
            let block = self.block.clone();
            buf.put_slice(&block[pos..pos + n]);
            self.pos = (pos + n) % block.len();
            self.left -= n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

fn block() -> Arc<Vec<u8>> {
    Arc::new(
        (0..1_048_573u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect(),
    )
}

async fn raw_copy<W, R>(mut w: W, mut r: R, size: u64) -> Duration
where
    W: AsyncWrite + Unpin + Send + 'static,
    R: AsyncRead + Unpin + Send + 'static,
{
    let t0 = Instant::now();
    let writer = tokio::spawn(async move {
        let mut src = Source {
            block: block(),
            pos: 0,
            left: size,
        };
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = src.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            w.write_all(&buf[..n]).await.unwrap();
        }
        w.flush().await.unwrap();
        w
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    while got < size {
        let n = r.read(&mut buf).await.unwrap();
        assert!(n > 0);
        // Hand the bytes on as MSRP does (one copy out of the read buffer).
        std::hint::black_box(buf[..n].to_vec());
        got += n as u64;
    }
    let d = t0.elapsed();
    drop(writer.await.unwrap());
    d
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    (a, b)
}

async fn msrp_pair(tls: MsrpTls, secure: bool, chunk_size: usize) -> (MSRPSession, MSRPSession) {
    let scheme = if secure { "msrps" } else { "msrp" };
    let uri = MsrpUri::parse(&format!("{scheme}://127.0.0.1:0;tcp")).unwrap();
    let mut acceptor = get_acceptor(tls.clone(), None);
    let answer = acceptor.prepare(uri.clone()).await.unwrap();
    let mut connector = get_connector(tls, None);
    let offer = connector.prepare(uri).await.unwrap();
    let (a, b) = tokio::join!(connector.complete(answer), acceptor.complete(offer));
    let cfg = SessionConfig {
        chunk_size,
        ..SessionConfig::default()
    };
    (
        a.unwrap().into_session(cfg.clone()),
        b.unwrap().into_session(cfg),
    )
}

async fn msrp_bulk(tls: MsrpTls, secure: bool, size: u64) -> Duration {
    let (a, b) = msrp_pair(tls, secure, 1 << 20).await;
    let t0 = Instant::now();
    a.send_message(
        MessageSource::Reader(Box::new(Source {
            block: block(),
            pos: 0,
            left: size,
        })),
        SendOptions {
            content_type: "application/octet-stream".into(),
            size: Some(size),
            failure_report: ReportMode::Partial,
            ..SendOptions::default()
        },
    )
    .unwrap();
    let mut got = 0u64;
    loop {
        match b.next_event().await.unwrap() {
            SessionEvent::Data { data, .. } => got += data.len() as u64,
            SessionEvent::Core(MsrpEvent::MessageComplete { .. }) => break,
            SessionEvent::Closed { error } => panic!("closed: {error:?}"),
            _ => {}
        }
    }
    let d = t0.elapsed();
    assert_eq!(got, size);
    d
}

async fn raw_ping_pong(rounds: usize, size: usize) -> Duration {
    let (mut a, mut b) = tcp_pair().await;
    let echo = tokio::spawn(async move {
        let mut buf = vec![0u8; size];
        for _ in 0..rounds {
            b.read_exact(&mut buf).await.unwrap();
            b.write_all(&buf[..32]).await.unwrap();
        }
    });
    let msg = vec![b'x'; size];
    let mut resp = [0u8; 32];
    let t0 = Instant::now();
    for _ in 0..rounds {
        a.write_all(&msg).await.unwrap();
        a.read_exact(&mut resp).await.unwrap();
    }
    let d = t0.elapsed();
    echo.await.unwrap();
    d
}

async fn msrp_round_trips(rounds: usize, size: usize) -> Duration {
    let (a, b) = msrp_pair(MsrpTls::default(), false, 64 * 1024).await;
    let drain = tokio::spawn(async move {
        let mut n = 0;
        while let Some(ev) = b.next_event().await {
            if let SessionEvent::Core(MsrpEvent::MessageComplete { .. }) = ev {
                n += 1;
                if n == rounds {
                    break;
                }
            }
        }
        b
    });
    let body = vec![b'x'; size];
    let t0 = Instant::now();
    for _ in 0..rounds {
        a.send_message(MessageSource::Bytes(body.clone()), SendOptions::default())
            .unwrap();
        loop {
            match a.next_event().await.unwrap() {
                SessionEvent::Core(MsrpEvent::ChunkResponse { code, .. }) => {
                    assert_eq!(code, 200);
                    break;
                }
                SessionEvent::Closed { error } => panic!("closed: {error:?}"),
                _ => {}
            }
        }
    }
    let d = t0.elapsed();
    drop(drain.await.unwrap());
    d
}

fn best<F: FnMut() -> Duration>(runs: usize, mut f: F) -> Duration {
    (0..runs).map(|_| f()).min().unwrap()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let size = mib << 20;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mbps = |d: Duration| size as f64 / 1e6 / d.as_secs_f64();
    let runs = 3;

    let raw_tcp = best(runs, || {
        rt.block_on(async {
            let (a, b) = tcp_pair().await;
            raw_copy(a, b, size).await
        })
    });
    let msrp_tcp = best(runs, || {
        rt.block_on(msrp_bulk(MsrpTls::default(), false, size))
    });

    let (client, server) = tls_configs();
    let raw_tls = best(runs, || {
        let (client, server) = (client.clone(), server.clone());
        rt.block_on(async move {
            let (a, b) = tcp_pair().await;
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let (ca, sb) = tokio::join!(
                tokio_rustls::TlsConnector::from(client).connect(name, a),
                tokio_rustls::TlsAcceptor::from(server).accept(b)
            );
            raw_copy(ca.unwrap(), sb.unwrap(), size).await
        })
    });
    let tls = tls_with(Some(client), Some(server));
    let msrp_tls = best(runs, || rt.block_on(msrp_bulk(tls.clone(), true, size)));

    let raw_rt = best(runs, || rt.block_on(raw_ping_pong(rounds, 100)));
    let msrp_rt = best(runs, || rt.block_on(msrp_round_trips(rounds, 100)));
    let per_s = |d: Duration| rounds as f64 / d.as_secs_f64();

    println!("MSRP bulk, one {mib} MiB message over loopback (best of {runs}):");
    println!(
        "  TCP: raw socket {:8.0} MB/s   MSRP {:8.0} MB/s   ratio {:.2}",
        mbps(raw_tcp),
        mbps(msrp_tcp),
        mbps(msrp_tcp) / mbps(raw_tcp)
    );
    println!(
        "  TLS: raw rustls {:8.0} MB/s   MSRP {:8.0} MB/s   ratio {:.2}",
        mbps(raw_tls),
        mbps(msrp_tls),
        mbps(msrp_tls) / mbps(raw_tls)
    );
    println!("MSRP round trips, 100-byte SEND and its 200, {rounds} in a row (best of {runs}):");
    println!(
        "  raw TCP ping-pong {:8.0}/s   MSRP {:8.0}/s   ratio {:.2}",
        per_s(raw_rt),
        per_s(msrp_rt),
        per_s(msrp_rt) / per_s(raw_rt)
    );
}
