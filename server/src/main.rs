//! The `agentcast` binary (placeholder until the server issue fills it in).

fn main() {
    println!("agentcast {}", env!("CARGO_PKG_VERSION"));
}
