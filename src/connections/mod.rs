//! Links between a user and their account at a data source (Dexcom today): the
//! connection's status, and the OAuth tokens that let us fetch on the user's
//! behalf, sealed at rest by `cipher`.

pub mod cipher;
pub mod key_file;
pub mod pruner;

use crate::secret::Secret;

use crate::records::connections::{Provider, SealedTokens};

/// Plain OAuth tokens. They exist only in memory: `Secret` keeps them out of
/// `Debug` output and logs, and the store only ever sees them sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub access_token: Secret<String>,
    pub refresh_token: Secret<String>,
}
