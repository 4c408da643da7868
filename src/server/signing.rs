//! Expiring HMAC-SHA256 signatures that let download links work without an
//! auth header.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signed download link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is malformed or does not match the path and expiry (403).
    #[error("invalid download signature")]
    Invalid,
    /// The signature is genuine but its expiry time has passed (410).
    #[error("download link expired")]
    Expired,
}

/// Signs and verifies `expires`/`signature` query parameters for file paths.
#[derive(Clone)]
pub struct UrlSigner {
    /// Keyed once; cloning it is cheaper than re-deriving the HMAC pads.
    mac: HmacSha256,
}

impl UrlSigner {
    pub fn new(secret: &[u8]) -> Self {
        let mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Self { mac }
    }

    /// Query string `expires=<unix>&signature=<hex>` for `path`
    /// (e.g. `/api/v1/files/12/speaker_0.wav`).
    pub fn sign(&self, path: &str, expires_unix: u64) -> String {
        let tag = self.mac_for(path, expires_unix).finalize().into_bytes();
        format!(
            "expires={expires_unix}&signature={}",
            hex::encode(tag.as_slice())
        )
    }

    /// Checks a link's signature, then its expiry: a tampered link is
    /// `Invalid` even when its (forged) expiry has also passed. The link is
    /// valid up to and including the second `expires_unix`.
    pub fn verify(
        &self,
        path: &str,
        expires_unix: u64,
        signature_hex: &str,
        now_unix: u64,
    ) -> Result<(), SignatureError> {
        let tag = hex::decode(signature_hex).map_err(|_| SignatureError::Invalid)?;
        self.mac_for(path, expires_unix)
            .verify_slice(&tag)
            .map_err(|_| SignatureError::Invalid)?;
        if now_unix > expires_unix {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    fn mac_for(&self, path: &str, expires_unix: u64) -> HmacSha256 {
        let mut mac = self.mac.clone();
        // The newline separator keeps (path, expiry) pairs unambiguous: the
        // expiry is all digits, so the message splits only at its last newline.
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires_unix.to_string().as_bytes());
        mac
    }
}

/// Never prints key material.
impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlSigner").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/api/v1/files/12/speaker_0.wav";
    const EXPIRES: u64 = 1_700_000_000;

    /// The `signature` value out of a signed query string.
    fn signature(query: &str) -> &str {
        query.split_once("&signature=").unwrap().1
    }

    #[test]
    fn round_trip() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.sign(PATH, EXPIRES);
        assert!(query.starts_with("expires=1700000000&signature="));
        assert_eq!(signature(&query).len(), 64);
        assert_eq!(
            signer.verify(PATH, EXPIRES, signature(&query), EXPIRES - 60),
            Ok(())
        );
        // Still valid during the expiry second itself.
        assert_eq!(
            signer.verify(PATH, EXPIRES, signature(&query), EXPIRES),
            Ok(())
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.sign(PATH, EXPIRES);
        let upper = signature(&query).to_ascii_uppercase();
        assert_eq!(signer.verify(PATH, EXPIRES, &upper, EXPIRES), Ok(()));
    }

    #[test]
    fn tampered_path_is_invalid() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.sign(PATH, EXPIRES);
        assert_eq!(
            signer.verify(
                "/api/v1/files/13/speaker_0.wav",
                EXPIRES,
                signature(&query),
                EXPIRES
            ),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn tampered_expiry_is_invalid_not_expired() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.sign(PATH, EXPIRES);
        let sig = signature(&query);
        assert_eq!(
            signer.verify(PATH, EXPIRES + 3600, sig, EXPIRES),
            Err(SignatureError::Invalid)
        );
        // Even once both the real and the forged expiry have passed.
        assert_eq!(
            signer.verify(PATH, EXPIRES - 1, sig, EXPIRES + 10),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn wrong_key_is_invalid() {
        let query = UrlSigner::new(b"secret").sign(PATH, EXPIRES);
        assert_eq!(
            UrlSigner::new(b"other").verify(PATH, EXPIRES, signature(&query), EXPIRES),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn expired_link() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.sign(PATH, EXPIRES);
        assert_eq!(
            signer.verify(PATH, EXPIRES, signature(&query), EXPIRES + 1),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn malformed_signatures_are_invalid() {
        let signer = UrlSigner::new(b"secret");
        let query = signer.sign(PATH, EXPIRES);
        let sig = signature(&query);
        for bad in ["", "zz", "abc", &sig[..62], &format!("{sig}00")] {
            assert_eq!(
                signer.verify(PATH, EXPIRES, bad, EXPIRES),
                Err(SignatureError::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_hides_the_key() {
        assert_eq!(
            format!("{:?}", UrlSigner::new(b"secret")),
            "UrlSigner { .. }"
        );
    }
}
