//! A terminal chat between two people through a local broker: type a line, it is sent; what the
//! other side types appears as it arrives. The client reconnects on its own, so restarting the
//! broker mid-conversation loses nothing.
//!
//! ```sh
//! cargo run --release -p herald-broker                       # terminal 1: the broker
//! export HERALD_TOKEN=$(cargo run -q -p herald-broker -- token --org demo --user alice)
//! cargo run -p herald-client --example chat -- bob           # terminal 2: alice talks to bob
//! export HERALD_TOKEN=$(cargo run -q -p herald-broker -- token --org demo --user bob)
//! cargo run -p herald-client --example chat -- alice         # terminal 3: bob talks to alice
//! ```

use std::time::Duration;

use anyhow::{Context, Result};
use herald_client::{Client, ClientConfig, ConnectionState, EntryKind, Event, Trust};

#[tokio::main]
async fn main() -> Result<()> {
    let peer = std::env::args().nth(1).context("usage: chat PEER (with HERALD_TOKEN set)")?;
    let token = std::env::var("HERALD_TOKEN").context("set HERALD_TOKEN (see the example's doc)")?;
    let server = std::env::var("HERALD_SERVER").unwrap_or_else(|_| "127.0.0.1:7443".into());
    let config = ClientConfig::new(server.parse()?, token)
        .with_trust(Trust::pem_file("herald-data/tls/cert.pem".as_ref())?)
        .with_device_id("chat-example");
    let client = Client::connect(config).await?;
    let me = client.session().user;
    let conversation = client.open_direct(&peer).await?.conversation_id;
    println!("{me} ↔ {peer} (conversation {conversation}); type and press enter, ctrl-d to leave");

    let mut events = client.events().context("events taken")?;
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                Event::Delivery(entry) if entry.conversation_id == conversation && entry.sender_user != me => {
                    if let EntryKind::Message { payload, .. } = entry.kind {
                        println!("{}: {}", entry.sender_user, String::from_utf8_lossy(&payload));
                    }
                }
                Event::Connection(ConnectionState::Offline { reason }) => println!("(offline: {reason})"),
                Event::Connection(ConnectionState::Online { resumed: true }) => println!("(back online)"),
                _ => {}
            }
        }
    });

    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        // While offline the send waits (up to the request timeout) and goes out on reconnect.
        if let Err(e) = client.send(conversation, line.into_bytes()).await {
            eprintln!("(not sent: {e})");
        }
    }
    client.close().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// Lines typed on the terminal, read on a thread of their own (reading a terminal blocks).
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.blocking_send(line).is_err() {
                return;
            }
        }
    });
    rx
}
