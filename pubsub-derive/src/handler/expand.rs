//! The registration emitted next to the user's fn.
//!
//! Everything lives in an anonymous `const _: () = { ... };` block so that nothing leaks
//! into the user's namespace, except for one hidden item: an empty struct named like the
//! fn, in the type namespace, which `pubsub::handlers![..]` resolves paths to. Trait-bound
//! checks are spanned at the user's tokens, so that `#[diagnostic::on_unimplemented]`
//! messages underline the argument or return type, and a pattern that cannot match fails
//! const evaluation at the pattern literal.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{ItemFn, LitStr, Type};

use super::attr::HandlerArgs;
use super::sig::HandlerSig;
use crate::meta::respan;

/// The first and last token spans of some user tokens. Generated code whose first token
/// is spanned at `first` and last token at `last` is underlined by rustc exactly like the
/// user's tokens, e.g. the whole `Result<u32, HandlerError>` rather than just `Result`.
#[derive(Clone, Copy)]
struct SpanRange {
    first: Span,
    last: Span,
}

impl SpanRange {
    fn of(tokens: &impl ToTokens) -> Self {
        let mut spans = tokens.to_token_stream().into_iter().map(|tree| tree.span());
        let first = spans.next().unwrap_or_else(Span::call_site);
        Self {
            first,
            last: spans.last().unwrap_or(first),
        }
    }
}

