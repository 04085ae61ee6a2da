//! Signed membership on the wire (docs/PROTOCOL.md §19.6): the checks a shard makes before it
//! stores a conversation's signed membership changes, MEMBERSHIP_APPEND and MEMBERSHIP_CHAIN.
//!
//! The broker orders the chain but clients do not trust it: they replay and verify it. The
//! broker verifies it too, the same way (signatures under the keys the chain records, roles,
//! epochs), so that one member cannot store a change the others will refuse: every later change
//! builds on its hash, and a refused change would stall the group's chain for good. It also
//! checks what only it knows: the caller's identity, and that a membership request carries the
//! changes that describe it.

use std::sync::Arc;

use herald_protocol::e2e::{E2eError, MembershipAction, MembershipState};
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

/// The chain as verified after a request's changes: `None` when the stored chain could not be
/// verified (then only continuity was checked).
pub(super) type Verified = Option<Arc<MembershipState>>;

fn invalid(message: impl Into<String>) -> Refusal {
    (ErrorCode::INVALID_ARGUMENT, message.into())
}

/// Applies one change to the verified state (its genesis when there is none yet).
fn verify(verified: &mut Option<MembershipState>, bytes: &[u8], seq: u64) -> Result<(), Refusal> {
    let result = match verified {
        Some(state) => state.apply(bytes),
        None => MembershipState::genesis(bytes).map(|genesis| *verified = Some(genesis)),
    };
    result.map_err(|e| {
        let code = match e {
            E2eError::BadSignature { .. } | E2eError::UnknownActor { .. } | E2eError::NotPermitted { .. } => {
                ErrorCode::FORBIDDEN
            }
            _ => ErrorCode::INVALID_ARGUMENT,
        };
        (code, format!("membership change {seq} does not verify: {e}"))
    })
}

impl ShardMachine {
    /// Checks that `signed` continues `conv`'s chain as the caller's device: each change names
    /// this conversation, is signed as `origin`'s user and device, and carries the next seq and
    /// the previous change's hash; the genesis (seq 0), and only it, is a CREATE, written by a
    /// group's owner.
    pub(super) fn check_chain(
        &self,
        conv: &ConvKey,
        origin: &Origin,
        signed: &[SignedChange],
    ) -> Result<Verified, Refusal> {
        let state = self.conversations.get(conv).ok_or_else(not_found)?;
        let mut head = state.chain;
        let verifiable = head.is_empty() || state.verified_chain.is_some();
        let mut verified = state.verified_chain.as_deref().cloned();
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
            if verifiable {
                verify(&mut verified, &s.bytes, c.seq)?;
            }
            let length = head.length.checked_add(1).ok_or_else(|| invalid("the membership chain is full"))?;
            head = ChainHead { length, hash: s.hash };
        }
        Ok(if verifiable { verified.map(Arc::new) } else { None })
    }

    /// Whether `conv` is loaded with a chain that has not been replayed and verified yet.
    pub fn needs_verified_chain(&self, conv: &ConvKey) -> bool {
        self.conversations.get(conv).is_some_and(|s| !s.chain.is_empty() && s.verified_chain.is_none())
    }

    /// Keeps the replayed and verified chain of a loaded conversation.
    pub fn set_verified_chain(&mut self, conv: &ConvKey, chain: MembershipState) {
        if let Some(state) = self.conversations.get_mut(conv) {
            state.verified_chain = Some(Arc::new(chain));
        }
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
    ) -> Result<Verified, Refusal> {
        let state = self.conversations.get(conv).ok_or_else(not_found)?;
        if state.chain.is_empty() && signed.is_empty() {
            return Ok(None);
        }
        let verified = self.check_chain(conv, origin, signed)?;
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
        Ok(verified)
    }

    /// Stores checked changes and moves the chain's head; returns their bytes for the event
    /// that carries them.
    pub(super) fn extend_chain(
        &mut self,
        conv: &ConvKey,
        signed: Vec<SignedChange>,
        verified: Verified,
    ) -> Result<Vec<Vec<u8>>, Refusal> {
        let Some(last) = signed.last() else { return Ok(Vec::new()) };
        let head = ChainHead { length: last.change.seq.saturating_add(1), hash: last.hash };
        let state = self.state_mut(conv)?;
        state.chain = head;
        state.verified_chain = verified;
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
        let verified = self.check_chain(conv, origin, &signed)?;
        let carried = self.extend_chain(conv, signed, verified)?;
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
