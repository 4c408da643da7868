//! Short-lived, single-use tokens that let a browser open a stream without
//! putting its API key in a URL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::auth::Caller;

/// Bytes of randomness in a token.
const TOKEN_BYTES: usize = 24;
/// What every stream token starts with, so a Bearer value can be told from a key or a JWT.
pub const STREAM_TOKEN_PREFIX: &str = "st_";

pub struct StreamTokens {
    ttl: Duration,
    issued: Mutex<HashMap<String, (Caller, Instant)>>,
}

impl StreamTokens {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            issued: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A new token for `caller`; expired ones are forgotten on the way.
    pub fn issue(&self, caller: Caller) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)?;
        let token = format!("{STREAM_TOKEN_PREFIX}{}", hex::encode(bytes));
        let now = Instant::now();
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        issued.retain(|_, (_, expires)| *expires > now);
        issued.insert(token.clone(), (caller, now + self.ttl));
        Ok(token)
    }

    /// The caller a token was issued to; a token works once, before it expires.
    pub fn redeem(&self, token: &str) -> Option<Caller> {
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        let (caller, expires) = issued.remove(token)?;
        (expires > Instant::now()).then_some(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            user_id: "u".into(),
            identity: "key:abc".into(),
        }
    }

    #[test]
    fn tokens_work_once() {
        let tokens = StreamTokens::new(Duration::from_secs(60));
        let token = tokens.issue(caller()).unwrap();
        assert_eq!(tokens.redeem(&token).unwrap().user_id, "u");
        assert!(tokens.redeem(&token).is_none());
        assert!(tokens.redeem("st_forged").is_none());
    }

    #[test]
    fn expired_tokens_fail() {
        let tokens = StreamTokens::new(Duration::ZERO);
        let token = tokens.issue(caller()).unwrap();
        assert!(tokens.redeem(&token).is_none());
    }
}
