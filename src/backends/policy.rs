//! The operator's agent policy: what a tenant's agent may be and reach.
//!
//! A workspace key is an untrusted tenant (DESIGN §1). Nothing in an agent's
//! registration becomes a program, an environment variable name or a network
//! address except through this policy, built once from `[agents]`:
//!
//! - kinds: a workspace key may register only `agents.allowed_kinds`
//!   (default external, http, openai, simulated); the admin key any kind;
//! - programs: `command` agents name a program declared in
//!   `[agents.programs.NAME]`; a registration never supplies a path, args or env;
//! - secrets: `headers_env` / `api_key_env` may name only variables listed in
//!   `agents.secret_env`, and never a `SWARMWISE__*` setting; a refused name
//!   gets the same answer whether or not it is set;
//! - network: no loopback, private, link-local, shared (CGNAT), multicast,
//!   unspecified, broadcast or cloud-metadata address unless the operator
//!   opens it (`agents.allow_hosts`, `agents.allow_private_networks`). IP
//!   literals are checked on the URL (the `url` crate normalises `2130706433`,
//!   `127.1`, `[::ffff:127.0.0.1]` to the address they mean); names are checked
//!   on every address DNS returns, by the HTTP client's resolver, so the check
//!   applies to the address actually connected to and a DNS answer that
//!   changes after registration does not get around it. Redirects are checked
//!   the same way.
//!
//! Every refusal is a [`PolicyError`] naming the config key that governs it.
//!
//! Why one file of about 800 lines: 620 of code that must be read together
//! (an address check split from the resolver that applies it is how SSRF
//! holes open), and the unit tests of every IP form beside it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use swarmwise_actors::domain::ParseError;
use swarmwise_actors::swarm::{ProgramConfig, SwarmConfig};

/// A registration or a request the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message} (rule: {rule})")]
pub struct PolicyError {
    /// The offending field of the agent, e.g. `kind`, `config.url`.
    pub field: String,
    /// The config key that governs it, e.g. `agents.allowed_kinds`.
    pub rule: &'static str,
    /// What is refused and what the operator could change.
    pub message: String,
}

impl PolicyError {
    fn new(field: impl Into<String>, rule: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            rule,
            message: message.into(),
        }
    }
}

impl From<PolicyError> for ParseError {
    fn from(e: PolicyError) -> Self {
        ParseError::new(e.field.clone(), format!("{} (rule: {})", e.message, e.rule))
    }
}

/// Why an address is closed by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 0.0.0.0/8, :: (reaches the local host on Linux).
    Unspecified,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 100.64/10 (RFC 6598 shared address space).
    Shared,
    /// 224/4, ff00::/8, 255.255.255.255.
    Multicast,
    /// 240/4 and other reserved or documentation blocks.
    Reserved,
    /// 169.254.169.254, fd00:ec2::254, 100.100.100.200: cloud instance metadata.
    Metadata,
}

impl AddressClass {
    fn describe(self) -> &'static str {
        match self {
            Self::Loopback => "a loopback address",
            Self::Unspecified => "an unspecified address (0.0.0.0 reaches this host)",
            Self::Private => "a private address",
            Self::LinkLocal => "a link-local address",
            Self::Shared => "a shared (CGNAT) address",
            Self::Multicast => "a multicast or broadcast address",
            Self::Reserved => "a reserved address",
            Self::Metadata => "a cloud metadata address",
        }
    }

    /// Whether `agents.allow_private_networks` opens this class.
    fn opened_by_private_networks(self) -> bool {
        matches!(
            self,
            Self::Loopback | Self::Unspecified | Self::Private | Self::LinkLocal | Self::Shared
        )
    }
}

