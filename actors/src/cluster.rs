//! Node identity. Several `swarmwise serve` processes may share one
//! database (and one Redis); each has a [`NodeId`] that it writes wherever
//! it claims something (a workflow run's lease, a scheduled occurrence, the
//! scheduler's leadership) and that tags what it publishes, so a node can
//! tell its own messages from another's.

use std::fmt;
use std::sync::Arc;

/// The identity of one running process: `cluster.node_id` when set,
/// otherwise generated at start as `<host>-<pid>-<8 hex>` (unique per
/// process start, so a restarted node is a new node and its old leases are
/// not mistaken for live ones). At most 64 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(Arc<str>);

/// Longest accepted node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;

impl NodeId {
    /// A configured id; `Err` says what is wrong with it (for `cluster.node_id`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_NODE_ID_LEN {
            return Err(format!(
                "must be 1 to {MAX_NODE_ID_LEN} characters (or empty in config to generate one)"
            ));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(format!(
                "{raw:?} may hold only letters, digits, '.', '_' and '-'"
            ));
        }
        Ok(Self(raw.into()))
    }

    /// A fresh id for this process: `<host>-<pid>-<8 hex>`, where `host` is
    /// `$HOSTNAME` (sanitised, at most 40 bytes) or `node`.
    pub fn generate() -> Self {
        let host: String = std::env::var("HOSTNAME")
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(40)
            .collect();
        let host = if host.is_empty() { "node".into() } else { host };
        let salt = uuid::Uuid::now_v7().as_u128() as u32; // the low bits of a v7 are random
        Self(format!("{host}-{}-{salt:08x}", std::process::id()).into())
    }

    /// From config: empty generates one.
    pub fn from_config(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            Ok(Self::generate())
        } else {
            Self::parse(raw)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let (a, b) = (NodeId::generate(), NodeId::generate());
        assert_ne!(a, b);
        assert_eq!(NodeId::parse(a.as_str()).unwrap(), a);
    }

    #[test]
    fn configured_ids_are_checked() {
        assert!(NodeId::parse("node-a.1_x").is_ok());
        assert!(NodeId::parse("a b").is_err());
        assert!(NodeId::parse("").is_err());
        assert!(NodeId::parse(&"x".repeat(65)).is_err());
        assert!(NodeId::from_config("").is_ok());
    }
}
