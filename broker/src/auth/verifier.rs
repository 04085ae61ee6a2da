//! Verifying tokens: signature, algorithm, claims and expiry, with time passed in.
//!
//! Two algorithms may be trusted at once: EdDSA (Ed25519 public keys) and HS256 (one shared
//! secret). The token's `alg` header picks which keys are tried, and each key is only ever used
//! with its own algorithm, so algorithm confusion is impossible: an HS256 token is never checked
//! with a public key taken as an HMAC secret, and an EdDSA token never meets the secret.

use std::time::Duration;

use herald_protocol::{DeviceId, ErrorCode, IdError, OrgId, UserId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{Claims, HmacSecret, Identity, Roles};

/// Why a token was refused. [`AuthError::code`] gives the wire error code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Not a JWT: wrong number of parts, bad base64 or bad JSON.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// The signature matches none of the trusted keys.
    #[error("token signature is not from a trusted key")]
    BadSignature,
    /// Signed with an algorithm this broker does not trust: anything but EdDSA and, when an
    /// HMAC secret is configured, HS256.
    #[error("token algorithm is not one this broker accepts")]
    WrongAlgorithm,
    /// A required claim (`sub`, `org`, `exp`) is absent.
    #[error("token lacks the {0} claim")]
    MissingClaim(String),
    /// A claim holds an invalid id.
    #[error("token claim is not a valid id: {0}")]
    BadId(#[from] IdError),
    /// `exp` has passed (beyond the leeway).
    #[error("token expired at {expired_at_s} (Unix seconds)")]
    Expired {
        /// The token's `exp`.
        expired_at_s: u64,
    },
    /// `nbf` is still in the future (beyond the leeway).
    #[error("token is not valid before {not_before_s} (Unix seconds)")]
    NotYetValid {
        /// The token's `nbf`.
        not_before_s: u64,
    },
    /// `iss` differs from the configured issuer.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// `aud` differs from the configured audience.
    #[error("token audience is not this broker")]
    WrongAudience,
    /// The token is bound to another device than the one in HELLO.
    #[error("token is bound to another device")]
    DeviceMismatch,
    /// The organisation is not served by this broker.
    #[error("organisation {0} is not served here")]
    UnknownOrg(OrgId),
    /// The token, its device or its user is on the revocation list.
    #[error("token is revoked")]
    Revoked,
}

impl AuthError {
    /// The error code a client sees for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Expired { .. } => ErrorCode::TOKEN_EXPIRED,
            AuthError::UnknownOrg(_) => ErrorCode::UNKNOWN_ORG,
            AuthError::Revoked => ErrorCode::TOKEN_REVOKED,
            _ => ErrorCode::TOKEN_INVALID,
        }
    }
}

/// The `org` and `sub` a token claims, read without checking anything: only for recording who a
/// refused login pretended to be. Never trust them for anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedClaims {
    /// The claimed organisation, if it is a valid id.
    pub org: Option<OrgId>,
    /// The claimed user, if it is a valid id.
    pub user: Option<UserId>,
}

impl UnverifiedClaims {
    /// Reads `org` and `sub` from `token`'s payload without verifying it.
    pub fn peek(token: &str) -> Self {
        #[derive(serde::Deserialize)]
        struct Peek {
            org: Option<String>,
            sub: Option<String>,
        }
        match jsonwebtoken::dangerous::insecure_decode_claims::<Peek>(token) {
            Ok(peek) => Self {
                org: peek.org.and_then(|org| OrgId::new(org).ok()),
                user: peek.sub.and_then(|sub| UserId::new(sub).ok()),
            },
            Err(_) => Self { org: None, user: None },
        }
    }
}

/// The claim checks besides the signature.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Checks tokens against trusted Ed25519 public keys and, optionally, an HS256 secret.
///
/// Pure: it reads no clock (the caller passes `now`), so expiry is testable without waiting.
#[derive(Clone)]
pub struct TokenVerifier {
    /// Ed25519 public keys; only EdDSA tokens are checked against them.
    ed25519: Vec<DecodingKey>,
    /// The shared secret; only HS256 tokens are checked against it.
    hmac: Option<DecodingKey>,
    settings: VerifierSettings,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("ed25519_keys", &self.ed25519.len())
            .field("hmac", &self.hmac.is_some())
            .field("settings", &self.settings)
            .finish()
    }
}

impl TokenVerifier {
    /// A verifier trusting the given Ed25519 public keys (SubjectPublicKeyInfo PEM).
    ///
    /// # Errors
    /// The parser's message if a key is not an Ed25519 public key, or if there is none.
    pub fn new(public_pems: &[String], settings: VerifierSettings) -> Result<Self, String> {
        Self::with_keys(public_pems, None, settings)
    }

