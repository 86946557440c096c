//! The generated `impl Event`.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::{DeriveInput, LitStr};

use super::attr::{CodecKind, EventAttr};
use crate::meta::respan;

/// `impl ::pubsub::__private::Event for #ident { ... }`.
///
/// Also used as the fallback after errors: a missing word is replaced by `unknown` then.
pub(crate) fn impl_event(input: &DeriveInput, attr: &EventAttr) -> TokenStream {
    let ident = &input.ident;
    let krate = &attr.krate;
    let word = |lit: &Option<LitStr>| {
        lit.as_ref()
            .map_or_else(|| "unknown".to_owned(), LitStr::value)
    };
    let (domain, action) = (word(&attr.domain), word(&attr.action));
    let key = format!("{domain}.{action}");
    let version = attr.version;

    // Point "the trait bound `T: Serialize` is not satisfied" (required by the codec) at
    // `codec = "..."` when it was written, at `derive(Event)` otherwise.
    let (kind, codec_span) = attr.codec;
    let span = codec_span.unwrap_or_else(Span::call_site);
    let codec_krate = respan(krate.to_token_stream(), span);
    let codec = match kind {
        CodecKind::Json => quote_spanned!(span=> #codec_krate::__private::Json),
        CodecKind::Protobuf => quote_spanned!(span=> #codec_krate::__private::Protobuf),
    };

    // `reply = T` makes it a request; "`T: Serialize` is not satisfied" underlines `T`
    let (reply, request) = match &attr.reply {
        Some(ty) => (
            ty.to_token_stream(),
            Some(quote! {
                #[automatically_derived]
                impl #krate::__private::Request for #ident {}
            }),
        ),
        None => (quote!(()), None),
    };

    quote! {
        #[automatically_derived]
        impl #krate::__private::Event for #ident {
            const DOMAIN: &'static str = #domain;
            const ACTION: &'static str = #action;
            const KEY: &'static str = #key;
            const VERSION: u32 = #version;
            type Codec = #codec;
            type Reply = #reply;
        }
        #request
        // makes the domain known to stream-backed buses with wildcard patterns
        #krate::__private::inventory::submit! {
            #krate::__private::EventRegistration::new(#domain, #action, #version)
        }
    }
}
