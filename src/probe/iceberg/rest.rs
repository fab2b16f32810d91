//! Iceberg's REST catalog, as apache/iceberg `open-api/rest-catalog-open-api.yaml`
//! specifies it; a reader needs three of its operations:
//! - `GET /v1/config` (`getConfig`): the catalog's `defaults` and
//!   `overrides`, of which the `prefix` every later path starts with
//!   (`overrides` win); `?warehouse=` names the catalog's warehouse;
//! - `POST /v1/oauth/tokens` (`getToken`): an OAuth2 client-credentials
//!   exchange (form `grant_type=client_credentials`, `client_id`,
//!   `client_secret`, `scope=catalog`) answering an `access_token`;
//! - `GET /v1/{prefix}/namespaces/{namespace}/tables/{table}` (`loadTable`):
//!   a `LoadTableResult` whose `metadata-location` is the table's current
//!   metadata file; 404 (`NoSuchTableException`, or no such namespace)
//!   means the table is absent. A namespace of several levels is one path
//!   segment, its levels separated by the unit separator (0x1F).
//!
//! Authentication, read from the environment once per listing:
//! `CHRONON_BUILD_ICEBERG_TOKEN` (a bearer token), or
//! `CHRONON_BUILD_ICEBERG_CREDENTIAL` (`client_id:client_secret`),
//! exchanged once for a token that every request of the listing reuses.
//!
//! Requests run on the hidden runtime of `formats::remote`, each bounded
//! in time; 429s, 5xx and failed connections are tried three times; at
//! most `MAX_LOOKUPS` tables are looked up at once. Errors name the
//! catalog's URL (redacted) and the table, never a credential.

use std::time::Duration;

use crate::formats::FormatError;
use crate::formats::remote::{error_chain, redact_message, run};
use crate::settings::redact_url;

/// Tables looked up at once.
pub const MAX_LOOKUPS: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One request, its retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(120);
const ATTEMPTS: u32 = 3;

pub const TOKEN_VAR: &str = "CHRONON_BUILD_ICEBERG_TOKEN";
pub const CREDENTIAL_VAR: &str = "CHRONON_BUILD_ICEBERG_CREDENTIAL";

/// A REST catalog, as the settings name it.
#[derive(Clone, Debug)]
pub struct RestCatalog {
    /// `http(s)://host:port/path`, without a trailing slash.
    pub uri: String,
    /// Sent as `/v1/config?warehouse=`; `None` sends none.
    pub warehouse: Option<String>,
}

/// A catalog connected for one listing: its configuration read, a token
/// when one is used.
pub struct Session {
    client: reqwest::Client,
    /// `{uri}/v1/{prefix}` (or `{uri}/v1` with no prefix).
    base: String,
    /// The catalog's URL, redacted, for messages.
    shown: String,
    token: Option<String>,
    turns: tokio::sync::Semaphore,
}

/// How requests authenticate.
enum Auth {
    None,
    Token(String),
    Client { id: String, secret: String },
}

impl Auth {
    fn from_env() -> Result<Auth, String> {
        if let Some(token) = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty()) {
            return Ok(Auth::Token(token));
        }
        match std::env::var(CREDENTIAL_VAR).ok().filter(|c| !c.is_empty()) {
            None => Ok(Auth::None),
            Some(credential) => match credential.split_once(':') {
                Some((id, secret)) if !id.is_empty() => Ok(Auth::Client {
                    id: id.to_string(),
                    secret: secret.to_string(),
                }),
                _ => Err(format!(
                    "{CREDENTIAL_VAR}: expected CLIENT_ID:CLIENT_SECRET"
                )),
            },
        }
    }
}

/// A request's answer: its status and body.
struct Answer {
    status: reqwest::StatusCode,
    body: Vec<u8>,
}

impl Answer {
    /// `500 Internal Server Error: <the error's message>`, from the
    /// specification's `ErrorModel` (`{"error": {"message": ...}}`) or an
    /// OAuth error (`{"error": "invalid_client"}`) when the body is one.
    fn describe(&self) -> String {
        let json: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        let error = json.as_ref().and_then(|j| j.get("error"));
        let detail = error
            .and_then(|e| e.get("message").and_then(|m| m.as_str()).or(e.as_str()))
            .map(|m| m.chars().take(300).collect::<String>());
        match detail {
            Some(detail) => format!("{}: {detail}", self.status),
            None => self.status.to_string(),
        }
    }
}

impl RestCatalog {
    fn shown(&self) -> String {
        redact_url(&self.uri)
    }

    fn fail(&self, message: String) -> FormatError {
        FormatError::Catalog {
            catalog: self.shown(),
            message: redact_message(&message),
        }
    }