    /// A verifier trusting EdDSA tokens signed by any of `public_pems` and, when `hmac` is
    /// given, HS256 tokens signed with that secret.
    ///
    /// # Errors
    /// The parser's message if a key is not an Ed25519 public key, or if no key at all is given.
    pub fn with_keys(
        public_pems: &[String],
        hmac: Option<&HmacSecret>,
        settings: VerifierSettings,
    ) -> Result<Self, String> {
        let ed25519 = public_pems
            .iter()
            .map(|pem| DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let hmac = hmac.map(|secret| DecodingKey::from_secret(secret.as_bytes()));
        if ed25519.is_empty() && hmac.is_none() {
            return Err("no trusted token key".to_owned());
        }
        Ok(Self { ed25519, hmac, settings })
    }

    /// Checks `token` for a session of `device` at `now_ms` (Unix milliseconds).
    ///
    /// # Errors
    /// [`AuthError`] saying which check failed. The organisation is not checked here.
    pub fn verify(&self, token: &str, device: &DeviceId, now_ms: u64) -> Result<Identity, AuthError> {
        let claims = self.decode(token)?;
        let now_s = now_ms / 1000;
        let leeway = self.settings.leeway.as_secs();
        if claims.exp.saturating_add(leeway) <= now_s {
            return Err(AuthError::Expired { expired_at_s: claims.exp });
        }
        if let Some(nbf) = claims.nbf.filter(|nbf| *nbf > now_s.saturating_add(leeway)) {
            return Err(AuthError::NotYetValid { not_before_s: nbf });
        }
        if self.settings.issuer.is_some() && claims.iss != self.settings.issuer {
            return Err(AuthError::WrongIssuer);
        }
        if self.settings.audience.is_some() && claims.aud != self.settings.audience {
            return Err(AuthError::WrongAudience);
        }
        if claims.device.as_deref().is_some_and(|bound| bound != device.as_str()) {
            return Err(AuthError::DeviceMismatch);
        }
        Ok(Identity {
            org: OrgId::new(claims.org)?,
            user: UserId::new(claims.sub)?,
            device: device.clone(),
            roles: Roles::new(claims.roles),
            expires_at_ms: claims.exp.saturating_mul(1000),
            token_id: claims.jti,
        })
    }

    /// The keys trusted for the token's declared algorithm, and a validation that admits that
    /// algorithm alone. The header is read unverified only to choose; the signature check then
    /// binds it (jsonwebtoken also refuses a key of another family than the algorithm).
    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| refusal(&e))?;
        let keys: &[DecodingKey] = match header.alg {
            Algorithm::EdDSA => &self.ed25519,
            Algorithm::HS256 => self.hmac.as_slice(),
            _ => &[],
        };
        if keys.is_empty() {
            return Err(AuthError::WrongAlgorithm);
        }
        let validation = validation(header.alg);
        let mut last = AuthError::BadSignature;
        for key in keys {
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => last = AuthError::BadSignature,
                Err(e) => return Err(refusal(&e)),
            }
        }
        Err(last)
    }
}

/// Signature and the required claims' presence for `algorithm` only; time and the optional
/// claims are checked in [`TokenVerifier::verify`], against the caller's clock.
fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims = ["exp", "sub"].into_iter().map(str::to_owned).collect();
    validation
}

