//! `herald ding …`: send a DING, acknowledge one, follow one you sent.

use anyhow::Result;
use clap::{Args, Subcommand};
use herald_client::{Client, DingRequest, pb};

/// DING commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DingCommand {
    /// DING members until they acknowledge; prints `ding id=ID recipients=N policy=NAME`.
    ///
    /// About a message (--seq) or with its own text (--text, shown in-app). Give --sms-text when
    /// the policy escalates to SMS or voice: it is the only text the broker ever sees in clear.
    Send(SendArgs),
    /// Acknowledge a DING you received; prints `acknowledged id=ID`.
    Ack {
        /// The conversation.
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
        /// The DING.
        ding: u64,
    },
    /// Show a DING you sent: counts, then `user state steps` lines.
    Status {
        /// The conversation.
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
        /// The DING.
        ding: u64,
    },
    /// Stop a DING you sent.
    Cancel {
        /// The conversation.
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
        /// The DING.
        ding: u64,
    },
    /// DING again those who have not acknowledged.
    Again {
        /// The conversation.
        #[arg(value_name = "CONVERSATION_ID")]
        conversation: u64,
        /// The DING.
        ding: u64,
    },
}

/// `ding send` arguments.
#[derive(Debug, Args)]
pub(crate) struct SendArgs {
    /// The conversation.
    #[arg(value_name = "CONVERSATION_ID")]
    conversation: u64,
    /// Who must acknowledge (repeatable).
    #[arg(long = "to", required = true)]
    recipients: Vec<String>,
    /// The message the DING is about.
    #[arg(long, conflicts_with = "text")]
    seq: Option<u64>,
    /// The DING's own text, shown in-app.
    #[arg(long)]
    text: Option<String>,
    /// The escalation policy (the organisation's default when omitted).
    #[arg(long, default_value = "")]
    policy: String,
    /// Clear text for SMS and voice steps.
    #[arg(long)]
    sms_text: Option<String>,
}

pub(crate) async fn ding(client: &Client, command: DingCommand) -> Result<()> {
    match command {
        DingCommand::Send(args) => {
            let request = DingRequest {
                conversation_id: args.conversation,
                seq: args.seq.unwrap_or(0),
                payload: args.text.map(String::into_bytes).unwrap_or_default(),
                recipients: args.recipients,
                policy: args.policy,
                sms_text: args.sms_text,
            };
            let created = client.ding(request).await?;
            println!("ding id={} recipients={} policy={}", created.ding_id, created.recipients, created.policy);
        }
        DingCommand::Ack { conversation, ding } => {
            client.ding_ack(conversation, ding).await?;
            println!("acknowledged id={ding}");
        }
        DingCommand::Status { conversation, ding } => status(client, conversation, ding).await?,
        DingCommand::Cancel { conversation, ding } => {
            let state = client.ding_cancel(conversation, ding).await?;
            println!("cancelled id={ding} {}", counts(state.counts.unwrap_or_default()));
        }
        DingCommand::Again { conversation, ding } => {
            let created = client.reding(conversation, ding).await?;
            println!("ding id={} recipients={} policy={}", created.ding_id, created.recipients, created.policy);
        }
    }
    Ok(())
}

async fn status(client: &Client, conversation: u64, ding: u64) -> Result<()> {
    let mut after = String::new();
    let mut first = true;
    loop {
        let page = client.ding_status(conversation, ding, &after, 1000).await?;
        if first {
            println!("ding id={ding} {}", counts(page.counts.unwrap_or_default()));
            first = false;
        }
        for r in &page.recipients {
            let state = pb::DingRecipientState::try_from(r.state).map_or("unknown", |s| match s {
                pb::DingRecipientState::Pending => "pending",
                pb::DingRecipientState::Acknowledged => "acknowledged",
                pb::DingRecipientState::Expired => "expired",
                pb::DingRecipientState::Cancelled => "cancelled",
                pb::DingRecipientState::Unspecified => "unknown",
            });
            let steps: Vec<String> = r
                .steps
                .iter()
                .map(|s| {
                    format!(
                        "{}:{}",
                        s.step,
                        if s.delivered {
                            "ok"
                        } else if s.detail.is_empty() {
                            "sending"
                        } else {
                            "failed"
                        }
                    )
                })
                .collect();
            println!("{} {state} steps={}", r.user_id, steps.join(","));
        }
        match page.recipients.last() {
            Some(last) if page.more => after.clone_from(&last.user_id),
            _ => return Ok(()),
        }
    }
}

fn counts(c: pb::DingCounts) -> String {
    format!(
        "total={} acknowledged={} pending={} expired={} cancelled={}",
        c.total, c.acknowledged, c.pending, c.expired, c.cancelled
    )
}
