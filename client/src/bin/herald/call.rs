//! `herald call …`: start or join a call and follow it, leave or end it, mute, share.
//!
//! A call holds this device's slot while its connection lives (and for the rejoin grace after),
//! so `start` and `join` stay connected and print the call's events until it ends or Ctrl-C
//! (which leaves it), one [`CallItem`] a line. The other commands act as the same device from a
//! second process.

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use herald_client::{CallEvent, CallRoster, Client, DeltaOutcome, Event, HostAction, pb};
use serde::Serialize;

use crate::output::{Output, Printer, enum_word};

/// Call commands.
#[derive(Debug, Subcommand)]
#[command(after_help = crate::manual::CALL)]
pub(crate) enum CallCommand {
    /// Start a call and follow it; prints `call id=ID`, then one line per event.
    ///
    /// With a conversation, an empty --to rings every member.
    Start {
        /// The conversation the call belongs to (0: none).
        #[arg(long, default_value_t = 0)]
        conversation: u64,
        /// Who to ring (repeatable).
        #[arg(long = "to")]
        invitees: Vec<String>,
        /// Join with the microphone muted.
        #[arg(long)]
        muted: bool,
    },
    /// Join (or accept) a call and follow it.
    Join {
        /// The call.
        call: u64,
        /// Join with the microphone muted.
        #[arg(long)]
        muted: bool,
    },
    /// Leave a call from this device.
    Leave {
        /// The call.
        call: u64,
    },
    /// End a call for everyone (host only).
    End {
        /// The call.
        call: u64,
    },
    /// Mute or unmute yourself, or as host mute one participant (--user, --device) or all.
    Mute {
        /// The call.
        call: u64,
        /// Unmute yourself instead.
        #[arg(long, conflicts_with_all = ["user", "all"])]
        off: bool,
        /// Host: the participant to mute.
        #[arg(long, requires = "device")]
        user: Option<String>,
        /// Host: the participant's device.
        #[arg(long)]
        device: Option<String>,
        /// Host: mute everyone else.
        #[arg(long)]
        all: bool,
    },
    /// Start, stop or (host) take over the screen share.
    Share {
        /// The call.
        call: u64,
        /// What to do.
        #[arg(value_enum, default_value_t = ShareArg::Start)]
        action: ShareArg,
    },
}

/// A screen-share action.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ShareArg {
    /// Start sharing.
    Start,
    /// Stop sharing.
    Stop,
    /// Host or co-host: take over.
    TakeOver,
}

/// One line of a followed call, under its `type`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum CallItem {
    /// This device is in the call; the list is at `version`.
    Joined { call_id: u64, version: u64, participants: usize },
    /// The participant list changed.
    Participants { call_id: u64, version: u64, count: usize },
    /// The call ended, or (`removed`) this device was removed; the follower exits.
    Ended { call_id: u64, removed: bool, reason: String, by: String, duration_ms: u64 },
    /// A host muted this device.
    Muted { call_id: u64, by: String },
    /// An SDP/ICE blob relayed to this device (its size only).
    Relayed { call_id: u64, from_user: String, from_device: String, bytes: usize },
    /// Another call rings this user.
    Ring { call_id: u64, from: String },
    /// A ring stopped: `accepted`, `declined`, `missed`, ...
    RingStopped { call_id: u64, reason: String },
    /// This device left on Ctrl-C; the follower exits.
    Left { call_id: u64 },
}

impl Output for CallItem {
    fn human(&self) -> String {
        match self {
            CallItem::Joined { call_id, version, participants } => {
                format!("call id={call_id} version={version} participants={participants}")
            }
            CallItem::Participants { version, count, .. } => format!("participants version={version} count={count}"),
            CallItem::Ended { call_id, removed, by, duration_ms, .. } => {
                let why = if *removed { "removed" } else { "ended" };
                format!("{why} call={call_id} by={by} duration_ms={duration_ms}")
            }
            CallItem::Muted { by, .. } => format!("muted by={by}"),
            CallItem::Relayed { from_user, from_device, bytes, .. } => {
                format!("relayed from={from_user}/{from_device} bytes={bytes}")
            }
            CallItem::Ring { call_id, from } => format!("ring call={call_id} from={from}"),
            CallItem::RingStopped { call_id, reason } => format!("ring stopped call={call_id} reason={reason}"),
            CallItem::Left { call_id } => format!("left call={call_id}"),
        }
    }
}

/// What `leave`, `end`, `mute` and `share` did: the action and the call's version after it.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CallOkOut {
    /// `left`, `ended`, `muted`, `unmuted` or `share`.
    action: &'static str,
    call_id: u64,
    version: u64,
}