/// `struct name {}` and `const _: () = { impl IsHandlerFn for name {..} fn __call(..) {..}
/// const _: () = check; submit! {..} };`
pub(crate) fn registration(function: &ItemFn, sig: &HandlerSig, args: &HandlerArgs) -> TokenStream {
    let krate = args.krate.to_token_stream();
    // `::pubsub::__private`, spanned at the user token the surrounding code is about.
    let private = |span: Span| respan(quote!(#krate::__private), span);
    let p = private(Span::call_site());
    let ident = sig.ident;
    let event_ty = sig.event;
    let event = SpanRange::of(event_ty);

    // `<T as HandlerInput>::take`, `::KEY` and `HandlerRegistration::new::<T>` with the
    // user's tokens for `T`: "`T` cannot be a handler's event argument" underlines them.
    let input_item = |item: &str| {
        let open = respan(quote!(<), event.first);
        let close = respan(quote!(as #p::HandlerInput>::), event.last);
        let item = Ident::new(item, event.last);
        quote!(#open #event_ty #close #item)
    };
    let take = input_item("take");
    let key = input_item("KEY");
    let new = {
        let head = respan(quote!(#p::HandlerRegistration::new::<), event.first);
        let close = respan(quote!(>), event.last);
        quote!(#head #event_ty #close)
    };

    let (context_param, context_arg, call_args) = match sig.context {
        Some(ty) => {
            let at = SpanRange::of(ty);
            let open = respan(quote!(<), at.first);
            let close = respan(quote!(as #p::FromContext>::), at.first);
            let from = Ident::new("from_context", at.last);
            let extract = quote! {
                let __pubsub_ctx = #open #ty #close #from(__pubsub_context)?;
            };
            (
                format_ident!("__pubsub_context"),
                Some(extract),
                quote!(__pubsub_event, __pubsub_ctx),
            )
        }
        None => (format_ident!("_"), None, quote!(__pubsub_event)),
    };
    // The call of the user's fn spans the return type, so that "`T` is not a valid handler
    // return type" underlines it alone.
    let output = SpanRange::of(sig.output);
    let mut callee = ident.clone();
    callee.set_span(output.first);
    let call_args = respan(call_args, output.first);
    let await_ = respan(quote!(.await), output.last);
    // `IntoHandlerResult::<<T as HandlerInput>::Reply>`: a request's handler returns its
    // reply type, an event's `()`; "expected `Result<UserProfile, E>`" underlines the
    // return type.
    let convert = {
        let reply = input_item("Reply");
        let head = respan(quote!(#p::IntoHandlerResult::<), output.first);
        let close = respan(quote!(>::), output.first);
        let method = Ident::new("into_handler_result", output.last);
        quote!(#head #reply #close #method)
    };
    // "future cannot be sent between threads safely" points at the fn's name.
    let boxed = {
        let span = ident.span();
        let at = private(span);
        quote_spanned! {span=>
            #at::boxed(async move {
                let __pubsub_event = #take(__pubsub_input)?;
                #context_arg
                #convert(#callee(#call_args) #await_)
            })
        }
    };

    let fn_name = ident.unraw().to_string();
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&fn_name, ident.span()));
    let pattern = match &args.pattern {
        Some(lit) => quote!(::core::option::Option::Some(#lit)),
        None => quote!(::core::option::Option::None),
    };
    let pattern_check = args
        .pattern
        .as_ref()
        .map(|lit| pattern_check(lit, &fn_name, event_ty, &private(lit.span()), &key));
    let options = builder_calls(args);
    let cfgs = function
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"));
    // Spanned at the fn's name, `line!()` is the line of `async fn name` (not of the
    // attribute); errors about two handlers show it.
    let (file, line) = {
        let span = ident.span();
        (
            quote_spanned!(span=> ::core::file!()),
            quote_spanned!(span=> ::core::line!()),
        )
    };

    // The fn's name in the type namespace, where `handlers![path::to::fn]` finds it, with
    // the fn's visibility. Braced, so that it takes no name in the value namespace, where
    // the fn is. Spanned at the fn's name, so that notes such as "similarly named struct
    // defined here" point there.
    let vis = &function.vis;
    let marker_cfgs = cfgs.clone();
    let marker = quote_spanned! {ident.span()=>
        #[doc(hidden)]
        #[allow(
            non_camel_case_types,
            dead_code,
            missing_docs,
            missing_debug_implementations,
            unreachable_pub
        )]
        #vis struct #ident {}
    };
    let handler_fn = quote! {
        impl #p::IsHandlerFn for #ident {
            const HANDLER: #p::HandlerFn = #p::handler_fn(#name, ::core::module_path!());
        }
    };

    quote! {
        #(#marker_cfgs)*
        #marker

        #(#cfgs)*
        const _: () = {
            #handler_fn

            fn __call(
                __pubsub_input: #p::Input,
                #context_param: #p::Context,
            ) -> #p::BoxFuture<'static, ::core::result::Result<#p::Answer, #p::HandlerError>> {
                #boxed
            }

            #pattern_check

            #p::inventory::submit! {
                #new(
                    #name,
                    #pattern,
                    ::core::module_path!(),
                    #file,
                    #line,
                    __call,
                )
                #options
            }
        };
    }
}

/// A `const` that fails evaluation, at the pattern literal, when a typed handler's pattern
/// can never match its event's key (`key` is `<T as HandlerInput>::KEY`).
fn pattern_check(
    lit: &LitStr,
    fn_name: &str,
    event_ty: &Type,
    private: &TokenStream,
    key: &TokenStream,
) -> TokenStream {
    let span = lit.span();
    let message = format!(
        "handler `{fn_name}`: pattern {:?} can never match the key of its event type `{}` \
         (a `{{parameter}}` of a key is one word)",
        lit.value(),
        type_name(event_ty),
    );
    let message = LitStr::new(&message.replace('{', "{{").replace('}', "}}"), span);
    quote_spanned! {span=>
        const _: () = if !#private::pattern_can_match(#lit, #key) {
            ::core::panic!(#message)
        };
    }
}

/// `.timeout_ms(..)`, `.retries(..)`, `.use_retry_policy(..)`, `.service(..)`,
/// `.expects_foreign_events()`: only those given.
fn builder_calls(args: &HandlerArgs) -> TokenStream {
    let mut calls = TokenStream::new();
    if let Some(ms) = args.timeout_ms {
        calls.extend(quote!(.timeout_ms(#ms)));
    }
    if let Some(n) = args.retries {
        calls.extend(quote!(.retries(#n)));
    }
    if let Some(policy) = &args.retry {
        calls.extend(quote!(.use_retry_policy(#policy)));
    }
    if let Some(service) = &args.service {
        calls.extend(quote!(.service(#service)));
    }
    if args.foreign {
        calls.extend(quote!(.expects_foreign_events()));
    }
    calls
}

/// A type as the user would write it: `my::OrderCreated`, not `my :: OrderCreated`.
fn type_name(ty: &Type) -> String {
    let text = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let prev = out.chars().last();
            let next = chars.peek().copied();
            let glue = matches!(prev, Some(':' | '<' | '&' | '(' | '['))
                || matches!(next, Some(':' | '<' | '>' | ',' | ')' | ']'));
            if glue {
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::type_name;

    #[test]
    fn type_names_read_like_source() {
        let ty: syn::Type = syn::parse_quote!(crate::events::Wrapper<my::OrderCreated, u8>);
        assert_eq!(
            type_name(&ty),
            "crate::events::Wrapper<my::OrderCreated, u8>"
        );
        let ty: syn::Type = syn::parse_quote!(::pubsub::RawEvent);
        assert_eq!(type_name(&ty), "::pubsub::RawEvent");
    }
}