    /// Reads the credentials and the catalog's configuration.
    pub fn connect(&self) -> Result<Session, FormatError> {
        let auth = Auth::from_env().map_err(|e| self.fail(e))?;
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| self.fail(format!("cannot make an HTTP client: {}", error_chain(&e))))?;
        let token = match auth {
            Auth::None => None,
            Auth::Token(token) => Some(token),
            Auth::Client { id, secret } => Some(self.exchange(&client, &id, &secret)?),
        };
        let mut session = Session {
            client,
            base: format!("{}/v1", self.uri),
            shown: self.shown(),
            token,
            turns: tokio::sync::Semaphore::new(MAX_LOOKUPS),
        };
        let mut config = format!("{}/v1/config", self.uri);
        if let Some(warehouse) = &self.warehouse {
            config.push_str("?warehouse=");
            config.push_str(&encode(warehouse));
        }
        let answer = session
            .get(&config)
            .map_err(|e| self.fail(format!("GET /v1/config: {e}")))?;
        if !answer.status.is_success() {
            return Err(self.fail(refused("GET /v1/config", &answer)));
        }
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| self.fail(format!("GET /v1/config: not a catalog configuration: {e}")))?;
        let prefix = ["overrides", "defaults"]
            .iter()
            .find_map(|part| json.get(part)?.get("prefix")?.as_str())
            .filter(|prefix| !prefix.is_empty());
        if let Some(prefix) = prefix {
            session.base = format!("{}/v1/{}", self.uri, prefix.trim_matches('/'));
        }
        Ok(session)
    }

    /// A token for the client's credentials (`getToken`).
    fn exchange(
        &self,
        client: &reqwest::Client,
        id: &str,
        secret: &str,
    ) -> Result<String, FormatError> {
        let url = format!("{}/v1/oauth/tokens", self.uri);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
            ("scope", "catalog"),
        ];
        let answer = send(&tokio::sync::Semaphore::new(1), || {
            client.post(&url).form(&form)
        })
        .map_err(|e| self.fail(format!("POST /v1/oauth/tokens: {e}")))?;
        if !answer.status.is_success() {
            return Err(self.fail(format!(
                "POST /v1/oauth/tokens: the catalog refused the client credentials of \
                 {CREDENTIAL_VAR} ({})",
                answer.describe()
            )));
        }
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| self.fail(format!("POST /v1/oauth/tokens: not a token response: {e}")))?;
        json.get("access_token")
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| self.fail("POST /v1/oauth/tokens: no access_token in the answer".into()))
    }
}

impl Session {
    fn get(&self, url: &str) -> Result<Answer, String> {
        send(&self.turns, || {
            let request = self.client.get(url);
            match &self.token {
                Some(token) => request.bearer_auth(token),
                None => request,
            }
        })
    }

    /// The current metadata file of `namespace.table` (`loadTable`), `None`
    /// when the catalog has no such table.
    pub fn metadata_location(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<Option<String>, FormatError> {
        let fail = |message: String| FormatError::Catalog {
            catalog: self.shown.clone(),
            message: redact_message(&format!("table {namespace}.{table}: {message}")),
        };
        let levels: Vec<&str> = namespace.split('.').collect();
        let url = format!(
            "{}/namespaces/{}/tables/{}",
            self.base,
            encode(&levels.join("\u{1f}")),
            encode(table)
        );
        let answer = self.get(&url).map_err(fail)?;
        if answer.status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(fail(refused("loadTable", &answer)));
        }
        let json: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| fail(format!("loadTable: not a LoadTableResult: {e}")))?;
        // A staged table, not yet committed, has no metadata location.
        Ok(json
            .get("metadata-location")
            .and_then(|m| m.as_str())
            .map(str::to_string))
    }
}

/// What a refusal says: credentials refused, or the status and message.
fn refused(what: &str, answer: &Answer) -> String {
    match answer.status.as_u16() {
        401 | 403 => format!(
            "{what}: the catalog refused the credentials ({}); set {TOKEN_VAR} or {CREDENTIAL_VAR}",
            answer.describe()
        ),
        _ => format!("{what}: the catalog answered {}", answer.describe()),
    }
}

/// Sends the request `make` builds, when `turns` gives a turn, again after
/// a 429, a 5xx or a failed connection (0.2 s, then 0.4 s later), on the
/// hidden runtime; the last answer, or why there was none.
fn send(
    turns: &tokio::sync::Semaphore,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Answer, String> {
    run(OPERATION_TIMEOUT, async {
        let _turn = turns.acquire().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt == ATTEMPTS;
            match make().send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry = status.is_server_error() || status.as_u16() == 429;
                    if !retry || last {
                        let body = response
                            .bytes()
                            .await
                            .map_err(|e| format!("reading the answer: {}", error_chain(&e)))?;
                        return Ok(Answer {
                            status,
                            body: body.to_vec(),
                        });
                    }
                }
                Err(e) if last || !(e.is_connect() || e.is_timeout()) => {
                    return Err(format!("cannot reach the catalog: {}", error_chain(&e)));
                }
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
    })?
}

/// A path segment percent-encoded: everything but RFC 3986's unreserved
/// characters.
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded_with_levels_joined_by_the_unit_separator() {
        assert_eq!(encode("risk_db"), "risk_db");
        assert_eq!(encode("a\u{1f}b"), "a%1Fb");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn an_error_answer_says_its_status_and_message() {
        let answer = Answer {
            status: reqwest::StatusCode::UNAUTHORIZED,
            body: br#"{"error": {"message": "no token", "type": "NotAuthorizedException", "code": 401}}"#.to_vec(),
        };
        assert_eq!(answer.describe(), "401 Unauthorized: no token");
        let oauth = Answer {
            status: reqwest::StatusCode::UNAUTHORIZED,
            body: br#"{"error": "invalid_client"}"#.to_vec(),
        };
        assert_eq!(oauth.describe(), "401 Unauthorized: invalid_client");
        let empty = Answer {
            status: reqwest::StatusCode::BAD_GATEWAY,
            body: Vec::new(),
        };
        assert_eq!(empty.describe(), "502 Bad Gateway");
    }
}
