//! [`ReceiptBook`]: one conversation's read and delivered cursors, and the exact receipt counts
//! they imply. See the [module docs](super) for the invariants the counts rest on.

use std::collections::BTreeMap;
use std::ops::Bound;

use herald_protocol::{DeviceId, UserId};

use super::counter::WindowedCounter;

/// The largest horizon a book accepts; larger requests are clamped. Each book holds five trees of
/// `2 × horizon` counters (40 bytes per unit of horizon), so this caps one book at 40 MiB.
pub const MAX_HORIZON: usize = 1 << 20;

/// A member's record in one conversation, as it is stored. Departed members keep theirs (with
/// `left_seq`) so that the messages sent while they were members keep their counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCursor {
    /// The seq of the entry that added the user (their latest membership: a rejoin replaces it).
    pub joined_seq: u64,
    /// The seq of the entry that removed the user; `None` while they are a member.
    pub left_seq: Option<u64>,
    /// Every message up to here is read: the furthest any of the user's devices reported.
    pub read: u64,
    /// Every message up to here reached at least one of the user's devices (never below `read`).
    pub delivered: u64,
}

impl MemberCursor {
    /// A new member: everything before the join counts as seen, so cursors start at `seq - 1`.
    fn joined(seq: u64) -> Self {
        let floor = seq.saturating_sub(1);
        Self { joined_seq: seq, left_seq: None, read: floor, delivered: floor }
    }

    /// Whether the user is a member now.
    fn is_current(&self) -> bool {
        self.left_seq.is_none()
    }

    /// Whether the user was a member when the entry at `seq` was sequenced.
    fn was_member_at(&self, seq: u64) -> bool {
        self.joined_seq <= seq && self.left_seq.is_none_or(|left| seq < left)
    }

    /// The lowest cursor a device of this member can have: nothing before the join is theirs.
    fn floor(&self) -> u64 {
        self.joined_seq.saturating_sub(1)
    }

    /// The record with the book's invariants restored, for records read back from storage:
    /// `joined_seq >= 1`, `joined_seq - 1 <= read <= delivered`, and `delivered < left_seq`.
    fn normalized(mut self) -> Self {
        self.joined_seq = self.joined_seq.max(1);
        self.read = self.read.max(self.floor());
        self.delivered = self.delivered.max(self.read);
        if let Some(left) = self.left_seq {
            let left = left.max(self.joined_seq);
            self.left_seq = Some(left);
            self.read = self.read.min(left - 1);
            self.delivered = self.delivered.min(left - 1);
        }
        self
    }
}

/// The receipt counts of the message at one seq, over the members it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Members at send time whose read cursor reached it.
    pub read: u32,
    /// Members at send time whose delivered cursor reached it.
    pub delivered: u32,
    /// Members at send time, the sender included.
    pub members: u32,
}

/// How far an event (a recall) has reached the current members' devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceCounts {
    /// Devices whose delivered cursor reached the event.
    pub applied: u32,
    /// Devices the book tracks: those of current members that reported a cursor.
    pub devices: u32,
}

/// Which members [`ReceiptBook::list`] walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Members at send time (departed since or not) who read the message.
    Read,
    /// Current members who were members at send time and have not read it.
    Unread,
}

impl ListKind {
    /// Whether `member` belongs on this list for the message at `seq`.
    fn includes(self, member: &MemberCursor, seq: u64) -> bool {
        match self {
            Self::Read => member.was_member_at(seq) && member.read >= seq,
            Self::Unread => member.is_current() && member.joined_seq <= seq && member.read < seq,
        }
    }
}

/// One page of [`ReceiptBook::list`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The users, in id order.
    pub users: Vec<UserId>,
    /// More users follow: ask again with the last one as `after`.
    pub more: bool,
}

/// Why [`ReceiptBook::mark`] refused a report. The read cursor is checked before the delivered
/// one, and the end before staleness.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum MarkError {
    /// The cursor names a seq the conversation does not have yet.
    #[error("cursor {requested} is beyond the last sequence number {last_seq}")]
    BeyondEnd {
        /// The reported cursor.
        requested: u64,
        /// The conversation's last seq.
        last_seq: u64,
    },
    /// The cursor is behind the stored one: another device read further, or a late duplicate.
    #[error("cursor {requested} is behind the stored cursor {current}")]
    Stale {
        /// The reported cursor.
        requested: u64,
        /// The stored cursor (the user's read cursor, or this device's delivered cursor).
        current: u64,
    },
    /// The user is not a member of the conversation (never was, or left).
    #[error("not a member")]
    NotMember,
}

/// Why [`ReceiptBook::join`] or [`ReceiptBook::leave`] refused a membership change. Each one is a
/// caller bug (the shard sequences membership), refused so that the counting invariants hold.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    /// Joining a user who is a member already.
    #[error("already a member")]
    AlreadyMember,
    /// Removing a user who is not a member.
    #[error("not a member")]
    NotMember,
    /// The change's seq is not after the member's record: a rejoin at or before the last leave, a
    /// leave at or before the join or a cursor, or a join at seq 0.
    #[error("membership change at seq {seq} is not after seq {floor}")]
    NotAfter {
        /// The change's seq.
        seq: u64,
        /// The seq it must follow.
        floor: u64,
    },
}

