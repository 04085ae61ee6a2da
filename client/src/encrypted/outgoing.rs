//! The send side: encrypting a message before SEND, and signing the membership changes that
//! group requests carry in end-to-end conversations.

use bytes::Bytes;
use herald_protocol::e2e::{MemberDevice, MembershipAction};
use herald_protocol::{ErrorCode, UserId, pb};

use super::membership::{learn_keys, sync_chain};
use super::{Encryption, end_to_end, rng};
use crate::e2e::SealedEnvelope;
use crate::{Client, ClientError, Conversation, Role};

/// Most devices one membership change may list (PROTOCOL.md §18.9).
const DEVICES_PER_CHANGE: usize = 32;
/// Most signed changes per MEMBERSHIP_APPEND, and most bytes of them (well under any frame
/// limit a broker announces).
const CHANGES_PER_APPEND: usize = 1000;
const BYTES_PER_APPEND: usize = 512 * 1024;
/// How often a membership change is signed again after another member's change got in first.
const CONFLICT_RETRIES: usize = 3;

impl Client {
    /// Publishes this device's key bundle unless the directory already holds it. A directory
    /// holding another bundle under this device's id at the same or a higher version (the
    /// device's store was lost and its identity made anew) gets the new keys under the next
    /// version; members see them as changed keys.
    pub(crate) async fn publish_device_keys(&self, enc: &Encryption) -> Result<(), ClientError> {
        let me = self.session();
        let listed = self.query_keys(&[me.user.as_str()]).await?;
        let bundle = enc.engine().key_bundle().map_err(end_to_end)?;
        let published = listed.iter().find(|d| d.device_id == me.device);
        if published.is_some_and(|d| d.bundle == bundle) {
            return Ok(());
        }
        if let Some(previous) = published.map(|d| d.version)
            && previous >= enc.engine().key_version()
        {
            enc.engine().set_key_version(previous.saturating_add(1));
            enc.save()?;
        }
        let bundle = enc.engine().key_bundle().map_err(end_to_end)?;
        self.publish_keys(bundle).await?;
        Ok(())
    }

    /// The payload to SEND for `plaintext` in `conversation`: the plaintext itself without
    /// end-to-end encryption configured; otherwise the group message, after the sender key
    /// envelopes that members lack have been stored (so a member never sees a message before
    /// it can fetch the key for it).
    pub(crate) async fn seal_payload(
        &self,
        conversation: u64,
        client_msg_id: &str,
        plaintext: Bytes,
    ) -> Result<Bytes, ClientError> {
        let Some(enc) = self.encryption() else { return Ok(plaintext) };
        self.ensure_end_to_end(enc, conversation).await?;
        let outgoing = enc.engine().encrypt(conversation, &plaintext, &mut rng()).map_err(end_to_end)?;
        // A counter must never be used twice, even across a crash: save before anything leaves.
        enc.save()?;
        enc.remember_sent(conversation, client_msg_id, plaintext);
        if !outgoing.distributions.is_empty() {
            let envelopes = outgoing.distributions.into_iter().map(envelope_to).collect();
            if let Err(e) = self.send_envelopes(conversation, envelopes).await {
                enc.engine().redistribute(conversation);
                enc.save()?;
                return Err(e);
            }
        }
        Ok(Bytes::from(outgoing.payload))
    }

    /// Makes sure the engine holds `conversation`'s signed membership, starting one if the
    /// conversation has none yet (see [`Client::enable_end_to_end`]).
    async fn ensure_end_to_end(&self, enc: &Encryption, conversation: u64) -> Result<(), ClientError> {
        if enc.engine().membership(conversation).is_some() {
            return Ok(());
        }
        if sync_chain(&self.requests(), enc, conversation).await? == 0 {
            self.enable_end_to_end(conversation).await?;
        }
        Ok(())
    }