/// The class of an address that is not publicly routable, or `None` for a
/// public address. IPv4-mapped, IPv4-compatible and NAT64 (64:ff9b::/96)
/// IPv6 addresses are judged by the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, d] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        return Some(AddressClass::Metadata);
    }
    Some(match (a, b) {
        (127, _) => AddressClass::Loopback,
        (0, _) => AddressClass::Unspecified,
        (10, _) | (192, 168) => AddressClass::Private,
        (172, 16..=31) => AddressClass::Private,
        (169, 254) => AddressClass::LinkLocal,
        (100, 64..=127) => AddressClass::Shared,
        (224..=239, _) => AddressClass::Multicast,
        (255, 255) if c == 255 && d == 255 => AddressClass::Multicast,
        (240..=255, _) => AddressClass::Reserved,
        // 192.0.0.0/24 (IETF protocol assignments), 198.18.0.0/15 (benchmarking).
        (192, 0) if c == 0 => AddressClass::Reserved,
        (198, 18..=19) => AddressClass::Reserved,
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let seg = ip.segments();
    let first = seg.first().copied().unwrap_or(0);
    // NAT64 well-known prefix 64:ff9b::/96 carries an IPv4 address.
    if seg.get(..6) == Some(&[0x64, 0xff9b, 0, 0, 0, 0]) {
        let o = ip.octets();
        let v4 = Ipv4Addr::new(
            o.get(12).copied().unwrap_or(0),
            o.get(13).copied().unwrap_or(0),
            o.get(14).copied().unwrap_or(0),
            o.get(15).copied().unwrap_or(0),
        );
        return classify_v4(v4);
    }
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    let at = |i: usize| seg.get(i).copied().unwrap_or(0);
    // SIIT ::ffff:0:a.b.c.d (RFC 6052 §2.1 predecessor) carries an IPv4 address.
    if seg.get(..6) == Some(&[0, 0, 0, 0, 0xffff, 0]) {
        return classify_v4(embedded(at(6), at(7)));
    }
    // 6to4 2002:AABB:CCDD::/48 routes to the IPv4 address AABB:CCDD (RFC 3056).
    if first == 0x2002 {
        return classify_v4(embedded(at(1), at(2)));
    }
    // Local-use NAT64 64:ff9b:1::/48 (RFC 8215), Teredo 2001::/32, ORCHID
    // 2001:10::/28 and 2001:20::/28, discard 100::/64: translated or not
    // globally reachable.
    if seg.get(..3) == Some(&[0x64, 0xff9b, 1])
        || (first == 0x2001 && at(1) == 0)
        || (first == 0x2001 && matches!(at(1) & 0xfff0, 0x10 | 0x20))
        || seg.get(..4) == Some(&[0x100, 0, 0, 0])
    {
        return Some(AddressClass::Reserved);
    }
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return Some(AddressClass::Metadata);
    }
    if ip.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    if ip.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    // IPv4-compatible (deprecated) ::a.b.c.d.
    if seg.get(..6) == Some(&[0, 0, 0, 0, 0, 0]) {
        return Some(AddressClass::Reserved);
    }
    Some(match first {
        0xfc00..=0xfdff => AddressClass::Private,
        0xfe80..=0xfebf => AddressClass::LinkLocal,
        // fec0::/10, the old site-local block.
        0xfec0..=0xfeff => AddressClass::Private,
        0xff00..=0xffff => AddressClass::Multicast,
        // 2001:db8::/32 documentation.
        0x2001 if seg.get(1) == Some(&0x0db8) => AddressClass::Reserved,
        _ => return None,
    })
}

/// Where agents may connect: the network half of the policy.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    allow_private_networks: bool,
    /// Host names (lower case, no trailing dot) whose every address is allowed.
    allow_names: Vec<String>,
    /// Addresses and blocks allowed whatever their class.
    allow_nets: Vec<IpNet>,
}

impl NetPolicy {
    /// From `agents.allow_hosts` and `agents.allow_private_networks`; an entry
    /// that parses as an address or CIDR block is one, anything else a host name.
    pub fn new(allow_hosts: &[String], allow_private_networks: bool) -> Self {
        let mut allow_names = Vec::new();
        let mut allow_nets = Vec::new();
        for entry in allow_hosts {
            let e = entry.trim().trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = e.parse::<IpNet>() {
                allow_nets.push(net);
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                allow_nets.push(IpNet::from(ip));
            } else {
                allow_names.push(e.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        Self {
            allow_private_networks,
            allow_names,
            allow_nets,
        }
    }

    fn name_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_names.contains(&host)
    }

    /// Whether agents may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressClass> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.allow_nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match classify(ip) {
            None => Ok(()),
            Some(class) if self.allow_private_networks && class.opened_by_private_networks() => {
                Ok(())
            }
            Some(class) => Err(class),
        }
    }

