//! `herald listen`: print deliveries, receipts and recall notices as they arrive, and optionally
//! catch up after RESYNC.

use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use herald_client::{Client, Entry, Event};

use crate::format::{EntryOut, Item, RecallNoticeOut, RecallProgressOut, ReceiptsOut};
use crate::output::Printer;

#[derive(Debug, Args)]
pub(crate) struct ListenArgs {
    /// Exit after printing N entries (receipts and recall notices do not count); without it,
    /// listen until Ctrl-C.
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,
    /// When the broker reports dropped deliveries (RESYNC, because this client read too slowly),
    /// fetch the missed entries from the log and print them, in order, without repeats. Without
    /// it only a `resync` line is printed.
    #[arg(long)]
    resync: bool,
}

/// What the listener has printed, and how much more it may print.
#[derive(Debug)]
struct Listener<'a> {
    client: &'a Client,
    printer: Printer,
    resync: bool,
    /// Entries still to print before exiting; `None` for no limit.
    remaining: Option<u64>,
    /// Per conversation, the highest seq printed.
    printed: HashMap<u64, u64>,
    /// With --resync, every conversation's newest seq when listening began: where catching up
    /// starts for conversations nothing has been printed for yet.
    start: HashMap<u64, u64>,
}

pub(crate) async fn listen(client: &Client, printer: Printer, args: &ListenArgs) -> Result<()> {
    let mut events = client.events().context("the event stream was already taken")?;
    // The broker registers a session for deliveries before it reads its first request, so once
    // anything is answered, every later entry reaches this session.
    client.ping().await.context("subscribing to deliveries")?;
    let mut listener = Listener::new(client, printer, args).await?;
    let s = client.session();
    eprintln!("listening as {}/{} (device {}); Ctrl-C to stop", s.org, s.user, s.device);
    while !listener.done() {
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => listener.handle(event).await?,
                None => return Err(session_ended(client).await),
            },
            stop = tokio::signal::ctrl_c() => return stop.context("waiting for Ctrl-C"),
        }
    }
    Ok(())
}

/// Why the push stream ended, as well as the session can tell.
async fn session_ended(client: &Client) -> anyhow::Error {
    let cause = match client.ping().await {
        Err(e) => anyhow::Error::from(e),
        Ok(_) => anyhow!("the broker closed the push stream"),
    };
    cause.context("the session ended while listening")
}

impl<'a> Listener<'a> {
    async fn new(client: &'a Client, printer: Printer, args: &ListenArgs) -> Result<Self> {
        let mut start = HashMap::new();
        if args.resync {
            let state = client.sync(&[]).await.context("reading where each conversation stands")?;
            start.extend(state.changed.iter().map(|c| (c.conversation_id, c.last_seq)));
        }
        Ok(Listener { client, printer, resync: args.resync, remaining: args.count, printed: HashMap::new(), start })
    }

    fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    async fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Delivery(entry) => self.print(&entry)?,
            Event::Resync { dropped_bytes } => {
                self.printer.print(&Item::Resync { dropped_bytes, catching_up: self.resync })?;
                if self.resync {
                    self.catch_up().await?;
                }
            }
            Event::Receipts(receipts) => {
                let conversation = receipts.conversation_id;
                for m in &receipts.messages {
                    self.printer.print(&Item::Receipts(ReceiptsOut::of(conversation, m)))?;
                }
                for r in &receipts.recalls {
                    self.printer.print(&Item::RecallProgress(RecallProgressOut::of(conversation, r)))?;
                }
            }
            Event::Recalled(notice) => self.printer.print(&Item::Recalled(RecallNoticeOut::from(&notice)))?,
            Event::Undecryptable { entry, reason } => {
                self.printer
                    .print(&Item::Undecryptable { entry: EntryOut::from(&*entry), reason: reason.to_string() })?;
            }
            Event::E2eWarning(warning) => self.printer.print(&Item::E2eWarning { warning: warning.to_string() })?,
            // Notices of later protocol revisions; this version has nothing to say about them.
            _ => {}
        }
        Ok(())
    }

    /// Prints an entry unless it was printed already or the count is reached.
    fn print(&mut self, entry: &Entry) -> Result<()> {
        let printed = self.printed.entry(entry.conversation_id).or_default();
        if entry.seq <= *printed || self.remaining == Some(0) {
            return Ok(());
        }
        *printed = entry.seq;
        self.printer.print(&Item::Entry(EntryOut::from(entry)))?;
        if let Some(remaining) = &mut self.remaining {
            *remaining -= 1;
        }
        Ok(())
    }

    /// Asks which conversations moved past what was printed (or, for those not printed yet,
    /// past where listening began) and prints the entries in between.
    async fn catch_up(&mut self) -> Result<()> {
        let mut cursors = self.start.clone();
        cursors.extend(self.printed.iter().map(|(&conversation, &seq)| (conversation, seq)));
        let cursor_list: Vec<(u64, u64)> = cursors.iter().map(|(&c, &s)| (c, s)).collect();
        let state = self.client.sync(&cursor_list).await.context("syncing after RESYNC")?;
        for conversation in state.changed {
            if self.done() {
                break;
            }
            let id = conversation.conversation_id;
            let after = cursors.get(&id).copied().unwrap_or(0);
            let entries =
                self.client.catch_up(id, after).await.with_context(|| format!("catching up conversation {id}"))?;
            for entry in &entries {
                self.print(entry)?;
            }
        }
        Ok(())
    }
}
