//! AES-256-GCM sealing of OAuth tokens at rest.
//!
//! Each seal uses a fresh random 96-bit nonce and binds the user id and provider
//! as associated data, so a ciphertext copied to another user's row fails to
//! open. Every ciphertext records the id of the key that sealed it: after a
//! rotation the previous keys still open old rows, and `needs_rewrap` tells which
//! rows to seal again under the current key (done at start-up).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Provider, SealedTokens, TokenSet};
use crate::domain::UserId;
use crate::secret::Secret;

const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("tokens were sealed with key {0}, which is not configured (set it in TOKEN_ENCRYPTION_KEY_PREVIOUS)")]
    UnknownKey(String),
    /// Wrong key, tampered ciphertext, or a ciphertext that belongs to another
    /// user or provider. Deliberately indistinguishable.
    #[error("sealed tokens do not open (tampered, or not this user's)")]
    Open,
    #[error("could not seal tokens")]
    Seal,
}

struct Key {
    id: String,
    aead: Aes256Gcm,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Self {
        Self {
            id: key_id(bytes),
            aead: Aes256Gcm::new(bytes.into()),
        }
    }
}

pub struct TokenCipher {
    current: Key,
    previous: Vec<Key>,
    /// The current key, for keys derived from it (`derive_key`).
    master: Secret<[u8; 32]>,
}

