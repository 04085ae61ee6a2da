//! Verifying tokens: signature, algorithm, claims and expiry, with time passed in.

use std::time::Duration;

use herald_protocol::{DeviceId, ErrorCode, IdError, OrgId, UserId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use super::{Claims, Identity, Roles};

/// Why a token was refused. [`AuthError::code`] gives the wire error code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// Not a JWT: wrong number of parts, bad base64 or bad JSON.
    #[error("token is malformed: {0}")]
    Malformed(String),
    /// The signature matches none of the trusted keys.
    #[error("token signature is not from a trusted key")]
    BadSignature,
    /// Signed with an algorithm other than EdDSA.
    #[error("token algorithm is not EdDSA")]
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
}

impl AuthError {
    /// The error code a client sees for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Expired { .. } => ErrorCode::TOKEN_EXPIRED,
            AuthError::UnknownOrg(_) => ErrorCode::UNKNOWN_ORG,
            _ => ErrorCode::TOKEN_INVALID,
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

/// Checks tokens against a set of trusted Ed25519 public keys.
///
/// Pure: it reads no clock (the caller passes `now`), so expiry is testable without waiting.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Vec<DecodingKey>,
    validation: Validation,
    settings: VerifierSettings,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").field("keys", &self.keys.len()).field("settings", &self.settings).finish()
    }
}

impl TokenVerifier {
    /// A verifier trusting the given public keys (SubjectPublicKeyInfo PEM).
    ///
    /// # Errors
    /// The parser's message if a key is not an Ed25519 public key.
    pub fn new(public_pems: &[String], settings: VerifierSettings) -> Result<Self, String> {
        let keys = public_pems
            .iter()
            .map(|pem| DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("no trusted token key".to_owned());
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Time and the optional claims are checked in `verify`, against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = ["exp", "sub"].into_iter().map(str::to_owned).collect();
        Ok(Self { keys, validation, settings })
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
        })
    }

    fn decode(&self, token: &str) -> Result<Claims, AuthError> {
        let mut last = AuthError::BadSignature;
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => last = AuthError::BadSignature,
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        return Err(AuthError::WrongAlgorithm);
                    }
                    ErrorKind::MissingRequiredClaim(claim) => return Err(AuthError::MissingClaim(claim.clone())),
                    ErrorKind::Json(e) if e.to_string().starts_with("missing field") => {
                        return Err(AuthError::MissingClaim(e.to_string()));
                    }
                    _ => return Err(AuthError::Malformed(e.to_string())),
                },
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{SigningKeyPair, TokenMinter};

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
