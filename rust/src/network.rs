//! HTTP clients built from the same settings uv's command line derives, one warm client per
//! distinct network configuration.
//!
//! uv builds its client from the command line (`--system-certs`/`--native-tls`, `--offline`,
//! `--allow-insecure-host`) and the environment (`SSL_CERT_FILE`, `SSL_CERT_DIR`,
//! `SSL_CLIENT_CERT`, `UV_SYSTEM_CERTS`, `UV_NATIVE_TLS`, `UV_OFFLINE`, `UV_HTTP_TIMEOUT`,
//! `UV_HTTP_CONNECT_TIMEOUT`, `UV_HTTP_RETRIES`, and the proxy variables, which the HTTP library
//! reads when the client is built). The same inputs make a [`NetworkKey`]; a call whose key
//! differs from every warm client's gets a client built for it, kept for later calls.

use std::ffi::OsString;
use std::str::FromStr;
use std::time::Duration;

use uv_client::{BaseClient, BaseClientBuilder, Certificates, Connectivity};
use uv_configuration::TrustedHost;
use uv_settings::EnvironmentOptions;

use crate::command::InstallArgs;
use crate::error::{ErrorKind, FfiError, Result};

/// Variables read when a client is built (certificates and proxies), by value.
const CLIENT_VARIABLES: [&str; 11] = [
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSL_CLIENT_CERT",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// The variables uv's `EnvironmentOptions` reads for the network settings the warm path uses.
const NETWORK_VARIABLES: [&str; 8] = [
    "UV_HTTP_TIMEOUT",
    "UV_REQUEST_TIMEOUT",
    "HTTP_TIMEOUT",
    "UV_HTTP_CONNECT_TIMEOUT",
    "UV_HTTP_RETRIES",
    "UV_SYSTEM_CERTS",
    "UV_NATIVE_TLS",
    "UV_OFFLINE",
];

/// The network settings uv reads from the environment, as uv's `EnvironmentOptions` parses
/// them. Parsing every variable uv knows costs tens of microseconds, so the answer is kept with
/// the values of the variables it depends on and computed again when one of them changes.
#[derive(Debug, Clone, Copy)]
struct NetworkVariables {
    system_certs: bool,
    offline: bool,
    read_timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
}

type Values = Vec<Option<OsString>>;

impl NetworkVariables {
    fn read() -> Result<Self> {
        static LAST: std::sync::Mutex<Option<(Values, NetworkVariables)>> =
            std::sync::Mutex::new(None);
        let values: Values = NETWORK_VARIABLES.iter().map(std::env::var_os).collect();
        let mut last = LAST
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, settings)) = last.as_ref()
            && *seen == values
        {
            return Ok(*settings);
        }
        let environment = EnvironmentOptions::new()
            .map_err(|err| FfiError::from_uv(ErrorKind::InvalidCommand, &err))?;
        let settings = Self {
            system_certs: environment.system_certs.value == Some(true)
                || environment.native_tls.value == Some(true),
            offline: environment.offline.value == Some(true),
            read_timeout: environment.http_read_timeout,
            connect_timeout: environment.http_connect_timeout,
            retries: environment.http_retries,
        };
        *last = Some((values, settings));
        Ok(settings)
    }
}

/// Everything that decides how a client behaves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetworkKey {
    system_certs: bool,
    offline: bool,
    insecure_hosts: Vec<String>,
    read_timeout: Duration,
    connect_timeout: Duration,
    retries: u32,
    client_variables: Vec<Option<OsString>>,
}

impl NetworkKey {
    /// The settings uv would use for a command with these options, in this environment.
    pub fn for_call(args: &InstallArgs) -> Result<Self> {
        let environment = NetworkVariables::read()?;
        let mut insecure_hosts = args.allow_insecure_hosts.clone();
        insecure_hosts.sort();
        Ok(Self {
            system_certs: args.system_certs.unwrap_or(environment.system_certs),
            offline: args.offline || environment.offline,
            insecure_hosts,
            read_timeout: environment.read_timeout,
            connect_timeout: environment.connect_timeout,
            retries: environment.retries,
            client_variables: CLIENT_VARIABLES.iter().map(std::env::var_os).collect(),
        })
    }

    /// A new client builder for these settings, with a credential store of its own; the
    /// connections stay warm in the shared client (`RegistryClientBuilder::wrap_existing`).
    pub fn builder(
        &self,
        cache_read_threads: usize,
        certificates: Option<Certificates>,
    ) -> Result<BaseClientBuilder<'static>> {
        let insecure = self
            .insecure_hosts
            .iter()
            .map(|host| {
                TrustedHost::from_str(host).map_err(|err| {
                    FfiError::new(
                        ErrorKind::InvalidCommand,
                        format!("Invalid `--allow-insecure-host` value `{host}`: {err}"),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let connectivity = if self.offline {
            Connectivity::Offline
        } else {
            Connectivity::Online
        };
        let builder = BaseClientBuilder::new(
            connectivity,
            self.system_certs,
            insecure,
            uv_preview::Preview::default(),
            self.read_timeout,
            self.connect_timeout,
            self.retries,
        )
        .cache_read_concurrency(cache_read_threads);
        Ok(match certificates {
            Some(certificates) => builder.custom_certificates(certificates),
            None => builder,
        })
    }

    /// The client whose connections are kept warm for these settings (see [`WarmClient`]).
    pub fn client(&self, cache_read_threads: usize) -> Result<WarmClient> {
        let certificates = Certificates::from_env();
        let builder = self.builder(cache_read_threads, certificates.clone())?;
        let client = builder
            .build()
            .map_err(|err| FfiError::from_uv(ErrorKind::Index, &err))?;
        Ok(WarmClient {
            client,
            builder,
            certificates,
        })
    }
}

/// What is kept per network configuration: the client with its connection pools; the builder
/// calls without credentials share (cloning it shares its credential store and the runtime it
/// reads the HTTP cache on, which a new builder would build again); and the certificates
/// `SSL_CERT_FILE` / `SSL_CERT_DIR` named when it was built (read once: parsing a CA bundle
/// takes milliseconds; a change of either variable makes another key).
pub struct WarmClient {
    pub client: BaseClient,
    pub builder: BaseClientBuilder<'static>,
    pub certificates: Option<Certificates>,
}

/// Whether a call may hand uv credentials: a URL with a user part among its locations or
/// requirements, or requirement and constraint files, whose index URLs may carry some. Such a
/// call gets a credential store of its own, so nothing it learns serves later calls. Calls
/// without share one store, which then only ever holds what `.netrc` gives every call alike.
pub fn may_carry_credentials(args: &InstallArgs) -> bool {
    let has_user_part = |text: &String| text.contains('@');
    !args.requirements.is_empty()
        || !args.constraints.is_empty()
        || args.index_url.iter().any(has_user_part)
        || args.extra_index_urls.iter().any(has_user_part)
        || args.find_links.iter().any(has_user_part)
        || args.packages.iter().any(has_user_part)
        || args.upgrade_packages.iter().any(has_user_part)
}