/// A short public fingerprint of a key: stored beside each ciphertext. It is a
/// hash of the key under a fixed label, so it reveals nothing usable.
pub fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"cgm-hub token key id v1")
        .chain_update(key)
        .finalize();
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn associated_data(user: &UserId, provider: Provider) -> Vec<u8> {
    format!("cgm-hub/tokens/v1/{provider}/{user}").into_bytes()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Plain {
    access_token: String,
    refresh_token: String,
}

impl TokenCipher {
    pub fn new(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        Self {
            current: Key::new(current),
            previous: previous.iter().map(Key::new).collect(),
            master: Secret::new(*current),
        }
    }

    /// A key for another purpose (`purpose` names it, e.g. signing stream
    /// tokens), derived from the current key with HKDF-SHA256: it always exists
    /// where this cipher does, and reveals nothing about the sealing key.
    /// Changes when TOKEN_ENCRYPTION_KEY is rotated.
    pub fn derive_key(&self, purpose: &str) -> Secret<[u8; 32]> {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"cgm-hub/derived-keys/v1"), self.master.expose());
        let mut out = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 8160.
        hk.expand(purpose.as_bytes(), &mut out)
            .unwrap_or_else(|_| unreachable!("32 bytes is a valid HKDF length"));
        Secret::new(out)
    }

    pub fn seal(
        &self,
        user: &UserId,
        provider: Provider,
        tokens: &TokenSet,
    ) -> Result<SealedTokens, CipherError> {
        let plain = serde_json::to_vec(&Plain {
            access_token: tokens.access_token.expose().clone(),
            refresh_token: tokens.refresh_token.expose().clone(),
        })
        .map_err(|_| CipherError::Seal)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(user, provider);
        let ciphertext = self
            .current
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| CipherError::Seal)?;
        Ok(SealedTokens {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    pub fn open(
        &self,
        user: &UserId,
        provider: Provider,
        sealed: &SealedTokens,
    ) -> Result<TokenSet, CipherError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| CipherError::UnknownKey(sealed.key_id.clone()))?;
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| CipherError::Open)?;
        let aad = associated_data(user, provider);
        let plain = key
            .aead
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CipherError::Open)?;
        let plain: Plain = serde_json::from_slice(&plain).map_err(|_| CipherError::Open)?;
        Ok(TokenSet {
            access_token: Secret::new(plain.access_token),
            refresh_token: Secret::new(plain.refresh_token),
        })
    }

    /// Seals a secret that is not a token pair (a notification endpoint's
    /// signing secret) the same way: fresh nonce, current key, bound to
    /// `context` (say, the owner and the record's id) as associated data, so a
    /// ciphertext copied to another record fails to open.
    pub fn seal_secret(&self, context: &str, secret: &str) -> Result<SealedTokens, CipherError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = format!("cgm-hub/secret/v1/{context}");
        let ciphertext = self
            .current
            .aead
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CipherError::Seal)?;
        Ok(SealedTokens {
            key_id: self.current.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens what `seal_secret` sealed under the same `context`.
    pub fn open_secret(
        &self,
        context: &str,
        sealed: &SealedTokens,
    ) -> Result<Secret<String>, CipherError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| CipherError::UnknownKey(sealed.key_id.clone()))?;
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| CipherError::Open)?;
        let aad = format!("cgm-hub/secret/v1/{context}");
        let plain = key
            .aead
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CipherError::Open)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CipherError::Open)
    }

    /// Sealed under an older key: seal again under the current one.
    pub fn needs_rewrap(&self, sealed: &SealedTokens) -> bool {
        sealed.key_id != self.current.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> TokenSet {
        TokenSet {
            access_token: Secret::new("access-abc".into()),
            refresh_token: Secret::new("refresh-xyz".into()),
        }
    }

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    #[test]
    fn round_trip_with_fresh_nonces_and_no_plaintext() {
        let cipher = TokenCipher::new(&[7; 32], &[]);
        let a = cipher
            .seal(&user("u1"), Provider::Dexcom, &tokens())
            .unwrap();
        let b = cipher
            .seal(&user("u1"), Provider::Dexcom, &tokens())
            .unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        let needle = b"access-abc";
        assert!(!a.ciphertext.windows(needle.len()).any(|w| w == needle));
        assert_eq!(
            cipher.open(&user("u1"), Provider::Dexcom, &a).unwrap(),
            tokens()
        );
    }

    #[test]
    fn secrets_open_only_in_their_context() {
        let cipher = TokenCipher::new(&[7; 32], &[]);
        let sealed = cipher.seal_secret("u1/ep1", "s3cret-value").unwrap();
        let needle = b"s3cret-value";
        assert!(!sealed.ciphertext.windows(needle.len()).any(|w| w == needle));
        assert_eq!(
            cipher.open_secret("u1/ep1", &sealed).unwrap().expose(),
            "s3cret-value"
        );
        assert_eq!(
            cipher.open_secret("u2/ep1", &sealed).map(|_| ()),
            Err(CipherError::Open)
        );
    }

    #[test]
    fn ciphertext_is_bound_to_its_user() {
        let cipher = TokenCipher::new(&[7; 32], &[]);
        let sealed = cipher
            .seal(&user("alice"), Provider::Dexcom, &tokens())
            .unwrap();
        assert_eq!(
            cipher.open(&user("mallory"), Provider::Dexcom, &sealed),
            Err(CipherError::Open)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            cipher.open(&user("alice"), Provider::Dexcom, &tampered),
            Err(CipherError::Open)
        );
    }

    #[test]
    fn rotation_opens_old_rows_and_flags_them() {
        let old = TokenCipher::new(&[1; 32], &[]);
        let sealed = old.seal(&user("u1"), Provider::Dexcom, &tokens()).unwrap();
        let rotated = TokenCipher::new(&[2; 32], &[[1; 32]]);
        assert!(rotated.needs_rewrap(&sealed));
        assert_eq!(
            rotated
                .open(&user("u1"), Provider::Dexcom, &sealed)
                .unwrap(),
            tokens()
        );
        let resealed = rotated
            .seal(&user("u1"), Provider::Dexcom, &tokens())
            .unwrap();
        assert!(!rotated.needs_rewrap(&resealed));
        let forgot = TokenCipher::new(&[2; 32], &[]);
        assert!(matches!(
            forgot.open(&user("u1"), Provider::Dexcom, &sealed),
            Err(CipherError::UnknownKey(id)) if id == key_id(&[1; 32])
        ));
    }
}