    /// Checks a URL an agent would call: scheme http(s), an IP literal host
    /// against [`Self::check_ip`], `localhost` names as loopback. Other names
    /// are checked when they are resolved (see [`PolicyResolver`]).
    pub fn check_url(&self, field: &str, url: &reqwest::Url) -> Result<(), PolicyError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PolicyError::new(
                field,
                "agents.allow_hosts",
                "agents may call http:// or https:// URLs only",
            ));
        }
        let refuse = |what: &str, class: AddressClass| {
            PolicyError::new(
                field,
                if class.opened_by_private_networks() {
                    "agents.allow_private_networks"
                } else {
                    "agents.allow_hosts"
                },
                format!(
                    "{what} is {}, which agents may not reach; an operator can open it in agents.allow_hosts{}",
                    class.describe(),
                    if class.opened_by_private_networks() {
                        " or agents.allow_private_networks"
                    } else {
                        ""
                    }
                ),
            )
        };
        match url.host() {
            None => Err(PolicyError::new(
                field,
                "agents.allow_hosts",
                "the URL has no host",
            )),
            Some(url::Host::Ipv4(ip)) => self
                .check_ip(IpAddr::V4(ip))
                .map_err(|c| refuse(&ip.to_string(), c)),
            Some(url::Host::Ipv6(ip)) => self
                .check_ip(IpAddr::V6(ip))
                .map_err(|c| refuse(&ip.to_string(), c)),
            Some(url::Host::Domain(name)) => {
                let lower = name.trim_end_matches('.').to_ascii_lowercase();
                let is_localhost = lower == "localhost" || lower.ends_with(".localhost");
                if is_localhost && !self.name_allowed(&lower) {
                    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
                    return self
                        .check_ip(loopback)
                        .map_err(|c| refuse(&format!("{name:?}"), c));
                }
                Ok(())
            }
        }
    }

    /// Keeps the resolved addresses of `host` an agent may connect to; an
    /// error when none is left.
    pub fn filter_resolved(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<Vec<SocketAddr>, String> {
        if self.name_allowed(host) {
            return Ok(addrs);
        }
        let mut refused = None;
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check_ip(a.ip()) {
                Ok(()) => true,
                Err(c) => {
                    refused = Some(c);
                    false
                }
            })
            .collect();
        match (kept.is_empty(), refused) {
            (true, Some(class)) => Err(format!(
                "{host} resolves to {}, which agents may not reach (agents.allow_hosts, agents.allow_private_networks)",
                class.describe()
            )),
            (true, None) => Err(format!("{host} did not resolve to any address")),
            (false, _) => Ok(kept),
        }
    }
}

/// The HTTP client's DNS resolver: resolves with the system resolver, then
/// drops every address the policy closes. Connections therefore go only to
/// checked addresses, whatever DNS answers at that moment.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<NetPolicy>,
}

impl PolicyResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<NetPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = policy
                .filter_resolved(&host, addrs)
                .map_err(|m| Box::new(std::io::Error::other(m)))?;
            let iter: reqwest::dns::Addrs = Box::new(kept.into_iter());
            Ok(iter)
        })
    }
}

/// The whole agent policy, from `[agents]`.
#[derive(Debug, Clone)]
pub struct AgentPolicy {
    allowed_kinds: Vec<String>,
    programs: BTreeMap<String, ProgramConfig>,
    secret_env: Vec<String>,
    /// Secret → the hosts it may be sent to (lower case, no trailing dot).
    secret_hosts: BTreeMap<String, Vec<String>>,
    /// Pool → whether workspace keys may join it.
    pools_open: BTreeMap<String, bool>,
    net: Arc<NetPolicy>,
}

