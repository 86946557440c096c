//! The chat page in headless Chromium: two pages in a room, one in another room, a late
//! joiner, a message that is HTML, and a tab closed.

use std::path::PathBuf;

use fantoccini::wd::WindowHandle;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::support::web::health_until;

/// A message that would run script if the page took it as HTML.
const HTML: &str = r#"<img src=x onerror="window.pwned=true"> <b>bold?</b>"#;

/// The page's messages: `[{kind, who, text}]`, `kind` the item's classes.
const MESSAGES: &str = "return [...document.querySelectorAll('#messages li')].map((li) => ({
    kind: li.className,
    who: li.querySelector('.who')?.textContent ?? null,
    text: li.querySelector('.text')?.textContent ?? null,
}));";

/// `target/chat-screenshots/`, beside this test's `target/debug/deps/`.
fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>");
    target.join("chat-screenshots")
}

/// Opens the page in a tab and joins `room` as `name`, as a person does: types both and
/// clicks `join`; returns once the page says it is in.
async fn join(
    browser: &mut Browser,
    address: &str,
    first: bool,
    room: &str,
    name: &str,
) -> WindowHandle {
    let tab = browser.open(&format!("http://{address}/"), first).await;
    browser.fill("room", room).await;
    browser.fill("name", name).await;
    browser.click("#join button").await;
    let status = format!("in {room} as {name}");
    browser
        .eval_until(
            "return document.getElementById('status').textContent",
            &status,
            |s| s == status.as_str(),
        )
        .await;
    tab
}

/// Types `text` in `tab` and clicks `send`; returns once it came back from the room's
/// stream to that tab, so that what is said next comes after it in the stream.
async fn say(browser: &Browser, tab: &WindowHandle, name: &str, text: &str) {
    browser.show(tab).await;
    browser.fill("content", text).await;
    browser.click("#say button").await;
    browser
        .eval_until(MESSAGES, &format!("showing {text:?}"), |messages| {
            messages
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["who"] == name && m["text"] == text)
        })
        .await;
}

/// The messages `said` as the page lists them, each of `kind`.
fn listed(said: &[(&str, &str)], kind: &str) -> Value {
    said.iter()
        .map(|(who, text)| json!({ "kind": kind, "who": who, "text": text }))
        .collect()
}

/// Waits until `tab` lists exactly `expected`.
async fn shows(browser: &Browser, tab: &WindowHandle, what: &str, expected: &Value) {
    browser.show(tab).await;
    let shown = browser.eval_until(MESSAGES, what, |m| m == expected).await;
    assert_eq!(&shown, expected, "{what}");
}

/// The whole scenario on the chat at `address` (`transport` names the screenshots).
pub(crate) async fn two_rooms_and_a_late_joiner(address: &str, transport: &str) {
    let Some(mut browser) = Browser::start().await else {
        return;
    };
    let ada = join(&mut browser, address, true, "r1", "ada").await;
    let bob = join(&mut browser, address, false, "r1", "bob").await;
    let cy = join(&mut browser, address, false, "r2", "cy").await;

    let said = [
        ("ada", "hello from ada"),
        ("bob", "hi ada, ça va ?"),
        ("ada", HTML),
    ];
    for (who, text) in said {
        say(&browser, if who == "ada" { &ada } else { &bob }, who, text).await;
    }
    let live = listed(&said, "message");
    shows(&browser, &ada, "ada's page with the room's messages", &live).await;
    shows(&browser, &bob, "bob's page with the room's messages", &live).await;
    // the HTML shows as text: no element made of it, no script run
    let html = browser
        .eval("return { images: document.querySelectorAll('#messages img, #messages b').length, pwned: window.pwned === true }")
        .await;
    assert_eq!(
        html,
        json!({ "images": 0, "pwned": false }),
        "bob's page took a message as HTML"
    );

    // the other room: only its own message, though r1's were all said before it
    say(&browser, &cy, "cy", "anyone in r2?").await;
    let r2 = listed(&[("cy", "anyone in r2?")], "message");
    shows(&browser, &cy, "cy's page with r2's message only", &r2).await;

    // a late joiner sees the history, then what is said live
    let dan = join(&mut browser, address, false, "r1", "dan").await;
    let history = listed(&said, "message history");
    shows(&browser, &dan, "dan's page with r1's history", &history).await;
    say(&browser, &ada, "ada", "welcome dan").await;
    let mut both = history.as_array().cloned().unwrap_or_default();
    both.extend(
        listed(&[("ada", "welcome dan")], "message")
            .as_array()
            .cloned()
            .unwrap_or_default(),
    );
    shows(
        &browser,
        &dan,
        "dan's page with the history and a live message",
        &Value::Array(both),
    )
    .await;
    shows(&browser, &cy, "cy's page still with r2's message only", &r2).await;

    let counts = |n: u64| {
        move |status: u16, health: &Value| {
            status == 200 && health["open_sockets"] == n && health["room_readers"] == n
        }
    };
    health_until(address, "4 sockets reading rooms", counts(4)).await;
    let folder = screenshots();
    for (name, tab) in [("ada", &ada), ("bob", &bob), ("cy", &cy), ("dan", &dan)] {
        browser.show(tab).await;
        browser
            .screenshot(&folder.join(format!("{transport}-{name}.png")))
            .await;
    }
    // closing a tab ends its socket and its room's reader
    browser.close_tab(&dan, &ada).await;
    health_until(
        address,
        "3 sockets reading rooms after a tab closed",
        counts(3),
    )
    .await;
    browser.close().await;
    health_until(
        address,
        "without sockets once the browser closed",
        counts(0),
    )
    .await;
}