    /// Starts the signed membership of a conversation that has none: this device signs the
    /// genesis (its user as the chain's owner, with its devices) and one ADD per other member
    /// with the devices the key directory lists for them, and the broker appends them to the
    /// conversation. From then on every message is end-to-end encrypted and every membership
    /// change signed. Returns the members left out because they have published no keys: they
    /// stay members but cannot read new messages until an admin adds them again once they have.
    ///
    /// In a group only the owner may do this, so the signed roles match the broker's; either
    /// member of a direct conversation may. [`Client::create_group`] does it for new groups and
    /// [`Client::send`] for direct conversations, on first use.
    ///
    /// # Errors
    /// [`ClientError::NotEndToEnd`] without end-to-end encryption configured, or for a group this
    /// user does not own; NOT_FOUND for a conversation the caller is not in; CONFLICT if another
    /// device started it first (its chain is then the conversation's).
    ///
    /// # Cancel safety
    /// Dropping the future may leave the chain started or not; calling again either starts it or
    /// finds it started and returns at once.
    pub async fn enable_end_to_end(&self, conversation: u64) -> Result<Vec<String>, ClientError> {
        let Some(enc) = self.encryption() else { return Err(not_end_to_end(conversation, "no key store configured")) };
        let requests = self.requests();
        if sync_chain(&requests, enc, conversation).await? > 0 {
            return Ok(Vec::new());
        }
        let info = self.conversation(conversation).await?;
        if info.kind == i32::from(pb::ConversationKind::Group) && info.role != i32::from(pb::Role::Owner) {
            return Err(not_end_to_end(conversation, "only the group's owner can start its signed membership"));
        }
        let me = self.session().user;
        let mut users = vec![me.clone()];
        users.extend(self.all_members(conversation).await?.into_iter().filter(|u| *u != me));
        let keys = learn_keys(&requests, enc, &users).await?;
        let mut unkeyed = Vec::new();
        let mut changes = Vec::new();
        for user in &users {
            let devices = keys.of(user);
            let action = if *user == me { MembershipAction::Create } else { MembershipAction::Add };
            let devices = if *user == me { own_devices(enc, devices) } else { devices };
            if devices.is_empty() {
                unkeyed.push(user.clone());
                continue;
            }
            changes.extend(signable(action, user, devices)?);
        }
        let signed = enc.engine().sign_membership_batch(conversation, changes).map_err(end_to_end)?;
        for batch in append_batches(signed) {
            self.append_membership(conversation, batch).await?;
        }
        sync_chain(&requests, enc, conversation).await?;
        Ok(unkeyed)
    }

    /// Links another device of this user into every end-to-end conversation this device is in:
    /// signs an ADD of `device` (with the keys the directory publishes for it) in each and
    /// appends it. Call it only once the user has confirmed that the device is theirs (see
    /// [`E2eWarning::NewOwnDevice`](crate::E2eWarning::NewOwnDevice)): whoever controls those
    /// keys reads every message sent from then on. Returns how many conversations it was added
    /// to.
    ///
    /// # Errors
    /// [`ClientError::NotEndToEnd`] without a key store, or when the directory lists no such
    /// device of this user; a request's error (conversations before it keep the device).
    ///
    /// # Cancel safety
    /// Dropping the future may leave the device linked in some conversations; calling again
    /// links it in the rest.
    pub async fn link_device(&self, device: &str) -> Result<usize, ClientError> {
        let Some(enc) = self.encryption() else { return Err(not_end_to_end(0, "no key store configured")) };
        let me = self.session().user;
        let keys = learn_keys(&self.requests(), enc, std::slice::from_ref(&me)).await?;
        let Some(linked) = keys.of(&me).into_iter().find(|d| d.device.as_str() == device) else {
            return Err(not_end_to_end(0, &format!("the key directory lists no device {device} of {me}")));
        };
        let conversations = enc.engine().conversations_lacking(&linked.device);
        for &conversation in &conversations {
            self.with_signed_changes(
                enc,
                conversation,
                |_| signable(MembershipAction::Add, &me, vec![linked.clone()]),
                |signed| self.append_membership(conversation, signed),
            )
            .await?;
        }
        Ok(conversations.len())
    }