/// A host as compared in `agents.secret_hosts`: lower case, without a
/// trailing dot or IPv6 brackets.
fn normal_host(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Who is registering an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registrant {
    /// A workspace API key: bound by `agents.allowed_kinds`.
    Tenant,
    /// The admin key (the operator): any kind.
    Admin,
}

/// The prefix of the service's own settings in the environment: never an
/// agent secret.
pub const SETTINGS_ENV_PREFIX: &str = "SWARMWISE__";

impl AgentPolicy {
    /// From the `[agents]` settings.
    pub fn new(config: &SwarmConfig) -> Self {
        Self {
            allowed_kinds: config.allowed_kinds.clone(),
            programs: config.programs.clone(),
            secret_env: config.secret_env.clone(),
            secret_hosts: config
                .secret_hosts
                .iter()
                .map(|(k, hosts)| (k.clone(), hosts.iter().map(|h| normal_host(h)).collect()))
                .collect(),
            pools_open: config
                .pools
                .iter()
                .map(|(k, p)| (k.clone(), p.open_to_tenants))
                .collect(),
            net: Arc::new(NetPolicy::new(
                &config.allow_hosts,
                config.allow_private_networks,
            )),
        }
    }

    /// The network half.
    pub fn net(&self) -> &Arc<NetPolicy> {
        &self.net
    }

    /// Whether `registrant` may register an agent of `kind`.
    pub fn check_kind(&self, registrant: Registrant, kind: &str) -> Result<(), PolicyError> {
        // An unknown kind is bad input (422 from building the backend), not a refusal.
        let known = super::KINDS.contains(&kind);
        if !known || registrant == Registrant::Admin || self.allowed_kinds.iter().any(|k| k == kind)
        {
            return Ok(());
        }
        Err(PolicyError::new(
            "kind",
            "agents.allowed_kinds",
            format!(
                "a workspace key may register agents of kind {}; {kind:?} is not among them (the operator decides, in agents.allowed_kinds, or registers it with the admin key)",
                self.allowed_kinds.join(", ")
            ),
        ))
    }

    /// Whether an agent may name environment variable `name` as a secret:
    /// only names on `agents.secret_env`, never a `SWARMWISE__*` setting. A
    /// refused name gets one answer whether or not it is set.
    pub fn check_secret(&self, field: &str, name: &str) -> Result<(), PolicyError> {
        let listed = self.secret_env.iter().any(|n| n == name);
        if listed && !name.starts_with(SETTINGS_ENV_PREFIX) {
            return Ok(());
        }
        Err(PolicyError::new(
            field,
            "agents.secret_env",
            format!(
                "environment variable {name:?} is not on the operator's list of agent secrets (agents.secret_env)"
            ),
        ))
    }

    /// Whether secret `name` may be sent to `url`: only to a host the
    /// operator bound it to in `agents.secret_hosts` (redirects never leave
    /// the origin, see `ServiceFactory`), so a tenant cannot point an agent
    /// holding the operator's key at a host of its own.
    pub fn check_secret_host(
        &self,
        field: &str,
        name: &str,
        url: &reqwest::Url,
    ) -> Result<(), PolicyError> {
        let host = url.host_str().map(normal_host).unwrap_or_default();
        let bound = self.secret_hosts.get(name);
        if bound.is_some_and(|hosts| hosts.contains(&host)) {
            return Ok(());
        }
        Err(PolicyError::new(
            field,
            "agents.secret_hosts",
            format!(
                "secret {name:?} may not be sent to {host:?}; the operator binds each secret to its hosts in agents.secret_hosts ({})",
                match bound {
                    Some(hosts) if !hosts.is_empty() => format!("allowed: {}", hosts.join(", ")),
                    _ => "none listed for it".to_owned(),
                }
            ),
        ))
    }

    /// The value of an environment variable an agent names as a secret for
    /// requests to `url`, after [`Self::check_secret`] and
    /// [`Self::check_secret_host`].
    pub fn secret(
        &self,
        field: &str,
        name: &str,
        url: &reqwest::Url,
    ) -> Result<String, ParseError> {
        self.check_secret(field, name)?;
        self.check_secret_host(field, name, url)?;
        std::env::var(name).map_err(|_| {
            ParseError::new(
                field,
                format!(
                    "environment variable {name} is listed in agents.secret_env but not set; export it before starting swarmwise"
                ),
            )
        })
    }

    /// Whether `registrant` may put an agent in the provider pool its config
    /// names (`"pool": "NAME"`): pools are the operator's; a workspace key
    /// joins only one with `open_to_tenants = true`. An unknown pool is left
    /// to the config check (422).
    pub fn check_pool(
        &self,
        registrant: Registrant,
        config: &serde_json::Value,
    ) -> Result<(), PolicyError> {
        let Some(name) = config.get("pool").and_then(serde_json::Value::as_str) else {
            return Ok(());
        };
        match self.pools_open.get(name) {
            Some(false) if registrant == Registrant::Tenant => Err(PolicyError::new(
                "config.pool",
                "agents.pools.open_to_tenants",
                format!(
                    "provider pool {name:?} is reserved for the operator's agents; the operator may open it with open_to_tenants = true in [agents.pools.{name}]"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The operator's program of that name.
    pub fn program(&self, field: &str, name: &str) -> Result<&ProgramConfig, PolicyError> {
        self.programs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.programs.keys().map(String::as_str).collect();
            PolicyError::new(
                field,
                "agents.programs",
                format!(
                    "{name:?} is not a program declared in [agents.programs] (declared: {}); command agents run only programs the operator declares",
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            )
        })
    }

    /// Checks the policy parts of an agent's config (secret names, URLs,
    /// program names) without building it, so the API can answer 403 with
    /// the rule. Building the backend checks the same again.
    pub fn check_config(&self, kind: &str, config: &serde_json::Value) -> Result<(), PolicyError> {
        let str_at = |key: &str| config.get(key).and_then(serde_json::Value::as_str);
        let secret_names = |key: &str| -> Vec<(String, String)> {
            match config.get(key) {
                Some(serde_json::Value::String(name)) => {
                    vec![(format!("config.{key}"), name.clone())]
                }
                Some(serde_json::Value::Object(map)) => map
                    .iter()
                    .filter_map(|(h, v)| {
                        v.as_str()
                            .map(|n| (format!("config.{key}.{h}"), n.to_owned()))
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        let urls: Vec<(&str, &str)> = match kind {
            "http" => str_at("url")
                .map(|u| ("config.url", u))
                .into_iter()
                .collect(),
            "openai" => str_at("base_url")
                .map(|u| ("config.base_url", u))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        let mut target = None;
        for (field, raw) in urls {
            if let Ok(url) = reqwest::Url::parse(raw) {
                self.net.check_url(field, &url)?;
                target = Some(url);
            }
        }
        for key in ["headers_env", "api_key_env"] {
            for (field, name) in secret_names(key) {
                self.check_secret(&field, &name)?;
                if let Some(url) = &target {
                    self.check_secret_host(&field, &name, url)?;
                }
            }
        }
        if kind == "command" {
            if let Some(name) = str_at("program") {
                self.program("config.program", name)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn closed_by_default() {
        let p = NetPolicy::new(&[], false);
        for (addr, class) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:10.1.2.3", AddressClass::Private),
            ("64:ff9b::7f00:1", AddressClass::Loopback),
            ("10.0.0.1", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("169.254.0.1", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("100.64.0.1", AddressClass::Shared),
            ("169.254.169.254", AddressClass::Metadata),
            ("100.100.100.200", AddressClass::Metadata),
            ("fd00:ec2::254", AddressClass::Metadata),
            ("224.0.0.1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("240.0.0.1", AddressClass::Reserved),
        ] {
            assert_eq!(p.check_ip(ip(addr)), Err(class), "{addr}");
        }
        for public in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "1.1.1.1",
        ] {
            assert_eq!(p.check_ip(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn operator_opens_what_it_needs() {
        let private = NetPolicy::new(&[], true);
        assert_eq!(private.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(private.check_ip(ip("10.2.3.4")), Ok(()));
        assert_eq!(
            private.check_ip(ip("169.254.169.254")),
            Err(AddressClass::Metadata),
            "metadata stays closed with allow_private_networks"
        );
        assert_eq!(
            private.check_ip(ip("224.0.0.1")),
            Err(AddressClass::Multicast)
        );
        let hosts = NetPolicy::new(
            &[
                "127.0.0.2".into(),
                "10.0.0.0/8".into(),
                "[::1]".into(),
                "LLM.Internal.".into(),
            ],
            false,
        );
        assert_eq!(hosts.check_ip(ip("127.0.0.2")), Ok(()));
        assert_eq!(hosts.check_ip(ip("::ffff:127.0.0.2")), Ok(()));
        assert_eq!(hosts.check_ip(ip("127.0.0.1")), Err(AddressClass::Loopback));
        assert_eq!(hosts.check_ip(ip("10.9.9.9")), Ok(()));
        assert_eq!(hosts.check_ip(ip("::1")), Ok(()));
        let lo: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(hosts.filter_resolved("llm.internal", vec![lo]).is_ok());
        assert!(hosts.filter_resolved("evil.example", vec![lo]).is_err());
        let public: SocketAddr = "8.8.8.8:80".parse().unwrap();
        assert_eq!(
            hosts
                .filter_resolved("mixed.example", vec![lo, public])
                .unwrap(),
            vec![public],
            "closed addresses are dropped, open ones kept"
        );
    }

    #[test]
    fn url_spellings_of_loopback_are_refused() {
        let p = NetPolicy::new(&[], false);
        for raw in [
            "http://127.0.0.1:8080/x",
            "http://localhost/x",
            "http://LocalHost./x",
            "http://api.localhost/x",
            "http://0.0.0.0:80/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::1]/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://127.1/",
            "http://017700000001/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fd00:ec2::254]/",
            "http://10.0.0.5/",
        ] {
            let url = reqwest::Url::parse(raw).unwrap();
            let e = p.check_url("config.url", &url).unwrap_err();
            assert_eq!(e.field, "config.url", "{raw}");
        }
        for raw in ["https://api.openai.com/v1", "http://8.8.8.8/"] {
            assert!(p
                .check_url("config.url", &reqwest::Url::parse(raw).unwrap())
                .is_ok());
        }
        assert!(p
            .check_url(
                "config.url",
                &reqwest::Url::parse("file:///etc/passwd").unwrap()
            )
            .is_err());
    }

    #[test]
    fn secrets_only_from_the_list_and_never_settings() {
        let cfg = SwarmConfig {
            secret_env: vec!["AGENT_KEY".into(), "SWARMWISE__AUTH__ADMIN_KEY".into()],
            ..SwarmConfig::default()
        };
        let p = AgentPolicy::new(&cfg);
        let url = reqwest::Url::parse("https://api.example.com/v1").unwrap();
        let set = p.secret("config.api_key_env", "PATH", &url).unwrap_err();
        let unset = p
            .secret("config.api_key_env", "SURELY_NOT_SET_ANYWHERE_42", &url)
            .unwrap_err();
        assert_eq!(
            set.message.replace("PATH", "X"),
            unset.message.replace("SURELY_NOT_SET_ANYWHERE_42", "X"),
            "set or not, one answer"
        );
        assert!(p
            .secret("config.api_key_env", "SWARMWISE__AUTH__ADMIN_KEY", &url)
            .unwrap_err()
            .message
            .contains("agents.secret_env"));
    }

    #[test]
    fn a_secret_goes_only_to_the_hosts_it_is_bound_to() {
        let mut secret_hosts = BTreeMap::new();
        secret_hosts.insert("AGENT_KEY".to_owned(), vec!["API.example.com.".to_owned()]);
        let p = AgentPolicy::new(&SwarmConfig {
            secret_env: vec!["AGENT_KEY".into(), "UNBOUND_KEY".into()],
            secret_hosts,
            ..SwarmConfig::default()
        });
        let url = |u: &str| reqwest::Url::parse(u).unwrap();
        assert!(p
            .check_secret_host("f", "AGENT_KEY", &url("https://api.example.com/v1"))
            .is_ok());
        for elsewhere in [
            "https://evil.example/",
            "https://api.example.com.evil.example/",
        ] {
            let e = p
                .check_secret_host("f", "AGENT_KEY", &url(elsewhere))
                .unwrap_err();
            assert_eq!(e.rule, "agents.secret_hosts", "{elsewhere}");
        }
        assert!(p
            .check_secret_host("f", "UNBOUND_KEY", &url("https://api.example.com/"))
            .is_err());
    }

    #[test]
    fn ipv6_transition_forms_are_judged_by_what_they_reach() {
        let p = NetPolicy::new(&[], false);
        for (addr, class) in [
            ("2002:7f00:1::", AddressClass::Loopback),
            ("2002:a00:1::", AddressClass::Private),
            ("::ffff:0:7f00:1", AddressClass::Loopback),
            ("64:ff9b:1::a00:1", AddressClass::Reserved),
            ("2001:0:4136:e378::1", AddressClass::Reserved),
            ("2001:10::1", AddressClass::Reserved),
            ("100::1", AddressClass::Reserved),
        ] {
            assert_eq!(p.check_ip(ip(addr)), Err(class), "{addr}");
        }
        assert_eq!(
            p.check_ip(ip("2002:808:808::")),
            Ok(()),
            "6to4 of a public address"
        );
    }
}
