//! An on-call responder: waits for DINGs and acknowledges each one after showing it, which stops
//! its escalation (no SMS, no call, no manager). A bot like this is how a team wires DING into a
//! pager or a runbook.
//!
//! ```sh
//! export HERALD_TOKEN=$(cargo run -q -p herald-broker -- token --org demo --user oncall)
//! cargo run -p herald-client --example ding_responder
//! # elsewhere: herald ding send CONV --to oncall --text "db down" --policy app
//! ```

use anyhow::{Context, Result};
use herald_client::{Client, ClientConfig, Event, Trust};

#[tokio::main]
async fn main() -> Result<()> {
    let token = std::env::var("HERALD_TOKEN").context("set HERALD_TOKEN (see the example's doc)")?;
    let server = std::env::var("HERALD_SERVER").unwrap_or_else(|_| "127.0.0.1:7443".into());
    let config = ClientConfig::new(server.parse()?, token)
        .with_trust(Trust::pem_file("herald-data/tls/cert.pem".as_ref())?)
        .with_device_id("ding-responder");
    let client = Client::connect(config).await?;
    println!("waiting for DINGs as {}", client.session().user);
    let mut events = client.events().context("events taken")?;
    while let Some(event) = events.recv().await {
        let Event::Ding(notice) = event else { continue };
        println!(
            "DING {} from {} in conversation {} (step {})",
            notice.ding_id, notice.sender, notice.conversation_id, notice.step
        );
        match client.ding_ack(notice.conversation_id, notice.ding_id).await {
            Ok(state) => println!("  acknowledged; {:?}", state.counts),
            Err(e) => eprintln!("  could not acknowledge: {e}"),
        }
    }
    Ok(())
}
