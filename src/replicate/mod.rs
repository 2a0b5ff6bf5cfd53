//! Replication: shipping a store's encrypted blocks, catalog and audit trail
//! to a second place, so that the place alone, with a passphrase, gives the
//! store back (issue 26).
//!
//! Owns the remote side only: `place` stores and fetches opaque objects.
//! Never sees a key, a name or plaintext; knows nothing of the vault, the
//! catalog or FUSE.

pub mod place;
