struct Audit;

fn main() {
    let _ = pubsub::handlers![Audit];
    let _ = pubsub::handlers![String];
}