/// What a successful [`ReceiptBook::mark`] changed: the records to persist and the cursor moves
/// that change counts (a move `(old, new)` changes the counts of the messages in `old + 1..=new`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marked {
    /// The user's read cursor now.
    pub read: u64,
    /// This device's delivered cursor now.
    pub delivered: u64,
    /// The user's delivered cursor now (the furthest of their devices).
    pub user_delivered: u64,
    /// The user's read cursor moved from `.0` to `.1`.
    pub read_moved: Option<(u64, u64)>,
    /// The user's delivered cursor moved from `.0` to `.1`.
    pub delivered_moved: Option<(u64, u64)>,
    /// This device's delivered cursor moved from `.0` to `.1` (from the member's floor if new).
    pub device_moved: Option<(u64, u64)>,
    /// The device reported for the first time since the user joined: store it.
    pub device_added: bool,
    /// The member's record now, to store.
    pub member: MemberCursor,
}

/// What a successful [`ReceiptBook::leave`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    /// The departed member's record, to store.
    pub member: MemberCursor,
    /// The user's devices the book dropped, in id order: delete them from storage.
    pub dropped_devices: Vec<DeviceId>,
}

/// A member's record and, while they are a member, their devices' delivered cursors.
#[derive(Debug, Clone)]
struct Member {
    cursor: MemberCursor,
    devices: BTreeMap<DeviceId, u64>,
}

/// The five counters, all over one window: joins (every record), leaves (departed records), read
/// and delivered cursors (every record), and device cursors (current members' devices).
#[derive(Debug, Clone)]
struct Tallies {
    joined: WindowedCounter,
    left: WindowedCounter,
    read: WindowedCounter,
    delivered: WindowedCounter,
    devices: WindowedCounter,
}

/// A counter of [`Tallies`].
#[derive(Debug, Clone, Copy)]
enum Tally {
    Joined,
    Left,
    Read,
    Delivered,
    Devices,
}

/// One value of a tally changing: `None` is absent (a new value, or one that goes away).
#[derive(Debug, Clone, Copy)]
struct Shift {
    tally: Tally,
    old: Option<u64>,
    new: Option<u64>,
}

impl Shift {
    fn new(tally: Tally, old: Option<u64>, new: Option<u64>) -> Self {
        Self { tally, old, new }
    }
}

impl Tallies {
    fn new(capacity: usize) -> Self {
        let counter = WindowedCounter::new(capacity);
        Self {
            joined: counter.clone(),
            left: counter.clone(),
            read: counter.clone(),
            delivered: counter.clone(),
            devices: counter,
        }
    }

    fn get_mut(&mut self, tally: Tally) -> &mut WindowedCounter {
        match tally {
            Tally::Joined => &mut self.joined,
            Tally::Left => &mut self.left,
            Tally::Read => &mut self.read,
            Tally::Delivered => &mut self.delivered,
            Tally::Devices => &mut self.devices,
        }
    }

    /// All counters share one window, so any of them can answer.
    fn fits(&self, value: u64) -> bool {
        self.joined.fits(value)
    }

    fn apply(&mut self, shift: &Shift) {
        let counter = self.get_mut(shift.tally);
        if let Some(old) = shift.old {
            counter.remove(old);
        }
        if let Some(new) = shift.new {
            counter.insert(new);
        }
    }

    /// Refills every counter from the records, with the window starting at `base`.
    fn rebuild(&mut self, base: u64, members: &BTreeMap<UserId, Member>) {
        let cursors = || members.values().map(|m| &m.cursor);
        self.joined.rebuild(base, cursors().map(|c| c.joined_seq));
        self.left.rebuild(base, cursors().filter_map(|c| c.left_seq));
        self.read.rebuild(base, cursors().map(|c| c.read));
        self.delivered.rebuild(base, cursors().map(|c| c.delivered));
        self.devices.rebuild(base, members.values().flat_map(|m| m.devices.values().copied()));
    }

    /// The counts for `seq` from the counters alone, or `None` if `seq` is below the window.
    fn counts(&self, seq: u64) -> Option<Counts> {
        let (joined_after, left_after) = match seq.checked_add(1) {
            Some(next) => (self.joined.count_at_least(next)?, self.left.count_at_least(next)?),
            None => (0, 0),
        };
        let joined_by = self.joined.len().saturating_sub(joined_after);
        let left_by = self.left.len().saturating_sub(left_after);
        Some(Counts {
            read: self.read.count_at_least(seq)?.saturating_sub(joined_after),
            delivered: self.delivered.count_at_least(seq)?.saturating_sub(joined_after),
            members: joined_by.saturating_sub(left_by),
        })
    }
}

/// One conversation's read and delivered state: a cursor record per member (current and
/// departed) and a delivered cursor per device of each current member, with counters that answer
/// a message's receipt counts exactly in O(log n). Sans-IO: the caller persists what each change
/// returns and rebuilds the book with [`ReceiptBook::load`].
#[derive(Debug, Clone)]
pub struct ReceiptBook {
    horizon: usize,
    members: BTreeMap<UserId, Member>,
    tallies: Tallies,
}

