//! `herald ding …`: send a DING, acknowledge one, follow one you sent.

use anyhow::Result;
use clap::{Args, Subcommand};
use herald_client::{Client, DingRequest, pb};
use serde::Serialize;

use crate::messaging::lines;
use crate::output::{Output, Printer, enum_word};

/// DING commands.
#[derive(Debug, Subcommand)]
#[command(after_help = crate::manual::DING)]
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

/// A DING just sent (or sent again).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DingCreatedOut {
    conversation_id: u64,
    ding_id: u64,
    /// How many users must acknowledge.
    recipients: u32,
    /// The escalation policy's name.
    policy: String,
    created_at_ms: u64,
}

impl From<pb::DingCreated> for DingCreatedOut {
    fn from(c: pb::DingCreated) -> Self {
        let (conversation_id, ding_id, recipients, created_at_ms) =
            (c.conversation_id, c.ding_id, c.recipients, c.created_at_ms);
        DingCreatedOut { conversation_id, ding_id, recipients, policy: c.policy, created_at_ms }
    }
}

impl Output for DingCreatedOut {
    fn human(&self) -> String {
        format!("ding id={} recipients={} policy={}", self.ding_id, self.recipients, self.policy)
    }
}

/// A DING acknowledged.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct AcknowledgedOut {
    conversation_id: u64,
    ding_id: u64,
    acknowledged: bool,
}

impl Output for AcknowledgedOut {
    fn human(&self) -> String {
        format!("acknowledged id={}", self.ding_id)
    }
}

/// A DING's recipients by state.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct CountsOut {
    total: u32,
    acknowledged: u32,
    pending: u32,
    expired: u32,
    cancelled: u32,
}

impl From<pb::DingCounts> for CountsOut {
    fn from(c: pb::DingCounts) -> Self {
        CountsOut {
            total: c.total,
            acknowledged: c.acknowledged,
            pending: c.pending,
            expired: c.expired,
            cancelled: c.cancelled,
        }
    }
}

impl CountsOut {
    /// `total= acknowledged= pending= expired= cancelled=`.
    fn line(&self) -> String {
        format!(
            "total={} acknowledged={} pending={} expired={} cancelled={}",
            self.total, self.acknowledged, self.pending, self.expired, self.cancelled
        )
    }
}

/// A DING cancelled, with its counts afterwards.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CancelledOut {
    conversation_id: u64,
    ding_id: u64,
    cancelled: bool,
    counts: CountsOut,
}

impl Output for CancelledOut {
    fn human(&self) -> String {
        format!("cancelled id={} {}", self.ding_id, self.counts.line())
    }
}

/// A DING's state: counts, then every recipient.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatusOut {
    conversation_id: u64,
    ding_id: u64,
    counts: CountsOut,
    recipients: Vec<RecipientOut>,
}

/// One recipient: `pending`, `acknowledged`, `expired` or `cancelled`, and each escalation step.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RecipientOut {
    user_id: String,
    state: String,
    /// 0 until acknowledged.
    acknowledged_at_ms: u64,
    steps: Vec<StepOut>,
}

/// An escalation step taken for a recipient.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StepOut {
    step: u32,
    /// `app`, `sms`, `voice` or `manager`.
    channel: String,
    at_ms: u64,
    /// `ok` (delivered), `sending`, or `failed` (see `detail`).
    status: &'static str,
    detail: String,
}

impl From<&pb::DingRecipient> for RecipientOut {
    fn from(r: &pb::DingRecipient) -> Self {
        let state = pb::DingRecipientState::try_from(r.state).ok().map(|s| s.as_str_name());
        RecipientOut {
            user_id: r.user_id.clone(),
            state: enum_word(r.state, state, "DING_RECIPIENT_STATE_"),
            acknowledged_at_ms: r.acknowledged_at_ms,
            steps: r.steps.iter().map(StepOut::from).collect(),
        }
    }
}

impl From<&pb::DingStepResult> for StepOut {
    fn from(s: &pb::DingStepResult) -> Self {
        let status = match (s.delivered, s.detail.is_empty()) {
            (true, _) => "ok",
            (false, true) => "sending",
            (false, false) => "failed",
        };
        let channel = pb::DingChannel::try_from(s.channel).ok().map(|c| c.as_str_name());
        StepOut {
            step: s.step,
            channel: enum_word(s.channel, channel, "DING_CHANNEL_"),
            at_ms: s.at_ms,
            status,
            detail: s.detail.clone(),
        }
    }
}

impl Output for StatusOut {
    fn human(&self) -> String {
        let head = format!("ding id={} {}", self.ding_id, self.counts.line());
        let recipients = self.recipients.iter().map(|r| {
            let steps: Vec<String> = r.steps.iter().map(|s| format!("{}:{}", s.step, s.status)).collect();
            format!("{} {} steps={}", r.user_id, r.state, steps.join(","))
        });
        lines(std::iter::once(head).chain(recipients))
    }
}

pub(crate) async fn ding(client: &Client, printer: Printer, command: DingCommand) -> Result<()> {
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
            printer.print(&DingCreatedOut::from(client.ding(request).await?))
        }
        DingCommand::Ack { conversation, ding } => {
            client.ding_ack(conversation, ding).await?;
            printer.print(&AcknowledgedOut { conversation_id: conversation, ding_id: ding, acknowledged: true })
        }
        DingCommand::Status { conversation, ding } => printer.print(&status(client, conversation, ding).await?),
        DingCommand::Cancel { conversation, ding } => {
            let state = client.ding_cancel(conversation, ding).await?;
            let counts = CountsOut::from(state.counts.unwrap_or_default());
            printer.print(&CancelledOut { conversation_id: conversation, ding_id: ding, cancelled: true, counts })
        }
        DingCommand::Again { conversation, ding } => {
            printer.print(&DingCreatedOut::from(client.reding(conversation, ding).await?))
        }
    }
}

async fn status(client: &Client, conversation: u64, ding: u64) -> Result<StatusOut> {
    let mut out = StatusOut {
        conversation_id: conversation,
        ding_id: ding,
        counts: CountsOut::default(),
        recipients: Vec::new(),
    };
    let mut after = String::new();
    let mut first = true;
    loop {
        let page = client.ding_status(conversation, ding, &after, 1000).await?;
        if first {
            out.counts = page.counts.unwrap_or_default().into();
            first = false;
        }
        out.recipients.extend(page.recipients.iter().map(RecipientOut::from));
        match page.recipients.last() {
            Some(last) if page.more => after.clone_from(&last.user_id),
            _ => return Ok(out),
        }
    }
}
