//! Procedural macros of `pubsub`: `#[derive(Event)]` and `#[handler]`.
//! Use them through the `pubsub` facade, which re-exports them.

use proc_macro::TokenStream;

/// Derives `pubsub::Event`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let _ = input;
    TokenStream::new()
}

/// Registers an async fn as an event handler.
#[proc_macro_attribute]
pub fn handler(args: TokenStream, input: TokenStream) -> TokenStream {
    let _ = args;
    input
}
