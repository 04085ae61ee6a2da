//! The engine's saved chains against the protocol crate's: same bytes, both directions, and a
//! saved chain goes on where it stopped.

use herald_protocol::e2e::{ChainId, E2eError, IdentityKeyPair, ReceiverChain, SenderChain, SenderKeyDistribution};

use super::super::ratchet::{RecvChain, SendChain};
use super::super::wire::Reader;
use super::*;

fn chain_id() -> ChainId {
    ChainId {
        org: org(),
        conversation: CONV,
        sender: user("alice"),
        sender_device: DeviceId::new("laptop").unwrap(),
        epoch: 3,
    }
}

#[test]
fn send_chain_writes_the_protocol_crates_bytes() {
    let keys = IdentityKeyPair::generate(&mut rng(40));
    let signing = &keys;
    let mut ours = SendChain::from_key(chain_id(), [9; 32]);
    let mut theirs = SenderChain::new(chain_id(), [9; 32]);
    for text in [&b"first"[..], b"", b"third message"] {
        assert_eq!(*ours.signed_distribution(signing).unwrap(), *theirs.distribution(&keys).sign(&keys).unwrap());
        assert_eq!(ours.encrypt(signing, text).unwrap(), theirs.encrypt(&keys, text).unwrap());
    }
}

#[test]
fn recv_chain_reads_the_protocol_crates_messages_and_the_reverse() {
    let keys = IdentityKeyPair::generate(&mut rng(41));
    let mut theirs = SenderChain::generate(chain_id(), &mut rng(42));
    let signed = theirs.distribution(&keys).sign(&keys).unwrap();
    let mut ours = RecvChain::from_distribution(&signed, keys.public()).unwrap();
    let messages: Vec<Vec<u8>> = (0..4u8).map(|i| theirs.encrypt(&keys, &[i; 5]).unwrap()).collect();
    // Out of order: 2 first (keeping 0 and 1 as skipped keys), then 0, then a replay of 2.
    assert_eq!(*ours.decrypt(&messages[2]).unwrap(), [2; 5]);
    assert_eq!(*ours.decrypt(&messages[0]).unwrap(), [0; 5]);
    assert_eq!(ours.decrypt(&messages[2]).unwrap_err(), E2eError::ReplayedCounter { counter: 2 });

    // Saved and read back, the skipped key for 1 survives and 0 stays used.
    let mut saved = Vec::new();
    ours.write(&mut saved);
    let mut reader = Reader::new("test", &saved);
    let mut restored = RecvChain::read(&mut reader).unwrap();
    reader.finish().unwrap();
    assert_eq!(*restored.decrypt(&messages[1]).unwrap(), [1; 5]);
    assert_eq!(restored.decrypt(&messages[0]).unwrap_err(), E2eError::ReplayedCounter { counter: 0 });
    assert_eq!(*restored.decrypt(&messages[3]).unwrap(), [3; 5]);

    // The reverse: the protocol crate's receiver reads our sender chain.
    let signing = &keys;
    let mut sender = SendChain::generate(chain_id(), &mut rng(43));
    sender.encrypt(signing, b"before the distribution").unwrap();
    let distribution =
        SenderKeyDistribution::verify(&sender.signed_distribution(signing).unwrap(), keys.public()).unwrap();
    assert_eq!(distribution.counter(), 1);
    let mut receiver = ReceiverChain::new(&distribution);
    assert_eq!(*receiver.decrypt(&sender.encrypt(signing, b"hi").unwrap()).unwrap(), *b"hi");
}

#[test]
fn a_saved_send_chain_continues_at_its_counter() {
    let keys = IdentityKeyPair::generate(&mut rng(44));
    let signing = &keys;
    let mut sender = SendChain::generate(chain_id(), &mut rng(45));
    let signed = sender.signed_distribution(signing).unwrap();
    let mut receiver = RecvChain::from_distribution(&signed, keys.public()).unwrap();
    receiver.decrypt(&sender.encrypt(signing, b"0").unwrap()).unwrap();
    let mut saved = Vec::new();
    sender.write(&mut saved);
    let mut restored = SendChain::read(&mut Reader::new("test", &saved)).unwrap();
    assert_eq!(restored.next_counter(), 1);
    assert_eq!(*receiver.decrypt(&restored.encrypt(signing, b"1").unwrap()).unwrap(), *b"1");
    // A distribution signed by another key than the sender's is refused.
    let other = IdentityKeyPair::generate(&mut rng(46));
    assert!(matches!(RecvChain::from_distribution(&signed, other.public()), Err(E2eError::BadSignature { .. })));
}
