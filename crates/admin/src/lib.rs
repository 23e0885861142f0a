//! What `taskfleet-admin` does, against any [`KeyRecordStore`]: issue a key (shown once), list
//! keys, revoke a key. Functions see a change within their key cache's lifetime.

use std::io::Write;

use taskfleet_core::auth::{self, KeyRecordStore};
use taskfleet_core::{ClientId, StoreError, Timestamp};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Issue a new key for a client; the key is printed once and never stored.
    Issue {
        /// The client the key identifies (1-64 of A-Z a-z 0-9 _ - .).
        client: String,
    },
    /// List keys (id, client, created), of one client or all.
    List {
        #[arg(long)]
        client: Option<String>,
    },
    /// Revoke a key by its id (the 8 characters after `tfk_`).
    Revoke { key_id: String },
}

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("the client id must be 1-64 characters of A-Z, a-z, 0-9, '_', '-', '.'")]
    InvalidClient,
    #[error("no key with id {0}")]
    NoSuchKey(String),
    #[error("cannot generate a key: {0}")]
    NoRandomness(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn client(raw: &str) -> Result<ClientId, AdminError> {
    ClientId::parse(raw).map_err(|_| AdminError::InvalidClient)
}

pub async fn run(command: Command, store: &impl KeyRecordStore, out: &mut impl Write) -> Result<(), AdminError> {
    match command {
        Command::Issue { client: owner } => {
            let owner = client(&owner)?;
            let issued = auth::issue(&owner, Timestamp::now()).map_err(|e| AdminError::NoRandomness(e.to_string()))?;
            store.save(&issued.record).await?;
            writeln!(
                out,
                "issued key {} for client {owner} (shown once; only its digest is stored):",
                issued.record.key_id
            )?;
            writeln!(out, "{}", issued.key)?;
        }
        Command::List { client: owner } => {
            let owner = owner.as_deref().map(client).transpose()?;
            writeln!(out, "{:<10} {:<24} created", "key id", "client")?;
            for record in store.list(owner.as_ref()).await? {
                writeln!(
                    out,
                    "{:<10} {:<24} {}",
                    record.key_id,
                    record.client_id.as_str(),
                    record.created_at.to_rfc3339()
                )?;
            }
        }
        Command::Revoke { key_id } => {
            if !store.revoke(&key_id).await? {
                return Err(AdminError::NoSuchKey(key_id));
            }
            writeln!(out, "revoked key {key_id}")?;
        }
    }
    Ok(())
}