    /// Adds and removes members of an end-to-end group with the signed changes the broker
    /// requires (one ADD per new member, listing its published devices; one REMOVE per removed
    /// member), signing again if another admin's change got in first.
    pub(crate) async fn update_members_e2e(
        &self,
        enc: &Encryption,
        conversation: u64,
        add: &[&str],
        remove: &[&str],
    ) -> Result<u64, ClientError> {
        let requests = self.requests();
        let adding: Vec<String> = add.iter().map(|u| (*u).to_owned()).collect();
        let keys = learn_keys(&requests, enc, &adding).await?;
        self.with_signed_changes(
            enc,
            conversation,
            |member| {
                let mut changes = Vec::new();
                for user in add.iter().filter(|u| !member(u)) {
                    let devices = keys.of(user);
                    if devices.is_empty() {
                        return Err(not_end_to_end(conversation, &format!("{user} has published no keys")));
                    }
                    changes.extend(signable(MembershipAction::Add, user, devices)?);
                }
                for user in remove.iter().filter(|u| member(u)) {
                    changes.extend(signable(MembershipAction::Remove, user, Vec::new())?);
                }
                Ok(changes)
            },
            |signed| self.update_members_signed(conversation, add, remove, signed),
        )
        .await
    }

    /// Leaves an end-to-end group with the signed removal of this user.
    pub(crate) async fn leave_e2e(&self, enc: &Encryption, conversation: u64) -> Result<u64, ClientError> {
        let me = self.session().user;
        self.with_signed_changes(
            enc,
            conversation,
            |_| signable(MembershipAction::Remove, &me, Vec::new()),
            |signed| self.leave_signed(conversation, signed),
        )
        .await
    }

    /// Changes a member's role in an end-to-end group with the signed PROMOTE or DEMOTE.
    /// Ownership transfers are not part of signed membership in this version.
    pub(crate) async fn set_role_e2e(
        &self,
        enc: &Encryption,
        conversation: u64,
        user: &str,
        role: Role,
    ) -> Result<u64, ClientError> {
        let action = match role {
            Role::Admin => MembershipAction::Promote,
            Role::Member => MembershipAction::Demote,
            Role::Owner => {
                return Err(not_end_to_end(conversation, "ownership transfer is not part of signed membership"));
            }
        };
        self.with_signed_changes(
            enc,
            conversation,
            |_| signable(action, user, Vec::new()),
            |signed| self.set_role_signed(conversation, user, role, signed),
        )
        .await
    }

