//! What DTLS costs the server, per peer and per datagram, against the plain
//! path: a full PSK handshake (cookie exchange included) through
//! `DtlsServer`, and a 174-byte CoAP datagram (a Register's size) received
//! and answered through an established session (client encryption,
//! server layer decryption, server encryption, client decryption), one
//! encryption alone, and copying the same bytes (the plain socket path's
//! own work before the codec). Results and
//! the command are recorded in BENCHMARKS.md.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lwm2m_core::datagram_pipe::DatagramPipe;
use lwm2m_core::time::Instant;
use lwm2m_server::dtls::{DtlsConfig, DtlsServer, PskLookup};
use openssl::ssl::{ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslStream};

const KEY: &[u8] = b"secret-key-0123";
const T0: Instant = Instant::from_millis(1_000_000);

fn server() -> DtlsServer {
    let keys: PskLookup = Arc::new(|id| (id == "dev").then(|| KEY.to_vec()));
    DtlsServer::new(DtlsConfig::default(), keys, [7; 32]).unwrap()
}

/// A PSK client offering the suite LwM2M mandates first.
fn client() -> SslStream<DatagramPipe> {
    let mut b = SslContextBuilder::new(SslMethod::dtls_client()).unwrap();
    b.set_options(SslOptions::NO_QUERY_MTU);
    b.set_security_level(0);
    b.set_cipher_list("PSK-AES128-CCM8").unwrap();
    b.set_psk_client_callback(|_, _, id, k| {
        id[..4].copy_from_slice(b"dev\0");
        k[..KEY.len()].copy_from_slice(KEY);
        Ok(KEY.len())
    });
    let mut ssl = Ssl::new(&b.build()).unwrap();
    ssl.set_mtu(1232).unwrap();
    ssl.set_connect_state();
    SslStream::new(ssl, DatagramPipe::new(16)).unwrap()
}

/// Runs a handshake between `c` and `s` for `peer` to its end.
fn handshake(s: &mut DtlsServer, c: &mut SslStream<DatagramPipe>, peer: SocketAddr) {
    for _ in 0..20 {
        match c.do_handshake() {
            Ok(()) => {}
            Err(e) if e.code() == ErrorCode::WANT_READ => {}
            Err(e) => panic!("client: {e}"),
        }
        while let Some(d) = c.get_mut().pop_outgoing() {
            s.handle_datagram(T0, peer, &d);
        }
        while let Some((_, d)) = s.poll_transmit() {
            c.get_mut().push_incoming(d);
        }
        if c.ssl().is_init_finished() && s.has_session(&peer) {
            return;
        }
    }
    panic!("no handshake");
}

fn bench(c: &mut Criterion) {
    let peer: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let mut g = c.benchmark_group("dtls_psk");
    g.bench_function("handshake", |b| {
        // Building the contexts is setup, not timed: one handshake, cookie
        // exchange included, per iteration.
        b.iter_batched(
            || (server(), client()),
            |(mut s, mut cl)| {
                handshake(&mut s, &mut cl, peer);
                black_box(s.peer_count())
            },
            BatchSize::SmallInput,
        )
    });

    let register = vec![0x42u8; 174];
    g.throughput(Throughput::Bytes(register.len() as u64));
    let mut s = server();
    let mut cl = client();
    handshake(&mut s, &mut cl, peer);
    g.bench_function("datagram_in_and_answer_174B", |b| {
        b.iter(|| {
            // A fresh record per round: DTLS replay protection drops a
            // repeated sequence number.
            cl.ssl_write(&register).unwrap();
            let rec = cl.get_mut().pop_outgoing().unwrap();
            s.handle_datagram(T0, peer, black_box(&rec));
            let got = s.poll_received().expect("decrypted");
            s.send(T0, peer, &got.data).unwrap();
            let out = s.poll_transmit().unwrap();
            // The client's side of the echo, so its inbox stays empty.
            cl.get_mut().push_incoming(out.1);
            let mut buf = [0u8; 512];
            black_box(cl.ssl_read(&mut buf).unwrap())
        })
    });
    g.bench_function("client_encrypt_174B", |b| {
        // One side's encryption alone, for reading the round trip above
        // (two encryptions, two decryptions, the server layer's lookups).
        b.iter(|| {
            cl.ssl_write(black_box(&register)).unwrap();
            black_box(cl.get_mut().pop_outgoing().unwrap().len())
        })
    });
    g.bench_function("plain_copy_174B", |b| {
        b.iter(|| {
            let copy = black_box(&register).to_vec();
            black_box(copy.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