impl Output for CallOkOut {
    fn human(&self) -> String {
        format!("{} call={} version={}", self.action, self.call_id, self.version)
    }
}

pub(crate) async fn call(client: &Client, printer: Printer, command: CallCommand) -> Result<()> {
    let ok = |action: &'static str, answer: pb::CallOk| {
        printer.print(&CallOkOut { action, call_id: answer.call_id, version: answer.version })
    };
    match command {
        CallCommand::Start { conversation, invitees, muted } => {
            let joined = client.call_start(conversation, invitees, muted, false).await.context("starting the call")?;
            follow(client, printer, &joined).await
        }
        CallCommand::Join { call, muted } => {
            let joined = client.call_join(call, muted, false).await.context("joining the call")?;
            follow(client, printer, &joined).await
        }
        CallCommand::Leave { call } => ok("left", client.call_leave(call).await.context("leaving")?),
        CallCommand::End { call } => ok("ended", client.call_end(call).await.context("ending")?),
        CallCommand::Mute { call, off, user, device, all } => {
            let answer = match (user, device, all) {
                (Some(user_id), Some(device_id), _) => {
                    let target = pb::CallEndpoint { user_id, device_id };
                    client.call_host_control(call, HostAction::Mute(target)).await
                }
                (_, _, true) => client.call_host_control(call, HostAction::MuteAll(true)).await,
                _ => client.call_set_self(call, Some(!off), None, None).await,
            };
            ok(if off { "unmuted" } else { "muted" }, answer.context("muting")?)
        }
        CallCommand::Share { call, action } => {
            let action = match action {
                ShareArg::Start => pb::ShareAction::Start,
                ShareArg::Stop => pb::ShareAction::Stop,
                ShareArg::TakeOver => pb::ShareAction::TakeOver,
            };
            ok("share", client.call_share(call, action).await.context("sharing")?)
        }
    }
}

/// Prints the call's events until it ends (or this device is removed), or Ctrl-C, which
/// leaves it.
async fn follow(client: &Client, printer: Printer, joined: &pb::CallJoined) -> Result<()> {
    let mut roster = client.call_roster(joined).await.context("reading the participant list")?;
    let id = joined.call.as_ref().map_or(0, |c| c.call_id);
    printer.print(&CallItem::Joined {
        call_id: id,
        version: roster.version,
        participants: roster.participants.len(),
    })?;
    let mut events = client.events().context("the event stream was already taken")?;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Call(event)) => {
                    let Some(item) = item(client, id, &mut roster, event).await? else { continue };
                    printer.print(&item)?;
                    if matches!(item, CallItem::Ended { call_id, .. } if call_id == id) {
                        return Ok(());
                    }
                }
                Some(_) => {}
                None => return Ok(()),
            },
            stop = tokio::signal::ctrl_c() => {
                stop.context("waiting for Ctrl-C")?;
                client.call_leave(id).await.context("leaving")?;
                return printer.print(&CallItem::Left { call_id: id });
            }
        }
    }
}

/// What to print for one event, if anything; applies participant deltas to `roster`.
async fn item(client: &Client, id: u64, roster: &mut CallRoster, event: CallEvent) -> Result<Option<CallItem>> {
    let item = match event {
        CallEvent::Delta(delta) if delta.call_id == id => {
            if roster.apply_delta(&delta) == DeltaOutcome::Gap {
                let page = client.call_snapshot(id, None, 0).await.context("refreshing the participant list")?;
                roster.apply_snapshot(&page);
            }
            CallItem::Participants { call_id: id, version: roster.version, count: roster.participants.len() }
        }
        CallEvent::Ended(e) if e.call_id == id => {
            let reason = enum_word(
                e.reason,
                pb::CallEndReason::try_from(e.reason).ok().map(|r| r.as_str_name()),
                "CALL_END_REASON_",
            );
            CallItem::Ended { call_id: id, removed: e.removed, reason, by: e.by_user_id, duration_ms: e.duration_ms }
        }
        CallEvent::Muted(m) if m.call_id == id => CallItem::Muted { call_id: id, by: m.by_user_id },
        CallEvent::Relayed(r) => CallItem::Relayed {
            call_id: r.call_id,
            from_user: r.from_user_id,
            from_device: r.from_device_id,
            bytes: r.blob.len(),
        },
        CallEvent::Ring(r) => CallItem::Ring { call_id: r.call.map_or(0, |c| c.call_id), from: r.from_user_id },
        CallEvent::RingStopped(s) => {
            let reason = pb::RingEndReason::try_from(s.reason).ok().map(|r| r.as_str_name());
            CallItem::RingStopped { call_id: s.call_id, reason: enum_word(s.reason, reason, "RING_END_REASON_") }
        }
        _ => return Ok(None),
    };
    Ok(Some(item))
}
