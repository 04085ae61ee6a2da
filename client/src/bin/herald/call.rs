//! `herald call …`: start or join a call and follow it, leave or end it, mute, share.
//!
//! A call holds this device's slot while its connection lives (and for the rejoin grace after),
//! so `start` and `join` stay connected and print the call's events until it ends or Ctrl-C
//! (which leaves it). The other commands act as the same device from a second process.

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use herald_client::{CallEvent, CallRoster, Client, DeltaOutcome, Event, HostAction, pb};

/// Call commands.
#[derive(Debug, Subcommand)]
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

pub(crate) async fn call(client: &Client, command: CallCommand) -> Result<()> {
    match command {
        CallCommand::Start { conversation, invitees, muted } => {
            let joined = client.call_start(conversation, invitees, muted, false).await.context("starting the call")?;
            follow(client, &joined).await
        }
        CallCommand::Join { call, muted } => {
            let joined = client.call_join(call, muted, false).await.context("joining the call")?;
            follow(client, &joined).await
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

fn ok(what: &str, answer: pb::CallOk) -> Result<()> {
    println!("{what} call={} version={}", answer.call_id, answer.version);
    Ok(())
}

/// Prints the call's events until it ends (or this device is removed), or Ctrl-C, which
/// leaves it.
async fn follow(client: &Client, joined: &pb::CallJoined) -> Result<()> {
    let mut roster = client.call_roster(joined).await.context("reading the participant list")?;
    let id = joined.call.as_ref().map_or(0, |c| c.call_id);
    println!("call id={id} version={} participants={}", roster.version, roster.participants.len());
    let mut events = client.events().context("the event stream was already taken")?;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Call(event)) => {
                    if !print(client, id, &mut roster, event).await? {
                        return Ok(());
                    }
                }
                Some(_) => {}
                None => return Ok(()),
            },
            stop = tokio::signal::ctrl_c() => {
                stop.context("waiting for Ctrl-C")?;
                client.call_leave(id).await.context("leaving")?;
                println!("left call={id}");
                return Ok(());
            }
        }
    }
}

/// Prints one event; `false` once the call is over for this device.
async fn print(client: &Client, id: u64, roster: &mut CallRoster, event: CallEvent) -> Result<bool> {
    match event {
        CallEvent::Delta(delta) if delta.call_id == id => {
            if roster.apply_delta(&delta) == DeltaOutcome::Gap {
                let page = client.call_snapshot(id, None, 0).await.context("refreshing the participant list")?;
                roster.apply_snapshot(&page);
            }
            println!("participants version={} count={}", roster.version, roster.participants.len());
        }
        CallEvent::Ended(ended) if ended.call_id == id => {
            let why = if ended.removed { "removed" } else { "ended" };
            println!("{why} call={id} by={} duration_ms={}", ended.by_user_id, ended.duration_ms);
            return Ok(false);
        }
        CallEvent::Muted(m) if m.call_id == id => println!("muted by={}", m.by_user_id),
        CallEvent::Relayed(r) => {
            println!("relayed from={}/{} bytes={}", r.from_user_id, r.from_device_id, r.blob.len())
        }
        CallEvent::Ring(r) => {
            let call = r.call.map_or(0, |c| c.call_id);
            println!("ring call={call} from={}", r.from_user_id);
        }
        CallEvent::RingStopped(s) => println!("ring stopped call={} reason={}", s.call_id, s.reason),
        _ => {}
    }
    Ok(true)
}