impl ReceiptBook {
    /// An empty book whose counters answer the newest `horizon` seqs (clamped to
    /// `1..=`[`MAX_HORIZON`]) without a scan.
    pub fn new(horizon: usize) -> Self {
        let horizon = horizon.clamp(1, MAX_HORIZON);
        Self { horizon, members: BTreeMap::new(), tallies: Tallies::new(2 * horizon) }
    }

    /// A book from stored records: `members` as [`join`](Self::join), [`leave`](Self::leave) and
    /// [`mark`](Self::mark) returned them, and `devices` as `(user, device, delivered cursor)`.
    /// Records are normalised to the book's invariants (see the module docs), devices of users who
    /// are not current members are ignored, and a repeated record replaces the earlier one.
    pub fn load(
        horizon: usize,
        members: impl IntoIterator<Item = (UserId, MemberCursor)>,
        devices: impl IntoIterator<Item = (UserId, DeviceId, u64)>,
    ) -> Self {
        let mut book = Self::new(horizon);
        for (user, cursor) in members {
            book.members.insert(user, Member { cursor: cursor.normalized(), devices: BTreeMap::new() });
        }
        for (user, device, delivered) in devices {
            if let Some(member) = book.members.get_mut(&user).filter(|m| m.cursor.is_current()) {
                let delivered = delivered.max(member.cursor.floor());
                member.cursor.delivered = member.cursor.delivered.max(delivered);
                member.devices.insert(device, delivered);
            }
        }
        let cursors = book.members.values().map(|m| m.cursor);
        let top = cursors.map(|c| c.joined_seq.max(c.delivered).max(c.left_seq.unwrap_or(0))).max();
        book.rebase(top.unwrap_or(0));
        book
    }

    /// Adds `user` by the membership entry at `seq`, replacing the record of an earlier
    /// membership: the receipts of that earlier period are forgotten, and messages sent then no
    /// longer count the user. Returns the record to store.
    ///
    /// # Errors
    /// [`MembershipError::AlreadyMember`] if the user is a member; [`MembershipError::NotAfter`]
    /// if `seq` is 0 or not after the user's last leave. Nothing changes on error.
    pub fn join(&mut self, user: &UserId, seq: u64) -> Result<MemberCursor, MembershipError> {
        let old = self.members.get(user).map(|m| m.cursor);
        let floor = match old {
            Some(cursor) => cursor.left_seq.ok_or(MembershipError::AlreadyMember)?,
            None => 0,
        };
        if seq <= floor {
            return Err(MembershipError::NotAfter { seq, floor });
        }
        let cursor = MemberCursor::joined(seq);
        self.members.insert(user.clone(), Member { cursor, devices: BTreeMap::new() });
        self.commit(&[
            Shift::new(Tally::Joined, old.map(|c| c.joined_seq), Some(cursor.joined_seq)),
            Shift::new(Tally::Left, old.and_then(|c| c.left_seq), None),
            Shift::new(Tally::Read, old.map(|c| c.read), Some(cursor.read)),
            Shift::new(Tally::Delivered, old.map(|c| c.delivered), Some(cursor.delivered)),
        ]);
        Ok(cursor)
    }

    /// Removes `user` by the membership entry at `seq`. Their record stays (messages sent while
    /// they were a member keep counting them); their devices are dropped.
    ///
    /// # Errors
    /// [`MembershipError::NotMember`] if the user is not a member; [`MembershipError::NotAfter`]
    /// if `seq` is not after both their join and their delivered cursor (a member cannot have
    /// seen the entry that removes them). Nothing changes on error.
    pub fn leave(&mut self, user: &UserId, seq: u64) -> Result<Left, MembershipError> {
        let member = self.members.get_mut(user).filter(|m| m.cursor.is_current()).ok_or(MembershipError::NotMember)?;
        let floor = member.cursor.joined_seq.max(member.cursor.delivered);
        if seq <= floor {
            return Err(MembershipError::NotAfter { seq, floor });
        }
        member.cursor.left_seq = Some(seq);
        let cursor = member.cursor;
        let devices = std::mem::take(&mut member.devices);
        let mut shifts = vec![Shift::new(Tally::Left, None, Some(seq))];
        shifts.extend(devices.values().map(|&d| Shift::new(Tally::Devices, Some(d), None)));
        self.commit(&shifts);
        Ok(Left { member: cursor, dropped_devices: devices.into_keys().collect() })
    }