fn refusal(e: &jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        ErrorKind::Json(e) if e.to_string().starts_with("missing field") => AuthError::MissingClaim(e.to_string()),
        _ => AuthError::Malformed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{MIN_HMAC_SECRET_BYTES, SigningKeyPair, TokenMinter};

    const NOW_MS: u64 = 1_800_000_000_000;
    const NOW_S: u64 = NOW_MS / 1000;

    fn settings() -> VerifierSettings {
        VerifierSettings { issuer: None, audience: None, leeway: Duration::from_secs(30) }
    }

    fn setup() -> (TokenMinter, TokenVerifier) {
        let pair = SigningKeyPair::generate().expect("keygen");
        let minter = TokenMinter::new(&pair).expect("minter");
        let verifier = TokenVerifier::new(&[pair.public_pem().to_owned()], settings()).expect("verifier");
        (minter, verifier)
    }

    fn device() -> DeviceId {
        DeviceId::new("phone-1").expect("valid")
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            org: "acme".into(),
            device: None,
            roles: vec!["admin".into()],
            exp,
            iat: NOW_S,
            nbf: None,
            iss: None,
            aud: None,
            jti: None,
        }
    }

    #[test]
    fn a_fresh_token_gives_its_identity() {
        let (minter, verifier) = setup();
        let token = minter.mint(&claims(NOW_S + 60)).expect("mint");
        let id = verifier.verify(&token, &device(), NOW_MS).expect("valid");
        assert_eq!((id.org.as_str(), id.user.as_str(), id.device.as_str()), ("acme", "alice", "phone-1"));
        assert!(id.roles.contains("admin"));
        assert_eq!(id.expires_at_ms, (NOW_S + 60) * 1000);
    }

    #[test]
    fn expiry_honours_the_leeway() {
        let (minter, verifier) = setup();
        let within = minter.mint(&claims(NOW_S - 29)).expect("mint");
        assert!(verifier.verify(&within, &device(), NOW_MS).is_ok());
        let past = minter.mint(&claims(NOW_S - 30)).expect("mint");
        assert_eq!(verifier.verify(&past, &device(), NOW_MS), Err(AuthError::Expired { expired_at_s: NOW_S - 30 }));
        assert_eq!(AuthError::Expired { expired_at_s: 0 }.code(), ErrorCode::TOKEN_EXPIRED);
    }

    #[test]
    fn another_keys_signature_is_refused() {
        let (_, verifier) = setup();
        let (stranger, _) = setup();
        let token = stranger.mint(&claims(NOW_S + 60)).expect("mint");
        assert_eq!(verifier.verify(&token, &device(), NOW_MS), Err(AuthError::BadSignature));
    }

    #[test]
    fn garbage_and_tampering_are_refused() {
        let (minter, verifier) = setup();
        assert!(matches!(verifier.verify("not-a-jwt", &device(), NOW_MS), Err(AuthError::Malformed(_))));
        let token = minter.mint(&claims(NOW_S + 60)).expect("mint");
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = minter.mint(&Claims { sub: "mallory".into(), ..claims(NOW_S + 60) }).expect("mint");
        let forged_payload = forged.split('.').nth(1).expect("payload");
        parts[1] = forged_payload;
        let spliced = format!("{}.{}.{}", parts[0], parts[1], token.split('.').nth(2).expect("sig"));
        assert_eq!(verifier.verify(&spliced, &device(), NOW_MS), Err(AuthError::BadSignature));
    }

    #[test]
    fn hmac_tokens_are_refused_as_wrong_algorithm() {
        let (_, verifier) = setup();
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims(NOW_S + 60),
            &jsonwebtoken::EncodingKey::from_secret(b"guessable"),
        )
        .expect("mint");
        assert_eq!(verifier.verify(&token, &device(), NOW_MS), Err(AuthError::WrongAlgorithm));
    }

    fn secret(byte: u8) -> HmacSecret {
        HmacSecret::new(vec![byte; 32]).expect("long enough")
    }

    fn hs(algorithm: Algorithm, key: &[u8], claims: &Claims) -> String {
        let header = jsonwebtoken::Header::new(algorithm);
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(key)).expect("mint")
    }

    #[test]
    fn hs256_tokens_signed_with_the_secret_are_accepted_and_others_refused() {
        let verifier = TokenVerifier::with_keys(&[], Some(&secret(1)), settings()).expect("verifier");
        let token = TokenMinter::hmac(&secret(1)).mint(&claims(NOW_S + 60)).expect("mint");
        let id = verifier.verify(&token, &device(), NOW_MS).expect("valid");
        assert_eq!((id.org.as_str(), id.user.as_str()), ("acme", "alice"));
        let stranger = TokenMinter::hmac(&secret(2)).mint(&claims(NOW_S + 60)).expect("mint");
        assert_eq!(verifier.verify(&stranger, &device(), NOW_MS), Err(AuthError::BadSignature));
        let (ed_minter, _) = setup();
        let ed = ed_minter.mint(&claims(NOW_S + 60)).expect("mint");
        assert_eq!(verifier.verify(&ed, &device(), NOW_MS), Err(AuthError::WrongAlgorithm), "no Ed25519 key trusted");
        for other in [Algorithm::HS384, Algorithm::HS512] {
            let token = hs(other, &[1; 32], &claims(NOW_S + 60));
            assert_eq!(verifier.verify(&token, &device(), NOW_MS), Err(AuthError::WrongAlgorithm), "{other:?}");
        }
        let expired = TokenMinter::hmac(&secret(1)).mint(&claims(NOW_S - 31)).expect("mint");
        assert!(matches!(verifier.verify(&expired, &device(), NOW_MS), Err(AuthError::Expired { .. })));
    }

    #[test]
    fn with_both_configured_either_signature_is_accepted() {
        let pair = SigningKeyPair::generate().expect("keygen");
        let verifier =
            TokenVerifier::with_keys(&[pair.public_pem().to_owned()], Some(&secret(1)), settings()).expect("verifier");
        let ed = TokenMinter::new(&pair).expect("minter").mint(&claims(NOW_S + 60)).expect("mint");
        let hmac = TokenMinter::hmac(&secret(1)).mint(&claims(NOW_S + 60)).expect("mint");
        assert!(verifier.verify(&ed, &device(), NOW_MS).is_ok());
        assert!(verifier.verify(&hmac, &device(), NOW_MS).is_ok());
    }

    #[test]
    fn algorithm_confusion_is_impossible() {
        let pair = SigningKeyPair::generate().expect("keygen");
        let public = pair.public_pem().to_owned();
        let ed_only = TokenVerifier::new(std::slice::from_ref(&public), settings()).expect("verifier");
        let both = TokenVerifier::with_keys(std::slice::from_ref(&public), Some(&secret(1)), settings()).expect("v");
        // The classic attack: an HS256 token whose "secret" is the broker's public key.
        for key in [public.as_bytes().to_vec(), public.trim_end().as_bytes().to_vec()] {
            let forged = hs(Algorithm::HS256, &key, &claims(NOW_S + 60));
            assert_eq!(ed_only.verify(&forged, &device(), NOW_MS), Err(AuthError::WrongAlgorithm));
            assert_eq!(both.verify(&forged, &device(), NOW_MS), Err(AuthError::BadSignature));
        }
        // An EdDSA header over an HMAC signature made with the real secret is never checked
        // against the secret.
        let hmac = TokenMinter::hmac(&secret(1)).mint(&claims(NOW_S + 60)).expect("mint");
        let ed_header = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::EdDSA),
            &claims(NOW_S + 60),
            &jsonwebtoken::EncodingKey::from_ed_pem(pair.private_pem().as_bytes()).expect("key"),
        )
        .expect("mint");
        let relabelled = format!(
            "{}.{}",
            ed_header.split('.').next().expect("header"),
            hmac.split('.').skip(1).collect::<Vec<_>>().join(".")
        );
        assert_eq!(both.verify(&relabelled, &device(), NOW_MS), Err(AuthError::BadSignature));
        // `alg: none` and an empty signature.
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
        let unsigned = format!("{none_header}.{}.", hmac.split('.').nth(1).expect("payload"));
        assert_eq!(both.verify(&unsigned, &device(), NOW_MS).map_err(|e| e.code()), Err(ErrorCode::TOKEN_INVALID));
    }

    #[test]
    fn a_verifier_needs_a_key() {
        assert!(TokenVerifier::with_keys(&[], None, settings()).is_err());
        assert!(HmacSecret::new(vec![0; MIN_HMAC_SECRET_BYTES - 1]).is_err());
    }

    #[test]
    fn device_binding_and_bad_ids_are_refused() {
        let (minter, verifier) = setup();
        let bound = minter.mint(&Claims { device: Some("laptop".into()), ..claims(NOW_S + 60) }).expect("mint");
        assert_eq!(verifier.verify(&bound, &device(), NOW_MS), Err(AuthError::DeviceMismatch));
        let bad = minter.mint(&Claims { org: "no spaces".into(), ..claims(NOW_S + 60) }).expect("mint");
        assert!(matches!(verifier.verify(&bad, &device(), NOW_MS), Err(AuthError::BadId(_))));
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let pair = SigningKeyPair::generate().expect("keygen");
        let minter = TokenMinter::new(&pair).expect("minter");
        let strict = VerifierSettings { issuer: Some("idp".into()), audience: Some("herald".into()), ..settings() };
        let verifier = TokenVerifier::new(&[pair.public_pem().to_owned()], strict).expect("verifier");
        let good = Claims { iss: Some("idp".into()), aud: Some("herald".into()), ..claims(NOW_S + 60) };
        assert!(verifier.verify(&minter.mint(&good).expect("mint"), &device(), NOW_MS).is_ok());
        let wrong_iss = Claims { iss: Some("other".into()), ..good.clone() };
        assert_eq!(
            verifier.verify(&minter.mint(&wrong_iss).expect("mint"), &device(), NOW_MS),
            Err(AuthError::WrongIssuer)
        );
        let wrong_aud = Claims { aud: None, ..good };
        assert_eq!(
            verifier.verify(&minter.mint(&wrong_aud).expect("mint"), &device(), NOW_MS),
            Err(AuthError::WrongAudience)
        );
    }
}
