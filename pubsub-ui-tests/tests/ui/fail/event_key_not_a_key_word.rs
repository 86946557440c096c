use pubsub::prelude::*;

#[derive(Serialize, Deserialize)]
struct Point {
    x: i32,
}

#[derive(Serialize, Deserialize, Event)]
#[event(key = "cursor.{position}.{ratio}.moved")]
struct Moved {
    position: Point,
    ratio: f64,
}

fn main() {}