    /// Applies a device's report that it has everything up to `delivered` and that its user has
    /// read up to `read`; 0 leaves a cursor as it is. A read cursor also raises this device's
    /// delivered cursor to it. A cursor equal to the stored one is accepted (a retry) and moves
    /// nothing. `last_seq` is the conversation's last seq.
    ///
    /// # Errors
    /// [`MarkError::NotMember`] if the user is not a member; [`MarkError::BeyondEnd`] if a
    /// cursor is past `last_seq`; [`MarkError::Stale`] if `read` is behind the user's read
    /// cursor or `delivered` behind this device's. Nothing changes on error.
    pub fn mark(
        &mut self,
        user: &UserId,
        device: &DeviceId,
        delivered: u64,
        read: u64,
        last_seq: u64,
    ) -> Result<Marked, MarkError> {
        let member = self.members.get_mut(user).filter(|m| m.cursor.is_current()).ok_or(MarkError::NotMember)?;
        let old = member.cursor;
        let old_device = member.devices.get(device).copied();
        let device_current = old_device.unwrap_or(old.floor());
        check_report(read, delivered, last_seq, old.read, device_current)?;
        let new_device = device_current.max(delivered).max(read);
        member.cursor.read = old.read.max(read);
        member.cursor.delivered = old.delivered.max(new_device);
        let cursor = member.cursor;
        // A device is tracked from its first report, even one that moves nothing.
        let device_added = old_device.is_none() && (delivered != 0 || read != 0);
        let tracked = (old_device.is_some() || device_added).then_some(new_device);
        match member.devices.get_mut(device) {
            Some(slot) => *slot = new_device,
            None if device_added => _ = member.devices.insert(device.clone(), new_device),
            None => {}
        }
        self.commit(&[
            Shift::new(Tally::Read, Some(old.read), Some(cursor.read)),
            Shift::new(Tally::Delivered, Some(old.delivered), Some(cursor.delivered)),
            Shift::new(Tally::Devices, old_device, tracked),
        ]);
        Ok(Marked {
            read: cursor.read,
            delivered: new_device,
            user_delivered: cursor.delivered,
            read_moved: moved(old.read, cursor.read),
            delivered_moved: moved(old.delivered, cursor.delivered),
            device_moved: moved(device_current, new_device),
            device_added,
            member: cursor,
        })
    }

    /// The receipt counts of the message at `seq`: O(log n) when `seq` is inside the window,
    /// otherwise a scan of the member records, with the same answer.
    pub fn counts(&self, seq: u64) -> Counts {
        self.tallies.counts(seq).unwrap_or_else(|| self.counts_by_scan(seq))
    }

    /// How many tracked devices have a delivered cursor at or past `seq` (the recall event),
    /// out of how many: O(log n) inside the window, a scan below it.
    pub fn applied_devices(&self, seq: u64) -> DeviceCounts {
        let applied = self.tallies.devices.count_at_least(seq).unwrap_or_else(|| self.applied_by_scan(seq));
        DeviceCounts { applied, devices: self.tallies.devices.len() }
    }

    /// The record of `user`, current or departed.
    pub fn member(&self, user: &UserId) -> Option<&MemberCursor> {
        self.members.get(user).map(|m| &m.cursor)
    }

    /// The delivered cursor of one device of a current member, if it has reported one.
    pub fn device(&self, user: &UserId, device: &DeviceId) -> Option<u64> {
        self.members.get(user)?.devices.get(device).copied()
    }

    /// Up to `limit` users on the `which` list of the message at `seq`, in id order, starting
    /// after `after`. A walk over the records from `after`: O(log n + users skipped).
    pub fn list(&self, seq: u64, which: ListKind, after: Option<&UserId>, limit: usize) -> Page {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut matching = self
            .members
            .range::<UserId, _>((start, Bound::Unbounded))
            .filter(|(_, m)| which.includes(&m.cursor, seq))
            .map(|(user, _)| user);
        let users = matching.by_ref().take(limit).cloned().collect();
        Page { users, more: matching.next().is_some() }
    }

    /// Commits the counter side of a change whose records are already updated: incrementally if
    /// every new value fits the window, otherwise by moving the window to end `horizon` past the
    /// newest value and rebuilding from the records.
    fn commit(&mut self, shifts: &[Shift]) {
        let changes = shifts.iter().filter(|s| s.old != s.new);
        let top = changes.clone().filter_map(|s| s.new).max();
        match top {
            Some(top) if !self.tallies.fits(top) => self.rebase(top),
            _ => changes.for_each(|s| self.tallies.apply(s)),
        }
    }

    /// Rebuilds the counters over a window whose last `horizon` slots end at `top`.
    fn rebase(&mut self, top: u64) {
        let base = top.saturating_sub(self.horizon as u64 - 1);
        self.tallies.rebuild(base, &self.members);
    }

    /// [`counts`](Self::counts) by a scan of every record.
    fn counts_by_scan(&self, seq: u64) -> Counts {
        let at_send = self.members.values().map(|m| &m.cursor).filter(|c| c.was_member_at(seq));
        at_send.fold(Counts::default(), |counts, c| Counts {
            read: counts.read.wrapping_add(u32::from(c.read >= seq)),
            delivered: counts.delivered.wrapping_add(u32::from(c.delivered >= seq)),
            members: counts.members.wrapping_add(1),
        })
    }

    /// [`applied_devices`](Self::applied_devices)' first half by a scan of every device.
    fn applied_by_scan(&self, seq: u64) -> u32 {
        let devices = self.members.values().flat_map(|m| m.devices.values());
        devices.fold(0u32, |n, &d| n.wrapping_add(u32::from(d >= seq)))
    }
}

/// [`ReceiptBook::mark`]'s checks of a report against the stored cursors, in its documented order.
fn check_report(read: u64, delivered: u64, last_seq: u64, user_read: u64, device: u64) -> Result<(), MarkError> {
    for requested in [read, delivered] {
        if requested > last_seq {
            return Err(MarkError::BeyondEnd { requested, last_seq });
        }
    }
    for (requested, current) in [(read, user_read), (delivered, device)] {
        if requested != 0 && requested < current {
            return Err(MarkError::Stale { requested, current });
        }
    }
    Ok(())
}

