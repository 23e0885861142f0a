//! The webhook signing secrets in Secrets Manager: one secret (`WEBHOOK_SIGNING_SECRET_ARN`, its
//! ARN or name) whose text is the `whsec_…` secrets, comma-separated, newest first. Read with
//! `GetSecretValue` (its current version) at cold start and again at most once a minute
//! ([`taskfleet_core::secrets::RefreshingSecrets`]); the function's role may read that one secret
//! only. Errors name the secret, never what it holds.

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use taskfleet_core::secrets::{ReadError, ReadFuture, SecretStore};

#[derive(Debug, Clone)]
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerStore {
    /// `secret_id`: the secret's ARN (as deployed) or its name.
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self { client, secret_id: secret_id.into() }
    }
}

impl SecretStore for SecretsManagerStore {
    fn read(&self) -> ReadFuture<'_> {
        Box::pin(async move {
            let answer = self.client.get_secret_value().secret_id(&self.secret_id).send().await.map_err(|error| {
                ReadError::Unavailable(format!("GetSecretValue {}: {}", self.secret_id, DisplayErrorContext(&error)))
            })?;
            answer.secret_string().map(str::to_owned).ok_or(ReadError::NotText)
        })
    }
}
