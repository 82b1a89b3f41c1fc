//! Rebuilds the crate when a migration is added or changed: `sqlx::migrate!`
//! embeds `migrations/` at compile time, and without this an incremental
//! build keeps the old set (sqlx's documented build script).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