    /// Signs the changes `plan` lists (given whether a user is a member of the verified chain)
    /// on top of the conversation's current chain and sends them with `request`. If another
    /// member's change got in first (CONFLICT), the chain is fetched again and the changes are
    /// signed anew.
    async fn with_signed_changes<F, Fut>(
        &self,
        enc: &Encryption,
        conversation: u64,
        plan: impl Fn(&dyn Fn(&str) -> bool) -> Result<Vec<Change>, ClientError>,
        request: F,
    ) -> Result<u64, ClientError>
    where
        F: Fn(Vec<Vec<u8>>) -> Fut,
        Fut: Future<Output = Result<u64, ClientError>>,
    {
        let requests = self.requests();
        let mut attempt = 0;
        loop {
            if sync_chain(&requests, enc, conversation).await? == 0 {
                return Err(not_end_to_end(conversation, "the conversation has no signed membership"));
            }
            let signed = {
                let engine = enc.engine();
                let state = engine.membership(conversation);
                let member =
                    |user: &str| UserId::new(user).ok().is_some_and(|u| state.is_some_and(|s| s.member(&u).is_some()));
                let changes = plan(&member)?;
                engine.sign_membership_batch(conversation, changes).map_err(end_to_end)?
            };
            match request(signed).await {
                Err(e) if e.code() == Some(ErrorCode::CONFLICT) && attempt < CONFLICT_RETRIES => attempt += 1,
                Ok(seq) => {
                    // Apply the change here at once: the next send must already seal to an
                    // added device (and not to a removed one), before the event comes back.
                    sync_chain(&requests, enc, conversation).await?;
                    return Ok(seq);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The conversation as the broker describes it to this user.
    async fn conversation(&self, conversation: u64) -> Result<Conversation, ClientError> {
        let state = self.sync(&[(conversation, 0)]).await?;
        state.changed.into_iter().find(|c| c.conversation_id == conversation).ok_or_else(|| ClientError::Request {
            code: ErrorCode::NOT_FOUND,
            message: "no such conversation".into(),
            retry_after: None,
        })
    }

    /// Every member's user id, paging through LIST_MEMBERS.
    async fn all_members(&self, conversation: u64) -> Result<Vec<String>, ClientError> {
        let mut users = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.list_members(conversation, &after, 1000).await?;
            users.extend(page.members.into_iter().map(|m| m.user_id));
            match (page.more, users.last()) {
                (true, Some(last)) => after = last.clone(),
                _ => return Ok(users),
            }
        }
    }
}

/// One change to sign: its action, subject and devices.
type Change = (MembershipAction, UserId, Vec<MemberDevice>);

/// The changes that list `devices` for `user`, at most [`DEVICES_PER_CHANGE`] each (a REMOVE or
/// role change lists none: one change).
fn signable(action: MembershipAction, user: &str, devices: Vec<MemberDevice>) -> Result<Vec<Change>, ClientError> {
    let subject = UserId::new(user).map_err(|e| ClientError::InvalidArgument(format!("user id {user:?}: {e}")))?;
    if devices.is_empty() {
        return Ok(vec![(action, subject, devices)]);
    }
    let mut changes = Vec::new();
    for (i, chunk) in devices.chunks(DEVICES_PER_CHANGE).enumerate() {
        // A user's first change creates or adds them; later ones add more of their devices.
        let action = if i == 0 { action } else { MembershipAction::Add };
        changes.push((action, subject.clone(), chunk.to_vec()));
    }
    Ok(changes)
}

/// This user's devices for the genesis: this device always (its keys may not be in the
/// directory's answer yet), then the others the directory lists.
fn own_devices(enc: &Encryption, listed: Vec<MemberDevice>) -> Vec<MemberDevice> {
    let this = enc.engine().member_device();
    let mut devices = vec![this.clone()];
    devices.extend(listed.into_iter().filter(|d| d.device != this.device));
    devices
}

/// Splits signed changes into MEMBERSHIP_APPEND batches under the count and size limits.
fn append_batches(signed: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut batches: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut bytes = 0;
    for change in signed {
        let full =
            batches.last().is_none_or(|b| b.len() >= CHANGES_PER_APPEND || bytes + change.len() > BYTES_PER_APPEND);
        if full {
            batches.push(Vec::new());
            bytes = 0;
        }
        bytes += change.len();
        if let Some(batch) = batches.last_mut() {
            batch.push(change);
        }
    }
    batches
}

fn envelope_to(sealed: SealedEnvelope) -> pb::EnvelopeTo {
    pb::EnvelopeTo { user_id: sealed.user.to_string(), device_id: sealed.device.to_string(), envelope: sealed.bytes }
}

fn not_end_to_end(conversation_id: u64, reason: &str) -> ClientError {
    ClientError::NotEndToEnd { conversation_id, reason: reason.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_split_by_count_and_by_bytes() {
        let many = vec![vec![0u8; 10]; 2500];
        let sizes: Vec<usize> = append_batches(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [1000, 1000, 500]);
        let big = vec![vec![0u8; 200 * 1024]; 5];
        let sizes: Vec<usize> = append_batches(big).iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(append_batches(Vec::new()).is_empty());
    }
}
