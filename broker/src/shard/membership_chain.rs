//! Signed membership on the wire (docs/PROTOCOL.md §19.6): the checks a shard makes before it
//! stores a conversation's signed membership changes, MEMBERSHIP_APPEND and MEMBERSHIP_CHAIN.
//!
//! The broker orders the chain but does not trust it: it checks only what it can without keys
//! (framing, the caller's identity, continuity, and that a membership request carries the
//! changes that describe it). Clients verify signatures and roles when they replay the chain.

use herald_protocol::e2e::MembershipAction;
use herald_protocol::{ErrorCode, RequestId, UserId, pb};

use super::command::Origin;
use super::machine::{Author, Refusal, ShardMachine, not_found};
use crate::conversation::{ChainHead, ConvKey, Kind, Role, SignedChange};
use crate::fanout::ReplyTo;
use crate::store::WriteOp;

/// A chain read to serve after commit, so it sees the batch's own changes.
#[derive(Debug, Clone)]
pub struct ChainRead {
    /// Where the page goes.
    pub reply: ReplyTo,
    /// The request being answered.
    pub request_id: RequestId,
    /// Whose chain.
    pub conv: ConvKey,
    /// First chain seq to read.
    pub from_seq: u64,
    /// Most changes.
    pub limit: usize,
    /// The chain's length after this batch.
    pub chain_length: u64,
    /// Largest page body.
    pub max_bytes: usize,
}

/// A change a membership request must carry: what it does and to whom.
pub(super) type Expected = (MembershipAction, UserId);

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorCode::INVALID_ARGUMENT, message.into())
}

impl ShardMachine {
    /// Checks that `signed` continues `conv`'s chain as the caller's device: each change names
    /// this conversation, is signed as `origin`'s user and device, and carries the next seq and
    /// the previous change's hash; the genesis (seq 0), and only it, is a CREATE, written by a
    /// group's owner.
    pub(super) fn check_chain(&self, conv: &ConvKey, origin: &Origin, signed: &[SignedChange]) -> Result<(), Refusal> {
        let state = self.conversations.get(conv).ok_or_else(not_found)?;
        let mut head = state.chain;
        for s in signed {
            let c = &s.change;
            if c.org != conv.org || c.conversation != conv.id.get() {
                return Err(invalid(format!("membership change {} names another conversation", c.seq)));
            }
            if c.actor != origin.user || c.actor_device != origin.device {
                let message = format!("membership change {} is not signed as the caller's device", c.seq);
                return Err((ErrorCode::FORBIDDEN, message));
            }
            if c.seq != head.length || c.prev_hash != head.hash {
                let message = format!(
                    "the membership chain has {} changes; change {} does not continue it (fetch the chain and sign again)",
                    state.chain.length, c.seq
                );
                return Err((ErrorCode::CONFLICT, message));
            }
            let genesis = head.is_empty();
            if genesis != (c.action == MembershipAction::Create) {
                return Err(invalid("the genesis (chain seq 0), and only it, is a CREATE"));
            }
            if genesis && state.kind == Kind::Group && state.role(&origin.user) != Some(Role::Owner) {
                return Err((ErrorCode::FORBIDDEN, "only the group's owner writes the genesis".into()));
            }
            let length = head.length.checked_add(1).ok_or_else(|| invalid("the membership chain is full"))?;
            head = ChainHead { length, hash: s.hash };
        }
        Ok(())
    }

    /// Checks the signed changes a membership request carries: none needed while the chain is
    /// empty and none given; otherwise they continue the chain ([`Self::check_chain`]) and are
    /// exactly `expected`, in any order, after a genesis that starts the chain.
    pub(super) fn check_signed_request(
        &self,
        conv: &ConvKey,
        origin: &Origin,
        signed: &[SignedChange],
        expected: Vec<Expected>,
    ) -> Result<(), Refusal> {
        let state = self.conversations.get(conv).ok_or_else(not_found)?;
        if state.chain.is_empty() && signed.is_empty() {
            return Ok(());
        }
        self.check_chain(conv, origin, signed)?;
        let described = signed.iter().filter(|s| s.change.action != MembershipAction::Create);
        let mut missing = expected;
        for s in described {
            let found =
                missing.iter().position(|(action, user)| *action == s.change.action && *user == s.change.subject);
            let Some(found) = found else {
                let c = &s.change;
                let message = format!(
                    "membership change {} ({:?} {}) does not describe this request",
                    c.seq, c.action, c.subject
                );
                return Err(invalid(message));
            };
            missing.swap_remove(found);
        }
        if let Some((action, user)) = missing.first() {
            return Err(invalid(format!("the request needs a signed {action:?} of {user}")));
        }
        Ok(())
    }

    /// Stores checked changes and moves the chain's head; returns their bytes for the event
    /// that carries them.
    pub(super) fn extend_chain(&mut self, conv: &ConvKey, signed: Vec<SignedChange>) -> Result<Vec<Vec<u8>>, Refusal> {
        let Some(last) = signed.last() else { return Ok(Vec::new()) };
        let head = ChainHead { length: last.change.seq.saturating_add(1), hash: last.hash };
        self.state_mut(conv)?.chain = head;
        self.dirty.insert(conv.clone());
        let mut carried = Vec::with_capacity(signed.len());
        for s in signed {
            carried.push(s.bytes.to_vec());
            self.effects.writes.push(WriteOp::PutMembershipChange {
                conv: conv.clone(),
                seq: s.change.seq,
                signed: s.bytes,
            });
        }
        Ok(carried)
    }

    /// MEMBERSHIP_APPEND: any member extends the chain with one `membership_signed` event.
    pub(super) fn membership_append(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        signed: Vec<SignedChange>,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        let recipients = self.member_state(conv, &origin.user)?.0.recipients();
        self.writable(conv)?;
        self.check_chain(conv, origin, &signed)?;
        let carried = self.extend_chain(conv, signed)?;
        let kind = pb::event::Kind::MembershipSigned(pb::MembershipSigned {});
        let seq = self.signed_event(conv, Author::of(origin), kind, carried, recipients, now_ms)?;
        self.sequenced(conv, origin, seq, now_ms);
        Ok(())
    }

    /// MEMBERSHIP_CHAIN: a member reads the stored chain, after the batch commits.
    pub(super) fn membership_chain(
        &mut self,
        conv: &ConvKey,
        origin: &Origin,
        from_seq: u64,
        limit: usize,
    ) -> Result<(), Refusal> {
        let (state, _) = self.member_state(conv, &origin.user)?;
        let read = ChainRead {
            reply: origin.reply.clone(),
            request_id: origin.request_id,
            conv: conv.clone(),
            from_seq,
            limit,
            chain_length: state.chain.length,
            max_bytes: self.limits.max_page_bytes,
        };
        self.effects.chain_reads.push(read);
        Ok(())
    }
}
