//! The demo binaries over CoAP over TCP (RFC 8323): `lwm2m-server
//! --coap-tcp` and `lwm2m-client --server coap+tcp://…` register with
//! binding T, a Read travels over the connection, /3/0/16 says UT, and
//! Ctrl-C de-registers. Every wait is bounded; the processes are killed
//! by their guards.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use interop_tests::demo::{field, read_value, registered_and_readable, strip_ansi, ServerRun};
use interop_tests::{cargo_bin, PeerProcess};

const STEP: Duration = Duration::from_secs(10);

#[test]
fn the_demo_client_registers_over_tcp_is_read_and_deregisters() {
    let life = Duration::from_secs(60);
    let mut server = ServerRun::start(&[OsStr::new("--coap-tcp"), OsStr::new("127.0.0.1:0")], life);
    let log = server.process.output();
    let tcp: SocketAddr = log
        .lines()
        .map(strip_ansi)
        .find(|l| l.contains("LwM2M server listening"))
        .and_then(|l| field(&l, "coap_tcp").and_then(|a| a.parse().ok()))
        .unwrap_or_else(|| panic!("no coap_tcp= address in the server log:\n{log}"));

    let ep = "tcp-demo";
    let mut cmd = Command::new(cargo_bin("lwm2m-client", "lwm2m-client"));
    cmd.args(["--endpoint", ep, "--lifetime", "60", "--server"])
        .arg(format!("coap+tcp://{tcp}"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut client = PeerProcess::spawn(cmd, life).unwrap();

    let reg = registered_and_readable(&server, &client, ep);
    assert_eq!(reg["bindingMode"], "T", "{reg}");
    assert_eq!(read_value(server.addrs.http, ep, "3/0/16"), "UT");

    client.signal("INT").unwrap();
    let status = client
        .wait_timeout(STEP)
        .unwrap_or_else(|| panic!("client still running after SIGINT:\n{}", client.output()));
    assert!(status.success(), "{status:?}\n{}", client.output());
    assert!(
        client.output().contains("deregistered"),
        "{}",
        client.output()
    );
    server
        .process
        .wait_for_line(STEP, |l| strip_ansi(l).contains(" deregistered "))
        .unwrap_or_else(|| {
            panic!(
                "no de-registration in the server log:\n{}",
                server.process.output()
            )
        });
}
