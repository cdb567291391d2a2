//! The port-forwarder binary relays connections both ways to its target, closes those the
//! target refuses, and names a bad flag.

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FORWARDER: &str = env!("CARGO_BIN_EXE_port-forwarder");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Forwarder(Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the forwarder from a free port to `to` and waits until it accepts.
fn forward_to(to: &str) -> (Forwarder, u16) {
    let port = free_port();
    let child = Command::new(FORWARDER)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--to", to])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the forwarder never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    (Forwarder(child), port)
}

#[test]
fn connections_are_relayed_both_ways_each_to_the_target() {
    let target = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = format!("localhost:{}", target.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for stream in target.incoming() {
            let mut stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64];
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 || stream.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    let (_forwarder, port) = forward_to(&to);
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let message = format!("hello from client {i}");
        client.write_all(message.as_bytes()).unwrap();
        let mut echoed = vec![0u8; message.len()];
        client.read_exact(&mut echoed).unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
}

#[test]
fn a_connection_the_target_refuses_is_closed() {
    let (_forwarder, port) = forward_to(&format!("127.0.0.1:{}", free_port()));
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buffer = [0u8; 1];
    assert_eq!(
        client.read(&mut buffer).unwrap_or(0),
        0,
        "closed, not held open"
    );
}

#[test]
fn a_bad_listen_address_is_named() {
    let output = Command::new(FORWARDER)
        .args(["--listen", "nowhere", "--to", "coordinator:1313"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--listen"), "{stderr}");
}
