//! The `upmt` binary (placeholder until the anchor and mobile host issue).
fn main() {
    println!("upmt: not built yet");
}