/// `Some((old, new))` if the cursor moved.
fn moved(old: u64, new: u64) -> Option<(u64, u64)> {
    (new > old).then_some((old, new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn user(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    fn device(name: &str) -> DeviceId {
        DeviceId::new(name).unwrap()
    }

    /// Everything observable about a book up to `last_seq`, to check that errors change nothing.
    fn snapshot(book: &ReceiptBook, last_seq: u64) -> Vec<String> {
        let mut seen: Vec<String> =
            book.members.iter().map(|(u, m)| format!("{u} {:?} {:?}", m.cursor, m.devices)).collect();
        seen.extend((0..=last_seq + 1).map(|s| format!("{s} {:?} {:?}", book.counts(s), book.applied_devices(s))));
        seen
    }

    /// alice joins at 1, bob at 2, messages 3..=5; bob's phone has read 4.
    fn two_members() -> ReceiptBook {
        let mut book = ReceiptBook::new(4);
        book.join(&user("alice"), 1).unwrap();
        book.join(&user("bob"), 2).unwrap();
        book.mark(&user("bob"), &device("phone"), 0, 4, 5).unwrap();
        book
    }

    #[test]
    fn mark_refuses_a_non_member_and_changes_nothing() {
        let mut book = two_members();
        let before = snapshot(&book, 5);
        assert_eq!(book.mark(&user("carol"), &device("phone"), 5, 5, 5), Err(MarkError::NotMember));
        book.leave(&user("alice"), 6).unwrap();
        let before_left = snapshot(&book, 6);
        assert_ne!(before, before_left);
        assert_eq!(book.mark(&user("alice"), &device("phone"), 0, 5, 6), Err(MarkError::NotMember));
        assert_eq!(snapshot(&book, 6), before_left);
    }

    #[test]
    fn mark_refuses_a_cursor_beyond_the_end_and_changes_nothing() {
        let mut book = two_members();
        let before = snapshot(&book, 5);
        assert_eq!(
            book.mark(&user("bob"), &device("phone"), 0, 6, 5),
            Err(MarkError::BeyondEnd { requested: 6, last_seq: 5 })
        );
        assert_eq!(
            book.mark(&user("bob"), &device("phone"), 6, 5, 5),
            Err(MarkError::BeyondEnd { requested: 6, last_seq: 5 })
        );
        assert_eq!(
            book.mark(&user("bob"), &device("phone"), 9, 7, 5),
            Err(MarkError::BeyondEnd { requested: 7, last_seq: 5 }),
            "read first"
        );
        assert_eq!(snapshot(&book, 5), before);
    }

    #[test]
    fn mark_refuses_a_stale_cursor_and_changes_nothing() {
        let mut book = two_members();
        let before = snapshot(&book, 5);
        // The laptop lags behind the phone's read cursor.
        assert_eq!(
            book.mark(&user("bob"), &device("laptop"), 0, 3, 5),
            Err(MarkError::Stale { requested: 3, current: 4 })
        );
        // The phone's delivered cursor is 4 (raised by its read).
        assert_eq!(
            book.mark(&user("bob"), &device("phone"), 3, 0, 5),
            Err(MarkError::Stale { requested: 3, current: 4 })
        );
        // A new device starts at the join floor.
        assert_eq!(book.mark(&user("bob"), &device("tablet"), 0, 0, 5).map(|m| m.device_added), Ok(false));
        assert_eq!(
            book.mark(&user("bob"), &device("laptop"), 4, 3, 5),
            Err(MarkError::Stale { requested: 3, current: 4 }),
            "read first"
        );
        assert_eq!(snapshot(&book, 5), before);
    }

    #[test]
    fn a_retry_is_accepted_and_moves_nothing() {
        let mut book = two_members();
        let before = snapshot(&book, 5);
        let marked = book.mark(&user("bob"), &device("phone"), 4, 4, 5).unwrap();
        assert_eq!((marked.read, marked.delivered, marked.user_delivered), (4, 4, 4));
        assert_eq!(
            (marked.read_moved, marked.delivered_moved, marked.device_moved, marked.device_added),
            (None, None, None, false)
        );
        assert_eq!(snapshot(&book, 5), before);
    }

    #[test]
    fn a_mark_reports_what_moved() {
        let mut book = two_members();
        let marked = book.mark(&user("bob"), &device("laptop"), 5, 0, 5).unwrap();
        assert_eq!(marked.device_moved, Some((1, 5)), "from the join floor");
        assert!(marked.device_added);
        assert_eq!(marked.delivered_moved, Some((4, 5)));
        assert_eq!(marked.read_moved, None);
        assert_eq!(marked.member, MemberCursor { joined_seq: 2, left_seq: None, read: 4, delivered: 5 });
        assert_eq!(book.counts(5), Counts { read: 0, delivered: 1, members: 2 });
        assert_eq!(book.counts(4), Counts { read: 1, delivered: 1, members: 2 });
        assert_eq!(book.counts(1), Counts { read: 0, delivered: 0, members: 1 }, "before bob joined");
        assert_eq!(book.applied_devices(5), DeviceCounts { applied: 1, devices: 2 });
    }

    #[test]
    fn membership_changes_out_of_order_are_refused() {
        let mut book = two_members();
        let before = snapshot(&book, 5);
        assert_eq!(book.join(&user("alice"), 6), Err(MembershipError::AlreadyMember));
        assert_eq!(book.join(&user("carol"), 0), Err(MembershipError::NotAfter { seq: 0, floor: 0 }));
        assert_eq!(book.leave(&user("carol"), 6), Err(MembershipError::NotMember));
        assert_eq!(book.leave(&user("bob"), 4), Err(MembershipError::NotAfter { seq: 4, floor: 4 }));
        assert_eq!(snapshot(&book, 5), before);
        let left = book.leave(&user("bob"), 6).unwrap();
        assert_eq!(left.dropped_devices, vec![device("phone")]);
        assert_eq!(book.join(&user("bob"), 6), Err(MembershipError::NotAfter { seq: 6, floor: 6 }));
        assert_eq!(book.leave(&user("bob"), 7), Err(MembershipError::NotMember));
    }

    #[test]
    fn departed_members_keep_counting_for_messages_sent_while_they_were_members() {
        let mut book = two_members();
        book.leave(&user("bob"), 6).unwrap();
        assert_eq!(book.counts(4), Counts { read: 1, delivered: 1, members: 2 });
        assert_eq!(book.counts(7), Counts { read: 0, delivered: 0, members: 1 });
        assert_eq!(book.list(4, ListKind::Read, None, 10).users, vec![user("bob")]);
        assert_eq!(book.list(5, ListKind::Unread, None, 10).users, vec![user("alice")], "bob left");
        assert_eq!(book.applied_devices(1), DeviceCounts { applied: 0, devices: 0 });
        // A rejoin replaces the record: the earlier period's receipts are forgotten.
        let cursor = book.join(&user("bob"), 8).unwrap();
        assert_eq!(cursor, MemberCursor { joined_seq: 8, left_seq: None, read: 7, delivered: 7 });
        assert_eq!(book.counts(4), Counts { read: 0, delivered: 0, members: 1 });
    }

    #[test]
    fn lists_page_in_user_order() {
        let mut book = ReceiptBook::new(4);
        for (n, name) in ["dave", "alice", "carol", "bob"].into_iter().enumerate() {
            book.join(&user(name), n as u64 + 1).unwrap();
        }
        book.mark(&user("carol"), &device("d"), 0, 5, 5).unwrap();
        let first = book.list(5, ListKind::Unread, None, 2);
        assert_eq!(first, Page { users: vec![user("alice"), user("bob")], more: true });
        let second = book.list(5, ListKind::Unread, first.users.last(), 2);
        assert_eq!(second, Page { users: vec![user("dave")], more: false });
        assert_eq!(book.list(5, ListKind::Read, None, 0), Page { users: vec![], more: true });
    }

    #[test]
    fn load_restores_what_the_changes_returned_and_repairs_invariants() {
        let book = two_members();
        let members = book.members.iter().map(|(u, m)| (u.clone(), m.cursor));
        let devices = book.members.iter().flat_map(|(u, m)| m.devices.iter().map(|(d, &c)| (u.clone(), d.clone(), c)));
        let loaded = ReceiptBook::load(4, members, devices);
        assert_eq!(snapshot(&loaded, 5), snapshot(&book, 5));
        let broken = MemberCursor { joined_seq: 0, left_seq: Some(3), read: 7, delivered: 2 };
        let loaded = ReceiptBook::load(4, [(user("x"), broken)], [(user("x"), device("d"), 9)]);
        assert_eq!(
            loaded.member(&user("x")),
            Some(&MemberCursor { joined_seq: 1, left_seq: Some(3), read: 2, delivered: 2 })
        );
        assert_eq!(loaded.applied_devices(0), DeviceCounts { applied: 0, devices: 0 });
    }

    #[test]
    fn extreme_seqs_do_not_panic() {
        let mut book = ReceiptBook::new(usize::MAX);
        book.join(&user("a"), u64::MAX - 1).unwrap();
        book.mark(&user("a"), &device("d"), u64::MAX, u64::MAX, u64::MAX).unwrap();
        assert_eq!(book.counts(u64::MAX), Counts { read: 1, delivered: 1, members: 1 });
        assert!(book.leave(&user("a"), u64::MAX).is_err());
        let mut book = ReceiptBook::new(0);
        book.join(&user("a"), 1).unwrap();
        assert_eq!(book.counts(u64::MAX).members, 1);
    }

    /// A naive model: the full history of accepted changes, with every answer recomputed from it
    /// by brute force. A user's membership is their latest join and the leave after it, if any.
    #[derive(Debug, Default)]
    struct Model {
        last_seq: u64,
        history: Vec<Event>,
    }

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Join { user: usize, seq: u64 },
        Leave { user: usize, seq: u64 },
        Mark { user: usize, device: usize, delivered: u64, read: u64 },
    }

    const USERS: usize = 6;
    const DEVICES: usize = 3;

    impl Model {
        /// `(joined, left, index of the join in history)` of the user's latest membership.
        fn period(&self, u: usize) -> Option<(u64, Option<u64>, usize)> {
            let (start, joined) = self.history.iter().enumerate().rev().find_map(|(i, e)| match *e {
                Event::Join { user, seq } if user == u => Some((i, seq)),
                _ => None,
            })?;
            let left = self.history.iter().skip(start).find_map(|e| match *e {
                Event::Leave { user, seq } if user == u => Some(seq),
                _ => None,
            });
            Some((joined, left, start))
        }

        /// The marks the user made in their latest membership, as (device, delivered, read).
        fn marks(&self, u: usize) -> Vec<(usize, u64, u64)> {
            let Some((_, _, start)) = self.period(u) else { return vec![] };
            self.history
                .iter()
                .skip(start)
                .filter_map(|e| match *e {
                    Event::Mark { user, device, delivered, read } if user == u => Some((device, delivered, read)),
                    _ => None,
                })
                .collect()
        }

        fn is_current(&self, u: usize) -> bool {
            matches!(self.period(u), Some((_, None, _)))
        }

        fn member_at(&self, u: usize, s: u64) -> bool {
            self.period(u).is_some_and(|(j, l, _)| j <= s && l.is_none_or(|l| s < l))
        }

        fn floor(&self, u: usize) -> u64 {
            self.period(u).map_or(0, |(j, _, _)| j - 1)
        }

        fn read(&self, u: usize) -> u64 {
            self.marks(u).iter().map(|m| m.2).fold(self.floor(u), u64::max)
        }

        fn delivered(&self, u: usize) -> u64 {
            self.marks(u).iter().map(|m| m.1.max(m.2)).fold(self.floor(u), u64::max)
        }

        /// A device's cursor, if it reported since the user's latest join and they are current.
        fn device(&self, u: usize, d: usize) -> Option<u64> {
            let reports: Vec<u64> =
                self.marks(u).iter().filter(|m| m.0 == d && (m.1, m.2) != (0, 0)).map(|m| m.1.max(m.2)).collect();
            (self.is_current(u) && !reports.is_empty()).then(|| reports.into_iter().fold(self.floor(u), u64::max))
        }

        fn counts(&self, s: u64) -> Counts {
            let at_send: Vec<usize> = (0..USERS).filter(|&u| self.member_at(u, s)).collect();
            Counts {
                read: at_send.iter().filter(|&&u| self.read(u) >= s).count() as u32,
                delivered: at_send.iter().filter(|&&u| self.delivered(u) >= s).count() as u32,
                members: at_send.len() as u32,
            }
        }

        fn applied(&self, e: u64) -> DeviceCounts {
            let cursors: Vec<u64> =
                (0..USERS).flat_map(|u| (0..DEVICES).filter_map(move |d| self.device(u, d))).collect();
            DeviceCounts { applied: cursors.iter().filter(|&&c| c >= e).count() as u32, devices: cursors.len() as u32 }
        }

        fn list(&self, s: u64, which: ListKind) -> Vec<UserId> {
            let mut users: Vec<UserId> = (0..USERS)
                .filter(|&u| match which {
                    ListKind::Read => self.member_at(u, s) && self.read(u) >= s,
                    ListKind::Unread => self.is_current(u) && self.member_at(u, s) && self.read(u) < s,
                })
                .map(user_n)
                .collect();
            users.sort();
            users
        }

        fn mark(&self, u: usize, d: usize, delivered: u64, read: u64) -> Result<(), MarkError> {
            if !self.is_current(u) {
                return Err(MarkError::NotMember);
            }
            for requested in [read, delivered] {
                if requested > self.last_seq {
                    return Err(MarkError::BeyondEnd { requested, last_seq: self.last_seq });
                }
            }
            let device = self.device(u, d).unwrap_or(self.floor(u));
            for (requested, current) in [(read, self.read(u)), (delivered, device)] {
                if requested != 0 && requested < current {
                    return Err(MarkError::Stale { requested, current });
                }
            }
            Ok(())
        }
    }

    fn user_n(n: usize) -> UserId {
        user(&format!("u{n}"))
    }

    fn device_n(n: usize) -> DeviceId {
        device(&format!("d{n}"))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Message,
        Join(usize),
        Leave(usize),
        /// Cursors are drawn as fractions of `last_seq + 2`, so some are beyond the end.
        Mark {
            user: usize,
            device: usize,
            delivered: u64,
            read: u64,
        },
        Reload,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Message),
            2 => (0..USERS).prop_map(Op::Join),
            1 => (0..USERS).prop_map(Op::Leave),
            6 => (0..USERS, 0..DEVICES, 0u64..8, 0u64..8).prop_map(|(user, device, delivered, read)| Op::Mark { user, device, delivered, read }),
            1 => Just(Op::Reload),
        ]
    }

    /// What a caller would have stored from the changes' results.
    #[derive(Debug, Default)]
    struct Storage {
        members: BTreeMap<UserId, MemberCursor>,
        devices: BTreeMap<(UserId, DeviceId), u64>,
    }

    /// A cursor value for a mark: 0 (unchanged) or somewhere in `1..=last_seq + 1`.
    fn scale(eighths: u64, last_seq: u64) -> u64 {
        if eighths == 0 { 0 } else { 1 + (eighths - 1) * (last_seq + 1) / 6 }
    }

    /// Pages the whole list with pages of `limit`.
    fn list_all(book: &ReceiptBook, s: u64, which: ListKind, limit: usize) -> Vec<UserId> {
        let mut all = Vec::new();
        loop {
            let page = book.list(s, which, all.last(), limit);
            assert!(page.users.len() <= limit);
            all.extend(page.users);
            if !page.more {
                return all;
            }
        }
    }

    fn check(book: &ReceiptBook, model: &Model, limit: usize) -> Result<(), TestCaseError> {
        for s in 0..=model.last_seq + 1 {
            let expected = model.counts(s);
            prop_assert_eq!(book.counts(s), expected, "counts({}), window base {}", s, book.tallies.joined.base());
            prop_assert_eq!(book.counts_by_scan(s), expected, "scan({})", s);
            let applied = model.applied(s);
            prop_assert_eq!(book.applied_devices(s), applied, "applied_devices({})", s);
            prop_assert_eq!(book.applied_by_scan(s), applied.applied, "applied scan({})", s);
            for which in [ListKind::Read, ListKind::Unread] {
                prop_assert_eq!(list_all(book, s, which, limit), model.list(s, which), "list({}, {:?})", s, which);
            }
        }
        for u in 0..USERS {
            let cursor = book.member(&user_n(u)).copied();
            let expected = model.period(u).map(|(joined_seq, left_seq, _)| MemberCursor {
                joined_seq,
                left_seq,
                read: model.read(u),
                delivered: model.delivered(u),
            });
            prop_assert_eq!(cursor, expected, "member u{}", u);
            for d in 0..DEVICES {
                prop_assert_eq!(book.device(&user_n(u), &device_n(d)), model.device(u, d), "device u{} d{}", u, d);
            }
        }
        Ok(())
    }

    proptest! {
        /// Against the brute-force model: counts (by counters and by scan, inside and below the
        /// window), device counts, both lists paged to completion, cursors, errors, and a reload
        /// from what the changes returned, after every step; tiny horizons force frequent rebases.
        #[test]
        fn agrees_with_a_brute_force_model(horizon in 1usize..5, limit in 1usize..4, ops in proptest::collection::vec(op(), 1..80)) {
            let mut book = ReceiptBook::new(horizon);
            let mut model = Model::default();
            let mut storage = Storage::default();
            for op in ops {
                match op {
                    Op::Message => model.last_seq += 1,
                    Op::Join(u) => {
                        let seq = model.last_seq + 1;
                        let result = book.join(&user_n(u), seq);
                        if model.is_current(u) {
                            prop_assert_eq!(result, Err(MembershipError::AlreadyMember));
                        } else {
                            model.last_seq = seq;
                            model.history.push(Event::Join { user: u, seq });
                            storage.members.insert(user_n(u), result.unwrap());
                        }
                    }
                    Op::Leave(u) => {
                        let seq = model.last_seq + 1;
                        let result = book.leave(&user_n(u), seq);
                        if model.is_current(u) {
                            let left = result.unwrap();
                            let expected: Vec<DeviceId> = (0..DEVICES).filter(|&d| model.device(u, d).is_some()).map(device_n).collect();
                            prop_assert_eq!(&left.dropped_devices, &expected);
                            model.last_seq = seq;
                            model.history.push(Event::Leave { user: u, seq });
                            storage.members.insert(user_n(u), left.member);
                            for d in left.dropped_devices {
                                storage.devices.remove(&(user_n(u), d));
                            }
                        } else {
                            prop_assert_eq!(result, Err(MembershipError::NotMember));
                        }
                    }
                    Op::Mark { user: u, device: d, delivered, read } => {
                        let (delivered, read) = (scale(delivered, model.last_seq), scale(read, model.last_seq));
                        let expected = model.mark(u, d, delivered, read);
                        let result = book.mark(&user_n(u), &device_n(d), delivered, read, model.last_seq);
                        match (expected, result) {
                            (Ok(()), Ok(marked)) => {
                                let old_read = model.read(u);
                                model.history.push(Event::Mark { user: u, device: d, delivered, read });
                                prop_assert_eq!(marked.read, model.read(u));
                                prop_assert_eq!(marked.user_delivered, model.delivered(u));
                                prop_assert_eq!(Some(marked.delivered), model.device(u, d).or(Some(model.floor(u))));
                                prop_assert_eq!(marked.read_moved, (model.read(u) > old_read).then_some((old_read, model.read(u))));
                                storage.members.insert(user_n(u), marked.member);
                                if marked.device_added || marked.device_moved.is_some() {
                                    storage.devices.insert((user_n(u), device_n(d)), marked.delivered);
                                }
                            }
                            (expected, result) => prop_assert_eq!(expected, result.map(|_| ())),
                        }
                    }
                    Op::Reload => {
                        let members = storage.members.iter().map(|(u, c)| (u.clone(), *c));
                        let devices = storage.devices.iter().map(|((u, d), c)| (u.clone(), d.clone(), *c));
                        book = ReceiptBook::load(horizon, members, devices);
                    }
                }
                check(&book, &model, limit)?;
            }
        }
    }
}
